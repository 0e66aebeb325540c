"""Progress of an extraction: a tqdm bar over videos / queries with clips/s and an ETA."""

from __future__ import annotations

import time
from typing import Any


class Progress:
    """A tqdm bar over videos / queries with clips/s and an ETA; silent when disabled."""

    def __init__(self, total: int, unit: str, desc: str, enabled: bool) -> None:
        self.bar: Any = None
        self.clips = 0
        self.t0 = time.perf_counter()
        if enabled and total > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True)

    def add_clips(self, n: int) -> None:
        self.clips += n
        if self.bar is not None:
            rate = self.clips / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.set_postfix_str(f"{self.clips} clips, {rate:.1f} clips/s", refresh=False)

    def update(self, n: int = 1) -> None:
        if self.bar is not None and n:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
