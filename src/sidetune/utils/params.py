"""Parameter accounting in the PEFT style: freeze explicitly, report trainable / total."""

from __future__ import annotations

from torch import nn


def freeze(module: nn.Module) -> nn.Module:
    """Turn off gradients for every parameter of ``module`` and put it in eval mode."""
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
    return module


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """Return ``(trainable, total)`` parameter counts; shared tensors are counted once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in module.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def parameter_table(module: nn.Module, depth: int = 1) -> str:
    """A per-module table (children up to ``depth`` levels) ending in the PEFT summary line.

    The last line is always ``trainable parameters: N / total M (P%)``.
    """
    rows: list[tuple[str, int, int]] = []

    def visit(prefix: str, mod: nn.Module, level: int) -> None:
        for name, child in mod.named_children():
            full = f"{prefix}.{name}" if prefix else name
            tr, to = count_parameters(child)
            if to == 0:
                continue
            rows.append((("  " * (level - 1)) + full, tr, to))
            if level < depth:
                visit(full, child, level + 1)

    visit("", module, 1)
    own = [p for n, p in module.named_parameters(recurse=False)]
    if own:
        rows.append(
            (
                "(own parameters)",
                sum(p.numel() for p in own if p.requires_grad),
                sum(p.numel() for p in own),
            )
        )
    width = max([len(r[0]) for r in rows] + [len("module")])
    lines = [f"{'module':<{width}}  {'trainable':>12}  {'total':>12}"]
    lines.append("-" * len(lines[0]))
    for name, tr, to in rows:
        lines.append(f"{name:<{width}}  {tr:>12,}  {to:>12,}")
    trainable, total = count_parameters(module)
    pct = 100.0 * trainable / total if total else 0.0
    lines.append("-" * len(lines[0]))
    lines.append(f"trainable parameters: {trainable:,} / total {total:,} ({pct:.2f}%)")
    return "\n".join(lines)
