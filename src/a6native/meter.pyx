# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: embedsignature=True, auto_pickle=False
"""Per-call counters of ``--metrics``: the compiled twin of ``a6runner._meter_py``.

Contract: meter.pyi. The same counting as the pure twin, with the per-call work in C: the
clock, reading the reply's FlatBuffers table (every offset checked against the frame),
finding the histogram bucket, calling a timed filter. A connection pays one C call per
event (first byte, dispatch, each frame written) and each plugin one C call around it.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from a6native cimport cprotocol as proto
from a6native.flatbuffers_layout cimport _get_u16, _get_u32

from inspect import isawaitable

OUTCOME_NONE = 0
OUTCOME_STOP = 1
OUTCOME_REWRITE = 2
OUTCOME_RESPONSE = 3
OUTCOME_ERROR = 4

cdef enum:
    _OUTCOMES = 5
    _FRAME_TYPES = 5  # RPC_ERROR .. RPC_HTTP_RESP_CALL: arrays indexed by frame type
    _ERROR_CODES = 3
    _INFO_TYPES = 4  # indexed by INFO_VAR .. INFO_RESP_BODY

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


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)  # what time.perf_counter() reads on Linux
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


def now():
    """The meter's clock, in seconds (monotonic; only differences mean anything)."""
    return _now()


# --- reading the frames the runner writes -------------------------------------------------

cdef struct _Root:
    int64_t table
    int64_t vtable
    int64_t vtable_size
    int64_t end


cdef inline bint _root(const uint8_t* p, int64_t n, int64_t start, _Root* r) noexcept:
    """The root table of the frame at ``start``; False when the frame cannot hold one."""
    if start + 4 > n:
        return False
    r.end = start + 4 + ((<int64_t>p[start + 1] << 16) | (<int64_t>p[start + 2] << 8)
                         | <int64_t>p[start + 3])
    if r.end > n or r.end - start < 12:
        return False
    r.table = start + 4 + <int64_t>_get_u32(p, start + 4)
    if r.table + 4 > r.end:
        return False
    r.vtable = r.table - <int64_t><int32_t>_get_u32(p, r.table)
    if r.vtable < start + 4 or r.vtable + 4 > r.end:
        return False
    r.vtable_size = _get_u16(p, r.vtable)
    if r.vtable + r.vtable_size > r.end:
        return False
    return True


cdef inline int64_t _field(const uint8_t* p, const _Root* r, int index) noexcept:
    """Position of field ``index``, or -1 when absent (or out of the frame)."""
    cdef int64_t entry = 4 + 2 * index
    cdef uint16_t off
    if entry + 2 > r.vtable_size:
        return -1
    off = _get_u16(p, r.vtable + entry)
    if off == 0 or r.table + off >= r.end:
        return -1
    return r.table + off


cdef int _reply_outcome(const uint8_t* p, int64_t n) noexcept:
    cdef _Root r
    cdef int64_t at, vector
    cdef uint8_t kind
    if n < 1:
        return OUTCOME_NONE
    kind = p[0]
    if kind == proto.RPC_ERROR:
        return OUTCOME_ERROR
    if kind != proto.RPC_HTTP_REQ_CALL and kind != proto.RPC_HTTP_RESP_CALL:
        return OUTCOME_NONE
    if not _root(p, n, 0, &r):
        return OUTCOME_NONE
    if kind == proto.RPC_HTTP_REQ_CALL:  # HTTPReqCallResp: id, action_type, action
        at = _field(p, &r, 1)
        if at < 0 or p[at] == proto.ACTION_NONE:
            return OUTCOME_NONE
        return OUTCOME_STOP if p[at] == proto.ACTION_STOP else OUTCOME_REWRITE
    # HTTPRespCallResp: id, status, headers, body: any of the last three changes the response
    at = _field(p, &r, 1)
    if at >= 0 and at + 2 <= r.end and _get_u16(p, at) != 0:
        return OUTCOME_RESPONSE
    at = _field(p, &r, 2)
    if at >= 0 and at + 4 <= r.end:
        vector = at + <int64_t>_get_u32(p, at)
        if vector + 4 <= r.end and _get_u32(p, vector) != 0:
            return OUTCOME_RESPONSE
    return OUTCOME_RESPONSE if _field(p, &r, 3) >= 0 else OUTCOME_NONE


cdef int _error_code(const uint8_t* p, int64_t n) noexcept:
    cdef _Root r
    cdef int64_t at
    cdef int code = 0
    if not _root(p, n, 0, &r):
        return proto.ERR_SERVICE_UNAVAILABLE
    at = _field(p, &r, 0)
    if at >= 0:
        code = p[at]
    return code if code < _ERROR_CODES else proto.ERR_SERVICE_UNAVAILABLE


def reply_outcome(bytes frame):
    """OUTCOME_* of a reply frame the runner wrote (OUTCOME_NONE for one it cannot read)."""
    return _reply_outcome(<const uint8_t*>PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))


def error_code(bytes frame):
    """The ERR_* code of an Err.Resp frame (ERR_SERVICE_UNAVAILABLE when it holds none
    this protocol knows)."""
    return _error_code(<const uint8_t*>PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))


# --- counters ----------------------------------------------------------------------------

cdef class Histogram:
    """Observations counted in buckets (each bound is "less or equal"; the last bucket is
    +Inf), and their sum."""

    cdef double* _bounds
    cdef uint64_t* _counts
    cdef Py_ssize_t _n
    cdef double _sum

    def __cinit__(self, tuple bounds):
        cdef Py_ssize_t i
        self._n = len(bounds)
        self._bounds = <double*>malloc(max(self._n, 1) * sizeof(double))
        self._counts = <uint64_t*>malloc((self._n + 1) * sizeof(uint64_t))
        if self._bounds == NULL or self._counts == NULL:
            raise MemoryError()
        for i in range(self._n):
            self._bounds[i] = float(bounds[i])
        for i in range(self._n + 1):
            self._counts[i] = 0
        self._sum = 0.0

    def __dealloc__(self):
        free(self._bounds)
        free(self._counts)

    cdef inline void _observe(self, double value) noexcept:
        cdef Py_ssize_t i = 0
        while i < self._n and value > self._bounds[i]:
            i += 1
        self._counts[i] += 1
        self._sum += value

    def observe(self, double value):
        self._observe(value)

    def snapshot(self):
        """(the count of each bucket, not cumulative; the sum)."""
        return [self._counts[i] for i in range(self._n + 1)], self._sum


cdef class PluginStats:
    """One plugin's filter in one phase: its times, and how often it failed."""

    cdef readonly Histogram hist
    cdef public unsigned long long errors

    def __cinit__(self, tuple bounds):
        self.hist = Histogram(bounds)
        self.errors = 0


cdef class CallCounts:
    """The calls of one serving process: by type and outcome, their durations, the error
    replies by code, the ExtraInfo questions by kind."""

    cdef uint64_t _calls[_FRAME_TYPES][_OUTCOMES]
    cdef bint _counted[_FRAME_TYPES]  # the call types counted
    cdef object _durations  # Histogram by frame type (a tuple, None where not counted)
    cdef uint64_t _errors[_ERROR_CODES]
    cdef uint64_t _questions[_INFO_TYPES]

    def __cinit__(self, tuple bounds):
        cdef int t, o
        for t in range(_FRAME_TYPES):
            self._counted[t] = (
                t == proto.RPC_PREPARE_CONF
                or t == proto.RPC_HTTP_REQ_CALL
                or t == proto.RPC_HTTP_RESP_CALL
            )
            for o in range(_OUTCOMES):
                self._calls[t][o] = 0
        self._durations = tuple(
            Histogram(bounds) if self._counted[t] else None for t in range(_FRAME_TYPES)
        )
        for t in range(_ERROR_CODES):
            self._errors[t] = 0
        for t in range(_INFO_TYPES):
            self._questions[t] = 0

    def calls(self):
        """{(frame type, OUTCOME_*): calls}, every combination."""
        return {
            (t, o): self._calls[t][o]
            for t in range(_FRAME_TYPES)
            if self._counted[t]
            for o in range(_OUTCOMES)
        }

    def duration(self, int frame_type):
        if not 0 <= frame_type < _FRAME_TYPES or not self._counted[frame_type]:
            raise KeyError(frame_type)
        return self._durations[frame_type]

    def errors(self):
        """Error replies, by ERR_* code."""
        return [self._errors[i] for i in range(_ERROR_CODES)]

    def questions(self):
        """ExtraInfo questions asked, by INFO_* kind."""
        return {i: self._questions[i] for i in range(proto.INFO_VAR, _INFO_TYPES)}


cdef class CallMeter:
    """One connection's meter: the connection calls ``first_byte()`` when a read begins a
    call, ``started()`` when it dispatches one, and ``sent()`` with every frame it writes."""

    cdef CallCounts _counts
    cdef int _type
    cdef double _next_start
    cdef double _start

    def __cinit__(self, CallCounts counts not None):
        self._counts = counts
        self._type = -1
        self._next_start = 0.0
        self._start = 0.0

    def first_byte(self):
        self._next_start = _now()

    def started(self, int frame_type):
        self._type = frame_type
        self._start = self._next_start

    def sent(self, bytes frame not None):
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(frame)
        cdef int64_t n = PyBytes_GET_SIZE(frame)
        cdef CallCounts counts = self._counts
        cdef int outcome, t = self._type
        if n < 1:
            return
        if p[0] == proto.RPC_EXTRA_INFO:
            self._count_questions(p, n)
            return
        outcome = _reply_outcome(p, n)
        if outcome == OUTCOME_ERROR:
            counts._errors[_error_code(p, n)] += 1
        if 0 <= t < _FRAME_TYPES and counts._counted[t]:
            counts._calls[t][outcome] += 1
            (<Histogram>counts._durations[t])._observe(_now() - self._start)

    cdef void _count_questions(self, const uint8_t* p, int64_t n) noexcept:
        cdef _Root r
        cdef int64_t at, pos = 0
        cdef uint8_t kind
        while pos + 4 <= n:
            if p[pos] == proto.RPC_EXTRA_INFO and _root(p, n, pos, &r):
                at = _field(p, &r, 0)
                if at >= 0:
                    kind = p[at]
                    if proto.INFO_VAR <= kind < _INFO_TYPES:
                        self._counts._questions[kind] += 1
            pos += 4 + ((<int64_t>p[pos + 1] << 16) | (<int64_t>p[pos + 2] << 8)
                        | <int64_t>p[pos + 3])


cdef class TimedFilter:
    """A plugin's filter, timed into ``stats`` (a failure counted too). When the filter
    returns an awaitable, ``on_awaitable(awaitable, started, stats, call)`` is returned
    instead: it awaits, times and counts it. ``owner`` is what ``__self__`` says."""

    cdef object _filt
    cdef PluginStats _stats
    cdef object _on_awaitable
    cdef object _owner

    def __cinit__(self, filt, PluginStats stats not None, on_awaitable, owner):
        self._filt = filt
        self._stats = stats
        self._on_awaitable = on_awaitable
        self._owner = owner

    @property
    def __self__(self):
        return self._owner

    def __call__(self, conf, call):
        cdef double started = _now()
        try:
            result = self._filt(conf, call)
        except BaseException:
            self._stats.errors += 1
            self._stats.hist._observe(_now() - started)
            raise
        if result is not None and isawaitable(result):
            return self._on_awaitable(result, started, self._stats, call)
        self._stats.hist._observe(_now() - started)
        return result
