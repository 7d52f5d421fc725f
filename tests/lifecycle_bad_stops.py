"""Stop hooks that misbehave, for tests/test_lifecycle.py: one hangs (a plain stop: in its
own thread), one raises; neither may hold up the shutdown."""

from __future__ import annotations

import time

from a6runner import Plugin


class HangingStop(Plugin):
    name = "hanging-stop"

    def stop(self) -> None:
        time.sleep(3600)


class RaisingStop(Plugin):
    name = "raising-stop"

    async def stop(self) -> None:
        raise RuntimeError("the pool was already closed")
