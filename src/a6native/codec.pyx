# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: embedsignature=True, auto_pickle=False
"""Compiled twin of ``a6runner._codec_py``: frames and the FlatBuffers tables of the protocol.

The contract is src/a6native/codec.pyi. Readers validate the whole reachable structure in C
(64-bit arithmetic, every offset checked against the buffer length), remember where each
field lives, and create Python objects on first access. Builders measure the reply first,
then write it forward (each parent before its children, vtables just before their tables)
straight into the one bytes object that is returned as the frame.
"""

cimport cython
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_Check,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

from a6native cimport cprotocol as proto


cdef extern from "Python.h":
    # Declared here rather than cimported: these are the exact C signatures we rely on.
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    bint PyUnicode_Check(object o)
    bint PyLong_Check(object o)
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size)
    void PyErr_Clear()
    object PySequence_Tuple(object o)
    int _PyBytes_Resize(PyObject** bytes, Py_ssize_t newsize) except -1
    char* _raw_bytes_data "PyBytes_AS_STRING" (PyObject* bytes)
    void* _raw_str_data "PyUnicode_DATA" (PyObject* s)
    Py_ssize_t _raw_str_length "PyUnicode_GET_LENGTH" (PyObject* s)
    unsigned long long PyLong_AsUnsignedLongLong(object o) except? <unsigned long long>-1

from a6native.errors import DecodeError, FrameTooLarge

# The protocol vocabulary as Python names, from the C enums: the same names and values as
# a6native.protocol (tests/test_protocol_vocabulary.py checks them).
FRAME_HEADER_SIZE = proto.FRAME_HEADER_SIZE
MAX_PAYLOAD_SIZE = proto.MAX_PAYLOAD_SIZE

RPC_ERROR = proto.RPC_ERROR
RPC_PREPARE_CONF = proto.RPC_PREPARE_CONF
RPC_HTTP_REQ_CALL = proto.RPC_HTTP_REQ_CALL
RPC_EXTRA_INFO = proto.RPC_EXTRA_INFO
RPC_HTTP_RESP_CALL = proto.RPC_HTTP_RESP_CALL

ERR_BAD_REQUEST = proto.ERR_BAD_REQUEST
ERR_SERVICE_UNAVAILABLE = proto.ERR_SERVICE_UNAVAILABLE
ERR_CONF_TOKEN_NOT_FOUND = proto.ERR_CONF_TOKEN_NOT_FOUND

INFO_VAR = proto.INFO_VAR
INFO_REQ_BODY = proto.INFO_REQ_BODY
INFO_RESP_BODY = proto.INFO_RESP_BODY

ACTION_NONE = proto.ACTION_NONE
ACTION_STOP = proto.ACTION_STOP
ACTION_REWRITE = proto.ACTION_REWRITE

cdef int64_t C_MAX_PAYLOAD = proto.MAX_PAYLOAD_SIZE
cdef Py_ssize_t SPLITTER_MIN_CAPACITY = 65_536  # first allocation for a frame still arriving
cdef const char* SURROGATEESCAPE = "surrogateescape"


# --- little-endian access (no alignment assumed) ---------------------------------------

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* memcpy compiles to one unaligned load/store; byte assembly elsewhere. */
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    #define A6_LITTLE_ENDIAN 1
    #else
    #define A6_LITTLE_ENDIAN 0
    #endif
    static inline uint16_t a6_load_u16(const uint8_t *p) {
    #if A6_LITTLE_ENDIAN
        uint16_t v; memcpy(&v, p, 2); return v;
    #else
        return (uint16_t)(p[0] | (p[1] << 8));
    #endif
    }
    static inline uint32_t a6_load_u32(const uint8_t *p) {
    #if A6_LITTLE_ENDIAN
        uint32_t v; memcpy(&v, p, 4); return v;
    #else
        return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
            | ((uint32_t)p[3] << 24);
    #endif
    }
    static inline void a6_store_u16(uint8_t *p, uint16_t v) {
    #if A6_LITTLE_ENDIAN
        memcpy(p, &v, 2);
    #else
        p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8);
    #endif
    }
    static inline void a6_store_u32(uint8_t *p, uint32_t v) {
    #if A6_LITTLE_ENDIAN
        memcpy(p, &v, 4);
    #else
        p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
    #endif
    }
    /* Hash of a short name: length, head and tail words, a few instructions whatever the
       length. Names that differ only in the middle share a slot, which costs a cache miss,
       never a wrong answer. Any byte order will do: only equality of inputs matters. */
    static inline uint32_t a6_name_hash(const uint8_t *s, Py_ssize_t n) {
        uint64_t head, tail, h;
        if (n >= 8) {
            memcpy(&head, s, 8); memcpy(&tail, s + n - 8, 8);
        } else if (n >= 4) {
            uint32_t h32, t32;
            memcpy(&h32, s, 4); memcpy(&t32, s + n - 4, 4);
            head = h32; tail = t32;
        } else {
            head = s[0] | ((uint64_t)s[n >> 1] << 8) | ((uint64_t)s[n - 1] << 16);
            tail = 0;
        }
        h = (head * 0x9E3779B97F4A7C15ULL) ^ (tail * 0xC2B2AE3D27D4EB4FULL) ^ (uint64_t)n;
        return (uint32_t)(h >> 32) ^ (uint32_t)h;
    }
    """
    uint16_t a6_load_u16(const uint8_t* p) noexcept nogil
    uint32_t a6_load_u32(const uint8_t* p) noexcept nogil
    void a6_store_u16(uint8_t* p, uint16_t v) noexcept nogil
    void a6_store_u32(uint8_t* p, uint32_t v) noexcept nogil
    uint32_t a6_name_hash(const uint8_t* s, Py_ssize_t n) noexcept nogil


cdef inline uint16_t _get_u16(const uint8_t* p, int64_t i) noexcept nogil:
    return a6_load_u16(p + i)


cdef inline uint32_t _get_u32(const uint8_t* p, int64_t i) noexcept nogil:
    return a6_load_u32(p + i)


cdef inline void _put_u16(uint8_t* p, Py_ssize_t i, uint32_t v) noexcept nogil:
    a6_store_u16(p + i, <uint16_t>v)


cdef inline void _put_u32(uint8_t* p, Py_ssize_t i, uint64_t v) noexcept nogil:
    a6_store_u32(p + i, <uint32_t>v)


# --- reader primitives -------------------------------------------------------------------
# All positions are int64 offsets into the payload; a validated buffer can then be walked
# again without checks. A field position of -1 means "absent".

cdef struct _Table:
    int64_t pos
    int64_t vtable
    int64_t vtable_size


# The checks stay small enough to inline; the messages are built out of line, only on error.

cdef int _bad_table(int64_t t, int64_t size) except -1:
    raise DecodeError(f"table at {t} runs past the end ({size} bytes)")


cdef int _bad_vtable(int64_t t, int64_t vt, int64_t vt_size, int64_t t_size,
                     int64_t size) except -1:
    if vt < 0 or vt + 4 > size:
        raise DecodeError(f"vtable of the table at {t} is out of bounds")
    if vt_size & 1 or vt_size < 4 or vt + vt_size > size:
        raise DecodeError(f"bad vtable size {vt_size} at {vt}")
    raise DecodeError(f"bad table size {t_size} at {t}")


cdef int _bad_field(int64_t t, int field) except -1:
    raise DecodeError(f"field {field} of the table at {t} is out of bounds")


cdef int _bad_vector(int64_t q, int64_t size) except -1:
    raise DecodeError(f"vector at {q} runs past the end ({size} bytes)")


cdef int _bad_vector_length(int64_t q, int64_t count) except -1:
    raise DecodeError(f"vector of {count} elements at {q} runs past the end")


cdef inline int _check_table(const uint8_t* p, int64_t size, int64_t t,
                             _Table* out) except -1:
    cdef int64_t vt, vt_size = 0, t_size = 0
    if t + 4 > size:
        return _bad_table(t, size)
    vt = t - <int64_t>(<int32_t>_get_u32(p, t))
    if vt < 0 or vt + 4 > size:
        return _bad_vtable(t, vt, vt_size, t_size, size)
    vt_size = _get_u16(p, vt)
    t_size = _get_u16(p, vt + 2)
    if vt_size & 1 or vt_size < 4 or vt + vt_size > size or t_size < 4 or t + t_size > size:
        return _bad_vtable(t, vt, vt_size, t_size, size)
    out.pos = t
    out.vtable = vt
    out.vtable_size = vt_size
    return 0


cdef inline int64_t _field_unchecked(const uint8_t* p, const _Table* t, int field) noexcept:
    """Position of ``field`` in a validated table, or -1 when absent."""
    cdef int64_t entry = 4 + 2 * field
    cdef uint16_t off
    if entry + 2 > t.vtable_size:
        return -1
    off = _get_u16(p, t.vtable + entry)
    if off == 0:
        return -1
    return t.pos + off


cdef inline int64_t _check_field(const uint8_t* p, int64_t size, const _Table* t, int field,
                                 int width) except -2:
    cdef int64_t pos = _field_unchecked(p, t, field)
    if pos >= 0 and pos + width > size:
        _bad_field(t.pos, field)
    return pos


cdef inline int64_t _target(const uint8_t* p, int64_t field_pos) noexcept:
    return field_pos + <int64_t>_get_u32(p, field_pos)


cdef inline int64_t _check_vector(const uint8_t* p, int64_t size, int64_t field_pos,
                                  int64_t elem_size) except -1:
    """Validate the string/vector an offset field points to; its position (the length word)."""
    cdef int64_t q = _target(p, field_pos)
    cdef int64_t count
    if q + 4 > size:
        _bad_vector(q, size)
    count = _get_u32(p, q)
    if q + 4 + count * elem_size > size:
        _bad_vector_length(q, count)
    return q


cdef int64_t _check_text_entries(const uint8_t* p, int64_t size, int64_t field_pos) except -2:
    """Validate a [TextEntry] field and every entry in it; the vector position or -1."""
    cdef int64_t q, count, k, element, f
    cdef _Table entry = _Table(0, 0, 0)  # always filled by _check_table; zeroed for gcc
    if field_pos < 0:
        return -1
    q = _check_vector(p, size, field_pos, 4)
    count = _get_u32(p, q)
    for k in range(count):
        element = q + 4 + 4 * k
        _check_table(p, size, _target(p, element), &entry)
        f = _check_field(p, size, &entry, 0, 4)
        if f >= 0:
            _check_vector(p, size, f, 1)
        f = _check_field(p, size, &entry, 1, 4)
        if f >= 0:
            _check_vector(p, size, f, 1)
    return q


cdef inline str _utf8_at(const uint8_t* p, int64_t q):
    """The string whose length word is at ``q`` (validated)."""
    return PyUnicode_DecodeUTF8(<const char*>p + q + 4, <Py_ssize_t>_get_u32(p, q),
                                SURROGATEESCAPE)


# Header and arg names come from a small vocabulary (APISIX lower-cases them), so decoded
# names are kept in a direct-mapped cache: a hit costs a hash and a memcmp instead of a new
# str. Bounded: NAME_CACHE_SLOTS strong references to ASCII strs of at most
# NAME_CACHE_MAX_LEN chars. Values are not cached: they repeat far less (ids, cookies).
cdef enum:
    NAME_CACHE_SLOTS = 512  # a power of two
    NAME_CACHE_MAX_LEN = 64

cdef PyObject* _name_cache[NAME_CACHE_SLOTS]


cdef str _name_at(const uint8_t* p, int64_t q):
    """Like _utf8_at, through the name cache."""
    cdef const uint8_t* s = p + q + 4
    cdef Py_ssize_t n = <Py_ssize_t>_get_u32(p, q)
    cdef uint32_t slot
    cdef PyObject* cached
    cdef str name
    if n == 0 or n > NAME_CACHE_MAX_LEN:
        return PyUnicode_DecodeUTF8(<const char*>s, n, SURROGATEESCAPE)
    slot = a6_name_hash(s, n) & (NAME_CACHE_SLOTS - 1)
    cached = _name_cache[slot]
    # Cached strs are compact ASCII: their data is their UTF-8, one byte per char.
    if cached != NULL and _raw_str_length(cached) == n \
            and memcmp(_raw_str_data(cached), s, n) == 0:
        return <str>cached
    name = PyUnicode_DecodeUTF8(<const char*>s, n, SURROGATEESCAPE)
    if PyUnicode_IS_COMPACT_ASCII(name):
        Py_INCREF(name)
        _name_cache[slot] = <PyObject*>name
        Py_XDECREF(cached)
    return name


cdef inline bytes _bytes_at(const uint8_t* p, int64_t q):
    return PyBytes_FromStringAndSize(<const char*>p + q + 4, <Py_ssize_t>_get_u32(p, q))


cdef list _text_entry_list(bytes buf, int64_t q, bint value_as_bytes):
    """Materialize a validated [TextEntry] vector: (name, value) pairs. Values are str or
    None, or with ``value_as_bytes`` bytes with b"" for a missing value."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(buf)
    cdef int64_t count, k, element, f
    cdef _Table entry
    cdef object name, value
    cdef tuple pair
    cdef list result
    if q < 0:
        return []
    count = _get_u32(p, q)
    result = PyList_New(count)
    for k in range(count):
        element = q + 4 + 4 * k
        entry.pos = _target(p, element)
        entry.vtable = entry.pos - <int64_t>(<int32_t>_get_u32(p, entry.pos))
        entry.vtable_size = _get_u16(p, entry.vtable)
        f = _field_unchecked(p, &entry, 0)
        name = _name_at(p, _target(p, f)) if f >= 0 else ""
        f = _field_unchecked(p, &entry, 1)
        if value_as_bytes:
            value = _bytes_at(p, _target(p, f)) if f >= 0 else b""
        else:
            value = _utf8_at(p, _target(p, f)) if f >= 0 else None
        pair = PyTuple_New(2)
        Py_INCREF(name)
        PyTuple_SET_ITEM(pair, 0, name)
        Py_INCREF(value)
        PyTuple_SET_ITEM(pair, 1, value)
        Py_INCREF(pair)
        PyList_SET_ITEM(result, k, pair)
    return result


cdef bytes _payload_bytes(object buf):
    if PyBytes_CheckExact(buf):
        return <bytes>buf
    # A mutable buffer could change under our recorded offsets: take a private copy.
    # memoryview() refuses ints, which bytes() would turn into zero-filled buffers.
    return memoryview(buf).tobytes()


cdef int _check_root(const uint8_t* p, int64_t size, _Table* root) except -1:
    if size < 4:
        raise DecodeError(f"payload of {size} bytes is too short for a FlatBuffers root")
    return _check_table(p, size, _get_u32(p, 0), root)


# --- readers (runner side: what APISIX sends) -------------------------------------------

@cython.final
cdef class PrepareConfReq:
    cdef bytes _buf
    cdef int64_t _conf_vector
    cdef int64_t _key_string  # position of the length word, or -1
    cdef object _conf
    cdef object _key
    cdef bint _key_decoded

    def __init__(self):
        raise TypeError("PrepareConfReq objects come from decode_prepare_conf_req()")

    @property
    def key(self):
        if not self._key_decoded:
            if self._key_string >= 0:
                self._key = _utf8_at(<const uint8_t*>PyBytes_AS_STRING(self._buf),
                                     self._key_string)
            self._key_decoded = True
        return self._key

    @property
    def conf(self):
        """(plugin name, raw JSON conf value as bytes) in execution order; a missing
        value is b""."""
        if self._conf is None:
            self._conf = _text_entry_list(self._buf, self._conf_vector, True)
        return self._conf


@cython.final
cdef class HTTPReqCallReq:
    cdef bytes _buf
    cdef uint32_t _id
    cdef uint32_t _conf_token
    cdef uint8_t _method
    cdef int64_t _path_string  # position of the length word, or -1
    cdef int64_t _src_ip_vector
    cdef int64_t _args_vector
    cdef int64_t _headers_vector
    cdef object _path
    cdef object _src_ip
    cdef object _args
    cdef object _headers

    def __init__(self):
        raise TypeError("HTTPReqCallReq objects come from decode_http_req_call_req()")

    @property
    def id(self):
        return self._id

    @property
    def conf_token(self):
        return self._conf_token

    @property
    def method(self):
        """The Method enum value (GET=0 ... TRACE=14; other values are passed through)."""
        return self._method

    @property
    def path(self):
        if self._path is None:
            if self._path_string < 0:
                self._path = ""
            else:
                self._path = _utf8_at(<const uint8_t*>PyBytes_AS_STRING(self._buf),
                                      self._path_string)
        return self._path

    @property
    def src_ip(self):
        """4 (IPv4) or 16 (IPv6) bytes as sent; any length is passed through."""
        if self._src_ip is None:
            if self._src_ip_vector < 0:
                self._src_ip = b""
            else:
                self._src_ip = _bytes_at(<const uint8_t*>PyBytes_AS_STRING(self._buf),
                                         self._src_ip_vector)
        return self._src_ip

    @property
    def args(self):
        if self._args is None:
            self._args = _text_entry_list(self._buf, self._args_vector, False)
        return self._args

    @property
    def headers(self):
        if self._headers is None:
            self._headers = _text_entry_list(self._buf, self._headers_vector, False)
        return self._headers


@cython.final
cdef class HTTPRespCallReq:
    cdef bytes _buf
    cdef uint32_t _id
    cdef uint16_t _status
    cdef uint32_t _conf_token
    cdef int64_t _headers_vector
    cdef object _headers

    def __init__(self):
        raise TypeError("HTTPRespCallReq objects come from decode_http_resp_call_req()")

    @property
    def id(self):
        return self._id

    @property
    def status(self):
        return self._status

    @property
    def conf_token(self):
        return self._conf_token

    @property
    def headers(self):
        if self._headers is None:
            self._headers = _text_entry_list(self._buf, self._headers_vector, False)
        return self._headers


def decode_prepare_conf_req(buf):
    cdef bytes data = _payload_bytes(buf)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef int64_t size = PyBytes_GET_SIZE(data)
    cdef _Table root
    cdef int64_t f
    cdef PrepareConfReq request = PrepareConfReq.__new__(PrepareConfReq)
    _check_root(p, size, &root)
    request._buf = data
    request._conf_vector = _check_text_entries(p, size, _check_field(p, size, &root, 0, 4))
    f = _check_field(p, size, &root, 1, 4)
    request._key_string = _check_vector(p, size, f, 1) if f >= 0 else -1
    return request


def decode_http_req_call_req(buf):
    cdef bytes data = _payload_bytes(buf)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef int64_t size = PyBytes_GET_SIZE(data)
    cdef _Table root
    cdef int64_t f
    cdef HTTPReqCallReq request = HTTPReqCallReq.__new__(HTTPReqCallReq)
    _check_root(p, size, &root)
    request._buf = data
    f = _check_field(p, size, &root, 0, 4)
    request._id = _get_u32(p, f) if f >= 0 else 0
    f = _check_field(p, size, &root, 1, 4)
    request._src_ip_vector = _check_vector(p, size, f, 1) if f >= 0 else -1
    f = _check_field(p, size, &root, 2, 1)
    request._method = p[f] if f >= 0 else 0
    f = _check_field(p, size, &root, 3, 4)
    request._path_string = _check_vector(p, size, f, 1) if f >= 0 else -1
    request._args_vector = _check_text_entries(p, size, _check_field(p, size, &root, 4, 4))
    request._headers_vector = _check_text_entries(p, size, _check_field(p, size, &root, 5, 4))
    f = _check_field(p, size, &root, 6, 4)
    request._conf_token = _get_u32(p, f) if f >= 0 else 0
    return request


def decode_http_resp_call_req(buf):
    cdef bytes data = _payload_bytes(buf)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef int64_t size = PyBytes_GET_SIZE(data)
    cdef _Table root
    cdef int64_t f
    cdef HTTPRespCallReq request = HTTPRespCallReq.__new__(HTTPRespCallReq)
    _check_root(p, size, &root)
    request._buf = data
    f = _check_field(p, size, &root, 0, 4)
    request._id = _get_u32(p, f) if f >= 0 else 0
    f = _check_field(p, size, &root, 1, 2)
    request._status = _get_u16(p, f) if f >= 0 else 0
    request._headers_vector = _check_text_entries(p, size, _check_field(p, size, &root, 2, 4))
    f = _check_field(p, size, &root, 3, 4)
    request._conf_token = _get_u32(p, f) if f >= 0 else 0
    return request


def decode_extra_info_resp(buf):
    """The ``result`` vector, or None when absent (nil value)."""
    cdef bytes data = _payload_bytes(buf)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef int64_t size = PyBytes_GET_SIZE(data)
    cdef _Table root
    cdef int64_t f
    _check_root(p, size, &root)
    f = _check_field(p, size, &root, 0, 4)
    if f < 0:
        return None
    return _bytes_at(p, _check_vector(p, size, f, 1))


def decode_err_resp(buf):
    """The error code."""
    cdef bytes data = _payload_bytes(buf)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef int64_t size = PyBytes_GET_SIZE(data)
    cdef _Table root
    cdef int64_t f
    _check_root(p, size, &root)
    f = _check_field(p, size, &root, 0, 1)
    return p[f] if f >= 0 else 0


# --- frames ------------------------------------------------------------------------------

cdef int _check_frame_type(object frame_type) except -1:
    if not PyLong_Check(frame_type):
        raise TypeError(f"frame_type must be int, not {type(frame_type).__name__}")
    if not 0 <= frame_type <= 0xFF:
        raise ValueError(f"frame type {frame_type} is not in 0..255")
    return 0


def encode_frame_header(frame_type, length):
    """4 header bytes. FrameTooLarge if length > MAX_PAYLOAD_SIZE; ValueError if
    frame_type is not in 0..255 or length < 0."""
    _check_frame_type(frame_type)
    if not PyLong_Check(length):
        raise TypeError(f"length must be int, not {type(length).__name__}")
    if length < 0:
        raise ValueError(f"negative payload length {length}")
    if length > MAX_PAYLOAD_SIZE:
        raise FrameTooLarge(f"payload of {length} bytes exceeds {MAX_PAYLOAD_SIZE}")
    cdef bytes header = PyBytes_FromStringAndSize(NULL, proto.FRAME_HEADER_SIZE)
    _put_frame_header(<uint8_t*>PyBytes_AS_STRING(header), <uint8_t>frame_type,
                      <uint32_t>length)
    return header


cdef inline void _put_frame_header(uint8_t* p, uint8_t frame_type, uint32_t length) noexcept:
    p[0] = frame_type
    p[1] = <uint8_t>(length >> 16)
    p[2] = <uint8_t>(length >> 8)
    p[3] = <uint8_t>length


def decode_frame_header(header):
    """(frame_type, payload_length) from the first 4 bytes; DecodeError if fewer."""
    cdef const uint8_t* p
    if PyBytes_Check(header):
        if PyBytes_GET_SIZE(header) < proto.FRAME_HEADER_SIZE:
            raise DecodeError(f"frame header needs 4 bytes, got {PyBytes_GET_SIZE(header)}")
        p = <const uint8_t*>PyBytes_AS_STRING(header)
    else:
        header = memoryview(header).cast("B")
        if len(header) < proto.FRAME_HEADER_SIZE:
            raise DecodeError(f"frame header needs 4 bytes, got {len(header)}")
        header = bytes(header[:proto.FRAME_HEADER_SIZE])
        p = <const uint8_t*>PyBytes_AS_STRING(header)
    return p[0], (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


def encode_frame(frame_type, payload):
    """header + payload in one bytes object. FrameTooLarge if the payload is too long."""
    cdef bytes data = _payload_bytes(payload)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    _check_frame_type(frame_type)
    if n > C_MAX_PAYLOAD:
        raise FrameTooLarge(f"payload of {n} bytes exceeds {MAX_PAYLOAD_SIZE}")
    cdef bytes frame = PyBytes_FromStringAndSize(NULL, proto.FRAME_HEADER_SIZE + n)
    cdef uint8_t* out = <uint8_t*>PyBytes_AS_STRING(frame)
    _put_frame_header(out, <uint8_t>frame_type, <uint32_t>n)
    memcpy(out + proto.FRAME_HEADER_SIZE, PyBytes_AS_STRING(data), n)
    return frame


@cython.final
cdef class FrameSplitter:
    """Turns a byte stream cut at arbitrary points into whole frames.

    Memory is linear in the bytes buffered; a 16 MiB frame arriving in 64 KiB chunks costs
    O(total) copying, not O(n^2). Zero-length payloads yield ``(type, b"")``.
    """

    cdef uint8_t _header[proto.FRAME_HEADER_SIZE]
    cdef int _header_len
    # The payload of the frame being received, grown in place (we hold its only reference,
    # so _PyBytes_Resize may reallocate it); NULL between frames.
    cdef PyObject* _payload
    cdef Py_ssize_t _payload_len
    cdef Py_ssize_t _filled
    cdef Py_ssize_t _capacity
    cdef uint8_t _frame_type

    def __cinit__(self):
        self._header_len = 0
        self._payload = NULL
        self._filled = 0

    def __dealloc__(self):
        Py_XDECREF(self._payload)
        self._payload = NULL

    @property
    def pending(self):
        """Bytes buffered towards the next, incomplete frame (header bytes included)."""
        if self._payload != NULL:
            return proto.FRAME_HEADER_SIZE + self._filled
        return self._header_len

    cdef int _start_payload(self, uint8_t frame_type, Py_ssize_t length,
                            Py_ssize_t available) except -1:
        cdef Py_ssize_t capacity = available if available > SPLITTER_MIN_CAPACITY \
            else SPLITTER_MIN_CAPACITY
        if capacity > length:
            capacity = length
        payload = PyBytes_FromStringAndSize(NULL, capacity)
        Py_INCREF(payload)
        self._payload = <PyObject*>payload
        self._frame_type = frame_type
        self._payload_len = length
        self._capacity = capacity
        self._filled = 0
        return 0

    cdef Py_ssize_t _fill_payload(self, const uint8_t* p, Py_ssize_t n, list frames) except -1:
        """Copy up to ``n`` bytes into the payload in progress; bytes consumed."""
        cdef Py_ssize_t take = self._payload_len - self._filled
        cdef Py_ssize_t capacity
        cdef object payload
        if take > n:
            take = n
        if self._filled + take > self._capacity:
            # Geometric growth capped at the frame's size keeps copying linear.
            capacity = 2 * self._capacity
            if capacity < self._filled + take:
                capacity = self._filled + take
            if capacity > self._payload_len:
                capacity = self._payload_len
            _PyBytes_Resize(&self._payload, capacity)
            self._capacity = capacity
        memcpy(_raw_bytes_data(self._payload) + self._filled, p, take)
        self._filled += take
        if self._filled == self._payload_len:
            payload = <object>self._payload
            Py_XDECREF(self._payload)
            self._payload = NULL
            self._filled = 0
            frames.append((self._frame_type, payload))
        return take

    def feed(self, data):
        """Add bytes; return every frame completed by them, in order."""
        cdef bytes chunk = _payload_bytes(data)
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(chunk)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(chunk)
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t length, take
        cdef uint8_t frame_type
        cdef list frames = []
        while pos < n:
            if self._payload != NULL:
                pos += self._fill_payload(p + pos, n - pos, frames)
                continue
            if self._header_len == 0 and n - pos >= proto.FRAME_HEADER_SIZE:
                frame_type = p[pos]
                length = (<Py_ssize_t>p[pos + 1] << 16) | (<Py_ssize_t>p[pos + 2] << 8) \
                    | p[pos + 3]
                pos += proto.FRAME_HEADER_SIZE
                if n - pos >= length:
                    # Whole frame inside this chunk: slice it straight out.
                    frames.append(
                        (frame_type, PyBytes_FromStringAndSize(<const char*>p + pos, length))
                    )
                    pos += length
                else:
                    self._start_payload(frame_type, length, n - pos)
                continue
            # A header cut across chunks: gather its bytes first.
            take = proto.FRAME_HEADER_SIZE - self._header_len
            if take > n - pos:
                take = n - pos
            memcpy(self._header + self._header_len, p + pos, take)
            self._header_len += take
            pos += take
            if self._header_len == proto.FRAME_HEADER_SIZE:
                self._header_len = 0
                length = (<Py_ssize_t>self._header[1] << 16) \
                    | (<Py_ssize_t>self._header[2] << 8) | self._header[3]
                if length == 0:
                    frames.append((self._header[0], b""))
                else:
                    self._start_payload(self._header[0], length, n - pos)
        return frames


# --- builder primitives ------------------------------------------------------------------
# Layout written forward: [root offset][vtable][table][children...], every child after the
# offset that points to it (FlatBuffers offsets are unsigned), everything 4-byte aligned.

cdef struct _Text:
    const char* ptr
    Py_ssize_t len  # -1: absent


cdef inline Py_ssize_t _vtable_size(int fields) noexcept:
    return (4 + 2 * fields + 3) & ~3


cdef inline Py_ssize_t _string_size(Py_ssize_t n) noexcept:
    return 4 + ((n + 4) & ~3)  # length word, bytes, NUL, padding


cdef inline Py_ssize_t _byte_vector_size(Py_ssize_t n) noexcept:
    return 4 + ((n + 3) & ~3)


cdef inline Py_ssize_t _put_table(uint8_t* b, Py_ssize_t pos, int fields,
                                  const uint16_t* offsets, uint16_t table_size) noexcept:
    """Write a vtable at ``pos`` and the (zeroed) table right after it; the table position."""
    cdef int i
    cdef Py_ssize_t vt_size = 4 + 2 * fields
    cdef Py_ssize_t t = pos + _vtable_size(fields)
    _put_u16(b, pos, <uint32_t>vt_size)
    _put_u16(b, pos + 2, table_size)
    for i in range(fields):
        _put_u16(b, pos + 4 + 2 * i, offsets[i])
    memset(b + pos + vt_size, 0, t - pos - vt_size)
    _put_u32(b, t, <uint64_t>(t - pos))  # soffset to the vtable, which sits before
    memset(b + t + 4, 0, table_size - 4)
    return t


cdef inline void _link(uint8_t* b, Py_ssize_t slot, Py_ssize_t target) noexcept:
    _put_u32(b, slot, <uint64_t>(target - slot))


cdef inline Py_ssize_t _put_string(uint8_t* b, Py_ssize_t pos, const char* s,
                                   Py_ssize_t n) noexcept:
    cdef Py_ssize_t end = pos + _string_size(n)
    _put_u32(b, pos, <uint64_t>n)
    memcpy(b + pos + 4, s, n)
    memset(b + pos + 4 + n, 0, end - pos - 4 - n)
    return end


cdef inline Py_ssize_t _put_byte_vector(uint8_t* b, Py_ssize_t pos, const char* s,
                                        Py_ssize_t n) noexcept:
    cdef Py_ssize_t end = pos + _byte_vector_size(n)
    _put_u32(b, pos, <uint64_t>n)
    memcpy(b + pos + 4, s, n)
    memset(b + pos + 4 + n, 0, end - pos - 4 - n)
    return end


cdef uint64_t _uint(object value, int bits, str what) except? 0xFFFFFFFFFFFFFFFF:
    # Only int (and so bool): no float truncation, no __index__ objects.
    if not PyLong_Check(value):
        raise TypeError(f"{what} must be int, not {type(value).__name__}")
    if value < 0 or value >> bits:
        raise OverflowError(f"{what} {value} does not fit in uint{bits}")
    return PyLong_AsUnsignedLongLong(value)


cdef inline int _str_view(object s, _Text* out) except -1:
    """Point ``out`` at the UTF-8 of a str without copying; 1 if the str holds surrogates
    and must be encoded with surrogateescape first."""
    cdef Py_ssize_t n
    cdef const char* ptr
    if PyUnicode_IS_COMPACT_ASCII(s):
        out.ptr = <const char*>PyUnicode_DATA(s)
        out.len = PyUnicode_GET_LENGTH(s)
        return 0
    ptr = PyUnicode_AsUTF8AndSize(s, &n)  # cached inside the str object
    if ptr == NULL:
        PyErr_Clear()
        return 1
    out.ptr = ptr
    out.len = n
    return 0


cdef object _text_arg(object s, _Text* out, str what):
    """A str argument (path, key, name) as bytes to write; returns what must stay alive."""
    if not PyUnicode_Check(s):
        raise TypeError(f"{what} must be str, not {type(s).__name__}")
    if _str_view(s, out):
        s = s.encode("utf-8", "surrogateescape")
        out.ptr = PyBytes_AS_STRING(s)
        out.len = PyBytes_GET_SIZE(s)
    return s


cdef object _bytes_arg(object data, _Text* out, str what):
    """A bytes argument (body, src_ip, result); None or b"" leaves the field absent."""
    if data is None:
        out.len = -1
        return None
    if not PyBytes_Check(data):
        raise TypeError(f"{what} must be bytes or None, not {type(data).__name__}")
    out.ptr = PyBytes_AS_STRING(data)
    out.len = PyBytes_GET_SIZE(data)
    if out.len == 0:
        out.len = -1
    elif out.len > C_MAX_PAYLOAD:
        raise FrameTooLarge(f"{what} of {out.len} bytes cannot fit in a frame")
    return data


cdef inline int _entry_text(object s, _Text* out, bint is_name) except -1:
    """Like _str_view for an entry's name (str) or value (str, bytes or None); raises
    TypeError for other types, returns 1 when surrogateescape encoding is needed."""
    if PyUnicode_Check(s):
        return _str_view(s, out)
    if is_name:
        raise TypeError(f"entry name must be str, not {type(s).__name__}")
    if s is None:
        out.len = -1
        return 0
    if PyBytes_Check(s):
        out.ptr = PyBytes_AS_STRING(s)
        out.len = PyBytes_GET_SIZE(s)
        return 0
    raise TypeError(f"entry value must be str or bytes, not {type(s).__name__}")


cdef inline Py_ssize_t _entry_size(const _Text* name, const _Text* value) noexcept:
    # vtable (8) + table (12) + name string + value string
    cdef Py_ssize_t size = 20 + _string_size(name.len)
    if value.len >= 0:
        size += _string_size(value.len)
    return size


cdef tuple _encoded_entries(tuple entries):
    """The entries as (bytes, bytes | None) tuples: the slow path for strs with surrogates
    and for pairs that are not 2-tuples (unpacked the way a for loop would)."""
    cdef list result = []
    cdef _Text ignored
    for name, value in entries:
        _entry_text(name, &ignored, True)
        _entry_text(value, &ignored, False)
        result.append((
            name.encode("utf-8", "surrogateescape"),
            value.encode("utf-8", "surrogateescape") if PyUnicode_Check(value) else value,
        ))
    return tuple(result)


cdef tuple _prepare_entries(object entries, Py_ssize_t* size_out, bint encoded=False):
    """Measure a [TextEntry] argument; the entries to write (an immutable tuple of 2-tuples
    whose texts need no encoding), or None when the field stays absent. ``encoded``: the
    entries come from _encoded_entries (names already checked, now bytes)."""
    cdef Py_ssize_t count, i, size
    cdef tuple seq
    cdef object pair
    cdef _Text name, value
    if not len(entries):  # len() so that None is a TypeError, as for any non-sequence
        size_out[0] = 0
        return None
    # A tuple cannot change between measuring and writing (a list could, from a finalizer).
    seq = PySequence_Tuple(entries)
    count = PyTuple_GET_SIZE(seq)
    size = 4 + 4 * count
    for i in range(count):
        pair = <object>PyTuple_GET_ITEM(seq, i)
        if not (PyTuple_CheckExact(pair) and PyTuple_GET_SIZE(pair) == 2) \
                or _entry_text(<object>PyTuple_GET_ITEM(pair, 0), &name, not encoded) \
                or _entry_text(<object>PyTuple_GET_ITEM(pair, 1), &value, False):
            return _prepare_entries(_encoded_entries(seq), size_out, True)
        size += _entry_size(&name, &value)
    if count == 0:
        size_out[0] = 0
        return None
    size_out[0] = size
    return seq


cdef Py_ssize_t _put_entries(uint8_t* b, Py_ssize_t pos, tuple entries) except -1:
    """Write a prepared [TextEntry] vector at ``pos``; the position after it."""
    cdef Py_ssize_t count = PyTuple_GET_SIZE(entries)
    cdef Py_ssize_t i, t, cursor
    cdef object pair
    cdef _Text name, value
    cdef uint16_t offsets[2]
    offsets[0] = 4
    _put_u32(b, pos, <uint64_t>count)
    cursor = pos + 4 + 4 * count
    for i in range(count):
        pair = <object>PyTuple_GET_ITEM(entries, i)
        # Already checked by _prepare_entries; names may be bytes after _encoded_entries.
        _entry_text(<object>PyTuple_GET_ITEM(pair, 0), &name, False)
        _entry_text(<object>PyTuple_GET_ITEM(pair, 1), &value, False)
        offsets[1] = 8 if value.len >= 0 else 0
        t = _put_table(b, cursor, 2, offsets, 12)
        _link(b, pos + 4 + 4 * i, t)
        _link(b, t + 4, t + 12)
        cursor = _put_string(b, t + 12, name.ptr, name.len)
        if value.len >= 0:
            _link(b, t + 8, cursor)
            cursor = _put_string(b, cursor, value.ptr, value.len)
    return cursor


cdef bytes _new_frame(uint8_t frame_type, Py_ssize_t payload_size, uint8_t** payload):
    if payload_size > C_MAX_PAYLOAD:
        raise FrameTooLarge(f"payload of {payload_size} bytes exceeds {MAX_PAYLOAD_SIZE}")
    cdef bytes frame = PyBytes_FromStringAndSize(NULL, proto.FRAME_HEADER_SIZE + payload_size)
    cdef uint8_t* out = <uint8_t*>PyBytes_AS_STRING(frame)
    _put_frame_header(out, frame_type, <uint32_t>payload_size)
    payload[0] = out + proto.FRAME_HEADER_SIZE
    return frame


cdef inline Py_ssize_t _optional_string_size(const _Text* text) noexcept:
    return _string_size(text.len) if text.len >= 0 else 0


cdef inline Py_ssize_t _optional_bytes_size(const _Text* data) noexcept:
    return _byte_vector_size(data.len) if data.len >= 0 else 0


cdef inline Py_ssize_t _put_optional_string(uint8_t* b, Py_ssize_t slot, Py_ssize_t cursor,
                                            const _Text* text) noexcept:
    if text.len < 0:
        return cursor
    _link(b, slot, cursor)
    return _put_string(b, cursor, text.ptr, text.len)


cdef inline Py_ssize_t _put_optional_bytes(uint8_t* b, Py_ssize_t slot, Py_ssize_t cursor,
                                           const _Text* data) noexcept:
    if data.len < 0:
        return cursor
    _link(b, slot, cursor)
    return _put_byte_vector(b, cursor, data.ptr, data.len)


cdef inline Py_ssize_t _put_optional_entries(uint8_t* b, Py_ssize_t slot, Py_ssize_t cursor,
                                             tuple entries) except -1:
    if entries is None:
        return cursor
    _link(b, slot, cursor)
    return _put_entries(b, cursor, entries)


cdef inline uint16_t _present(bint present, uint16_t offset) noexcept:
    return offset if present else 0


cdef bytes _single_u32_frame(uint8_t frame_type, uint32_t value):
    """A root table whose only field is a uint32 (PrepareConf.Resp, a bare HTTPReqCall.Resp)."""
    cdef uint8_t* b
    cdef uint16_t offsets[1]
    cdef bytes frame = _new_frame(frame_type, 4 + _vtable_size(1) + 8, &b)
    offsets[0] = 4
    cdef Py_ssize_t t = _put_table(b, 4, 1, offsets, 8)
    _link(b, 0, t)
    _put_u32(b, t + 4, value)
    return frame


# --- builders (runner side: our replies) -------------------------------------------------

def build_prepare_conf_resp(conf_token):
    return _single_u32_frame(proto.RPC_PREPARE_CONF, <uint32_t>_uint(conf_token, 32, "conf_token"))


def build_http_req_call_resp(id):
    """HTTPReqCall.Resp with no action (let the request through unchanged)."""
    return _single_u32_frame(proto.RPC_HTTP_REQ_CALL, <uint32_t>_uint(id, 32, "id"))


# HTTPReqCall.Resp as the root of a Stop or Rewrite: id @4, action @8, action_type @12.
cdef Py_ssize_t ACTION_ROOT_SIZE = 4 + 12 + 16


cdef Py_ssize_t _put_action_root(uint8_t* b, uint32_t id, uint8_t action_type) noexcept:
    """Write the root offset and the HTTPReqCall.Resp table; the action table's slot."""
    cdef uint16_t offsets[3]
    offsets[0] = 4
    offsets[1] = 12
    offsets[2] = 8
    cdef Py_ssize_t t = _put_table(b, 4, 3, offsets, 16)
    _link(b, 0, t)
    _put_u32(b, t + 4, id)
    b[t + 12] = action_type
    return t + 8


def build_stop(id, status, headers, body):
    """HTTPReqCall.Resp with a Stop action."""
    cdef uint32_t c_id = <uint32_t>_uint(id, 32, "id")
    cdef uint16_t c_status = <uint16_t>_uint(status, 16, "status")
    cdef _Text body_text
    cdef Py_ssize_t headers_size
    body = _bytes_arg(body, &body_text, "body")
    cdef tuple header_entries = _prepare_entries(headers, &headers_size)
    # Stop: headers @4, body @8, status @12
    cdef Py_ssize_t size = (ACTION_ROOT_SIZE + _vtable_size(3) + 16 + headers_size
                            + _optional_bytes_size(&body_text))
    cdef uint8_t* b
    cdef bytes frame = _new_frame(proto.RPC_HTTP_REQ_CALL, size, &b)
    cdef uint16_t offsets[3]
    offsets[0] = 12
    offsets[1] = _present(header_entries is not None, 4)
    offsets[2] = _present(body_text.len >= 0, 8)
    cdef Py_ssize_t slot = _put_action_root(b, c_id, proto.ACTION_STOP)
    cdef Py_ssize_t t = _put_table(b, ACTION_ROOT_SIZE, 3, offsets, 16)
    _link(b, slot, t)
    _put_u16(b, t + 12, c_status)
    cdef Py_ssize_t cursor = _put_optional_entries(b, t + 4, t + 16, header_entries)
    _put_optional_bytes(b, t + 8, cursor, &body_text)
    return frame


def build_rewrite(id, path, headers, args, resp_headers, body):
    """HTTPReqCall.Resp with a Rewrite action."""
    cdef uint32_t c_id = <uint32_t>_uint(id, 32, "id")
    cdef _Text path_text, body_text
    cdef Py_ssize_t headers_size, args_size, resp_headers_size
    path_text.len = -1
    if path is not None:
        path = _text_arg(path, &path_text, "path")
    body = _bytes_arg(body, &body_text, "body")
    cdef tuple header_entries = _prepare_entries(headers, &headers_size)
    cdef tuple arg_entries = _prepare_entries(args, &args_size)
    cdef tuple resp_header_entries = _prepare_entries(resp_headers, &resp_headers_size)
    # Rewrite: path @4, headers @8, args @12, resp_headers @16, body @20
    cdef Py_ssize_t size = (ACTION_ROOT_SIZE + _vtable_size(5) + 24
                            + _optional_string_size(&path_text) + headers_size + args_size
                            + resp_headers_size + _optional_bytes_size(&body_text))
    cdef uint8_t* b
    cdef bytes frame = _new_frame(proto.RPC_HTTP_REQ_CALL, size, &b)
    cdef uint16_t offsets[5]
    offsets[0] = _present(path_text.len >= 0, 4)
    offsets[1] = _present(header_entries is not None, 8)
    offsets[2] = _present(arg_entries is not None, 12)
    offsets[3] = _present(resp_header_entries is not None, 16)
    offsets[4] = _present(body_text.len >= 0, 20)
    cdef Py_ssize_t slot = _put_action_root(b, c_id, proto.ACTION_REWRITE)
    cdef Py_ssize_t t = _put_table(b, ACTION_ROOT_SIZE, 5, offsets, 24)
    _link(b, slot, t)
    cdef Py_ssize_t cursor = _put_optional_string(b, t + 4, t + 24, &path_text)
    cursor = _put_optional_entries(b, t + 8, cursor, header_entries)
    cursor = _put_optional_entries(b, t + 12, cursor, arg_entries)
    cursor = _put_optional_entries(b, t + 16, cursor, resp_header_entries)
    _put_optional_bytes(b, t + 20, cursor, &body_text)
    return frame


def build_http_resp_call_resp(id, status, headers, body):
    cdef uint32_t c_id = <uint32_t>_uint(id, 32, "id")
    cdef uint16_t c_status = <uint16_t>_uint(status, 16, "status")
    cdef _Text body_text
    cdef Py_ssize_t headers_size
    body = _bytes_arg(body, &body_text, "body")
    cdef tuple header_entries = _prepare_entries(headers, &headers_size)
    # HTTPRespCall.Resp: id @4, headers @8, body @12, status @16
    cdef Py_ssize_t size = (4 + _vtable_size(4) + 20 + headers_size
                            + _optional_bytes_size(&body_text))
    cdef uint8_t* b
    cdef bytes frame = _new_frame(proto.RPC_HTTP_RESP_CALL, size, &b)
    cdef uint16_t offsets[4]
    offsets[0] = 4
    offsets[1] = 16
    offsets[2] = _present(header_entries is not None, 8)
    offsets[3] = _present(body_text.len >= 0, 12)
    cdef Py_ssize_t t = _put_table(b, 4, 4, offsets, 20)
    _link(b, 0, t)
    _put_u32(b, t + 4, c_id)
    _put_u16(b, t + 16, c_status)
    cdef Py_ssize_t cursor = _put_optional_entries(b, t + 8, t + 20, header_entries)
    _put_optional_bytes(b, t + 12, cursor, &body_text)
    return frame


def build_extra_info_req(info_type, name=None):
    """ExtraInfo.Req; ``name`` is required for INFO_VAR (ValueError otherwise) and ignored
    for the body types. ValueError for an unknown info_type."""
    if not PyLong_Check(info_type):
        raise TypeError(f"info_type must be int, not {type(info_type).__name__}")
    cdef _Text name_text
    cdef int var_fields = 0
    if info_type == proto.INFO_VAR:
        if name is None:
            raise ValueError("INFO_VAR needs a variable name")
        name = _text_arg(name, &name_text, "name")
        var_fields = 1
    elif info_type != proto.INFO_REQ_BODY and info_type != proto.INFO_RESP_BODY:
        raise ValueError(f"unknown info type {info_type}")
    # ExtraInfo.Req: info @4, info_type @8; then Var (name @4) or an empty table.
    cdef Py_ssize_t info_size = _vtable_size(var_fields) + 4 + 4 * var_fields
    if var_fields:
        info_size += _string_size(name_text.len)
    cdef uint8_t* b
    cdef bytes frame = _new_frame(proto.RPC_EXTRA_INFO, 4 + _vtable_size(2) + 12 + info_size, &b)
    cdef uint16_t offsets[2]
    offsets[0] = 8
    offsets[1] = 4
    cdef Py_ssize_t t = _put_table(b, 4, 2, offsets, 12)
    _link(b, 0, t)
    b[t + 8] = <uint8_t>info_type
    offsets[0] = 4
    cdef Py_ssize_t info = _put_table(b, t + 12, var_fields, offsets,
                                      <uint16_t>(4 + 4 * var_fields))
    _link(b, t + 4, info)
    if var_fields:
        _link(b, info + 4, info + 8)
        _put_string(b, info + 8, name_text.ptr, name_text.len)
    return frame


def build_err_resp(code):
    cdef uint8_t c_code = <uint8_t>_uint(code, 8, "code")
    cdef uint8_t* b
    cdef bytes frame = _new_frame(proto.RPC_ERROR, 4 + _vtable_size(1) + 8, &b)
    cdef uint16_t offsets[1]
    offsets[0] = 4
    cdef Py_ssize_t t = _put_table(b, 4, 1, offsets, 8)
    _link(b, 0, t)
    b[t + 4] = c_code
    return frame


# --- builders (client side: what APISIX sends; used by a6runner.testing and bench) -------

def build_prepare_conf_req(conf, key):
    cdef _Text key_text
    cdef Py_ssize_t conf_size
    key_text.len = -1
    if key is not None:
        key = _text_arg(key, &key_text, "key")
    cdef tuple conf_entries = _prepare_entries(conf, &conf_size)
    # PrepareConf.Req: conf @4, key @8
    cdef Py_ssize_t size = 4 + _vtable_size(2) + 12 + conf_size + _optional_string_size(&key_text)
    cdef uint8_t* b
    cdef bytes frame = _new_frame(proto.RPC_PREPARE_CONF, size, &b)
    cdef uint16_t offsets[2]
    offsets[0] = _present(conf_entries is not None, 4)
    offsets[1] = _present(key_text.len >= 0, 8)
    cdef Py_ssize_t t = _put_table(b, 4, 2, offsets, 12)
    _link(b, 0, t)
    cdef Py_ssize_t cursor = _put_optional_entries(b, t + 4, t + 12, conf_entries)
    _put_optional_string(b, t + 8, cursor, &key_text)
    return frame


def build_http_req_call_req(id, conf_token, method, path, args, headers, src_ip):
    cdef uint32_t c_id = <uint32_t>_uint(id, 32, "id")
    cdef uint32_t c_token = <uint32_t>_uint(conf_token, 32, "conf_token")
    cdef uint8_t c_method = <uint8_t>_uint(method, 8, "method")
    cdef _Text path_text, src_ip_text
    cdef Py_ssize_t args_size, headers_size
    path_text.len = -1
    if path is not None:
        path = _text_arg(path, &path_text, "path")
    src_ip = _bytes_arg(src_ip, &src_ip_text, "src_ip")
    cdef tuple arg_entries = _prepare_entries(args, &args_size)
    cdef tuple header_entries = _prepare_entries(headers, &headers_size)
    # HTTPReqCall.Req: id @4, src_ip @8, path @12, args @16, headers @20, conf_token @24,
    # method @28
    cdef Py_ssize_t size = (4 + _vtable_size(7) + 32 + _optional_bytes_size(&src_ip_text)
                            + _optional_string_size(&path_text) + args_size + headers_size)
    cdef uint8_t* b
    cdef bytes frame = _new_frame(proto.RPC_HTTP_REQ_CALL, size, &b)
    cdef uint16_t offsets[7]
    offsets[0] = 4
    offsets[1] = _present(src_ip_text.len >= 0, 8)
    offsets[2] = 28
    offsets[3] = _present(path_text.len >= 0, 12)
    offsets[4] = _present(arg_entries is not None, 16)
    offsets[5] = _present(header_entries is not None, 20)
    offsets[6] = 24
    cdef Py_ssize_t t = _put_table(b, 4, 7, offsets, 32)
    _link(b, 0, t)
    _put_u32(b, t + 4, c_id)
    _put_u32(b, t + 24, c_token)
    b[t + 28] = c_method
    cdef Py_ssize_t cursor = _put_optional_bytes(b, t + 8, t + 32, &src_ip_text)
    cursor = _put_optional_string(b, t + 12, cursor, &path_text)
    cursor = _put_optional_entries(b, t + 16, cursor, arg_entries)
    _put_optional_entries(b, t + 20, cursor, header_entries)
    return frame


def build_http_resp_call_req(id, conf_token, status, headers):
    cdef uint32_t c_id = <uint32_t>_uint(id, 32, "id")
    cdef uint32_t c_token = <uint32_t>_uint(conf_token, 32, "conf_token")
    cdef uint16_t c_status = <uint16_t>_uint(status, 16, "status")
    cdef Py_ssize_t headers_size
    cdef tuple header_entries = _prepare_entries(headers, &headers_size)
    # HTTPRespCall.Req: id @4, headers @8, conf_token @12, status @16
    cdef uint8_t* b
    cdef bytes frame = _new_frame(proto.RPC_HTTP_RESP_CALL, 4 + _vtable_size(4) + 20 + headers_size,
                                  &b)
    cdef uint16_t offsets[4]
    offsets[0] = 4
    offsets[1] = 16
    offsets[2] = _present(header_entries is not None, 8)
    offsets[3] = 12
    cdef Py_ssize_t t = _put_table(b, 4, 4, offsets, 20)
    _link(b, 0, t)
    _put_u32(b, t + 4, c_id)
    _put_u32(b, t + 12, c_token)
    _put_u16(b, t + 16, c_status)
    _put_optional_entries(b, t + 8, t + 20, header_entries)
    return frame


def build_extra_info_resp(result):
    cdef _Text result_text
    result = _bytes_arg(result, &result_text, "result")
    cdef uint8_t* b
    cdef bytes frame = _new_frame(proto.RPC_EXTRA_INFO,
                                  4 + _vtable_size(1) + 8 + _optional_bytes_size(&result_text),
                                  &b)
    cdef uint16_t offsets[1]
    offsets[0] = _present(result_text.len >= 0, 4)
    cdef Py_ssize_t t = _put_table(b, 4, 1, offsets, 8)
    _link(b, 0, t)
    _put_optional_bytes(b, t + 4, t + 8, &result_text)
    return frame

