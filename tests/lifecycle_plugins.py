"""Plugins with start and stop hooks, for tests/test_lifecycle.py. Each hook appends one
line ``PID NAME INSTANCE EVENT`` to the file named by $A6_LIFECYCLE_EVENTS (one write
with O_APPEND: lines from several processes never mix), so a test sees which process ran
which hook of which instance, in order. $A6_LIFECYCLE_FAIL names a file: while it exists,
``failing-start``'s start raises (a test creates it, then reloads or kills a worker);
``counted-start``'s start raises when it is the $A6_LIFECYCLE_FAIL_AT-th start of it in
the runner, every process counted; ``exits-in-start``'s start ends its process (as a
crash would) while the file $A6_LIFECYCLE_EXIT exists."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from a6runner import Plugin, Request


def record(plugin: Plugin, event: str) -> None:
    path = os.environ.get("A6_LIFECYCLE_EVENTS")
    if path:
        line = f"{os.getpid()} {plugin.name} {id(plugin)} {event}\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


class SyncHooks(Plugin):
    """Plain start and stop; its filter answers whether start ran in this instance."""

    name = "sync-hooks"

    def __init__(self) -> None:
        self.started = False

    def start(self) -> None:
        self.started = True
        record(self, "start")

    def stop(self) -> None:
        record(self, "stop")

    def request_filter(self, conf: Any, req: Request) -> None:
        req.respond(200, f"started={self.started} pid={os.getpid()} instance={id(self)}")


class AsyncHooks(Plugin):
    """``async def`` start and stop (each awaits, as opening a pool would)."""

    name = "async-hooks"

    def __init__(self) -> None:
        self.started = False

    async def start(self) -> None:
        await asyncio.sleep(0.01)
        self.started = True
        record(self, "start")

    async def stop(self) -> None:
        await asyncio.sleep(0.01)
        record(self, "stop")

    async def request_filter(self, conf: Any, req: Request) -> None:
        if conf.get("gate"):  # held in flight until the file conf["gate"] exists
            record(self, "call-entered")
            while not os.path.exists(conf["gate"]):
                await asyncio.sleep(0.005)
        req.respond(200, f"started={self.started} pid={os.getpid()} instance={id(self)}")


class FailingStart(Plugin):
    """start raises while the file $A6_LIFECYCLE_FAIL exists."""

    name = "failing-start"

    def start(self) -> None:
        fail = os.environ.get("A6_LIFECYCLE_FAIL")
        if fail and os.path.exists(fail):
            record(self, "start-failed")
            raise ValueError("the token service at 127.0.0.1:1 refused the connection")
        record(self, "start")

    def stop(self) -> None:
        record(self, "stop")

    def request_filter(self, conf: Any, req: Request) -> None:
        req.respond(200, f"pid={os.getpid()}")


class CountedStart(Plugin):
    """start raises at its $A6_LIFECYCLE_FAIL_AT-th run, counted over every process."""

    name = "counted-start"

    def start(self) -> None:
        record(self, "start-entered")
        path = os.environ.get("A6_LIFECYCLE_EVENTS", "")
        with open(path) as f:
            count = sum(1 for line in f if line.split()[1:4:2] == [self.name, "start-entered"])
        if str(count) == os.environ.get("A6_LIFECYCLE_FAIL_AT"):
            raise ValueError(f"start number {count} fails")
        record(self, "start")

    def stop(self) -> None:
        record(self, "stop")


class ExitsInStart(Plugin):
    name = "exits-in-start"

    def start(self) -> None:
        if os.path.exists(os.environ.get("A6_LIFECYCLE_EXIT", "")):
            os._exit(3)


class SlowStart(Plugin):
    """An async start that waits for the file $A6_LIFECYCLE_GATE (a slow dependency)."""

    name = "slow-start"

    async def start(self) -> None:
        record(self, "start-entered")
        gate = os.environ.get("A6_LIFECYCLE_GATE", "")
        while not os.path.exists(gate):
            await asyncio.sleep(0.005)
        record(self, "start")

    def stop(self) -> None:
        record(self, "stop")
