"""A plugin for the limit tests of runner processes (``--plugins`` this file)."""

from __future__ import annotations

import os
from typing import Any

from a6runner import Plugin, Request


class ServedBy(Plugin):
    """Adds ``X-Served-By: <pid>`` to the client response (a later Stop carries it too)."""

    name = "served-by"

    def request_filter(self, conf: Any, req: Request) -> None:
        req.resp_headers.set("X-Served-By", str(os.getpid()))
