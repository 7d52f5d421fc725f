"""Per-call observation: metrics counters, debug log lines and trace spans.

Decided once at startup (:func:`make_observer`): with metrics, ``--otel`` and debug
logging all off there is no observer and the serving path is exactly the plain one.

* Metrics: each connection gets a meter (the ``meter`` kernel, compiled like the codec)
  that it tells when a call's first byte came, what the call is, and every frame it
  writes; the meter reads the outcome from the reply and counts it with its duration. The
  plugins the confs are parsed with are stand-ins whose filters are timed by the kernel
  (:meth:`Observer.plugins`). So metrics add one C call per event to the hot path and no
  Python frame.
* Debug lines and spans want more of each call (its id and token, the plugins run, the
  questions asked): the server then makes :class:`ObservedConnection` objects, and the
  stand-in filters are Python wrappers.

Every figure goes into plain local counters of this process (:class:`Recorder`); nothing
is formatted until a scrape asks (``_metrics.py``), and with ``--workers N`` each worker
sends its counters to the supervisor once a second (:func:`report_to_supervisor`).

This module needs no optional package: prometheus-client is only imported where the
numbers are rendered, OpenTelemetry only with ``--otel`` (``_tracing.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from inspect import isawaitable
from typing import TYPE_CHECKING, Any, Protocol

from . import _chain as chain
from ._confstore import Question
from ._errors import PeerClosed
from ._kernels import codec, meter
from ._plugin import Plugin
from ._server import DEADLINE, Connection, Server

if TYPE_CHECKING:
    from ._settings import Settings
    from ._tracing import Tracing

log = logging.getLogger("a6runner")

now = meter.now  # every duration here is a difference of two readings of this clock

# Metric label values (docs/operations/monitoring.md).
CALL_TYPES = {
    codec.RPC_PREPARE_CONF: "prepare_conf",
    codec.RPC_HTTP_REQ_CALL: "http_req_call",
    codec.RPC_HTTP_RESP_CALL: "http_resp_call",
}
OUTCOMES = ("none", "stop", "rewrite", "response", "error")  # by meter.OUTCOME_*
NONE, STOP, REWRITE, RESPONSE, ERROR = (
    meter.OUTCOME_NONE,
    meter.OUTCOME_STOP,
    meter.OUTCOME_REWRITE,
    meter.OUTCOME_RESPONSE,
    meter.OUTCOME_ERROR,
)
# The outcomes each call type can have: every one is exported, zeros too.
TYPE_OUTCOMES = {
    "prepare_conf": ("none", "error"),
    "http_req_call": ("none", "stop", "rewrite", "error"),
    "http_resp_call": ("none", "response", "error"),
}
ERROR_CODES = ("bad_request", "service_unavailable", "conf_token_not_found")  # by ERR_*
INFO_KINDS = {
    codec.INFO_VAR: "var",
    codec.INFO_REQ_BODY: "req_body",
    codec.INFO_RESP_BODY: "resp_body",
}

# Histogram bucket bounds in seconds: a call or filter of the fast path takes 5-50 µs; a
# plugin awaiting I/O milliseconds; APISIX gives up on a call after 60 s.
DURATION_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_PROBE = 0.25  # seconds between event-loop lag samples
REPORT_INTERVAL = 1.0  # seconds between a worker's reports to the supervisor
DEBUG_LIST_MAX = 8  # names per list in a debug line (APISIX cuts lines at ~3800 bytes)

_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from


def prepared_token(frame: bytes) -> int:
    """The conf token of a PrepareConfResp frame (for the debug line)."""
    table = 4 + _U32(frame, 4)[0]
    vtable = table - _I32(frame, table)[0]
    at = _U16(frame, vtable + 4)[0] if _U16(frame, vtable)[0] > 4 else 0
    return _U32(frame, table + at)[0] if at else 0


# -- local counters ---------------------------------------------------------------------------

Snapshot = dict[str, Any]


class Recorder:
    """Every per-call figure of one serving process, as plain counters (kernel objects)."""

    def __init__(self) -> None:
        self.counts = meter.CallCounts(DURATION_BUCKETS)
        self.plugins: dict[tuple[str, str], meter.PluginStats] = {}
        self.loop_lag = meter.Histogram(LAG_BUCKETS)

    def plugin(self, name: str, phase: str) -> meter.PluginStats:
        """The stats of ``name``'s filter in ``phase`` (the same ones after a reload)."""
        stats = self.plugins.get((name, phase))
        if stats is None:
            stats = self.plugins[name, phase] = meter.PluginStats(DURATION_BUCKETS)
        return stats

    def snapshot(self) -> Snapshot:
        """Plain, picklable data (labels as strings), the counters only."""
        counts = self.counts
        return {
            "calls": {(CALL_TYPES[t], OUTCOMES[o]): n for (t, o), n in counts.calls().items()},
            "call_errors": dict(zip(ERROR_CODES, counts.errors(), strict=True)),
            "call_duration": {
                name: counts.duration(t).snapshot() for t, name in CALL_TYPES.items()
            },
            "plugin_duration": {k: s.hist.snapshot() for k, s in self.plugins.items()},
            "plugin_errors": {k: s.errors for k, s in self.plugins.items()},
            "extra_info": {INFO_KINDS[k]: n for k, n in counts.questions().items()},
            "loop_lag": self.loop_lag.snapshot(),
        }


def empty_snapshot() -> Snapshot:
    return Recorder().snapshot()


def _add_hist(into: dict[Any, Any], key: Any, value: tuple[list[int], float]) -> None:
    had = into.get(key)
    if had is None:
        into[key] = (list(value[0]), value[1])
    else:
        into[key] = ([a + b for a, b in zip(had[0], value[0], strict=True)], had[1] + value[1])


def merge(into: Snapshot, snap: Snapshot) -> Snapshot:
    """Add the counters of ``snap`` to ``into`` (in place) and return it."""
    for family in ("calls", "call_errors", "plugin_errors", "extra_info"):
        target = into[family]
        for key, n in snap[family].items():
            target[key] = target.get(key, 0) + n
    for family in ("call_duration", "plugin_duration"):
        for key, hist in snap[family].items():
            _add_hist(into[family], key, hist)
    lag = {"": into["loop_lag"]}
    _add_hist(lag, "", snap["loop_lag"])
    into["loop_lag"] = lag[""]
    return into


# -- the plugins, timed ---------------------------------------------------------------------


class ObservedPlugin(Plugin):
    """Stands in for a plugin in the confs of an observed runner: parses confs with the
    real plugin, and its filters (instance attributes, set by ``Observer.plugins``) time
    and count the real ones. Subclassed per plugin so the confstore sees which filters the
    real plugin overrides."""

    def __init__(self, inner: Plugin) -> None:
        self.inner = inner

    def parse_conf(self, raw: bytes) -> Any:
        return self.inner.parse_conf(raw)

    def needs(self, conf: Any) -> Any:
        return self.inner.needs(conf)


Filter = Callable[[Any, Any], Any]  # a plugin's request_filter or response_filter


def _overridden(self: Plugin, conf: Any, call: Any) -> None:
    """On an ObservedPlugin class: says the real plugin has this filter (each instance
    carries the observed filter itself)."""
    raise AssertionError("shadowed by the instance's observed filter")


def _plugin_failed(exc: BaseException, call: Any) -> bool:
    """Whether a filter's awaitable ending with ``exc`` is the plugin's failure, as the
    chain sees it: not the connection going away, not a cancellation by the runner other
    than the call timeout."""
    if isinstance(exc, PeerClosed):
        return False
    if isinstance(exc, asyncio.CancelledError):
        return getattr(call._source, "cancel_reason", None) in (DEADLINE, None)
    return True


async def _timed_await(
    pending: Awaitable[Any],
    started: float,
    stats: meter.PluginStats | None,
    call: Any,
    span: Any = None,
) -> None:
    """An async filter's awaitable, awaited: its time (from ``started``, a ``now()``) and
    failure counted in ``stats``, its span ended."""
    failed = False
    try:
        await pending
    except BaseException as exc:
        failed = _plugin_failed(exc, call)
        if span is not None:
            span.end_error(exc, failed)
            span = None
        raise
    finally:
        if stats is not None:
            stats.hist.observe(now() - started)
            stats.errors += failed
        if span is not None:
            span.end()


def _observed_filter(
    name: str,
    filt: Filter,
    stats: meter.PluginStats | None,
    debug: bool,
    tracing: Tracing | None,
) -> Filter:
    """The filter with everything the observer wants of it (debug log, spans, metrics)."""

    def observed(conf: Any, call: Any) -> Any:
        conn = call._source
        if debug:
            conn._obs_ran.append(name)
        span = tracing.plugin_span(name, conn._obs_span) if tracing is not None else None
        started = now()
        try:
            result = filt(conf, call)
        except BaseException as exc:
            if stats is not None:
                stats.errors += 1
                stats.hist.observe(now() - started)
            if span is not None:
                span.end_error(exc, True)
            raise
        if result is not None and isawaitable(result):
            return _timed_await(result, started, stats, call, span)
        if stats is not None:
            stats.hist.observe(now() - started)
        if span is not None:
            span.end()
        return result

    return observed


# -- connections --------------------------------------------------------------------------------


def _shown(items: Sequence[str]) -> list[str]:
    """The first DEBUG_LIST_MAX of ``items``, and ``"(+N)"`` for the rest."""
    more = len(items) - DEBUG_LIST_MAX
    return [*items[:DEBUG_LIST_MAX], f"(+{more})"] if more > 0 else list(items)


def _question(question: Question) -> str:
    info_type, name = question
    return f"var {name}" if info_type == codec.INFO_VAR else INFO_KINDS.get(info_type, "?")


class ObservedConnection(Connection):
    """A connection that keeps what debug lines and spans want of each call (the call id
    and token, the plugins run, the questions asked, its time); its meter, when metrics
    are on, counts as on any connection."""

    _observer: Observer  # set on the subclass each Observer makes

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self._obs_type = -1  # the frame type of the call in flight
        self._obs_first = 0.0  # now() at the first byte of the last call to come
        self._obs_started = 0.0  # ... and of the call in flight
        self._obs_call: tuple[int, int] | None = None  # (call id, token)
        self._obs_ran: list[str] = []
        self._obs_asked: list[Question] = []
        self._obs_span: Any = None

    def data_received(self, data: bytes) -> None:
        if not self._splitter.pending and not self._info_waiters:  # a call's first byte
            self._obs_first = now()
        Connection.data_received(self, data)

    def _dispatch(self, frame_type: int, payload: bytes) -> None:
        self._obs_type = frame_type
        self._obs_started = self._obs_first
        self._obs_call = None
        self._obs_ran = []
        self._obs_asked = []
        Connection._dispatch(self, frame_type, payload)

    def send(self, frame: bytes) -> None:
        Connection.send(self, frame)
        if frame[0] != codec.RPC_EXTRA_INFO:
            self._observer.replied(self, frame, now() - self._obs_started)

    def _http_call(self, phase: chain.Phase, decoded: Any) -> Any:
        self._obs_call = (decoded.id, decoded.conf_token)
        tracing = self._observer.tracing
        if tracing is not None:
            self._obs_span = tracing.call_span(phase, decoded)
        return Connection._http_call(self, phase, decoded)

    def _prepare_conf(self, req: Any) -> Any:
        self._obs_ran = [name for name, _ in req.conf]
        return Connection._prepare_conf(self, req)

    def ask(self, info_type: int, name: str | None) -> asyncio.Future[bytes | None]:
        fut = Connection.ask(self, info_type, name)
        self._obs_asked.append((info_type, name))
        return fut

    def ask_many(
        self, questions: Sequence[tuple[int, str | None]]
    ) -> list[Awaitable[bytes | None]]:
        futures = Connection.ask_many(self, questions)
        self._obs_asked.extend(questions)
        return futures

    def prefetch(
        self,
        call: chain.Call,
        questions: tuple[Question, ...],
        then: Callable[[], Coroutine[Any, Any, None] | None],
    ) -> None:
        Connection.prefetch(self, call, questions, then)
        self._obs_asked.extend(questions)


class Observer:
    """What this serving process observes, decided at startup; see the module doc."""

    def __init__(
        self,
        *,
        metrics: bool,
        debug: bool = False,
        tracing: Tracing | None = None,
    ) -> None:
        self.recorder = Recorder() if metrics else None
        self.debug = debug
        self.tracing = tracing
        self.per_call = debug or tracing is not None  # keeps lists and ids per call
        self.server: Server | None = None
        self.connection_class: type[ObservedConnection] | None = (
            type("ObservedConnection", (ObservedConnection,), {"_observer": self})
            if self.per_call
            else None
        )
        self._probe: asyncio.TimerHandle | None = None

    # -- set-up --

    def plugins(self, plugins: Mapping[str, Plugin]) -> dict[str, Plugin]:
        """Stand-ins for ``plugins`` whose filters report to this observer (the same
        counters for a plugin of the same name: after a reload they go on)."""
        observed: dict[str, Plugin] = {}
        phases = (("request_filter", "request"), ("response_filter", "response"))
        for name, plugin in plugins.items():
            methods = [
                (method, phase)
                for method, phase in phases
                if getattr(type(plugin), method) is not getattr(Plugin, method)
            ]
            attrs: dict[str, Any] = {
                "name": name,
                "guard": plugin.guard,
                "guard_status": plugin.guard_status,
            }
            attrs.update((method, _overridden) for method, _ in methods)  # the confstore asks
            cls = type(f"Observed_{type(plugin).__name__}", (ObservedPlugin,), attrs)
            proxy = cls(plugin)
            for method, phase in methods:
                stats = self.recorder.plugin(name, phase) if self.recorder is not None else None
                inner = getattr(plugin, method)
                filt: Filter
                if self.per_call:
                    filt = _observed_filter(name, inner, stats, self.debug, self.tracing)
                    filt.__self__ = proxy  # type: ignore[attr-defined]  # _chain names plugins by it
                else:  # metrics alone: the kernel's timed filter, no Python frame of ours
                    assert stats is not None
                    filt = meter.TimedFilter(inner, stats, _timed_await, proxy)
                setattr(proxy, method, filt)
            observed[name] = proxy
        return observed

    def attach(self, server: Server) -> None:
        """Serve ``server``'s connections observed (called by ``_server.serve``)."""
        self.server = server
        if self.connection_class is not None:
            server.connection_factory = self.connection_class
        if self.recorder is not None:
            server.call_counts = self.recorder.counts  # each connection meters into them
            self._schedule_probe(asyncio.get_running_loop())

    def detach(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    def _schedule_probe(self, loop: asyncio.AbstractEventLoop) -> None:
        due = now() + LAG_PROBE
        self._probe = loop.call_later(LAG_PROBE, self._lag_sample, loop, due)

    def _lag_sample(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        assert self.recorder is not None
        self.recorder.loop_lag.observe(max(0.0, now() - due))
        self._schedule_probe(loop)

    # -- per call (from ObservedConnection: debug lines, spans) --

    def replied(self, conn: ObservedConnection, frame: bytes, elapsed: float) -> None:
        outcome = meter.reply_outcome(frame)  # (counted by the connection's meter)
        span, conn._obs_span = conn._obs_span, None
        if span is not None:
            span.end_call(OUTCOMES[outcome], _error_code(frame) if outcome == ERROR else None)
        if self.debug:
            self._debug_line(conn, frame, outcome, elapsed)

    def _debug_line(
        self, conn: ObservedConnection, frame: bytes, outcome: int, elapsed: float
    ) -> None:
        """The one debug line of a call: names, ids and times, never a value. A JSON line
        (``--log-format json``) carries the same as fields (``_logging.FIELDS``)."""
        kind = CALL_TYPES.get(conn._obs_type, f"frame type {conn._obs_type}")
        error = _error_code(frame) if outcome == ERROR else None
        result = f"error {error}" if error else OUTCOMES[outcome]
        ran = _shown(conn._obs_ran)
        plugins = ", ".join(ran) or "no plugin"
        ms = round(elapsed * 1000, 3)
        fields: dict[str, Any] = {
            "event": "call",
            "type": kind,
            "plugins": ran,
            "outcome": OUTCOMES[outcome],
            "error": error,
            "duration_ms": ms,
        }
        if conn._obs_type == codec.RPC_PREPARE_CONF:
            token = prepared_token(frame) if outcome != ERROR else None
            fields.update(event="prepare_conf", token=token)
            log.debug(
                "PrepareConf (%s) -> %s, %.3f ms",
                plugins,
                f"token {token}" if token is not None else result,
                ms,
                extra=fields,
            )
            return
        call = conn._obs_call
        if call is None:  # the frame did not decode: no id, no token
            log.debug("%s (undecoded) -> %s, %.3f ms", kind, result, ms, extra=fields)
            return
        asked = _shown([_question(q) for q in conn._obs_asked])
        fields.update(call=call[0], token=call[1], asked=asked)
        log.debug(
            "call %d %s token %d: %s -> %s; asked %s; %.3f ms",
            call[0],
            kind,
            call[1],
            plugins,
            result,
            ", ".join(asked) or "nothing",
            ms,
            extra=fields,
        )

    # -- what a scrape or a report reads --

    def snapshot(self) -> Snapshot:
        """The counters, and this process's gauges under ``"gauges"``."""
        snap = self.recorder.snapshot() if self.recorder is not None else empty_snapshot()
        server = self.server
        gauges = {"connections": 0, "buffered_bytes": 0}
        if server is not None:
            unsent = 0
            for conn in server.connections:
                transport = conn._transport
                if transport is not None:
                    unsent += transport.get_write_buffer_size()
            gauges = {
                "connections": len(server.connections),
                "buffered_bytes": server.memory.frames + unsent,
            }
        snap["gauges"] = gauges
        return snap

    @property
    def accepting(self) -> bool:
        server = self.server
        return server is not None and server._accepting and not server._out_of_fds


def _error_code(frame: bytes) -> str:
    return ERROR_CODES[meter.error_code(frame)]


def make_observer(settings: Settings, worker: int | None = None) -> Observer | None:
    """The observer ``settings`` ask for (``--metrics``, ``--otel``, debug logging), or
    None when nothing is observed: then the runner serves exactly as without this module."""
    debug = log.isEnabledFor(logging.DEBUG)
    tracing = None
    if settings.otel:
        from ._tracing import Tracing

        tracing = Tracing.start(worker)
    if settings.metrics is None and not debug and tracing is None:
        return None
    return Observer(metrics=settings.metrics is not None, debug=debug, tracing=tracing)


def observed(observer: Observer | None, plugins: Mapping[str, Plugin]) -> Mapping[str, Plugin]:
    """What the confs are parsed with: ``plugins``, or the observer's stand-ins for them."""
    return observer.plugins(plugins) if observer is not None else plugins


class _Link(Protocol):  # what report_to_supervisor needs of _workers.SupervisorLink
    async def ask(self, *message: Any) -> Any: ...


async def report_to_supervisor(
    observer: Observer, link: _Link, stop: asyncio.Event, interval: float = REPORT_INTERVAL
) -> None:
    """A worker's side of ``--workers N`` metrics: send the counters to the supervisor
    every ``interval`` seconds (the supervisor also takes each report as a sign that this
    worker's event loop runs: /healthz), and once more when ``stop`` is set."""
    pid = os.getpid()
    while True:
        try:
            await link.ask("metrics", pid, observer.snapshot())
        except ConnectionError:
            return  # the supervisor is gone: the worker stops too
        if stop.is_set():
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
