"""Live grounding jobs: one worker thread runs :class:`~sidetune.grounding.inference.Grounder`.

A job is one (video, query) pair. Jobs wait in a FIFO queue and run one at a time (a Grounder
holds one model and one feature cache; two extractions at once would only halve each one's
speed on a CPU). The page polls a job for its stage and fraction; the second query on the same
video skips decoding and extraction because the Grounder caches video features.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sidetune.errors import SidetuneError

ProgressFn = Callable[[str, float], None]


class ResultLike(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class GrounderLike(Protocol):
    """What the app needs of :class:`sidetune.grounding.inference.Grounder`."""

    def ground(
        self, video_path: Any, queries: str | list[str], *, progress: ProgressFn | None = None
    ) -> list[Any]: ...


class JobError(SidetuneError, ValueError):
    """A job request the app refuses (empty query, unknown job)."""


@dataclass
class Job:
    id: str
    video: Path
    label: str  # what the page shows for the video (upload name or path)
    query: str
    state: str = "queued"  # queued | running | done | error
    stage: str = "queued"
    fraction: float = 0.0
    result: dict[str, Any] | None = None
    error: str | None = None
    seconds: float | None = None
    cache_hit: bool | None = None  # video features came from the grounder's cache
    created: float = field(default_factory=time.monotonic)

    def to_dict(self, position: int | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "video": self.label,
            "query": self.query,
            "state": self.state,
            "stage": self.stage,
            "fraction": round(self.fraction, 3),
            "position": position,
            "result": self.result,
            "error": self.error,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "cache_hit": self.cache_hit,
        }


class LiveGrounding:
    """A job queue in front of one lazily built grounder.

    ``factory`` builds the grounder on the worker thread at the first job (loading a run takes
    seconds; the page shows it as the stage ``load model``). ``keep`` finished jobs are kept
    for polling; older ones are dropped.
    """

    def __init__(self, factory: Callable[[], GrounderLike], keep: int = 200) -> None:
        self._factory = factory
        self._grounder: GrounderLike | None = None
        self._jobs: dict[str, Job] = {}
        self._order: list[str] = []  # queued job ids, FIFO
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._keep = keep
        self._worker = threading.Thread(target=self._run, name="sidetune-ground", daemon=True)
        self._worker.start()

    # -- API used by the routes --------------------------------------------------------------

    def submit(self, video: Path, query: str, label: str | None = None) -> Job:
        query = query.strip()
        if not query:
            raise JobError("query: empty; type a sentence describing the moment")
        job = Job(id=f"j{next(self._ids)}", video=video, label=label or str(video), query=query)
        with self._lock:
            self._jobs[job.id] = job
            self._order.append(job.id)
            self._forget_old()
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobError(f"job {job_id!r}: unknown (finished jobs are kept for a while)")
            position = self._order.index(job_id) + 1 if job_id in self._order else None
            return job.to_dict(position)

    def busy(self) -> bool:
        """True while a job is queued or running."""
        with self._lock:
            return bool(self._order) or any(j.state == "running" for j in self._jobs.values())

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._worker.join(timeout)

    # -- worker ------------------------------------------------------------------------------

    def _forget_old(self) -> None:
        done = [j for j in self._jobs.values() if j.state in ("done", "error")]
        for job in sorted(done, key=lambda j: j.created)[: max(0, len(done) - self._keep)]:
            del self._jobs[job.id]

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                self._order.remove(job.id)
                job.state = "running"
            start = time.perf_counter()
            try:
                result = self._ground(job)
                job.result, job.state, job.fraction, job.stage = result, "done", 1.0, "done"
            except SidetuneError as exc:
                job.error, job.state = str(exc), "error"
            except Exception as exc:  # an app must answer the page, not die; log the trace
                traceback.print_exc()
                job.error, job.state = f"internal error: {type(exc).__name__}: {exc}", "error"
            job.seconds = time.perf_counter() - start

    def _ground(self, job: Job) -> dict[str, Any]:
        def progress(stage: str, fraction: float) -> None:
            job.stage, job.fraction = stage, min(max(float(fraction), 0.0), 1.0)

        if self._grounder is None:
            progress("load model", 0.0)
            self._grounder = self._factory()
        results = self._grounder.ground(job.video, job.query, progress=progress)
        hit = getattr(self._grounder, "last_cache_hit", None)  # Grounder has it; fakes may not
        job.cache_hit = hit if isinstance(hit, bool) else None
        return dict(results[0].to_dict())
