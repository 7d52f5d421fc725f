"""The meter kernel (``--metrics``' per-call counters), both twins: reply outcomes read
from the frames the codec builds, a connection's calls counted by type, outcome, error
code and ExtraInfo kind, histogram buckets, timed filters; frames it cannot read never
raise, and both twins read any bytes alike."""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from implementations import NO_EXTENSIONS, load_kernel

from a6runner._kernels import codec

BOUNDS = (0.001, 0.01, 0.1)


def test_reply_outcomes(meter_mod: ModuleType) -> None:
    m = meter_mod
    cases = [
        (codec.build_http_req_call_resp(3), m.OUTCOME_NONE),
        (codec.build_stop(3, 403, [("a", "b")], b"no"), m.OUTCOME_STOP),
        (codec.build_stop(3, 0, [], None), m.OUTCOME_STOP),
        (codec.build_rewrite(3, "/p", [], [], [], None), m.OUTCOME_REWRITE),
        (codec.build_rewrite(3, None, [("h", "v")], [], [], b"x"), m.OUTCOME_REWRITE),
        (codec.build_http_resp_call_resp(3, 0, [], None), m.OUTCOME_NONE),
        (codec.build_http_resp_call_resp(3, 201, [], None), m.OUTCOME_RESPONSE),
        (codec.build_http_resp_call_resp(3, 0, [("a", "b")], None), m.OUTCOME_RESPONSE),
        (codec.build_http_resp_call_resp(3, 0, [], b"body"), m.OUTCOME_RESPONSE),
        (codec.build_err_resp(codec.ERR_BAD_REQUEST), m.OUTCOME_ERROR),
        (codec.build_prepare_conf_resp(9), m.OUTCOME_NONE),
        (codec.build_extra_info_req(codec.INFO_REQ_BODY), m.OUTCOME_NONE),
    ]
    for frame, outcome in cases:
        assert m.reply_outcome(frame) == outcome, frame
    for code in (codec.ERR_BAD_REQUEST, codec.ERR_SERVICE_UNAVAILABLE):
        assert m.error_code(codec.build_err_resp(code)) == code
    assert m.error_code(codec.build_err_resp(codec.ERR_CONF_TOKEN_NOT_FOUND)) == 2
    assert m.error_code(codec.build_err_resp(77)) == codec.ERR_SERVICE_UNAVAILABLE
    assert m.error_code(b"\x00\x00\x00\x01\x00") == codec.ERR_SERVICE_UNAVAILABLE


def test_unreadable_frames_are_no_outcome_and_never_raise(meter_mod: ModuleType) -> None:
    stop = codec.build_stop(3, 403, [], b"no")
    for frame in (b"", b"\x02", stop[:10], stop[:4] + b"\xff" * (len(stop) - 4), b"\x04" * 40):
        assert meter_mod.reply_outcome(frame) == meter_mod.OUTCOME_NONE
        meter_mod.CallMeter(meter_mod.CallCounts(BOUNDS)).sent(frame)


@pytest.mark.native
@pytest.mark.skipif(NO_EXTENSIONS, reason="differential: needs the native twin")
@given(st.binary(max_size=96), st.sampled_from([0, 2, 3, 4]))
def test_both_twins_read_any_bytes_alike(data: bytes, kind: int) -> None:
    frame = bytes([kind, 0, 0, min(len(data), 255)]) + data
    pure, native = load_kernel("meter", "python"), load_kernel("meter", "native")
    assert pure.reply_outcome(frame) == native.reply_outcome(frame)
    assert pure.error_code(frame) == native.error_code(frame)
    counted = []
    for m in (pure, native):
        counts = m.CallCounts(BOUNDS)
        meter = m.CallMeter(counts)
        meter.started(codec.RPC_HTTP_REQ_CALL)
        meter.sent(frame)
        counted.append((counts.calls(), counts.errors(), counts.questions()))
    assert counted[0] == counted[1]


def test_a_connection_meter_counts_calls_errors_and_questions(meter_mod: ModuleType) -> None:
    m = meter_mod
    counts = m.CallCounts(BOUNDS)
    meter = m.CallMeter(counts)

    def call(frame_type: int, *frames: bytes) -> None:
        meter.first_byte()
        meter.started(frame_type)
        for frame in frames:
            meter.sent(frame)

    asked = b"".join(  # one write, three questions (a prefetch)
        codec.build_extra_info_req(t, n)
        for t, n in ((codec.INFO_VAR, "a"), (codec.INFO_VAR, "b"), (codec.INFO_REQ_BODY, None))
    )
    call(codec.RPC_PREPARE_CONF, codec.build_prepare_conf_resp(1))
    call(codec.RPC_HTTP_REQ_CALL, asked, codec.build_stop(1, 200, [], None))
    call(codec.RPC_HTTP_REQ_CALL, codec.build_http_req_call_resp(2))
    call(codec.RPC_HTTP_REQ_CALL, codec.build_err_resp(codec.ERR_CONF_TOKEN_NOT_FOUND))
    call(
        codec.RPC_HTTP_RESP_CALL,
        codec.build_extra_info_req(codec.INFO_RESP_BODY),
        codec.build_http_resp_call_resp(3, 0, [], b"new"),
    )
    call(9, codec.build_err_resp(codec.ERR_BAD_REQUEST))  # an unknown frame: its error only
    nonzero = {key: n for key, n in counts.calls().items() if n}
    assert nonzero == {
        (codec.RPC_PREPARE_CONF, m.OUTCOME_NONE): 1,
        (codec.RPC_HTTP_REQ_CALL, m.OUTCOME_STOP): 1,
        (codec.RPC_HTTP_REQ_CALL, m.OUTCOME_NONE): 1,
        (codec.RPC_HTTP_REQ_CALL, m.OUTCOME_ERROR): 1,
        (codec.RPC_HTTP_RESP_CALL, m.OUTCOME_RESPONSE): 1,
    }
    assert len(counts.calls()) == 3 * 5  # every combination, zeros too
    assert counts.errors() == [1, 0, 1]
    assert counts.questions() == {
        codec.INFO_VAR: 2,
        codec.INFO_REQ_BODY: 1,
        codec.INFO_RESP_BODY: 1,
    }
    req_counts, req_seconds = counts.duration(codec.RPC_HTTP_REQ_CALL).snapshot()
    assert sum(req_counts) == 3 and req_seconds >= 0
    assert sum(counts.duration(codec.RPC_PREPARE_CONF).snapshot()[0]) == 1
    with pytest.raises(KeyError):
        counts.duration(9)


def test_histogram_buckets_are_less_or_equal(meter_mod: ModuleType) -> None:
    h = meter_mod.Histogram((0.1, 1.0))
    for v in (0.1, 0.5, 1.0, 2.0, 0.0):
        h.observe(v)
    counts, total = h.snapshot()
    assert counts == [2, 2, 1] and total == pytest.approx(3.6)


def test_the_clock_is_monotonic(meter_mod: ModuleType) -> None:
    first = meter_mod.now()
    assert meter_mod.now() >= first


class _Owner:
    name = "timed"


def test_a_timed_filter_counts_its_time_and_failures(meter_mod: ModuleType) -> None:
    m = meter_mod
    stats = m.PluginStats(BOUNDS)
    seen: list[tuple[Any, Any]] = []
    owner = _Owner()

    def filt(conf: Any, call: Any) -> Any:
        seen.append((conf, call))
        if conf == "boom":
            raise KeyError("boom")
        return conf if conf == "value" else None

    timed = m.TimedFilter(filt, stats, None, owner)
    assert timed.__self__ is owner
    assert timed("c", "call") is None and seen == [("c", "call")]
    assert timed("value", "call") == "value"  # not awaitable: passed on
    with pytest.raises(KeyError):
        timed("boom", "call")
    assert stats.errors == 1
    counts, _ = stats.hist.snapshot()
    assert sum(counts) == 3


def test_a_timed_filter_hands_an_awaitable_on(meter_mod: ModuleType) -> None:
    m = meter_mod
    stats = m.PluginStats(BOUNDS)
    handed: list[tuple[Any, ...]] = []

    async def later() -> None:
        return None

    def on_awaitable(pending: Any, started: float, got: Any, call: Any) -> str:
        handed.append((started, got, call))
        pending.close()
        return "wrapped"

    before = m.now()
    timed = m.TimedFilter(lambda conf, call: later(), stats, on_awaitable, None)
    assert timed("conf", "call") == "wrapped"
    ((started, got, call),) = handed
    assert before <= started <= m.now() and got is stats and call == "call"
    assert sum(stats.hist.snapshot()[0]) == 0  # the awaitable's handler times it
    asyncio.run(asyncio.sleep(0))
