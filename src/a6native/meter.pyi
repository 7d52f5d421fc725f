"""Per-call counters of ``--metrics``: what a connection and a timed plugin record.

Contract of BOTH implementations: ``a6native.meter`` (Cython) and ``a6runner._meter_py``
(pure Python). Counters only; the runtime (``a6runner._observe``) labels and exports them.
"""

from collections.abc import Callable
from typing import Any, Final

OUTCOME_NONE: Final = 0
OUTCOME_STOP: Final = 1
OUTCOME_REWRITE: Final = 2
OUTCOME_RESPONSE: Final = 3
OUTCOME_ERROR: Final = 4

def now() -> float:
    """The meter's clock, in seconds (monotonic; only differences mean anything)."""

def reply_outcome(frame: bytes) -> int:
    """OUTCOME_* of a reply frame the runner wrote: for HTTPReqCall, Stop / Rewrite / none
    (the action); for HTTPRespCall, a response change (a status, headers or a body) or
    none; an Err.Resp frame is OUTCOME_ERROR; any other frame, or one that cannot be
    read, OUTCOME_NONE."""

def error_code(frame: bytes) -> int:
    """The ERR_* code of an Err.Resp frame (ERR_SERVICE_UNAVAILABLE when it holds none
    this protocol knows)."""

class Histogram:
    """Observations counted in buckets (each bound is "less or equal"; the last bucket is
    +Inf), and their sum."""

    def __init__(self, bounds: tuple[float, ...]) -> None: ...
    def observe(self, value: float) -> None: ...
    def snapshot(self) -> tuple[list[int], float]:
        """(the count of each bucket, not cumulative; the sum)."""

class PluginStats:
    """One plugin's filter in one phase: its times, and how often it failed."""

    @property
    def errors(self) -> int:
        """Failures counted (the runtime adds to it: an async filter's failure)."""
    @errors.setter
    def errors(self, value: int) -> None: ...
    @property
    def hist(self) -> Histogram: ...
    def __init__(self, bounds: tuple[float, ...]) -> None: ...

class CallCounts:
    """The calls of one serving process: by type (PrepareConf, HTTPReqCall, HTTPRespCall)
    and outcome, their durations (``bounds`` are the histogram's), the error replies by
    code, the ExtraInfo questions by kind."""

    def __init__(self, bounds: tuple[float, ...]) -> None: ...
    def calls(self) -> dict[tuple[int, int], int]:
        """{(frame type, OUTCOME_*): calls}, every combination."""
    def duration(self, frame_type: int) -> Histogram:
        """The durations of the calls of ``frame_type`` (KeyError for a type not counted)."""
    def errors(self) -> list[int]:
        """Error replies, by ERR_* code."""
    def questions(self) -> dict[int, int]:
        """ExtraInfo questions asked, by INFO_* kind."""

class CallMeter:
    """One connection's meter. The connection calls ``first_byte()`` when a read begins a
    call, ``started(frame_type)`` when it dispatches the call, and ``sent(frame)`` with
    every frame it writes: a reply counts the call (by the type given to ``started``, its
    outcome, and the time since the first byte), ExtraInfo questions count by kind (one
    write may hold several). A call of a type not counted counts its error reply only."""

    def __init__(self, counts: CallCounts) -> None: ...
    def first_byte(self) -> None: ...
    def started(self, frame_type: int) -> None: ...
    def sent(self, frame: bytes) -> None: ...

class TimedFilter:
    """A plugin's filter, timed into ``stats`` (a failure counted too). When the filter
    returns an awaitable, ``on_awaitable(awaitable, started, stats, call)`` is returned
    instead (``started``: ``now()`` when the filter was called): it awaits, times and
    counts it. ``owner`` is what ``__self__`` says (the plugin, as for a bound method)."""

    def __init__(
        self,
        filt: Callable[[Any, Any], Any],
        stats: PluginStats,
        on_awaitable: Callable[[Any, float, PluginStats, Any], Any],
        owner: Any,
    ) -> None: ...
    @property
    def __self__(self) -> Any: ...
    def __call__(self, conf: Any, call: Any) -> Any: ...
