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

from dataclasses import dataclass, field
from typing import Annotated

from a6runner import MultiMap, Plugin, Request
from a6runner.confs import Length, Matches, ignore_unknown_fields

Name = Annotated[str, Length(min=1)]
# what uri and host must be: the first check is on both, the second on uri alone
TRIMMED = Matches(r"\S(?:[\s\S]*\S)?", "a non-empty string without surrounding spaces")
PATH = Matches(r"/[^?]*", "a path starting with / and without a query")


@dataclass(frozen=True, slots=True)
class MapEdits:
    """Edits of the headers or the args; a key other than these three rejects the conf."""

    set: dict[Name, str] = field(default_factory=dict)
    add: dict[Name, str] = field(default_factory=dict)
    remove: tuple[Name, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.remove or self.set or self.add)

    def apply(self, entries: MultiMap) -> None:
        for name in self.remove:
            entries.delete(name)
        for name, value in self.set.items():
            entries.set(name, value)
        for name, value in self.add.items():
            entries.add(name, value)


@ignore_unknown_fields
@dataclass(frozen=True, slots=True)
class ProxyRewriteConf:
    uri: Annotated[str, TRIMMED, PATH] | None = None
    host: Annotated[str, TRIMMED] | None = None
    headers: MapEdits = field(default_factory=MapEdits)
    args: MapEdits = field(default_factory=MapEdits)


class ProxyRewrite(Plugin):
    name = "proxy-rewrite"
    conf_type = ProxyRewriteConf

    def request_filter(self, conf: ProxyRewriteConf, req: Request) -> None:
        if conf.uri is not None:
            req.path = conf.uri
        if conf.host is not None:
            req.headers.set("host", conf.host)  # APISIX also sends it as the upstream Host
        if conf.headers:  # (only touch req.headers/args when there is something to do)
            conf.headers.apply(req.headers)
        if conf.args:
            conf.args.apply(req.args)
