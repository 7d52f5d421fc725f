# cython: language_level=3
"""Header/arg multi-map with change tracking: the compiled twin of ``a6runner._headers_py``.

Contract: headers.pyi. Behaviour is the pure twin's; the layout is built for a map that
is made from ~12 entries, read a few times and dropped, so construction does no hashing
of Python strings and no dict work:

* ``_names`` / ``_values``: one entry per slot, in order; ``_names`` holds the display
  spelling (the same for every entry of a name).
* ``_hashes``: a C array, one 64-bit FNV-1a hash of the (ASCII-folded) name per slot,
  computed in the same pass that reads the name. Lookups compare hashes first and
  confirm with a case-insensitive compare, so no lower-case copy of a name is ever made.
* ``_touched``: one ``_Change`` per modified name, in order of first modification,
  holding the values before that first change; None until the first change, so a map
  that is only read never copies anything.
"""

cimport cython
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.unicode cimport (
    PyUnicode_DATA,
    PyUnicode_FromObject,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_READ,
)

__all__ = ["MultiMap"]

cdef uint64_t _FNV_OFFSET = 14695981039346656037ULL
cdef uint64_t _FNV_PRIME = 1099511628211ULL
cdef enum:
    _INLINE_SLOTS = 16  # hashes kept inside the object: no malloc for a usual request


cdef inline uint64_t _name_hash(str name, bint ignore_case, bint* has_upper):
    cdef uint64_t h = _FNV_OFFSET
    cdef Py_UCS4 ch
    cdef uint64_t code
    for ch in name:
        code = <uint64_t>ch
        if ignore_case and 65 <= code <= 90:
            code += 32
            has_upper[0] = True
        h = (h ^ code) * _FNV_PRIME
    return h


cdef inline bint _same_name(str a, str b, bint ignore_case):
    cdef Py_ssize_t i, n
    cdef unsigned int kind_a, kind_b
    cdef void* data_a
    cdef void* data_b
    cdef uint32_t ca, cb
    if a is b:
        return True
    n = PyUnicode_GET_LENGTH(a)
    if n != PyUnicode_GET_LENGTH(b):
        return False
    if not ignore_case:
        return a == b
    kind_a = PyUnicode_KIND(a)
    kind_b = PyUnicode_KIND(b)
    data_a = PyUnicode_DATA(a)
    data_b = PyUnicode_DATA(b)
    for i in range(n):
        ca = <uint32_t>PyUnicode_READ(kind_a, data_a, i)
        cb = <uint32_t>PyUnicode_READ(kind_b, data_b, i)
        if ca != cb:
            # only ASCII letters fold: HTTP names are case-insensitive in ASCII only
            if 65 <= ca <= 90:
                ca += 32
            if 65 <= cb <= 90:
                cb += 32
            if ca != cb:
                return False
    return True


cdef inline str _as_str(object value, str what):
    """``value`` as an exact str (a str subclass such as a StrEnum member is copied)."""
    if type(value) is str:
        return <str>value
    if isinstance(value, str):
        return PyUnicode_FromObject(value)
    raise TypeError(f"{what} must be str, not {type(value).__name__}")


@cython.freelist(8)
cdef class _Change:
    """A modified name: its latest spelling and its values before the first change."""

    cdef uint64_t hash
    cdef str name
    cdef list before


@cython.freelist(8)
cdef class MultiMap:
    """An ordered multi-map of ``str`` names to ``str`` values that remembers what changed."""

    cdef list _names
    cdef list _values
    cdef uint64_t* _hashes  # _inline_hashes until there are more slots than it has
    cdef uint64_t _inline_hashes[_INLINE_SLOTS]
    cdef Py_ssize_t _capacity
    cdef bint _ignore_case
    cdef list _touched

    def __cinit__(self):
        # no arguments: Cython then passes the constructor's on to __init__ untouched
        self._names = []
        self._values = []
        self._hashes = self._inline_hashes
        self._capacity = _INLINE_SLOTS

    def __dealloc__(self):
        if self._hashes != self._inline_hashes:
            free(self._hashes)

    def __init__(self, entries=(), bint ignore_case=True):
        cdef list names
        cdef uint64_t h
        cdef bint has_upper = False
        cdef bint any_upper = False
        cdef Py_ssize_t earlier
        cdef str name, value
        if PyList_GET_SIZE(self._names):  # initialised again: start over
            self._names = []
            self._values = []
        names = self._names
        self._ignore_case = ignore_case
        self._touched = None
        for raw_name, raw_value in entries:
            name = _as_str(raw_name, "name")
            value = "" if raw_value is None else _as_str(raw_value, "value")
            h = _name_hash(name, ignore_case, &has_upper)
            if has_upper or any_upper:
                any_upper = True
                # a repeated name keeps the spelling it was first seen with
                earlier = self._find(name, h, 0)
                if earlier >= 0:
                    name = <str>PyList_GET_ITEM(names, earlier)
            self._push(name, value, h)

    # -- slots ---------------------------------------------------------------------------

    cdef void _push(self, str name, str value, uint64_t h) except *:
        cdef Py_ssize_t n = PyList_GET_SIZE(self._names)
        cdef uint64_t* grown
        if n == self._capacity:
            if self._hashes == self._inline_hashes:
                grown = <uint64_t*>malloc(2 * self._capacity * sizeof(uint64_t))
                if grown is not NULL:
                    memcpy(grown, self._hashes, n * sizeof(uint64_t))
            else:
                grown = <uint64_t*>realloc(self._hashes, 2 * self._capacity * sizeof(uint64_t))
            if grown is NULL:
                raise MemoryError()
            self._hashes = grown
            self._capacity *= 2
        self._names.append(name)
        self._values.append(value)
        self._hashes[n] = h

    cdef void _remove(self, Py_ssize_t slot) except *:
        cdef Py_ssize_t n = PyList_GET_SIZE(self._names)
        del self._names[slot]
        del self._values[slot]
        memmove(&self._hashes[slot], &self._hashes[slot + 1], (n - slot - 1) * sizeof(uint64_t))

    cdef inline uint64_t _hash(self, str name):
        cdef bint has_upper = False
        return _name_hash(name, self._ignore_case, &has_upper)

    cdef Py_ssize_t _find(self, str name, uint64_t h, Py_ssize_t start):
        """First slot at or after ``start`` holding ``name``, or -1."""
        cdef Py_ssize_t i
        cdef Py_ssize_t n = PyList_GET_SIZE(self._names)
        cdef uint64_t* hashes = self._hashes
        for i in range(start, n):
            if hashes[i] == h and _same_name(
                <str>PyList_GET_ITEM(self._names, i), name, self._ignore_case
            ):
                return i
        return -1

    cdef list _values_of(self, str name, uint64_t h):
        cdef list found = []
        cdef Py_ssize_t slot = self._find(name, h, 0)
        while slot >= 0:
            found.append(<object>PyList_GET_ITEM(self._values, slot))
            slot = self._find(name, h, slot + 1)
        return found

    # -- reading -------------------------------------------------------------------------

    def get(self, name, default=None):
        """First value of ``name``, or ``default``."""
        cdef str key = _as_str(name, "name")
        cdef Py_ssize_t slot = self._find(key, self._hash(key), 0)
        return default if slot < 0 else <object>PyList_GET_ITEM(self._values, slot)

    def getall(self, name):
        """Every value of ``name`` in order ([] when absent)."""
        cdef str key = _as_str(name, "name")
        return self._values_of(key, self._hash(key))

    def __getitem__(self, name):
        cdef str key = _as_str(name, "name")
        cdef Py_ssize_t slot = self._find(key, self._hash(key), 0)
        if slot < 0:
            raise KeyError(name)
        return <object>PyList_GET_ITEM(self._values, slot)

    def __contains__(self, name):
        cdef str key
        if not isinstance(name, str):
            return False
        key = _as_str(name, "name")
        return self._find(key, self._hash(key), 0) >= 0

    def __len__(self):
        return PyList_GET_SIZE(self._names)

    def __iter__(self):
        return iter(list(self._names))

    def items(self):
        """Every (name, value) entry in order."""
        return list(zip(self._names, self._values))

    def keys(self):
        """Distinct names in order of first appearance."""
        cdef list distinct = []
        cdef Py_ssize_t i
        for i in range(PyList_GET_SIZE(self._names)):
            name = <str>PyList_GET_ITEM(self._names, i)
            if self._find(name, self._hashes[i], 0) == i:
                distinct.append(name)
        return distinct

    # -- writing -------------------------------------------------------------------------

    cdef _Change _touch(self, str name, uint64_t h):
        """The change record of ``name``, made (with the current values) on first touch."""
        cdef _Change change
        if self._touched is None:
            self._touched = []
        else:
            for change in self._touched:
                if change.hash == h and _same_name(change.name, name, self._ignore_case):
                    return change
        change = _Change.__new__(_Change)
        change.hash = h
        change.name = name
        change.before = self._values_of(name, h)
        self._touched.append(change)
        return change

    def set(self, name, value):
        """Replace every value of ``name`` with ``value``; the entry takes the place of the
        first old one, or goes last when the name is new."""
        cdef str key = _as_str(name, "name")
        cdef str text = _as_str(value, "value")
        cdef uint64_t h = self._hash(key)
        cdef Py_ssize_t slot, later
        self._touch(key, h).name = key
        slot = self._find(key, h, 0)
        if slot < 0:
            self._push(key, text, h)
            return
        self._names[slot] = key
        self._values[slot] = text
        later = PyList_GET_SIZE(self._names) - 1
        while later > slot:
            if self._hashes[later] == h and _same_name(
                <str>PyList_GET_ITEM(self._names, later), key, self._ignore_case
            ):
                self._remove(later)
            later -= 1

    def add(self, name, value):
        """Append one more value for ``name``."""
        cdef str key = _as_str(name, "name")
        cdef str text = _as_str(value, "value")
        cdef uint64_t h = self._hash(key)
        cdef Py_ssize_t slot
        self._touch(key, h).name = key
        # the latest spelling applies to every entry of the name
        slot = self._find(key, h, 0)
        while slot >= 0:
            self._names[slot] = key
            slot = self._find(key, h, slot + 1)
        self._push(key, text, h)

    def delete(self, name):
        """Remove every value of ``name``; True if there was any."""
        cdef str key = _as_str(name, "name")
        cdef uint64_t h = self._hash(key)
        cdef Py_ssize_t slot = self._find(key, h, 0)
        if slot < 0:
            return False
        # first touch keeps the current spelling: delete does not respell
        self._touch(<str>PyList_GET_ITEM(self._names, slot), h)
        while slot >= 0:
            self._remove(slot)
            slot = self._find(key, h, slot)
        return True

    def __setitem__(self, name, value):
        self.set(name, value)

    def __delitem__(self, name):
        if not self.delete(name):
            raise KeyError(name)

    # -- the diff ------------------------------------------------------------------------

    @property
    def changed(self):
        """True when changes() would be non-empty."""
        cdef _Change change
        if self._touched is None:
            return False
        for change in self._touched:
            if self._values_of(change.name, change.hash) != change.before:
                return True
        return False

    def changes(self):
        """The minimal diff against the entries given at construction (see headers.pyi)."""
        cdef list diff = []
        cdef list now
        cdef _Change change
        if self._touched is None:
            return diff
        for change in self._touched:
            now = self._values_of(change.name, change.hash)
            if now == change.before:
                continue
            if now:
                for value in now:
                    diff.append((change.name, value))
            else:
                diff.append((change.name, None))
        return diff

    def changes_joined(self, str sep not None=", "):
        """Like changes() but one entry per name, values joined with ``sep``."""
        cdef list diff = []
        cdef list now
        cdef _Change change
        if self._touched is None:
            return diff
        for change in self._touched:
            now = self._values_of(change.name, change.hash)
            if now != change.before:
                diff.append((change.name, sep.join(now) if now else None))
        return diff

    def __repr__(self):
        return f"MultiMap({self.items()!r})"
