"""The loop-stall watchdog: finds the plugin that blocks the event loop.

A filter that blocks (``time.sleep``, blocking I/O, a long computation) holds up every
connection of its process. The event loop bumps a heartbeat a few times per threshold; a
daemon thread checks it, and when it is older than the threshold it looks at the loop
thread's stack for a plugin's filter or ``parse_conf`` and logs a warning naming the
plugin and the line it is stuck on, then a second line with the stall's length once the
loop runs again. Stalls with no plugin on the stack (a busy machine, the garbage
collector) are not the plugin author's to fix and are not logged.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import types
from collections.abc import Mapping

from ._plugin import Plugin

log = logging.getLogger("a6runner")

HOOKS = ("request_filter", "response_filter", "parse_conf")


def _hook_codes(plugins: Mapping[str, Plugin]) -> dict[types.CodeType, str]:
    """The code objects of the hooks each plugin overrides, to its name."""
    codes: dict[types.CodeType, str] = {}
    for name, plugin in list(plugins.items()):
        for hook in HOOKS:
            code = getattr(getattr(type(plugin), hook, None), "__code__", None)
            if code is not None and getattr(Plugin, hook).__code__ is not code:
                codes[code] = name
    return codes


class StallWatchdog:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        threshold: float,
        plugins: Mapping[str, Plugin],
    ) -> None:
        self._loop = loop
        self._threshold = threshold
        self._interval = threshold / 4
        # a plugin's hooks, by their code objects: found on a stack without touching locals
        self._plugins = plugins
        self._codes = _hook_codes(plugins)
        self._beat = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = threading.Event()
        self._loop_thread = threading.get_ident()
        self._thread = threading.Thread(target=self._watch, name="a6runner-watchdog", daemon=True)

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._tick()
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._handle is not None:
            self._handle.cancel()

    def _tick(self) -> None:
        self._beat = time.monotonic()
        self._handle = self._loop.call_later(self._interval, self._tick)

    def _watch(self) -> None:
        stalled_in: str | None = None
        started = 0.0
        while not self._stopped.wait(self._interval):
            beat = self._beat
            lag = time.monotonic() - beat
            if stalled_in is None:
                if lag > self._threshold:
                    found = self._plugin_on_stack()
                    if found is not None:
                        stalled_in, where = found
                        started = beat
                        log.warning(
                            "plugin %r has blocked the event loop for %.2fs, at %s: every "
                            "connection of this process waits (use async I/O, or "
                            "asyncio.to_thread for blocking work)",
                            stalled_in,
                            lag,
                            where,
                        )
            elif beat > started:
                log.warning(
                    "plugin %r blocked the event loop for %.2fs", stalled_in, beat - started
                )
                stalled_in = None

    def _plugin_on_stack(self) -> tuple[str, str] | None:
        found = self._find_on_stack()
        if found is None:  # plugins reloaded since (``plugins`` is a live mapping)? look again
            self._codes = {**self._codes, **_hook_codes(self._plugins)}
            found = self._find_on_stack()
        return found

    def _find_on_stack(self) -> tuple[str, str] | None:
        frame = sys._current_frames().get(self._loop_thread)
        while frame is not None:  # innermost first: the plugin's own line that waits
            name = self._codes.get(frame.f_code)
            if name is not None:
                code = frame.f_code
                return name, f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
            frame = frame.f_back
        return None
