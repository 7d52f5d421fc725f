"""``--metrics ADDR``: Prometheus text format on ``/metrics``, a health answer on ``/healthz``.

The counters are kept by ``_observe.Recorder`` in each serving process; this module turns
them into the exposition format (with prometheus-client, the extra ``a6runner[metrics]``)
and serves it over a tiny HTTP/1.0 endpoint:

* one process (``--workers 1``): on the runner's event loop, read straight from its
  recorder at each scrape;
* ``--workers N``: in the supervisor's selector loop (no thread, so forking a worker stays
  safe). Each worker reports its counters to the supervisor every second; a scrape adds
  up the last report of every live worker and the final report of every worker that
  exited (``WorkerReports``), so a replaced worker neither resets nor doubles a counter.
  A report is also the worker's heartbeat: a worker silent for ``HEALTH_STALE`` seconds
  (dead, or its event loop blocked) does not count as alive for ``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import os
import selectors
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ._confstore import TokenStore
from ._errors import ConfigError
from ._observe import (
    DURATION_BUCKETS,
    LAG_BUCKETS,
    LAG_PROBE,
    REPORT_INTERVAL,
    TYPE_OUTCOMES,
    Observer,
    Snapshot,
    empty_snapshot,
    merge,
)
from ._server import _prepare_socket_path

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

log = logging.getLogger("a6runner")

HEALTH_STALE = 3 * REPORT_INTERVAL  # seconds without a report: that worker is not alive
MAX_HEAD = 8192  # bytes of an HTTP request head we read
EXCHANGE_TIMEOUT = 10.0  # seconds a scraper may take to send its request
MAX_EXCHANGES = 64  # scrapes open at once (the supervisor); beyond it the oldest is closed

Health = Callable[[], tuple[bool, str]]


def require_prometheus() -> None:
    """A startup error, not a traceback, when ``--metrics`` is asked for without the extra."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--metrics needs the prometheus-client package: pip install 'a6runner[metrics]'"
        ) from None


# -- the address -------------------------------------------------------------------------------


class MetricsAddress(NamedTuple):
    family: int  # socket.AF_INET, AF_INET6 or AF_UNIX
    address: Any  # (host, port) or a path

    def __str__(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"unix:{self.address}"
        host, port = self.address
        return f"[{host}]:{port}" if self.family == socket.AF_INET6 else f"{host}:{port}"


def parse_metrics_address(value: str) -> MetricsAddress:
    """``HOST:PORT`` (``127.0.0.1:9091``, ``[::1]:9091``, ``0.0.0.0:9091``) or
    ``unix:/path``; ConfigError naming ``--metrics`` otherwise."""
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path:
            raise ConfigError("--metrics unix: needs a path, e.g. unix:/run/a6runner-metrics.sock")
        return MetricsAddress(socket.AF_UNIX, path)
    host, sep, port = value.rpartition(":")
    family = socket.AF_INET
    if host.startswith("[") and host.endswith("]"):
        host, family = host[1:-1], socket.AF_INET6
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(
            f"--metrics must be HOST:PORT (e.g. 127.0.0.1:9091) or unix:/path, got {value!r}"
        )
    return MetricsAddress(family, (host, int(port)))


class MetricsSocket:
    """The listening socket of the endpoint (a unix socket file is removed at close)."""

    def __init__(self, address: MetricsAddress) -> None:
        self.address = address
        sock = socket.socket(address.family, socket.SOCK_STREAM)
        try:
            if address.family == socket.AF_UNIX:
                _prepare_socket_path(address.address)
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address.address)
            sock.listen(64)
            sock.setblocking(False)
            if address.family != socket.AF_UNIX:  # port 0: the one the system chose
                self.address = MetricsAddress(address.family, sock.getsockname()[:2])
        except OSError as exc:
            sock.close()
            raise ConfigError(f"--metrics {address}: cannot listen: {exc.strerror}") from None
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def close(self, remove: bool = True) -> None:
        """Close; ``remove=False`` in a forked worker (the file is the supervisor's)."""
        self.sock.close()
        if remove and self.address.family == socket.AF_UNIX:
            with contextlib.suppress(OSError):
                os.unlink(self.address.address)


# -- the exposition format -----------------------------------------------------------------


def _buckets(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    cumulative = 0
    out: list[tuple[str, float]] = []
    for bound, n in zip((*bounds, float("inf")), counts, strict=True):
        cumulative += n
        out.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    return out


def families(
    counters: Snapshot,
    gauges: dict[str, float],
    restarts: int,
    processes: Sequence[tuple[str, int]],
    recycles: int = 0,
) -> list[Metric]:
    """Every metric family of the runner (docs/operations/monitoring.md says what each means)."""
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )

    calls = CounterMetricFamily(
        "a6runner_calls", "Calls answered, by call type and outcome.", labels=["type", "outcome"]
    )
    for call_type, outcomes in TYPE_OUTCOMES.items():
        for outcome in outcomes:
            calls.add_metric([call_type, outcome], counters["calls"].get((call_type, outcome), 0))
    errors = CounterMetricFamily(
        "a6runner_call_errors", "Error replies, by protocol error code.", labels=["code"]
    )
    for code, n in counters["call_errors"].items():
        errors.add_metric([code], n)
    duration = HistogramMetricFamily(
        "a6runner_call_duration_seconds",
        "Time from the first byte of a call to its reply written.",
        labels=["type"],
    )
    for call_type, (counts, total) in counters["call_duration"].items():
        duration.add_metric([call_type], _buckets(DURATION_BUCKETS, counts), total)
    plugin_duration = HistogramMetricFamily(
        "a6runner_plugin_duration_seconds",
        "Time in one plugin's filter (an async filter: until it finished).",
        labels=["plugin", "phase"],
    )
    for (plugin, phase), (counts, total) in sorted(counters["plugin_duration"].items()):
        plugin_duration.add_metric([plugin, phase], _buckets(DURATION_BUCKETS, counts), total)
    plugin_errors = CounterMetricFamily(
        "a6runner_plugin_errors",
        "Filters that raised (or outlived the call timeout).",
        labels=["plugin", "phase"],
    )
    for (plugin, phase), n in sorted(counters["plugin_errors"].items()):
        plugin_errors.add_metric([plugin, phase], n)
    extra_info = CounterMetricFamily(
        "a6runner_extra_info", "ExtraInfo questions asked of APISIX, by kind.", labels=["kind"]
    )
    for kind, n in counters["extra_info"].items():
        extra_info.add_metric([kind], n)
    lag_counts, lag_sum = counters["loop_lag"]
    lag = HistogramMetricFamily(
        "a6runner_event_loop_lag_seconds",
        f"How late the event loop ran a timer (sampled every {LAG_PROBE:g}s).",
        buckets=_buckets(LAG_BUCKETS, lag_counts),
        sum_value=lag_sum,
    )
    result: list[Metric] = [
        calls,
        errors,
        duration,
        plugin_duration,
        plugin_errors,
        extra_info,
        lag,
        GaugeMetricFamily(
            "a6runner_connections", "APISIX connections open now.", gauges["connections"]
        ),
        GaugeMetricFamily(
            "a6runner_conf_tokens", "Conf tokens held now (unexpired).", gauges["conf_tokens"]
        ),
        GaugeMetricFamily(
            "a6runner_buffered_bytes",
            "Memory held for frames still arriving or queued, and replies not yet sent.",
            gauges["buffered_bytes"],
        ),
        CounterMetricFamily(
            "a6runner_worker_restarts", "Workers that died and were replaced.", restarts
        ),
        CounterMetricFamily(
            "a6runner_worker_recycles",
            "Workers replaced for using more memory than --max-worker-memory.",
            recycles,
        ),
    ]
    return result + _process_families(processes, Metric)


def _process_families(processes: Sequence[tuple[str, int]], metric: type[Metric]) -> list[Metric]:
    """prometheus-client's process metrics (RSS, CPU, fds, ...) of each process, with a
    ``worker`` label."""
    from prometheus_client import ProcessCollector

    merged: dict[str, Metric] = {}
    for label, pid in processes:
        collector = ProcessCollector(pid=functools.partial(int, pid), registry=None)
        for family in collector.collect():
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = metric(family.name, family.documentation, family.type)
            for sample in family.samples:
                into.add_sample(sample.name, {**sample.labels, "worker": label}, sample.value)
    return list(merged.values())


def exposition(metric_families: Iterable[Metric]) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    class _Collector:
        def collect(self) -> Iterable[Metric]:
            return metric_families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)


# -- HTTP -----------------------------------------------------------------------------------


def _http(status: str, body: bytes, content_type: str, head_only: bool) -> bytes:
    header = (
        f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return header if head_only else header + body


def http_response(head: bytes, metrics: Callable[[], bytes], health: Health) -> bytes:
    """The whole response to a request ``head``: GET (or HEAD) /metrics or /healthz."""
    from prometheus_client import CONTENT_TYPE_LATEST

    text = "text/plain; charset=utf-8"
    line = head.split(b"\r\n", 1)[0].split()
    if len(line) != 3 or not line[2].startswith(b"HTTP/"):
        return _http("400 Bad Request", b"bad request\n", text, False)
    method, target = line[0], line[1].split(b"?", 1)[0]
    if method not in (b"GET", b"HEAD"):
        return _http("405 Method Not Allowed", b"GET or HEAD\n", text, False)
    head_only = method == b"HEAD"
    if target == b"/metrics":
        return _http("200 OK", metrics(), CONTENT_TYPE_LATEST, head_only)
    if target == b"/healthz":
        ok, why = health()
        status = "200 OK" if ok else "503 Service Unavailable"
        return _http(status, why.encode() + b"\n", text, head_only)
    return _http("404 Not Found", b"/metrics or /healthz\n", text, head_only)


async def serve_http(
    sock: socket.socket, respond: Callable[[bytes], bytes]
) -> asyncio.AbstractServer:
    """The endpoint on the running event loop (a single-process runner)."""

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), EXCHANGE_TIMEOUT)
            writer.write(respond(head))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            pass
        except ConnectionError:
            pass
        finally:
            writer.close()

    if sock.family == socket.AF_UNIX:
        return await asyncio.start_unix_server(exchange, sock=sock, limit=MAX_HEAD)
    return await asyncio.start_server(exchange, sock=sock, limit=MAX_HEAD)


class _Exchange:
    __slots__ = ("head", "out", "sock", "started")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.started = time.monotonic()
        self.head = bytearray()
        self.out: bytes | None = None


class SelectorEndpoint:
    """The endpoint in a selector loop (the supervisor): every selector key it registers
    carries a callable taking the event mask."""

    def __init__(self, sock: socket.socket, respond: Callable[[bytes], bytes]) -> None:
        self.sock = sock
        self._respond = respond
        self._open: dict[socket.socket, _Exchange] = {}
        self._selector: selectors.BaseSelector | None = None

    def register(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector
        selector.register(self.sock, selectors.EVENT_READ, self._accept)

    def _accept(self, mask: int) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.error("metrics endpoint: accept failed: %s", exc)
            return
        conn.setblocking(False)
        now = time.monotonic()
        for old in [e for e in self._open.values() if now - e.started > EXCHANGE_TIMEOUT]:
            self._close(old)
        if len(self._open) >= MAX_EXCHANGES:
            self._close(next(iter(self._open.values())))
        exchange = _Exchange(conn)
        self._open[conn] = exchange
        assert self._selector is not None
        self._selector.register(conn, selectors.EVENT_READ, lambda m: self._on_event(exchange))

    def _on_event(self, exchange: _Exchange) -> None:
        try:
            if exchange.out is None:
                data = exchange.sock.recv(MAX_HEAD)
                if not data:
                    self._close(exchange)
                    return
                exchange.head += data
                if b"\r\n\r\n" not in exchange.head and len(exchange.head) < MAX_HEAD:
                    return
                exchange.out = self._respond(bytes(exchange.head))
                assert self._selector is not None
                self._selector.modify(
                    exchange.sock, selectors.EVENT_WRITE, lambda m: self._on_event(exchange)
                )
            sent = exchange.sock.send(exchange.out)
            exchange.out = exchange.out[sent:]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(exchange)
            return
        if not exchange.out:
            self._close(exchange)

    def _close(self, exchange: _Exchange) -> None:
        self._open.pop(exchange.sock, None)
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(exchange.sock)
        exchange.sock.close()

    def close_sockets(self) -> None:
        """Close the scrapes' sockets without touching the selector (a forked worker)."""
        for exchange in self._open.values():
            exchange.sock.close()
        self._open.clear()

    def close(self) -> None:
        for exchange in list(self._open.values()):
            self._close(exchange)
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self.sock)


# -- the supervisor's view of its workers -------------------------------------------------------


class WorkerReports:
    """What the workers reported: the last report of each live worker (by pid) and the
    sum of the final reports of the workers that exited."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.retired = empty_snapshot()
        self.last: dict[int, tuple[Snapshot, float]] = {}
        self.restarts = 0
        self.recycles = 0  # workers replaced for their memory (--max-worker-memory)

    def report(self, pid: int, snapshot: Snapshot) -> None:
        self.last[pid] = (snapshot, self._clock())

    def worker_exited(self, pid: int, died: bool) -> None:
        """Keep what ``pid`` counted; ``died``: it was not stopped or retired by the
        runner (a restart, a6runner_worker_restarts_total)."""
        last = self.last.pop(pid, None)
        if last is not None:
            merge(self.retired, last[0])
        if died:
            self.restarts += 1

    def totals(self) -> tuple[Snapshot, dict[str, float]]:
        """(the runner's counters, the gauges summed over the live workers)."""
        counters = copy.deepcopy(self.retired)
        gauges = {"connections": 0.0, "buffered_bytes": 0.0}
        for snapshot, _ in self.last.values():
            merge(counters, snapshot)
            for name in gauges:
                gauges[name] += snapshot["gauges"][name]
        return counters, gauges

    def alive(self, pids: Iterable[int]) -> int:
        """How many of ``pids`` reported within ``HEALTH_STALE`` seconds."""
        now = self._clock()
        return sum(
            1 for pid in pids if pid in self.last and now - self.last[pid][1] <= HEALTH_STALE
        )


def live_tokens(store: TokenStore[Any]) -> int:
    """Conf tokens ``store`` holds that have not expired."""
    store.sweep()
    return len(store)


# -- one process ------------------------------------------------------------------------------


class SingleProcessMetrics:
    """The endpoint of a single-process runner, on its event loop."""

    def __init__(
        self, address: MetricsAddress, observer: Observer, tokens: Callable[[], int]
    ) -> None:
        self._observer = observer
        self._tokens = tokens
        self._socket = MetricsSocket(address)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await serve_http(self._socket.sock, self.respond)
        log.info("metrics on %s (/metrics, /healthz)", self._socket.address)

    def respond(self, head: bytes) -> bytes:
        return http_response(head, self.render, self.health)

    def render(self) -> bytes:
        counters = self._observer.snapshot()
        gauges: dict[str, float] = counters.pop("gauges")
        gauges["conf_tokens"] = self._tokens()
        return exposition(families(counters, gauges, 0, [("0", os.getpid())]))

    def health(self) -> tuple[bool, str]:
        if self._observer.accepting:
            return True, "ok"
        return False, "not accepting connections"

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._socket.close()
