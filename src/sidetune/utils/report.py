"""A pre-flight check's findings: counts of what was scanned and the problems found."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class CheckReport:
    """What ``sidetune check`` prints: counts per kind of item, problems in the order found.

    ``add`` keeps every problem's message (the summary shows the first ``show``) and counts
    problems per ``kind`` so a thousand missing files read as one line of counts.
    """

    title: str
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    problem_kinds: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    def add(self, kind: str, message: str) -> None:
        self.problem_kinds[kind] += 1
        self.problems.append(message)

    def format(self, show: int = 10) -> str:
        lines = [self.title]
        lines += [f"  {what}: {n}" for what, n in self.counts.items()]
        lines += [f"  note: {n}" for n in self.notes]
        if self.ok:
            lines.append("OK: no problems found")
            return "\n".join(lines)
        kinds = ", ".join(f"{n} {k}" for k, n in self.problem_kinds.most_common())
        lines.append(f"FAILED: {len(self.problems)} problem(s): {kinds}")
        lines += [f"  - {p}" for p in self.problems[:show]]
        if len(self.problems) > show:
            lines.append(f"  ... and {len(self.problems) - show} more")
        return "\n".join(lines)
