"""Plugins that look inside a runner process for the tests (loaded with ``--plugins``):
a fake clock the test moves over the socket, and which thread imported a module."""

from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # a runner process: fake_clock.py is beside us
from fake_clock import FakeClock

from a6runner import Plugin, Request

CLOCK = FakeClock()  # one per process: each worker forks its own copy


class MoveClock(Plugin):
    """Conf ``{"advance": seconds}``: puts this process's fake clock in place (from the
    first call on, its server's sweep times stalled frames by it, and its Redis clients
    their failure logs), moves it, and answers how often it has been read so far."""

    name = "fake-clock"

    def request_filter(self, conf: Any, req: Request) -> None:
        server = req._source._server  # type: ignore[attr-defined]  # the call's connection's
        server.clock = CLOCK
        req.services.clock = CLOCK  # type: ignore[attr-defined]
        CLOCK.advance(conf.get("advance", 0))
        req.respond(200, str(CLOCK.readings))


IMPORTED_BY: dict[str, str] = {}  # module name -> the thread that imported it first


class _WatchImports(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> None:
        IMPORTED_BY.setdefault(fullname, threading.current_thread().name)


sys.meta_path.insert(0, _WatchImports())


class ImportWatch(Plugin):
    """Conf ``{"module": name}``: answers which thread of this process imported it."""

    name = "import-watch"

    def request_filter(self, conf: Any, req: Request) -> None:
        module = conf["module"]
        if module not in sys.modules:
            req.respond(200, "not imported")
        else:
            req.respond(200, f"imported by {IMPORTED_BY.get(module, 'an unwatched thread')}")
