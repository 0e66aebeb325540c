"""Helpers of the browser tests: the app served by uvicorn in a thread, headless Chromium.

Chromium comes from the distribution (``apt-get install chromium``), never downloaded at test
time; without it (or without the ``playwright`` package) the tests skip and say why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidetune.app.server import AppConfig, create_app

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_path() -> str:
    """The distribution's Chromium, or skip with the reason."""
    path = os.environ.get("SIDETUNE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.skip(
            "browser tests need the distribution's Chromium (apt-get install chromium; "
            "SIDETUNE_CHROMIUM=PATH for another): not found"
        )
    return path


@contextlib.contextmanager
def serve(config: AppConfig) -> Iterator[str]:
    """Run the app on a free 127.0.0.1 port in a thread; yields the base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def browser_page(width: int = 1100, height: int = 800) -> Iterator[Any]:
    """A fresh page of headless Chromium (offline: every request outside 127.0.0.1 aborts)."""
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            outside: list[str] = []

            def block(route: Any) -> None:
                outside.append(route.request.url)
                route.abort()

            context.route("http*://**", lambda route: route.continue_()
                          if route.request.url.startswith("http://127.0.0.1:") else block(route))  # fmt: skip
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page
            assert not errors, f"JavaScript errors: {errors}"
            assert not outside, f"the page tried to reach other hosts: {outside}"
        finally:
            browser.close()
