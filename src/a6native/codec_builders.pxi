# Included by codec.pyx: the builders (our replies, then what APISIX sends), in the order of
# their pure twin, a6runner/_codec_builders_py.py. Each measures its frame, allocates the
# one bytes object it returns and writes the payload forward into it.

# --- builder primitives ------------------------------------------------------------------
# Layout written forward: [root offset][vtable][table][children...], every child after the
# offset that points to it (FlatBuffers offsets are unsigned), everything 4-byte aligned.

cdef struct _Text:
    const char* ptr
    Py_ssize_t len  # -1: absent


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
