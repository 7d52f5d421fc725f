"""A plugin whose parse_conf raises a plain exception quoting its conf (as careless code
does): the runner must not log that message at the default level."""

from __future__ import annotations

from typing import Any

from a6runner import Plugin


class Leaky(Plugin):
    name = "leaky"

    def parse_conf(self, raw: bytes) -> Any:
        conf = self.parse_json_object(raw)
        raise ValueError(f"cannot use {conf['token']}")
