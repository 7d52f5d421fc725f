"""Conf tokens: PrepareConf stores a route's parsed plugin chain under a token.

Tokens are runner-wide (any connection, any worker). The same idempotency key within the
TTL gets the same token without re-parsing. Entries expire TTL seconds after they were
prepared (the runner uses APISIX_CONF_EXPIRE_TIME x 1.2) and are swept, so memory is
bounded by the number of live routes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._plugin import Plugin

log = logging.getLogger("a6runner.conf")

MAX_TOKEN = 0xFFFFFFFF


def _overrides(plugin: Plugin, method: str) -> bool:
    return getattr(type(plugin), method) is not getattr(Plugin, method)


Filters = tuple[tuple[Callable[..., Any], Any], ...]


def _filters(entries: Sequence[tuple[Plugin, Any]], method: str) -> Filters:
    """(bound filter, parsed conf) for every plugin that overrides ``method``, in order."""
    return tuple(
        (getattr(plugin, method), conf) for plugin, conf in entries if _overrides(plugin, method)
    )


@dataclass(slots=True)
class PreparedConf:
    token: int
    entries: tuple[tuple[Plugin, Any], ...]
    expires_at: float
    request_filters: Filters = field(init=False)
    response_filters: Filters = field(init=False)

    def __post_init__(self) -> None:
        self.request_filters = _filters(self.entries, "request_filter")
        self.response_filters = _filters(self.entries, "response_filter")


def parse_entries(
    plugins: Mapping[str, Plugin], conf: Sequence[tuple[str, bytes]]
) -> tuple[tuple[Plugin, Any], ...]:
    """Let each named plugin parse its conf; unknown names and bad confs are logged and
    skipped (the reference runners never fail a whole conf for one entry)."""
    parsed: list[tuple[Plugin, Any]] = []
    for name, raw in conf:
        plugin = plugins.get(name)
        if plugin is None:
            log.warning("conf entry %r skipped: no plugin with that name is registered", name)
            continue
        try:
            parsed.append((plugin, plugin.parse_conf(raw)))
        except Exception as exc:  # a plugin's parse_conf may raise anything: skip the entry
            log.warning("conf entry %r skipped: %s: %s", name, type(exc).__name__, exc)
    return tuple(parsed)


class TokenAllocator:
    """Non-zero uint32 tokens. Starts at a random point so that tokens handed out by an
    earlier runner on the same socket are unlikely to name a different conf here."""

    def __init__(self, start: int | None = None) -> None:
        self._next = start if start is not None else random.randint(1, MAX_TOKEN // 2)

    def next(self) -> int:
        token = self._next
        self._next = token + 1 if token < MAX_TOKEN else 1
        return token


class ConfStore:
    """Tokens to parsed chains, in one process (``--workers 1`` and each worker's cache)."""

    def __init__(
        self,
        plugins: Mapping[str, Plugin],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plugins = plugins
        self.ttl = ttl
        self._clock = clock
        self._by_token: dict[int, PreparedConf] = {}
        self._by_key: dict[str, int] = {}
        self._tokens = TokenAllocator()
        self._next_sweep = clock() + min(ttl, 60.0)

    def __len__(self) -> int:
        return len(self._by_token)

    def prepare(self, key: str | None, conf: Sequence[tuple[str, bytes]]) -> int:
        now = self._clock()
        self._maybe_sweep(now)
        if key is not None:
            token = self._by_key.get(key)
            if token is not None:
                prepared = self._by_token.get(token)
                if prepared is not None and prepared.expires_at > now:
                    return token
        token = self._tokens.next()
        while token in self._by_token:  # only after 2**32 tokens within one TTL
            token = self._tokens.next()
        self.install(token, parse_entries(self.plugins, conf), now + self.ttl)
        if key is not None:
            self._by_key[key] = token
        return token

    def install(
        self, token: int, entries: tuple[tuple[Plugin, Any], ...], expires_at: float
    ) -> PreparedConf:
        prepared = PreparedConf(token, entries, expires_at)
        self._by_token[token] = prepared
        return prepared

    def get(self, token: int) -> PreparedConf | None:
        prepared = self._by_token.get(token)
        if prepared is None:
            return None
        if prepared.expires_at <= self._clock():
            self._forget(token)
            return None
        return prepared

    def _forget(self, token: int) -> None:
        self._by_token.pop(token, None)

    def _maybe_sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(self.ttl, 60.0)
        self.sweep(now)

    def sweep(self, now: float | None = None) -> int:
        """Forget every expired token and key; returns how many tokens went."""
        if now is None:
            now = self._clock()
        dead = [t for t, p in self._by_token.items() if p.expires_at <= now]
        for t in dead:
            del self._by_token[t]
        if dead:
            self._by_key = {k: t for k, t in self._by_key.items() if t in self._by_token}
        return len(dead)
