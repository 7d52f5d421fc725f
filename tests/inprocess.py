"""A runner in a thread of this process, with observation settings (``metrics``,
``otel``) and the test plugins of metrics_plugins.py: quick to start, and it runs in both
kernel modes (the spawned runners' tests run once, with the compiled kernels)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from a6runner._registry import build_registry
from a6runner._runner import serve_single
from a6runner._server import new_event_loop
from a6runner._settings import Settings
from a6runner.testing import RunnerHandle

PLUGINS = str(Path(__file__).with_name("metrics_plugins.py"))


@contextlib.contextmanager
def observed_runner(tmp_path: Path, **observe: object) -> Iterator[RunnerHandle]:
    """Serve the bundled plugins and metrics_plugins.py with Settings fields ``observe``
    (e.g. ``metrics="unix:/path"``, ``otel=True``) until the block ends."""
    registry = build_registry((), [PLUGINS], bundled=True, entry_points=False)
    plugins = {n: r.plugin for n, r in registry.items()}
    settings = Settings(str(tmp_path / "runner.sock"), **observe)  # type: ignore[arg-type]
    loop = new_event_loop()
    ready = threading.Event()
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        await serve_single(settings, plugins, stop[0], ready.set)

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield RunnerHandle(settings.socket_path, plugins)
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(5)
        loop.close()
