"""The Starlette app of ``sidetune serve``: JSON routes, media files, the static page.

Routes (all JSON unless said otherwise)::

    GET  /                         the page (static/index.html)
    GET  /api/info                 which views are on, videos to pick, limits
    GET  /api/browser/summary      metrics of the loaded predictions (or the load error)
    GET  /api/browser/queries      one row per query
    GET  /api/browser/query/{qid}  one query: windows, IoUs, saliency curves, its video if any
    POST /api/browser/open         {"pred", "gt", "dataset"}: load another file (allowed dirs)
    POST /api/upload?name=F        raw body: a video; answers {"upload": id}
    POST /api/ground               {"query", "path" | "upload"}: queue a job
    GET  /api/jobs/{id}            a job's stage, fraction, result or error
    GET  /media?path=P             a video file under an allowed dir (HTTP range requests)
    GET  /media/upload/{id}        an uploaded video

Errors answer ``{"error": message}``: 403 for paths outside the allowed directories, 413 for
uploads over the limit, 415 for non-video files, 409 for a second concurrent upload, 422 for
input ``sidetune evaluate`` or the grounder reject (their ``SidetuneError`` message).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from sidetune.app.browser import BrowserData, load_browser, parse_qid
from sidetune.app.files import (
    Forbidden,
    UploadError,
    UploadStore,
    list_videos,
    probe_video,
    resolve_allowed,
    sniff_container,
)
from sidetune.app.live import GrounderLike, JobError, LiveGrounding
from sidetune.errors import SidetuneError

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD = 2 << 30  # 2 GiB


@dataclass
class AppConfig:
    """Everything ``sidetune serve`` passes to the app."""

    run: Path | None = None
    grounder_factory: Callable[[], GrounderLike] | None = None  # live view iff given
    live_error: str | None = None  # why the run given cannot ground (shown in the page)
    pred: Path | None = None
    gt: Path | None = None
    dataset: str = "qvhighlights"
    videos: list[Path] = field(default_factory=list)
    allow: list[Path] = field(default_factory=list)  # further dirs /api/browser/open may read
    max_upload: int = DEFAULT_MAX_UPLOAD

    def roots(self) -> list[Path]:
        """Resolved directories the server may read files from."""
        dirs = [*self.videos, *self.allow]
        dirs += [p.parent for p in (self.pred, self.gt) if p is not None]
        if self.run is not None:
            dirs.append(self.run)
        out: list[Path] = []
        for d in dirs:
            real = d.resolve()
            if real not in out:
                out.append(real)
        return out


class _State:
    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.roots = config.roots()
        self.video_roots = [v.resolve() for v in config.videos]
        self.uploads = UploadStore(config.max_upload)
        self.live = LiveGrounding(config.grounder_factory) if config.grounder_factory else None
        self.browser: BrowserData | None = None
        self.browser_error: str | None = None
        self.browser_lock = threading.Lock()
        self._videos_by_stem: dict[str, Path] | None = None
        if config.pred is not None and config.gt is not None:
            self.open_browser(config.pred, config.gt, config.dataset)

    def video_for(self, vid: str) -> Path | None:
        """A video file named ``{vid}.<ext>`` under ``--videos``, for a query's page."""
        if self._videos_by_stem is None:  # listed once, on the first query page
            self._videos_by_stem = {}
            for path in list_videos(self.video_roots):
                self._videos_by_stem.setdefault(path.stem, path)
        return self._videos_by_stem.get(vid)

    def open_browser(self, pred: Path, gt: Path, dataset: str) -> None:
        with self.browser_lock:
            try:
                self.browser, self.browser_error = load_browser(pred, gt, dataset), None
            except SidetuneError as exc:
                self.browser, self.browser_error = None, str(exc)

    def close(self) -> None:
        if self.live is not None:
            self.live.close()
        self.uploads.cleanup()


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _state(request: Request) -> _State:
    state: _State = request.app.state.sidetune
    return state


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise JobError("request body: expected a JSON object") from None
    if not isinstance(body, dict):
        raise JobError("request body: expected a JSON object")
    return body


# -- pages and info ----------------------------------------------------------------------------


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def info(request: Request) -> Response:
    st = _state(request)
    videos = await run_in_threadpool(list_videos, st.video_roots)
    return JSONResponse(
        {
            "live": st.live is not None,
            "live_error": st.config.live_error,
            "run": str(st.config.run) if st.config.run else None,
            "browser": st.browser is not None or st.browser_error is not None,
            "videos": [{"path": str(v), "label": _label(v, st.video_roots)} for v in videos],
            "max_upload": st.config.max_upload,
            "roots": [str(r) for r in st.roots],
        }
    )


def _label(video: Path, roots: list[Path]) -> str:
    """The video's path relative to the first root that holds it (the picker's text)."""
    for root in roots:
        if video.is_relative_to(root) and video != root:
            return str(video.relative_to(root))
    return video.name


# -- prediction browser ------------------------------------------------------------------------


def _browser(st: _State) -> BrowserData:
    if st.browser is None:
        raise SidetuneError(
            st.browser_error or "no predictions loaded (sidetune serve --pred --gt)"
        )
    return st.browser


async def browser_summary(request: Request) -> Response:
    return JSONResponse(_browser(_state(request)).summary())


async def browser_queries(request: Request) -> Response:
    return JSONResponse({"rows": _browser(_state(request)).rows})


async def browser_query(request: Request) -> Response:
    data = _browser(_state(request))
    try:
        qid = parse_qid(request.path_params["qid"], data.predictions)
    except KeyError:
        return _error(f"qid {request.path_params['qid']!r}: not in {data.pred_path}", 404)
    detail = data.detail(qid)
    video = await run_in_threadpool(_state(request).video_for, detail["vid"])
    detail["video"] = str(video) if video is not None else None
    return JSONResponse(detail)


async def browser_open(request: Request) -> Response:
    st = _state(request)
    body = await _json_body(request)
    pred = resolve_allowed(str(body.get("pred", "")), st.roots)
    gt = resolve_allowed(str(body.get("gt", "")), st.roots)
    dataset = str(body.get("dataset", st.config.dataset))
    await run_in_threadpool(st.open_browser, pred, gt, dataset)
    return JSONResponse(_browser(st).summary())


# -- live grounding ----------------------------------------------------------------------------


def _live(st: _State) -> LiveGrounding:
    if st.live is None:
        raise JobError(
            st.config.live_error or "live grounding is off: start the server with --run RUN_DIR"
        )
    return st.live


async def upload(request: Request) -> Response:
    st = _state(request)
    name = request.query_params.get("name", "")
    length = request.headers.get("content-length")
    upload_id, path = st.uploads.begin(name, int(length) if length and length.isdigit() else None)
    ok = False
    try:
        size = 0
        head = b""
        with path.open("wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > st.uploads.max_bytes:
                    raise UploadError(
                        f"{name}: over the upload limit of {st.uploads.max_bytes} bytes "
                        "(sidetune serve --max-upload)",
                        413,
                    )
                if len(head) < 16:
                    head += chunk[:16]
                fh.write(chunk)
        if size == 0:
            raise UploadError(f"{name}: empty file")
        if sniff_container(head) is None:
            raise UploadError(
                f"{name}: not a video container (expected MP4/MOV, WebM/Matroska or AVI bytes)", 415
            )
        duration = await run_in_threadpool(probe_video, path, name)
        ok = True
    finally:
        st.uploads.finish(upload_id, path, name, ok)
    return JSONResponse({"upload": upload_id, "name": name, "bytes": size, "duration": duration})


async def ground(request: Request) -> Response:
    st = _state(request)
    live = _live(st)
    body = await _json_body(request)
    if body.get("upload"):
        video, label = st.uploads.get(str(body["upload"]))
    elif body.get("path"):
        video = resolve_allowed(str(body["path"]), st.roots)
        if not video.is_file():
            return _error(f"{body['path']}: no such file", 404)
        label = str(body["path"])
    else:
        raise JobError("choose a video: give 'path' or 'upload'")
    job = live.submit(video, str(body.get("query", "")), label=label)
    return JSONResponse({"job": job.id})


async def job_status(request: Request) -> Response:
    try:
        return JSONResponse(_live(_state(request)).get(request.path_params["job"]))
    except JobError as exc:
        return _error(str(exc), 404)


# -- media -------------------------------------------------------------------------------------


async def media(request: Request) -> Response:
    st = _state(request)
    path = resolve_allowed(request.query_params.get("path", ""), st.roots)
    if not path.is_file():
        return _error(f"{request.query_params.get('path')}: no such file", 404)
    return FileResponse(path)


async def media_upload(request: Request) -> Response:
    path, _ = _state(request).uploads.get(request.path_params["upload"])
    return FileResponse(path)


# -- app ---------------------------------------------------------------------------------------


async def _forbidden(request: Request, exc: Exception) -> Response:
    return _error(str(exc), 403)


async def _upload_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UploadError)
    return _error(str(exc), exc.status)


async def _input_error(request: Request, exc: Exception) -> Response:
    return _error(str(exc), 400 if isinstance(exc, JobError) else 422)


def create_app(config: AppConfig) -> Starlette:
    """The app; its temporary upload folder is removed when the app's lifespan ends."""
    state = _State(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.close()

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/browser/summary", browser_summary),
        Route("/api/browser/queries", browser_queries),
        Route("/api/browser/query/{qid}", browser_query),
        Route("/api/browser/open", browser_open, methods=["POST"]),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/ground", ground, methods=["POST"]),
        Route("/api/jobs/{job}", job_status),
        Route("/media", media),
        Route("/media/upload/{upload}", media_upload),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            Forbidden: _forbidden,
            UploadError: _upload_error,
            SidetuneError: _input_error,
        },
    )
    app.state.sidetune = state
    return app
