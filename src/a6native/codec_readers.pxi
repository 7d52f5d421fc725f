# Included by codec.pyx: the readers (runner side: what APISIX sends), in the order of their
# pure twin, a6runner/_codec_readers_py.py. Validate the whole reachable structure in C,
# remember where each field lives, create Python objects on first access.

# --- reader primitives -------------------------------------------------------------------
# All positions are int64 offsets into the payload; a validated buffer can then be walked
# again without checks. A field position of -1 means "absent".

cdef const char* SURROGATEESCAPE = "surrogateescape"

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


cdef inline int64_t _check_field(const uint8_t* p, int64_t size, const _Table* t, int field,
                                 int width) except -2:
    cdef int64_t pos = _field_unchecked(p, t, field)
    if pos >= 0 and pos + width > size:
        _bad_field(t.pos, field)
    return pos


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


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
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
    uint32_t a6_name_hash(const uint8_t* s, Py_ssize_t n) noexcept nogil


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
