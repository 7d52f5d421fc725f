"""A plugin with a cache that grows on every call (as third-party plugins' caches do),
for tests/test_recycle.py: each call keeps 256 KiB more, written (so the pages are the
worker's own), until the process holds HOARD_LIMIT. Its start raises while the file
$A6_RECYCLE_FAIL exists (a successor that cannot start)."""

from __future__ import annotations

import os
from typing import Any

from a6runner import Plugin, Request

HOARD_STEP = 256 << 10
HOARD_LIMIT = 64 << 20
kept: list[bytes] = []


class Hoard(Plugin):
    name = "hoard"

    def start(self) -> None:
        if os.path.exists(os.environ.get("A6_RECYCLE_FAIL", "")):
            raise ConnectionRefusedError("the cache server refused the connection")

    def request_filter(self, conf: Any, req: Request) -> None:
        if len(kept) * HOARD_STEP < HOARD_LIMIT:
            kept.append(b"x" * HOARD_STEP)
        req.respond(200, f"hoard pid-{os.getpid()} call-{req.id}")
