"""proxy-rewrite: rewrite what goes upstream: path, host, headers, query args.

Conf (every field optional)::

    {"uri": "/new/path",
     "host": "backend.example",
     "headers": {"set": {str: str}, "add": {str: str}, "remove": [str]},
     "args":    {"set": {str: str}, "add": {str: str}, "remove": [str]}}

``uri`` replaces the upstream path (no query string: change the query with ``args``);
``host`` the upstream Host. For headers and args the operations run in the order remove,
set (replace every value), add (one more value). The runner answers a Rewrite carrying
only what actually changed, so a conf that changes nothing for a request answers no
action at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from a6runner import ConfError, MultiMap, Plugin, Request


@dataclass(frozen=True, slots=True)
class MapEdits:
    remove: tuple[str, ...] = ()
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.remove or self.set or self.add)

    def apply(self, entries: MultiMap) -> None:
        for name in self.remove:
            entries.delete(name)
        for name, value in self.set:
            entries.set(name, value)
        for name, value in self.add:
            entries.add(name, value)


@dataclass(frozen=True, slots=True)
class ProxyRewriteConf:
    uri: str | None
    host: str | None
    headers: MapEdits
    args: MapEdits


def _parse_edits(field: str, edits: object) -> MapEdits:
    if not isinstance(edits, dict):
        raise ConfError(field, "must be an object with set, add and/or remove", got=edits)
    unknown = set(edits) - {"set", "add", "remove"}
    if unknown:
        raise ConfError(field, f"unknown keys {sorted(unknown)} (expected set, add, remove)")
    pairs = {}
    for op in ("set", "add"):
        mapping = edits.get(op, {})
        if not isinstance(mapping, dict) or not all(
            k and isinstance(v, str) for k, v in mapping.items()
        ):
            raise ConfError(f"{field}.{op}", "must map names to string values", got=mapping)
        pairs[op] = tuple(mapping.items())
    remove = edits.get("remove", [])
    if not isinstance(remove, list) or not all(isinstance(n, str) and n for n in remove):
        raise ConfError(f"{field}.remove", "must be a list of names", got=remove)
    return MapEdits(tuple(remove), pairs["set"], pairs["add"])


def _optional_str(conf: dict[str, Any], field: str) -> str | None:
    value = conf.get(field)
    if value is not None and (not isinstance(value, str) or not value or value != value.strip()):
        raise ConfError(field, "must be a non-empty string without surrounding spaces", got=value)
    return value


class ProxyRewrite(Plugin):
    name = "proxy-rewrite"

    def parse_conf(self, raw: bytes) -> ProxyRewriteConf:
        conf = self.parse_json_object(raw)
        uri = _optional_str(conf, "uri")
        if uri is not None and (not uri.startswith("/") or "?" in uri):
            raise ConfError("uri", "must be a path starting with / and without a query", got=uri)
        return ProxyRewriteConf(
            uri,
            _optional_str(conf, "host"),
            _parse_edits("headers", conf.get("headers", {})),
            _parse_edits("args", conf.get("args", {})),
        )

    def request_filter(self, conf: ProxyRewriteConf, req: Request) -> None:
        if conf.uri is not None:
            req.path = conf.uri
        if conf.host is not None:
            req.headers.set("host", conf.host)  # APISIX also sends it as the upstream Host
        if conf.headers:  # (only touch req.headers/args when there is something to do)
            conf.headers.apply(req.headers)
        if conf.args:
            conf.args.apply(req.args)
