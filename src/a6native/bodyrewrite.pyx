# cython: language_level=3
"""Regex body rewriting (response-rewrite ``filters``): the compiled twin of
``a6runner._bodyrewrite_py``. Contract: bodyrewrite.pyi.

Each replacement template (Go ``regexp.Expand`` syntax) is parsed once, at conf time,
by ``a6native.rewrite_filters`` (shared with the pure twin) into pieces: literal bytes
and group numbers (named groups resolved, references to groups that do not exist
dropped since they expand to nothing). A template without
group references is handed to ``re.subn`` as a plain literal, which ``re`` copies in C.
One with group references is expanded here, into a single C buffer: from
``pattern.split`` (text and groups of every match come out of ``re`` in C, with the same
matches as ``finditer``), or, when the template uses the whole match (``$0``, which split
does not return), by walking ``finditer`` / ``search`` and copying the spans of the input.
Either way no Python function is called per match (``re.sub`` with a template would).
"""

from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject

from a6native.rewrite_filters import compile_filters

__all__ = ["BodyRewriter"]

# -- output buffer -------------------------------------------------------------------------


cdef struct _Buffer:
    char* data
    Py_ssize_t size
    Py_ssize_t capacity


cdef int _append(_Buffer* out, const char* source, Py_ssize_t count) except -1:
    cdef Py_ssize_t needed = out.size + count
    cdef Py_ssize_t capacity = out.capacity
    cdef char* grown
    if needed > capacity:
        while capacity < needed:
            capacity *= 2
        grown = <char*>realloc(out.data, capacity)
        if grown is NULL:
            raise MemoryError()
        out.data = grown
        out.capacity = capacity
    memcpy(out.data + out.size, source, count)
    out.size = needed
    return 0


cdef inline int _append_bytes(_Buffer* out, bytes data) except -1:
    return _append(out, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


# -- filters -------------------------------------------------------------------------------


cdef class _Filter:
    """One compiled filter."""

    cdef object pattern
    cdef bint once
    # the replacement as a plain literal for re.subn, or None when it references groups
    cdef object literal
    # a plain-literal pattern (see CompiledFilter.needle): bytes.replace with ``literal``
    cdef object needle
    # pieces: group number per piece (-1 = the literal in ``literals`` at that index)
    cdef list literals
    cdef int* groups
    cdef Py_ssize_t piece_count
    cdef Py_ssize_t group_count
    # $0 in the template: split does not return the whole match, match objects do
    cdef bint uses_whole_match

    def __dealloc__(self):
        free(self.groups)

    cdef object expand(self, bytes body):
        """The rewritten body, or None when the pattern does not match."""
        cdef _Buffer out
        out.size = 0
        out.capacity = PyBytes_GET_SIZE(body) + 64
        out.data = <char*>malloc(out.capacity)
        if out.data is NULL:
            raise MemoryError()
        try:
            if self.uses_whole_match:
                matched = self._expand_matches(&out, body)
            else:
                matched = self._expand_split(&out, body)
            return PyBytes_FromStringAndSize(out.data, out.size) if matched else None
        finally:
            free(out.data)

    cdef bint _expand_split(self, _Buffer* out, bytes body) except -1:
        """Expand from ``pattern.split``: [text, group 1..n, text, group 1..n, ..., text]
        comes out of re in C with the very matches of finditer, so no per-match call is
        made. Only for templates without group 0, which split does not return."""
        cdef list parts = self.pattern.split(body, 1 if self.once else 0)
        cdef Py_ssize_t count = PyList_GET_SIZE(parts)
        cdef Py_ssize_t stride = self.group_count + 1
        cdef Py_ssize_t base, i
        cdef int group
        cdef PyObject* part
        if count == 1:
            return False
        base = 0
        while base < count - 1:
            _append_bytes(out, <bytes>PyList_GET_ITEM(parts, base))
            for i in range(self.piece_count):
                group = self.groups[i]
                if group < 0:
                    _append_bytes(out, <bytes>PyList_GET_ITEM(self.literals, i))
                else:
                    part = PyList_GET_ITEM(parts, base + group)
                    if part != <PyObject*>None:  # None: the group did not take part
                        _append_bytes(out, <bytes>part)
            base += stride
        _append_bytes(out, <bytes>PyList_GET_ITEM(parts, count - 1))
        return True

    cdef bint _expand_matches(self, _Buffer* out, bytes body) except -1:
        """Expand from match objects (``search`` / ``finditer``), reading spans."""
        cdef const char* source = PyBytes_AS_STRING(body)
        cdef Py_ssize_t position = 0, start, end, group_start, group_end, i
        cdef int group
        cdef bint matched = False
        if self.once:
            match = self.pattern.search(body)
            matches = () if match is None else (match,)
        else:
            matches = self.pattern.finditer(body)
        for match in matches:
            matched = True
            start, end = match.span()
            _append(out, source + position, start - position)
            for i in range(self.piece_count):
                group = self.groups[i]
                if group < 0:
                    _append_bytes(out, <bytes>PyList_GET_ITEM(self.literals, i))
                elif group == 0:
                    _append(out, source + start, end - start)
                else:
                    group_start, group_end = match.span(group)
                    if group_start >= 0:  # -1: the group did not take part
                        _append(out, source + group_start, group_end - group_start)
            position = end
        if matched:
            _append(out, source + position, PyBytes_GET_SIZE(body) - position)
        return matched


cdef _Filter _compile_filter(object f):
    """From the shared conf-time CompiledFilter to what the per-body loop needs."""
    cdef _Filter compiled = _Filter.__new__(_Filter)
    cdef Py_ssize_t i
    cdef list pieces = f.pieces
    compiled.pattern = f.pattern
    compiled.once = f.re_count == 1
    compiled.needle = f.needle
    if f.needle is not None:  # bytes.replace takes the replacement as is
        compiled.literal = f.plain_replacement
        return compiled
    if f.plain_replacement is not None:
        # escaped so that re takes every byte literally
        compiled.literal = f.plain_replacement.replace(b"\\", b"\\\\")
        return compiled
    compiled.literal = None
    compiled.group_count = compiled.pattern.groups
    compiled.uses_whole_match = any(type(piece) is int and piece == 0 for piece in pieces)
    compiled.piece_count = len(pieces)
    compiled.groups = <int*>malloc(max(1, compiled.piece_count) * sizeof(int))
    if compiled.groups is NULL:
        raise MemoryError()
    compiled.literals = []
    for i in range(compiled.piece_count):
        piece = pieces[i]
        if isinstance(piece, bytes):
            compiled.groups[i] = -1
            compiled.literals.append(piece)
        else:
            compiled.groups[i] = piece
            compiled.literals.append(None)
    return compiled


cdef class BodyRewriter:
    """An ordered list of (regex, scope, replace) filters compiled once, at conf time."""

    cdef list _filters

    def __init__(self, filters):
        # Checking the filters and parsing the templates happen once, at conf time: that
        # code is shared with the pure twin; only the per-body work here is compiled.
        self._filters = [_compile_filter(f) for f in compile_filters(filters)]

    def __len__(self):
        return len(self._filters)

    def rewrite(self, body):
        """Apply every filter in order; the rewritten body, or None when none matched."""
        cdef _Filter current
        cdef bint matched = False
        if type(body) is not bytes:
            body = bytes(memoryview(body))
        for current in self._filters:
            if current.needle is not None:
                if current.needle not in body:
                    continue
                rewritten = body.replace(current.needle, current.literal, 1 if current.once else -1)
            elif current.literal is not None:
                rewritten, count = current.pattern.subn(
                    current.literal, body, 1 if current.once else 0
                )
                if not count:
                    continue
            else:
                rewritten = current.expand(body)
                if rewritten is None:
                    continue
            body = rewritten
            matched = True
        return body if matched else None
