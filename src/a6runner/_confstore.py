"""Conf tokens: PrepareConf stores a route's plugin chain under a token.

Tokens are runner-wide (any connection, any worker). The same idempotency key within the
TTL gets the same token without re-parsing. Entries expire TTL seconds after they were
prepared (the runner uses APISIX_CONF_EXPIRE_TIME x 1.2) and are swept, so memory is
bounded by the number of live routes.

``TokenStore`` is generic over what it keeps: a worker keeps parsed chains
(``PreparedConf``); the supervisor of ``--workers N`` keeps the raw conf entries and
hands them to the workers that meet a token they have not parsed yet.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ._errors import ConfError
from ._kernels import codec
from ._plugin import Needs, Plugin, Request, Response

log = logging.getLogger("a6runner.conf")

MAX_TOKEN = 0xFFFFFFFF
T = TypeVar("T")

Filters = tuple[tuple[Callable[..., Any], Any], ...]
RawConf = Sequence[tuple[str, bytes]]
Question = tuple[int, str | None]  # an ExtraInfo question: (info type, var name or None)
# Where a chain asks APISIX for what its filters declared (Plugin.needs): before the
# filter at this index, every question of that filter and the ones after it, at once;
# (-1, ()) when no filter declared anything.
Prefetch = tuple[int, tuple[Question, ...]]
NO_PREFETCH: Prefetch = (-1, ())

# Per phase (request, response): the filter method, and which body its phase can read.
_PHASES = (
    ("request_filter", "body", codec.INFO_REQ_BODY),
    ("response_filter", "resp_body", codec.INFO_RESP_BODY),
)


def _overrides(plugin: Plugin, method: str) -> bool:
    return getattr(type(plugin), method) is not getattr(Plugin, method)


def _chain(entries: Sequence[Entry], phase: int) -> tuple[Filters, Prefetch]:
    """(bound filter, parsed conf) for every plugin that overrides the phase's filter, in
    order, and where that chain asks for what its filters need."""
    method, body_field, body_info = _PHASES[phase]
    filters: list[tuple[Callable[..., Any], Any]] = []
    questions: dict[Question, None] = {}  # an ordered set
    first = -1
    for plugin, conf, needs in entries:
        if not _overrides(plugin, method):
            continue
        asked: list[Question] = [(codec.INFO_VAR, name) for name in needs.vars]
        if getattr(needs, body_field):
            asked.append((body_info, None))
        if asked and first < 0:
            first = len(filters)
        if first >= 0:
            questions.update(dict.fromkeys(asked))
        filters.append((getattr(plugin, method), conf))
    return tuple(filters), (first, tuple(questions)) if first >= 0 else NO_PREFETCH


Entry = tuple[Plugin, Any, Needs]  # a plugin, its parsed conf, what its filters read


def needs_of(plugin: Plugin, conf: Any) -> Needs:
    needs = plugin.needs(conf)
    if not isinstance(needs, Needs):
        needs = Needs(*needs)
    if isinstance(needs.vars, str) or not all(isinstance(v, str) and v for v in needs.vars):
        raise TypeError("needs().vars must be a sequence of variable names")
    return Needs(tuple(needs.vars), bool(needs.body), bool(needs.resp_body))


def _log_rejected(name: str, exc: BaseException, refusal: Refusal | None = None) -> None:
    """Say why an entry was skipped (or, for a guard, why its calls are refused), never with
    a value of its conf (secrets end up in APISIX's error.log): a ConfError carries none;
    any other exception's message may quote the conf, so only its type is said at the
    default level."""
    if refusal is not None:
        outcome = (
            f"rejected: {name!r} is a guard, so every call with this conf is refused with "
            f"{refusal.status} until the route's conf is fixed"
        )
        level = logging.ERROR
    else:
        outcome, level = "skipped", logging.WARNING
    if isinstance(exc, ConfError):
        log.log(level, "conf entry %r %s: %s", name, outcome, exc)
        return
    log.log(
        level,
        "conf entry %r %s: its plugin raised %s (message not logged: it may quote the "
        "conf; --log-level debug shows it)",
        name,
        outcome,
        type(exc).__name__,
    )
    log.debug("conf entry %r: %s: %s", name, type(exc).__name__, exc)


class Refusal:
    """Stands in for the whole chain of a conf that must not be served: a guard plugin's
    entry failed validation, or (``--unknown-plugins refuse``) an entry names no
    registered plugin. Every call with the conf is refused before any filter runs — with a
    Stop, never an error frame, which APISIX would let through with ``allow_degradation``:

    * request phase: a Stop with ``status`` and no body (APISIX answers its own error page);
    * response phase: ``status``, the upstream headers replaced by a single
      ``Content-Type: text/plain``, and the body ``"<status> <reason>\\n"``, so nothing of
      the upstream response reaches the client.
    """

    def __init__(self, name: str, status: int) -> None:
        self.name = name  # the refused entry's plugin: _chain names filters by it
        self.status = status
        import http  # only when a conf is refused

        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Refused"
        self.body = f"{status} {reason}\n".encode()

    def request_filter(self, conf: Any, req: Request) -> None:
        req.response.status = self.status

    def response_filter(self, conf: Any, resp: Response) -> None:
        resp.status = self.status
        headers = resp.headers
        upstream = headers.keys()  # a list: deleting while going through it is fine
        for name in upstream:
            headers.delete(name)
        headers.set("Content-Type", "text/plain")
        resp.set_body(self.body)


def parse_entries(plugins: Mapping[str, Plugin], conf: RawConf) -> tuple[Entry, ...]:
    """The entries ``parse_chain`` keeps (none when it refuses the conf)."""
    return parse_chain(plugins, conf)[0]


def parse_chain(
    plugins: Mapping[str, Plugin], conf: RawConf, refuse_unknown: bool = False
) -> tuple[tuple[Entry, ...], Refusal | None]:
    """Let each named plugin parse its conf; unknown names and bad confs are logged and
    skipped (the reference runners never fail a whole conf for one entry), except a bad
    conf of a guard plugin and, with ``refuse_unknown``, an unknown name: then the whole
    conf is refused (the Refusal says how), and its other entries are not parsed."""
    parsed: list[Entry] = []
    for name, raw in conf:
        plugin = plugins.get(name)
        if plugin is None:
            if refuse_unknown:
                log.error(
                    "conf entry %r: no plugin with that name is registered; with "
                    "--unknown-plugins refuse every call with this conf is refused with 503",
                    name,
                )
                return (), Refusal(name, 503)
            log.warning("conf entry %r skipped: no plugin with that name is registered", name)
            continue
        try:
            parsed_conf = plugin.parse_conf(raw)
            parsed.append((plugin, parsed_conf, needs_of(plugin, parsed_conf)))
        except BaseException as exc:  # a plugin's parse_conf may raise anything: skip it
            refusal = Refusal(name, plugin.guard_status) if plugin.guard else None
            _log_rejected(name, exc, refusal)
            if refusal is not None:
                return (), refusal
    return tuple(parsed), None


@dataclass(slots=True)
class PreparedConf:
    """A route's parsed plugin chain, ready to call, and the conf it was parsed from (a
    reload parses it again with the new plugins). A refused conf (``refusal``) has one
    filter per phase, the Refusal's, in place of the chain."""

    entries: tuple[Entry, ...]
    raw: RawConf = ()
    refusal: Refusal | None = None
    # Per phase, indexed by _chain.Phase.index (request, response): the filters, and
    # where the chain prefetches what they declared.
    filters: tuple[Filters, Filters] = field(init=False)
    prefetch: tuple[Prefetch, Prefetch] = field(init=False)

    def __post_init__(self) -> None:
        refusal = self.refusal
        if refusal is not None:
            self.filters = ((refusal.request_filter, None),), ((refusal.response_filter, None),)
            self.prefetch = (NO_PREFETCH, NO_PREFETCH)
            return
        (req, req_prefetch), (resp, resp_prefetch) = (
            _chain(self.entries, 0),
            _chain(self.entries, 1),
        )
        self.filters = (req, resp)
        self.prefetch = (req_prefetch, resp_prefetch)

    @classmethod
    def parse(
        cls, plugins: Mapping[str, Plugin], conf: RawConf, refuse_unknown: bool = False
    ) -> PreparedConf:
        entries, refusal = parse_chain(plugins, conf, refuse_unknown)
        return cls(entries, tuple(conf), refusal)


class TokenAllocator:
    """Non-zero uint32 tokens. Starts at a random point so that tokens handed out by an
    earlier runner on the same socket are unlikely to name a different conf here."""

    def __init__(self, start: int | None = None) -> None:
        self._next = start if start is not None else random.randint(1, MAX_TOKEN // 2)

    def next(self) -> int:
        token = self._next
        self._next = token + 1 if token < MAX_TOKEN else 1
        return token


class TokenStore(Generic[T]):
    """Tokens to values with an expiry, plus idempotency keys to tokens."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._by_token: dict[int, tuple[T, float]] = {}
        self._by_key: dict[str, int] = {}
        self._tokens = TokenAllocator()
        self._next_sweep = clock() + min(ttl, 60.0)

    def __len__(self) -> int:
        return len(self._by_token)

    def prepare(self, key: str | None, make: Callable[[], T]) -> tuple[int, float]:
        """The live token of ``key``, or a new token for ``make()``; with its expiry."""
        now = self._clock()
        if key is not None:
            found = self.token_for_key(key)
            if found is not None:
                return found
        token = self._tokens.next()
        while token in self._by_token:  # only after 2**32 tokens within one TTL
            token = self._tokens.next()
        expires_at = now + self.ttl
        self.install(token, make(), expires_at)
        if key is not None:
            self._by_key[key] = token
        return token, expires_at

    def token_for_key(self, key: str) -> tuple[int, float] | None:
        token = self._by_key.get(key)
        if token is None:
            return None
        entry = self._by_token.get(token)
        if entry is None or entry[1] <= self._clock():
            return None
        return token, entry[1]

    def remember_key(self, key: str, token: int) -> None:
        self._by_key[key] = token

    def install(self, token: int, value: T, expires_at: float) -> None:
        now = self._clock()
        if now >= self._next_sweep:
            self.sweep(now)
        self._by_token[token] = (value, expires_at)

    def get(self, token: int) -> T | None:
        entry = self._by_token.get(token)  # (get_with_expiry, inline: every call's lookup)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._by_token[token]
            return None
        return entry[0]

    def get_with_expiry(self, token: int) -> tuple[T, float] | None:
        entry = self._by_token.get(token)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._by_token[token]
            return None
        return entry

    def replace_values(self, make: Callable[[T], T]) -> int:
        """Each live token's value becomes ``make(value)``; tokens, keys and expiries stay.
        Returns how many tokens there are."""
        self.sweep()
        for token, (value, expires_at) in list(self._by_token.items()):
            self._by_token[token] = (make(value), expires_at)
        return len(self._by_token)

    def sweep(self, now: float | None = None) -> int:
        """Forget every expired token and key; returns how many tokens went."""
        if now is None:
            now = self._clock()
        self._next_sweep = now + min(self.ttl, 60.0)
        dead = [t for t, (_, expires_at) in self._by_token.items() if expires_at <= now]
        for t in dead:
            del self._by_token[t]
        self._by_key = {k: t for k, t in self._by_key.items() if t in self._by_token}
        return len(dead)


class ConfStore:
    """PrepareConf and token lookup in one process (``--workers 1``). With
    ``refuse_unknown`` a conf naming an unregistered plugin is refused, not skipped."""

    def __init__(
        self,
        plugins: Mapping[str, Plugin],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        refuse_unknown: bool = False,
    ) -> None:
        self.plugins = plugins
        self.refuse_unknown = refuse_unknown
        self.tokens: TokenStore[PreparedConf] = TokenStore(ttl, clock)

    def __len__(self) -> int:
        return len(self.tokens)

    def prepare(self, key: str | None, conf: RawConf) -> int:
        token, _ = self.tokens.prepare(
            key, lambda: PreparedConf.parse(self.plugins, conf, self.refuse_unknown)
        )
        return token

    def lookup(self, token: int) -> PreparedConf | None:
        return self.tokens.get(token)

    def reload(self, plugins: Mapping[str, Plugin]) -> int:
        """Serve ``plugins`` from now on: every live token's conf is parsed again by them
        (the same tokens, keys and expiries; calls in flight keep the chain they started
        with). Returns how many tokens were parsed again."""
        self.plugins = plugins
        return self.tokens.replace_values(
            lambda old: PreparedConf.parse(plugins, old.raw, self.refuse_unknown)
        )
