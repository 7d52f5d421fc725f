"""The plugin API: ``Plugin``, ``Request`` (request phase) and ``Response`` (response phase).

A plugin is a class with a ``name``, a ``parse_conf`` that turns the route's JSON conf into
whatever object the filters want, and two filters. The runner makes one instance of each
plugin class and calls ``parse_conf`` once per PrepareConf; filters receive that parsed
conf and a call object. Filters may be plain functions (run inline, the fast path) or
``async def`` (run as a task; the only way to ``await`` nginx vars, bodies or timers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

from ._errors import ConfError
from ._kernels import codec, headers
from ._tracing import TraceContext, trace_context_of
from .confs import decode_conf, parse_json

if TYPE_CHECKING:
    import ipaddress

    from ._codec_py import HTTPReqCallReq, HTTPRespCallReq
    from ._headers_py import MultiMap
    from ._limits import LimitPolicy, Quota
else:
    MultiMap = headers.MultiMap

METHODS = (
    "GET", "HEAD", "POST", "PUT", "DELETE", "MKCOL", "COPY", "MOVE", "OPTIONS",
    "PROPFIND", "PROPPATCH", "LOCK", "UNLOCK", "PATCH", "TRACE",
)  # fmt: skip


class Needs(NamedTuple):
    """What a plugin's filters read through ExtraInfo for one conf. Before the first filter
    of a call that needs anything runs, the runner asks APISIX for everything the rest of
    the chain needs in one write — one round trip — and the filters then read it without
    waiting (``get_var``, ``get_body``)."""

    vars: tuple[str, ...] = ()  # nginx variables, e.g. ("remote_addr", "http_x_user")
    body: bool = False  # the request body (request phase)
    resp_body: bool = False  # the upstream response body (response phase)


class Plugin:
    """Base class of every plugin. Subclass it, set ``name``, override what you need.

    ``parse_conf`` decodes the route's JSON conf into ``conf_type`` when the plugin sets
    one (a dataclass, a ``msgspec.Struct`` or a pydantic model: see ``a6runner.confs``),
    else it is ``json.loads`` (an empty conf is ``{}``). Override it to check a conf by
    hand: raise ``ConfError`` (or ``ValueError``/``TypeError``) to reject a conf, and give
    ``conf_schema`` (a JSON Schema) for ``a6-runner schema``. The runner logs a rejected
    conf and skips that entry, as the other runners do; for a plugin with ``guard = True``
    it refuses every call with that conf instead (``guard_status``, 503). Both filters
    default to doing nothing.

    ``required_vars``, ``required_body`` and ``required_resp_body`` declare what the
    filters read through ExtraInfo, so the runner fetches it for the whole chain in one
    round trip before they run (override ``needs`` when it depends on the conf).

    ``start`` and ``stop`` (plain or ``async def``; both default to doing nothing) open and
    close what an instance holds, such as a connection pool, in each serving process.
    """

    name: ClassVar[str] = ""
    """What routes call the plugin by: ``{"name": "greet", "value": "..."}``. Required."""
    conf_type: ClassVar[type | None] = None
    """The conf's type: the default parse_conf decodes the JSON conf into it, strictly."""
    conf_schema: ClassVar[Mapping[str, Any] | None] = None
    """The conf's JSON Schema, for a plugin that checks its conf in its own parse_conf."""
    guard: ClassVar[bool] = False
    """A guard's bad conf does not open the door: every call with it is refused."""
    guard_status: ClassVar[int] = 503
    """The status a guard's refused calls are answered with (100..599)."""
    required_vars: ClassVar[Sequence[str]] = ()
    """nginx variables the filters read with ``get_var`` (fetched before they run)."""
    required_body: ClassVar[bool] = False
    """Whether the request filter reads the request body with ``get_body``."""
    required_resp_body: ClassVar[bool] = False
    """Whether the response filter reads the upstream body with ``get_body``."""

    def needs(self, conf: Any) -> Needs:
        """What the filters read through ExtraInfo for calls with ``conf`` (the parsed
        conf); asked once per PrepareConf. By default the ``required_*`` attributes."""
        return Needs(tuple(self.required_vars), self.required_body, self.required_resp_body)

    def parse_conf(self, raw: bytes) -> Any:
        """The conf the filters get, from a route's conf (the JSON string of its ``value``,
        as bytes); called once per PrepareConf, never per call. ``raw`` decoded into
        ``conf_type`` when set, else the JSON value (``{}`` for an empty conf); ConfError
        when it does not fit."""
        conf_type = self.conf_type
        if conf_type is not None:
            return decode_conf(conf_type, raw)
        return parse_json(raw)

    def parse_json_object(self, raw: bytes) -> dict[str, Any]:
        """The conf as a JSON object (``{}`` for an empty conf); ConfError for invalid JSON
        or any other JSON value. Most ``parse_conf`` overrides start here."""
        conf = parse_json(raw)
        if not isinstance(conf, dict):
            raise ConfError("must be a JSON object", got=conf)
        return conf

    def start(self) -> Awaitable[None] | None:
        """Called once in every process that serves calls (each ``--workers`` worker,
        after the fork), before its first call, and for the new instances a reload makes
        before they take over. Raising stops the runner at startup (exit status 2), or
        cancels a reload: the previous instances keep serving."""
        return None

    def stop(self) -> Awaitable[None] | None:
        """Called once when this instance stops serving, after its calls in flight ended:
        at shutdown (all stops together get 0.1 s), or when a reload replaced it (5 s). A
        plain ``stop`` runs in a thread of its own, an ``async def`` one on the event loop;
        one that raises or outlives its time is logged by the plugin's name."""
        return None

    def request_filter(self, conf: Any, req: Request) -> Awaitable[None] | None:
        """Called for HTTPReqCall (ext-plugin-pre-req / post-req routes)."""
        return None

    def response_filter(self, conf: Any, resp: Response) -> Awaitable[None] | None:
        """Called for HTTPRespCall (ext-plugin-post-resp routes)."""
        return None


class ExtraInfoSource(Protocol):
    """How a call object asks APISIX for extra information (the connection implements it)."""

    def ask(self, info_type: int, name: str | None) -> Awaitable[bytes | None]: ...

    def ask_many(
        self, questions: Sequence[tuple[int, str | None]]
    ) -> list[Awaitable[bytes | None]]:
        """Send every question in one write; the answers come back in the same order."""
        ...


def _var_value(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "surrogateescape")


class RunnerServices(Protocol):
    """Runner-wide limits plugins may use: token buckets and fixed-window counters, kept
    by the runner (``policy`` None or ``LimitPolicy()``: shared by every worker process)
    or in Redis (a ``LimitPolicy`` with a Redis target: shared by every gateway node
    using it). Redis failures raise ``LimitStoreError``: the plugin decides whether the
    call passes."""

    def reserve(
        self, key: str, rate: float, burst: int, policy: LimitPolicy | None = None
    ) -> Awaitable[float | None]:
        """Take one token from the bucket ``key`` (created with ``rate``/``burst`` on first
        use): the delay in seconds before the caller may proceed, or None when it must be
        rejected (``burst`` is 0, or ``rate`` is 0 and the bucket is empty)."""
        ...

    def counter(
        self,
        key: str,
        limit: int,
        window: float,
        policy: LimitPolicy | None = None,
        cost: int = 1,
    ) -> Awaitable[Quota]:
        """Count ``cost`` against ``limit`` in the fixed window ``key`` (``window``
        seconds, opened by its first call): a ``Quota`` saying whether this call fits,
        what remains and when the window resets. A call that does not fit is not
        counted."""
        ...


class _CallBase:
    """What request and response calls share: identity, ExtraInfo access and its cache."""

    __slots__ = ("_body", "_source", "_vars", "conf_token", "id", "services")
    # set by each subclass's __init__ (inline there: one frame less on every call)
    id: int
    """The call's id (APISIX numbers the calls of each of its workers)."""
    conf_token: int
    """The conf token the call was made with (which PrepareConf's conf it runs)."""
    _source: ExtraInfoSource
    services: RunnerServices
    """Runner-wide limits: ``await services.reserve(...)`` and ``counter(...)``."""
    _vars: dict[str, str | None] | None
    _body: bytes | None

    async def var(self, name: str) -> str | None:
        """The nginx variable ``name`` (e.g. ``remote_addr``), fetched from APISIX once per
        call and cached; None when nginx has no such variable or it is empty/unset."""
        vars_ = self._vars
        if vars_ is None:
            vars_ = self._vars = {}
        elif name in vars_:
            return vars_[name]
        value = vars_[name] = _var_value(await self._source.ask(codec.INFO_VAR, name))
        return value

    async def vars(self, *names: str) -> tuple[str | None, ...]:
        """Several nginx variables at once, in the order named: those not fetched yet in
        this call are asked together, in one round trip."""
        vars_ = self._vars
        if vars_ is None:
            vars_ = self._vars = {}
        missing = [n for n in dict.fromkeys(names) if n not in vars_]
        if missing:
            answers = self._source.ask_many([(codec.INFO_VAR, n) for n in missing])
            for name, answer in zip(missing, answers, strict=True):
                vars_[name] = _var_value(await answer)
        return tuple(vars_[n] for n in names)

    def get_var(self, name: str) -> str | None:
        """The nginx variable ``name`` when this call already has it — prefetched because a
        plugin of the chain declared it (``required_vars``), or awaited before — with no
        waiting, so a plain ``def`` filter can read it. LookupError otherwise."""
        vars_ = self._vars
        if vars_ is None or name not in vars_:
            raise LookupError(
                f"var {name!r} was not fetched in this call: declare it in required_vars, "
                f"or await var({name!r})"
            )
        return vars_[name]

    @property
    def trace_context(self) -> TraceContext | None:
        """The request's W3C trace context (``traceparent``/``tracestate``), or None: from
        the request headers (the client's, or the gateway span's that APISIX's
        opentelemetry plugin injected), else from the vars ``opentelemetry_context_
        traceparent`` / ``http_traceparent`` when this call already fetched them (the only
        source in the response phase: declare them in ``required_vars``)."""
        headers = self._decoded.headers if isinstance(self, Request) else ()
        return trace_context_of(headers, self._vars)

    # -- for the runner's prefetch (private: not part of the plugin API) -----------------

    def _has(self, info_type: int, name: str | None) -> bool:
        if info_type == codec.INFO_VAR:
            return self._vars is not None and name in self._vars
        return self._body is not None

    def _remember(self, info_type: int, name: str | None, raw: bytes | None) -> None:
        if info_type == codec.INFO_VAR:
            vars_ = self._vars
            if vars_ is None:
                vars_ = self._vars = {}
            vars_[name or ""] = _var_value(raw)
        else:  # the phase's body: the request body, or the upstream response body
            self._body = raw or b""

    def _body_fetched(self, what: str, declare: str) -> bytes:
        if self._body is None:
            raise LookupError(
                f"the {what} was not fetched in this call: set {declare} = True, or await body()"
            )
        return self._body


class Request(_CallBase):
    """One HTTPReqCall: the request as APISIX sees it, and what the plugins change.

    Read: ``id``, ``method``, ``path``, ``args``, ``headers``, ``src_ip``, ``await var(n)``,
    ``await body()``. Change the upstream request: assign ``path``, mutate ``headers`` /
    ``args`` (``set``/``add``/``delete``), ``set_body()``; add headers to the client
    response while still going upstream: ``resp_headers``. Answer the client yourself (the
    chain stops, APISIX does not call the upstream): ``respond()`` or ``response``.
    """

    __slots__ = (
        "_args",
        "_decoded",
        "_headers",
        "_new_body",
        "_path",
        "_resp_headers",
        "_response",
    )

    def __init__(
        self,
        decoded: HTTPReqCallReq,
        source: ExtraInfoSource,
        services: RunnerServices,
    ) -> None:
        self.id = decoded.id
        self.conf_token = decoded.conf_token
        self._source = source
        self.services = services
        self._vars = None
        self._body = None
        self._decoded = decoded
        self._path: str | None = None
        self._headers: MultiMap | None = None
        self._args: MultiMap | None = None
        self._resp_headers: MultiMap | None = None
        self._response: ResponseWriter | None = None
        self._new_body: bytes | None = None

    @property
    def method(self) -> str:
        """The HTTP method: ``"GET"``, ``"POST"``, ... (APISIX's 15, up to ``"TRACE"``)."""
        m = self._decoded.method
        return METHODS[m] if m < len(METHODS) else str(m)

    @property
    def path(self) -> str:
        """The upstream URI path without query string. Assign to rewrite it."""
        return self._decoded.path if self._path is None else self._path

    @path.setter
    def path(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("path must be a str")
        self._path = value

    @property
    def headers(self) -> MultiMap:
        """Request headers: case-insensitive, multi-valued; changes go upstream."""
        h = self._headers
        if h is None:
            h = self._headers = MultiMap(self._decoded.headers, True)
        return h

    @property
    def args(self) -> MultiMap:
        """Query args: case-sensitive, multi-valued; changes go upstream."""
        a = self._args
        if a is None:
            a = self._args = MultiMap(self._decoded.args, False)
        return a

    @property
    def src_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The client address, or None if APISIX sent none (or an unparseable one)."""
        raw = self._decoded.src_ip
        import ipaddress  # on first use: a worker whose plugins never ask saves ~0.25 MiB

        if len(raw) == 4:
            return ipaddress.IPv4Address(raw)
        if len(raw) == 16:
            return ipaddress.IPv6Address(raw)
        return None

    @property
    def resp_headers(self) -> MultiMap:
        """Headers to add to the client response when the request does go upstream
        (APISIX ignores connection, content-length, content-type, location, server and a
        few more here; see PROTOCOL.md)."""
        h = self._resp_headers
        if h is None:
            h = self._resp_headers = MultiMap((), True)
        return h

    async def body(self) -> bytes:
        """The request body (fetched from APISIX once per call); b"" when there is none."""
        if self._body is None:
            self._body = await self._source.ask(codec.INFO_REQ_BODY, None) or b""
        return self._body

    def get_body(self) -> bytes:
        """The request body when this call already has it (prefetched because a plugin of
        the chain set ``required_body``, or awaited before); LookupError otherwise."""
        return self._body_fetched("request body", "required_body")

    def set_body(self, body: bytes | str) -> None:
        """Replace the request body sent upstream (APISIX ignores an empty one)."""
        self._new_body = body.encode() if isinstance(body, str) else bytes(body)

    @property
    def response(self) -> ResponseWriter:
        """The response to send instead of calling the upstream. Writing its status,
        a header or its body makes this plugin the last one: the chain stops."""
        r = self._response
        if r is None:
            r = self._response = ResponseWriter()
        return r

    def respond(
        self,
        status: int = 200,
        body: bytes | str = b"",
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    ) -> None:
        """Answer the client now: ``status``, ``body`` and ``headers`` (the chain stops)."""
        r = self.response
        r.status = status
        if body:
            r.body = body.encode() if isinstance(body, str) else bytes(body)
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in pairs:
            r.headers.add(name, value)


class ResponseWriter:
    """The client response a request-phase plugin writes (a Stop action)."""

    __slots__ = ("_body", "_headers", "_status")

    def __init__(self) -> None:
        self._status = 0
        self._headers: MultiMap | None = None
        self._body: bytes | None = None

    @property
    def status(self) -> int:
        """HTTP status; 0 until set (APISIX answers 200 then)."""
        return self._status

    @status.setter
    def status(self, value: int) -> None:
        if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise ValueError(f"status must be an int in 0..65535, not {value!r}")
        self._status = value

    @property
    def headers(self) -> MultiMap:
        """The response headers (the first entry of a name is set, repeats are added)."""
        h = self._headers
        if h is None:
            h = self._headers = MultiMap((), True)
        return h

    @property
    def body(self) -> bytes | None:
        """The response body (a str is encoded as UTF-8); None until set."""
        return self._body

    @body.setter
    def body(self, value: bytes | str | None) -> None:
        self._body = value.encode() if isinstance(value, str) else value

    @property
    def written(self) -> bool:
        """Whether a status, a header or a body was written: the chain then stops."""
        return bool(
            self._status or self._body or (self._headers is not None and len(self._headers))
        )


class Response(_CallBase):
    """One HTTPRespCall: the upstream response (status, headers, body) and its changes.

    Read: ``id``, ``status``, ``headers``, ``await body()`` (the upstream body),
    ``await var(n)``. Change: assign ``status``, mutate ``headers``, ``set_body()``. A
    filter that changes anything ends the response chain.
    """

    __slots__ = ("_decoded", "_headers", "_new_body", "_status")

    def __init__(
        self,
        decoded: HTTPRespCallReq,
        source: ExtraInfoSource,
        services: RunnerServices,
    ) -> None:
        self.id = decoded.id
        self.conf_token = decoded.conf_token
        self._source = source
        self.services = services
        self._vars = None
        self._body = None
        self._decoded = decoded
        self._status: int | None = None
        self._headers: MultiMap | None = None
        self._new_body: bytes | None = None

    @property
    def status(self) -> int:
        """The upstream status, or the one a filter set (1..65535). Assign to change it."""
        return self._decoded.status if self._status is None else self._status

    @status.setter
    def status(self, value: int) -> None:
        if not isinstance(value, int) or not 0 < value <= 0xFFFF:
            raise ValueError(f"status must be an int in 1..65535, not {value!r}")
        self._status = value

    @property
    def headers(self) -> MultiMap:
        """The upstream response headers (case-insensitive, multi-valued); mutate them to
        change what the client gets. The runner sends the complete resulting set."""
        h = self._headers
        if h is None:
            h = self._headers = MultiMap(self._decoded.headers, True)
        return h

    async def body(self) -> bytes:
        """The upstream response body (fetched from APISIX once per call)."""
        if self._body is None:
            self._body = await self._source.ask(codec.INFO_RESP_BODY, None) or b""
        return self._body

    def get_body(self) -> bytes:
        """The upstream response body when this call already has it (prefetched because a
        plugin of the chain set ``required_resp_body``, or awaited before); LookupError
        otherwise."""
        return self._body_fetched("response body", "required_resp_body")

    def set_body(self, body: bytes | str) -> None:
        """Replace the response body sent to the client."""
        self._new_body = body.encode() if isinstance(body, str) else bytes(body)
