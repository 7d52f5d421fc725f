"""Debug logging (one short line per call, never a value), ``req.trace_context`` and the
``--otel`` spans, on a runner in this process."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from inprocess import observed_runner
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from a6runner import TraceContext
from a6runner._logging import JsonFormatter
from a6runner._observe import make_observer
from a6runner._settings import Settings
from a6runner._tracing import parse_traceparent

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SECRET = "s3cret-value"


def debug_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.DEBUG and hasattr(r, "event")]


# -- debug logging -------------------------------------------------------------------------------


def test_debug_logging_is_one_short_line_per_call_without_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="a6runner")
    with observed_runner(tmp_path) as runner, runner.client() as apisix:
        asks = apisix.prepare_conf([("asks", {}), ("say", {"body": "hi"})])
        boom = apisix.prepare_conf([("boom", {})])
        long_chain = apisix.prepare_conf([("noop", {})] * 20)
        apisix.http_req_call(asks, id=41, vars={"remote_addr": SECRET}, body=SECRET)
        apisix.http_req_call(boom, id=42)
        apisix.http_req_call(long_chain, id=43)
        apisix.http_resp_call(long_chain, id=44, body=SECRET)
    records = debug_records(caplog)
    prepares = [r for r in records if r.event == "prepare_conf"]
    calls = {r.call: r for r in records if r.event == "call"}
    assert [r.token for r in prepares] == [asks, boom, long_chain]
    assert "(asks, say) -> token" in prepares[0].getMessage()
    assert sorted(calls) == [41, 42, 43, 44]

    first = calls[41]
    message = first.getMessage()
    assert first.token == asks and first.plugins == ["asks", "say"] and first.error is None
    assert message.startswith(f"call 41 http_req_call token {asks}: asks, say -> stop; ")
    assert "asked var remote_addr, req_body;" in message and message.endswith(" ms")
    failed = calls[42]
    assert failed.plugins == ["boom"] and failed.error == "service_unavailable"
    assert "boom -> error service_unavailable" in failed.getMessage()
    assert "(+12)" in calls[43].getMessage() and len(calls[43].getMessage()) < 300
    assert calls[43].plugins == ["noop"] * 8 + ["(+12)"]
    assert "http_resp_call" in calls[44].getMessage()
    for record in caplog.records:  # no value of a var or a body, anywhere
        assert SECRET not in record.getMessage()

    # --log-format json: the same line, as fields
    line = json.loads(JsonFormatter().format(first))
    assert line["level"] == "debug" and line["message"] == message
    assert {k: line[k] for k in ("event", "type", "call", "token", "outcome")} == {
        "event": "call",
        "type": "http_req_call",
        "call": 41,
        "token": asks,
        "outcome": "stop",
    }
    assert line["plugins"] == ["asks", "say"] and line["asked"] == ["var remote_addr", "req_body"]
    assert isinstance(line["duration_ms"], float) and "error" not in line
    assert isinstance(line["worker"], str)  # the process label, not the debug line's
    failed_line = json.loads(JsonFormatter().format(failed))
    assert (failed_line["outcome"], failed_line["error"]) == ("error", "service_unavailable")
    prepared = json.loads(JsonFormatter().format(prepares[0]))
    assert (prepared["event"], prepared["token"], prepared["plugins"]) == (
        "prepare_conf",
        asks,
        ["asks", "say"],
    )
    for record in caplog.records:
        assert SECRET not in JsonFormatter().format(record)


def test_nothing_is_observed_at_the_default_level(tmp_path: Path) -> None:
    logger = logging.getLogger("a6runner")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        assert make_observer(Settings(str(tmp_path / "s"))) is None
        observer = make_observer(Settings(str(tmp_path / "s"), metrics="127.0.0.1:0"))
        assert observer is not None and observer.recorder is not None
        assert not observer.per_call  # metrics alone: the cheapest filter wrapper
    finally:
        logger.setLevel(level)


# -- trace context ------------------------------------------------------------------------------


def test_trace_context_from_the_request_headers(tmp_path: Path) -> None:
    with observed_runner(tmp_path) as runner, runner.client() as apisix:
        token = apisix.prepare_conf([("trace-echo", {})])
        headers = [("TraceParent", TRACEPARENT.upper()), ("tracestate", "k=v")]
        assert apisix.http_req_call(token, headers=headers).body == f"{TRACEPARENT}|k=v".encode()
        assert apisix.http_req_call(token).body == b"none"
        bad = [("traceparent", "00-" + "0" * 32 + "-00f067aa0ba902b7-01")]
        assert apisix.http_req_call(token, headers=bad).body == b"none"


def test_trace_context_in_the_response_phase_comes_from_fetched_vars(tmp_path: Path) -> None:
    gateway = "00-11111111111111111111111111111111-2222222222222222-01"
    with observed_runner(tmp_path) as runner, runner.client() as apisix:
        plain = apisix.prepare_conf([("trace-echo", {})])
        with_vars = apisix.prepare_conf([("trace-echo-vars", {})])
        assert apisix.http_resp_call(plain).header("x-trace") == "none"
        reply = apisix.http_resp_call(with_vars, vars={"http_traceparent": TRACEPARENT})
        assert reply.header("x-trace") == TRACEPARENT[3:35]
        both = {"http_traceparent": TRACEPARENT, "opentelemetry_context_traceparent": gateway}
        assert apisix.http_resp_call(with_vars, vars=both).header("x-trace") == "1" * 32


def test_trace_context_fields() -> None:
    ctx = TraceContext(TRACEPARENT, "k=v")
    assert ctx.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ctx.span_id == "00f067aa0ba902b7"
    assert ctx.sampled
    assert ctx.headers() == [("traceparent", TRACEPARENT), ("tracestate", "k=v")]
    assert TraceContext(TRACEPARENT[:-2] + "00").headers() == [
        ("traceparent", TRACEPARENT[:-2] + "00")
    ]
    assert not TraceContext(TRACEPARENT[:-2] + "00").sampled
    assert parse_traceparent(f" {TRACEPARENT} ") == TRACEPARENT
    assert parse_traceparent("01-" + TRACEPARENT[3:] + "-future") == "01-" + TRACEPARENT[3:]
    for bad in (
        None,
        "",
        "junk",
        TRACEPARENT + "-extra",  # version 00 has four fields
        "ff" + TRACEPARENT[2:],
        TRACEPARENT[:36] + "0" * 16 + "-01",
    ):
        assert parse_traceparent(bad) is None, bad


# -- --otel ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per process: this module's tests share it
    return exporter


def by_name(finished: Sequence, name: str) -> list:
    return [s for s in finished if s.name == name]


def test_otel_makes_a_span_per_call_and_per_plugin(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    with observed_runner(tmp_path, otel=True) as runner, runner.client() as apisix:
        token = apisix.prepare_conf([("noop", {}), ("say", {"body": "hi"})])
        apisix.http_req_call(token, id=5, headers=[("traceparent", TRACEPARENT)])
        boom = apisix.prepare_conf([("async-boom", {})])
        apisix.http_req_call(boom, id=6)
        apisix.http_resp_call(token, id=7)
    finished = spans.get_finished_spans()
    call, failed = by_name(finished, "HTTPReqCall")
    assert call.kind == SpanKind.SERVER
    assert f"{call.context.trace_id:032x}" == TRACEPARENT[3:35]  # APISIX's trace goes on
    assert f"{call.parent.span_id:016x}" == TRACEPARENT[36:52]
    assert call.attributes["a6runner.call_id"] == 5
    assert call.attributes["a6runner.outcome"] == "stop"
    noop, say = by_name(finished, "plugin noop")[0], by_name(finished, "plugin say")[0]
    for plugin in (noop, say):
        assert plugin.parent.span_id == call.context.span_id
        assert plugin.kind == SpanKind.INTERNAL
    assert failed.parent is None  # no traceparent: a root span
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["a6runner.error"] == "service_unavailable"
    (raised,) = by_name(finished, "plugin async-boom")
    assert raised.status.status_code == StatusCode.ERROR
    assert raised.events[0].name == "exception"
    (response,) = by_name(finished, "HTTPRespCall")
    assert response.attributes["a6runner.outcome"] == "none"
    assert len(by_name(finished, "plugin noop")) == 2  # its response filter too


@pytest.mark.runtime
def test_otel_without_the_api_is_a_clear_startup_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    hide = "import sys; sys.modules['opentelemetry'] = None; "
    run = "from a6runner._cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", hide + run, "run", "--otel", "--listen", f"unix:{tmp_path}/r"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "--otel needs the OpenTelemetry API: pip install 'a6runner[otel]'" in result.stderr
