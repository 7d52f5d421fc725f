"""Per-call counters of ``--metrics``: the pure-Python twin of ``a6native.meter``.

Contract: src/a6native/meter.pyi. A connection's :class:`CallMeter` notes when a call's
first byte came and what the call is, and reads every frame the connection writes: a
reply is counted by call type and outcome (read from the reply's FlatBuffers table, as
APISIX will) with the time it took, an ExtraInfo question by kind. A
:class:`TimedFilter` stands in for a plugin's filter and times it. Everything lands in
plain counters; the runtime (``a6runner._observe``) reads them only when a scrape or a
report asks.
"""

from __future__ import annotations

import struct
import time
from bisect import bisect_left
from collections.abc import Callable
from inspect import isawaitable
from typing import Any, Final

from a6native import protocol

# (private names: the contract exports none of the protocol's)
_ACTION_STOP = protocol.ACTION_STOP
_ERR_SERVICE_UNAVAILABLE = protocol.ERR_SERVICE_UNAVAILABLE
_INFO_RESP_BODY = protocol.INFO_RESP_BODY
_INFO_VAR = protocol.INFO_VAR
_RPC_ERROR = protocol.RPC_ERROR
_RPC_EXTRA_INFO = protocol.RPC_EXTRA_INFO
_RPC_HTTP_REQ_CALL = protocol.RPC_HTTP_REQ_CALL
_RPC_HTTP_RESP_CALL = protocol.RPC_HTTP_RESP_CALL
_RPC_PREPARE_CONF = protocol.RPC_PREPARE_CONF

OUTCOME_NONE: Final = 0
OUTCOME_STOP: Final = 1
OUTCOME_REWRITE: Final = 2
OUTCOME_RESPONSE: Final = 3
OUTCOME_ERROR: Final = 4

# The calls counted (a frame of another type is counted by its error reply only).
_CALL_TYPES = (_RPC_PREPARE_CONF, _RPC_HTTP_REQ_CALL, _RPC_HTTP_RESP_CALL)
_ERROR_CODES = 3  # ERR_BAD_REQUEST .. ERR_CONF_TOKEN_NOT_FOUND

_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from

now = time.perf_counter  # the meter's clock, in seconds


def _table(frame: bytes, start: int = 0) -> tuple[int, int, int] | None:
    """(table, vtable, vtable length) of the root table of the frame at ``start``, or None
    when the frame is too short to hold one."""
    end = start + 4 + (frame[start + 1] << 16 | frame[start + 2] << 8 | frame[start + 3])
    if end > len(frame) or end - start < 12:
        return None
    table = start + 4 + _U32(frame, start + 4)[0]
    if table + 4 > end:
        return None
    vtable = table - _I32(frame, table)[0]
    if vtable < start + 4 or vtable + 4 > end:
        return None
    return table, vtable, _U16(frame, vtable)[0]


def _field(frame: bytes, vtable: int, vtable_len: int, index: int) -> int:
    """The offset of field ``index`` in its table, 0 when the field is absent."""
    at = 4 + 2 * index
    return _U16(frame, vtable + at)[0] if at + 2 <= vtable_len else 0


def reply_outcome(frame: bytes) -> int:
    """OUTCOME_* of a reply frame the runner wrote (OUTCOME_NONE for one it cannot read)."""
    try:
        return _reply_outcome(frame)
    except (IndexError, struct.error):  # never raised for a frame the codec built
        return OUTCOME_NONE


def _reply_outcome(frame: bytes) -> int:
    kind = frame[0]
    if kind == _RPC_ERROR:
        return OUTCOME_ERROR
    if kind != _RPC_HTTP_REQ_CALL and kind != _RPC_HTTP_RESP_CALL:
        return OUTCOME_NONE
    found = _table(frame)
    if found is None:
        return OUTCOME_NONE
    table, vtable, vlen = found
    if kind == _RPC_HTTP_REQ_CALL:  # HTTPReqCallResp: id, action_type, action
        at = _field(frame, vtable, vlen, 1)
        action = frame[table + at] if at else 0
        return OUTCOME_STOP if action == _ACTION_STOP else OUTCOME_REWRITE if action else 0
    # HTTPRespCallResp: id, status, headers, body: any of the last three changes the response
    at = _field(frame, vtable, vlen, 1)
    if at and _U16(frame, table + at)[0]:
        return OUTCOME_RESPONSE
    at = _field(frame, vtable, vlen, 2)
    if at and _U32(frame, table + at + _U32(frame, table + at)[0])[0]:
        return OUTCOME_RESPONSE
    return OUTCOME_RESPONSE if _field(frame, vtable, vlen, 3) else OUTCOME_NONE


def error_code(frame: bytes) -> int:
    """The ERR_* code of an Err.Resp frame (ERR_SERVICE_UNAVAILABLE when it holds none
    this protocol knows)."""
    try:
        found = _table(frame)
        if found is None:
            return _ERR_SERVICE_UNAVAILABLE
        table, vtable, vlen = found
        at = _field(frame, vtable, vlen, 0)
        code = frame[table + at] if at else 0
    except (IndexError, struct.error):
        return _ERR_SERVICE_UNAVAILABLE
    return code if code < _ERROR_CODES else _ERR_SERVICE_UNAVAILABLE


def _question_kinds(frames: bytes) -> list[int]:
    """The INFO_* kind of each ExtraInfo.Req frame in ``frames`` (one write may hold several)."""
    kinds: list[int] = []
    pos, n = 0, len(frames)
    try:
        while pos + 4 <= n:
            if frames[pos] == _RPC_EXTRA_INFO:
                found = _table(frames, pos)
                if found is not None:
                    table, vtable, vlen = found
                    at = _field(frames, vtable, vlen, 0)
                    if at:
                        kinds.append(frames[table + at])
            pos += 4 + (frames[pos + 1] << 16 | frames[pos + 2] << 8 | frames[pos + 3])
    except (IndexError, struct.error):  # never raised for frames the codec built
        pass
    return kinds


class Histogram:
    """Observations counted in buckets (each bound is "less or equal"; the last bucket is
    +Inf), and their sum."""

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> tuple[list[int], float]:
        """(the count of each bucket, not cumulative; the sum)."""
        return list(self._counts), self._sum


class PluginStats:
    """One plugin's filter in one phase: its times, and how often it failed."""

    __slots__ = ("errors", "hist")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.hist = Histogram(bounds)
        self.errors = 0


class CallCounts:
    """The calls of one serving process: by type and outcome, their durations, the error
    replies by code, the ExtraInfo questions by kind."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._calls = {t: [0] * 5 for t in _CALL_TYPES}
        self._durations = {t: Histogram(bounds) for t in _CALL_TYPES}
        self._errors = [0] * _ERROR_CODES
        self._questions = dict.fromkeys(range(_INFO_VAR, _INFO_RESP_BODY + 1), 0)

    def calls(self) -> dict[tuple[int, int], int]:
        """{(frame type, OUTCOME_*): calls}, every combination."""
        return {(t, o): n for t, counts in self._calls.items() for o, n in enumerate(counts)}

    def duration(self, frame_type: int) -> Histogram:
        return self._durations[frame_type]

    def errors(self) -> list[int]:
        """Error replies, by ERR_* code."""
        return list(self._errors)

    def questions(self) -> dict[int, int]:
        """ExtraInfo questions asked, by INFO_* kind."""
        return dict(self._questions)


class CallMeter:
    """One connection's meter: the connection calls ``first_byte()`` when a read begins a
    call, ``started()`` when it dispatches one, and ``sent()`` with every frame it writes."""

    __slots__ = ("_calls", "_counts", "_next_start", "_start", "_type")

    def __init__(self, counts: CallCounts) -> None:
        self._counts = counts
        self._calls = counts._calls
        self._type = -1
        self._next_start = 0.0  # the clock at the first byte of the last call to come
        self._start = 0.0  # ... and of the call in flight

    def first_byte(self) -> None:
        self._next_start = now()

    def started(self, frame_type: int) -> None:
        self._type = frame_type
        self._start = self._next_start

    def sent(self, frame: bytes) -> None:
        if not frame:
            return
        kind = frame[0]
        counts = self._counts
        if kind == _RPC_EXTRA_INFO:
            questions = counts._questions
            for info_type in _question_kinds(frame):
                if info_type in questions:
                    questions[info_type] += 1
            return
        outcome = reply_outcome(frame)
        if outcome == OUTCOME_ERROR:
            counts._errors[error_code(frame)] += 1
        calls = self._calls.get(self._type)
        if calls is not None:
            calls[outcome] += 1
            counts._durations[self._type].observe(now() - self._start)


class TimedFilter:
    """A plugin's filter, timed into ``stats`` (a failure counted too). When the filter
    returns an awaitable, ``on_awaitable(awaitable, started, stats, call)`` is returned
    instead: it awaits, times and counts it. ``owner`` is what ``__self__`` says."""

    __slots__ = ("_filt", "_on_awaitable", "_owner", "_stats")

    def __init__(
        self,
        filt: Callable[[Any, Any], Any],
        stats: PluginStats,
        on_awaitable: Callable[[Any, float, PluginStats, Any], Any],
        owner: Any,
    ) -> None:
        self._filt = filt
        self._stats = stats
        self._on_awaitable = on_awaitable
        self._owner = owner

    @property
    def __self__(self) -> Any:
        return self._owner

    def __call__(self, conf: Any, call: Any) -> Any:
        started = now()
        try:
            result = self._filt(conf, call)
        except BaseException:
            self._stats.errors += 1
            self._stats.hist.observe(now() - started)
            raise
        if result is not None and isawaitable(result):
            return self._on_awaitable(result, started, self._stats, call)
        self._stats.hist.observe(now() - started)
        return result


__all__ = [
    "OUTCOME_ERROR",
    "OUTCOME_NONE",
    "OUTCOME_RESPONSE",
    "OUTCOME_REWRITE",
    "OUTCOME_STOP",
    "CallCounts",
    "CallMeter",
    "Histogram",
    "PluginStats",
    "TimedFilter",
    "error_code",
    "now",
    "reply_outcome",
]
