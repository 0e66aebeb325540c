"""Progress of an extraction: a tqdm bar over videos / queries (clips/s and the ETA in it) and,
inside it, a bar over the clips of the current video; silent when disabled."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


class Progress:
    """``update`` counts finished items; ``add_clips`` feeds the clips/s figure.

    ``clip_bars``: one inner bar per video, over its clips (``start_video`` ... ``end_video``);
    only meaningful when videos are decoded one after the other.
    """

    def __init__(
        self, total: int, unit: str, desc: str, enabled: bool, clip_bars: bool = False
    ) -> None:
        self.bar: Any = None
        self.inner: Any = None
        self.clip_bars = clip_bars
        self.clips = 0
        self.t0 = time.perf_counter()
        if enabled and total > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True)

    def start_video(self, vid: str, path: Path, clip_length: float) -> None:
        if self.bar is None or not self.clip_bars:
            return
        from tqdm import tqdm

        from sidetune.video.decode import VideoDecodeError, probe
        from sidetune.video.sampling import num_clips_for

        try:
            total: int | None = num_clips_for(probe(path).duration, clip_length)
        except VideoDecodeError:
            total = None  # the extraction itself reports the file
        self.end_video()
        self.inner = tqdm(
            total=total, unit="clip", desc=vid, leave=False, position=1, dynamic_ncols=True
        )

    def end_video(self) -> None:
        if self.inner is not None:
            self.inner.close()
            self.inner = None

    def add_clips(self, n: int) -> None:
        self.clips += n
        if self.inner is not None:
            self.inner.update(n)
        if self.bar is not None:
            rate = self.clips / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.set_postfix_str(f"{self.clips} clips, {rate:.1f} clips/s", refresh=False)

    def update(self, n: int = 1) -> None:
        if self.bar is not None and n:
            self.bar.update(n)

    def close(self) -> None:
        self.end_video()
        if self.bar is not None:
            self.bar.close()
