"""The readers part of the pure codec twin (native: ``a6native/codec_readers.pxi``): the
runner-side decoders of what APISIX sends. Hand-written and bounds-checked: each validates
the whole reachable structure eagerly, remembers where each field lives and builds the
Python objects on first access. ``a6runner._codec_py`` re-exports them."""

from __future__ import annotations

import struct
from typing import Final

from a6native.errors import DecodeError

__all__ = [
    "HTTPReqCallReq",
    "HTTPRespCallReq",
    "PrepareConfReq",
    "decode_err_resp",
    "decode_extra_info_resp",
    "decode_http_req_call_req",
    "decode_http_resp_call_req",
    "decode_prepare_conf_req",
]

_ENCODING: Final = "utf-8"
_ERRORS: Final = "surrogateescape"


def _payload(buf: bytes) -> bytes:
    if type(buf) is bytes:
        return buf
    # memoryview() refuses ints, which bytes() would turn into zero-filled buffers.
    return memoryview(buf).tobytes()


# --- reader primitives --------------------------------------------------------------
# (native: codec_readers.pxi, after the wire primitives of flatbuffers_layout.pxd)
# Positions are absolute offsets into the payload. A field position of 0 means "absent"
# (a present field is at t + off with off >= 1, so it is never 0). A string span of
# (-1, -1) means an absent string.

_read_u32 = struct.Struct("<I").unpack_from
_read_i32 = struct.Struct("<i").unpack_from
_read_u16 = struct.Struct("<H").unpack_from
_read_vtable_head = struct.Struct("<HH").unpack_from
_read_slots = [struct.Struct(f"<{count}H").unpack_from for count in range(8)]


def _u32s(count: int) -> struct.Struct:
    """``count`` uint32 in a row: a vector's links, read or written at once."""
    layout = _U32S.get(count)
    if layout is None:
        layout = struct.Struct(f"<{count}I")
        if count <= _LINKS_PER_READ + 1:
            _U32S[count] = layout
    return layout


_LINKS_PER_READ: Final = 64  # the longest vector whose links are read at once
_U32S: dict[int, struct.Struct] = {}

_Span = tuple[int, int, int, int]

_OFFSET: Final = 4  # byte size of an offset field

_PREPARE_CONF_REQ_WIDTHS: Final = (_OFFSET, _OFFSET)  # conf, key
# id, src_ip, method, path, args, headers, conf_token
_HTTP_REQ_CALL_REQ_WIDTHS: Final = (4, _OFFSET, 1, _OFFSET, _OFFSET, _OFFSET, 4)
# id, status, headers, conf_token
_HTTP_RESP_CALL_REQ_WIDTHS: Final = (4, 2, _OFFSET, 4)
_EXTRA_INFO_RESP_WIDTHS: Final = (_OFFSET,)  # result
_ERR_RESP_WIDTHS: Final = (1,)  # code


def _root_table(buf: bytes, size: int, widths: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """Validate the root table; its position and the offset of each field in ``widths``
    (0: absent) from it."""
    if size < 4:
        raise DecodeError(f"payload of {size} bytes is too short for a FlatBuffers root")
    table: int = _read_u32(buf, 0)[0]
    if table + 4 > size:
        raise DecodeError(f"table at {table} runs past the end ({size} bytes)")
    vtable = table - _read_i32(buf, table)[0]
    if vtable < 0 or vtable + 4 > size:
        raise DecodeError(f"vtable of the table at {table} is out of bounds")
    vtable_size, table_size = _read_vtable_head(buf, vtable)
    if vtable_size & 1 or vtable_size < 4 or vtable + vtable_size > size:
        raise DecodeError(f"bad vtable size {vtable_size} at {vtable}")
    if table_size < 4 or table + table_size > size:
        raise DecodeError(f"bad table size {table_size} at {table}")
    count = len(widths)
    offsets: tuple[int, ...] = _read_slots[min(count, (vtable_size - 4) >> 1)](buf, vtable + 4)
    if len(offsets) < count:  # fields past the vtable's end are absent
        offsets += (0,) * (count - len(offsets))
    if table + max(offsets) + 4 > size:  # no field is wider than 4: only then look closer
        for field, offset in enumerate(offsets):
            if offset and table + offset + widths[field] > size:
                raise DecodeError(f"field {field} of the table at {table} is out of bounds")
    return table, offsets


def _root_fields(buf: bytes, widths: tuple[int, ...]) -> list[int]:
    """Validate the root table; the position of each field in ``widths`` (0: absent)."""
    table, offsets = _root_table(buf, len(buf), widths)
    return [table + offset if offset else 0 for offset in offsets]


def _vector(buf: bytes, size: int, field: int, elem_size: int) -> tuple[int, int]:
    """(first element position, element count) of the string or vector the offset
    field at ``field`` points to."""
    target = field + _read_u32(buf, field)[0]
    if target + 4 > size:
        raise DecodeError(f"vector at {target} runs past the end ({size} bytes)")
    count: int = _read_u32(buf, target)[0]
    start = target + 4
    if start + count * elem_size > size:
        raise DecodeError(f"vector of {count} elements at {target} runs past the end")
    return start, count


_ABSENT_SPAN: Final = (-1, -1)


def _string_span(buf: bytes, size: int, field: int) -> tuple[int, int]:
    """(start, end) of the string or byte vector the offset field at ``field`` (0: absent)
    points to; checked as _vector checks a vector."""
    if not field:
        return _ABSENT_SPAN
    target = field + _read_u32(buf, field)[0]
    if target + 4 > size:
        raise DecodeError(f"vector at {target} runs past the end ({size} bytes)")
    start = target + 4
    end = start + _read_u32(buf, target)[0]
    if end > size:
        raise DecodeError(f"vector of {end - start} elements at {target} runs past the end")
    return start, end


def _text_entry_spans(buf: bytes, size: int, field: int) -> list[_Span]:
    """Validate a [TextEntry] field; (name_start, name_end, value_start, value_end) per
    entry, an absent name as (0, 0) (reads as ""), an absent value as (-1, -1).

    The hot loop of every request. Entries laid out the way builders write them go
    through _built_entry_spans; any other vector is checked entry by entry with
    _entry_span.
    """
    if not field:
        return []
    start, count = _vector(buf, size, field, 4)
    if not count:
        return []
    if start >= 8 and count <= _LINKS_PER_READ:
        try:
            spans = _built_entry_spans(buf, size, start, count)
        except struct.error:  # a read past the end: _entry_span below says where
            spans = None
        if spans is not None:
            return spans
    read_u32 = _read_u32
    return [
        _entry_span(buf, size, element + read_u32(buf, element)[0])
        for element in range(start, start + 4 * count, 4)
    ]


# The vtable of an entry with both strings, read as one uint64: size 8, table size 12, the
# name and the value at 4 and 8 or at 8 and 4 (whichever field a builder adds first)
# -> whether the name is at 4.
_BUILT_ENTRY_VTABLES: Final = {
    8 | 12 << 16 | 4 << 32 | 8 << 48: True,
    8 | 12 << 16 | 8 << 32 | 4 << 48: False,
}
# From 8 bytes before an entry's table: those 8 bytes (its vtable when the soffset is 8),
# the soffset, the links at 4 and 8, and the length word right after the table.
_read_built_entry = struct.Struct("<QiIII").unpack_from
_read_u64 = struct.Struct("<Q").unpack_from
# The length word 4 or 8 bytes after a position: the string's that a link at entry + 4
# or entry + 8 points to, read from entry + link.
_read_u32_after_4 = struct.Struct("<4xI").unpack_from
_read_u32_after_8 = struct.Struct("<8xI").unpack_from


def _built_entry_spans(buf: bytes, size: int, start: int, count: int) -> list[_Span] | None:
    """The spans of a vector whose entries all have one of the vtables above, and one of
    whose strings starts right after each table (every builder writes a string it
    created right before or after the table); None for anything else, and struct.error
    for a read past the end, both left to _entry_span. ``start`` >= 8.

    Two reads per entry: the table with the 8 bytes before it and the length of the
    string right after it, then the other string's length. Each check _entry_span makes
    holds once these reads succeed, but the vtable and the string ends, which are
    compared here."""
    spans: list[_Span] = []
    append = spans.append
    read_entry = _read_built_entry
    read_u32_after_8 = _read_u32_after_8
    vtable = 0  # the one every entry has, as a uint64
    vtable_at = -1  # where an entry's vtable was last found to be it, when not right before
    name_at_4 = True
    element = start - 4
    for link in (_U32S.get(count) or _u32s(count)).unpack_from(buf, start):
        element += 4
        entry = element + link
        before, soffset, link_4, link_8, length_after = read_entry(buf, entry - 8)
        if soffset != 8:  # the vtable is elsewhere: shared, or not right before
            at = entry - soffset
            if at != vtable_at:
                if at < 0:
                    return None
                before = _read_u64(buf, at)[0]
                vtable_at = at
            else:
                before = vtable
        if before != vtable:
            if vtable:  # entries with different vtables
                return None
            shape = _BUILT_ENTRY_VTABLES.get(before)
            if shape is None:
                return None
            vtable = before
            name_at_4 = shape
        if link_4 == 8:  # the string at 4 starts right after the table
            start_4 = entry + 16
            end_4 = start_4 + length_after
            base_8 = entry + link_8
            start_8 = base_8 + 12
            end_8 = start_8 + read_u32_after_8(buf, base_8)[0]
        elif link_8 == 4:  # the string at 8 does
            start_8 = entry + 16
            end_8 = start_8 + length_after
            base_4 = entry + link_4
            start_4 = base_4 + 8
            end_4 = start_4 + _read_u32_after_4(buf, base_4)[0]
        else:
            return None
        if end_4 > size or end_8 > size:
            return None
        if name_at_4:
            append((start_4, end_4, start_8, end_8))
        else:
            append((start_8, end_8, start_4, end_4))
    return spans


def _entry_span(buf: bytes, size: int, entry: int) -> _Span:
    """One TextEntry checked field by field, as _table_fields and _vector check a table
    and a string (the reference for _built_entry_spans)."""
    if entry + 4 > size:
        raise DecodeError(f"table at {entry} runs past the end ({size} bytes)")
    vtable = entry - _read_i32(buf, entry)[0]
    if vtable < 0 or vtable + 4 > size:
        raise DecodeError(f"vtable of the table at {entry} is out of bounds")
    vtable_size, table_size = _read_vtable_head(buf, vtable)
    if vtable_size & 1 or vtable_size < 4 or vtable + vtable_size > size:
        raise DecodeError(f"bad vtable size {vtable_size} at {vtable}")
    if table_size < 4 or entry + table_size > size:
        raise DecodeError(f"bad table size {table_size} at {entry}")
    if vtable_size >= 8:
        name_offset, value_offset = _read_vtable_head(buf, vtable + 4)
    elif vtable_size == 6:
        name_offset, value_offset = _read_vtable_head(buf, vtable + 2)[1], 0
    else:
        name_offset = value_offset = 0
    name_start, name_end = _entry_string(buf, size, entry, name_offset, "name")
    if not value_offset:
        return name_start, name_end, -1, -1
    value_start, value_end = _entry_string(buf, size, entry, value_offset, "value")
    return name_start, name_end, value_start, value_end


def _entry_string(buf: bytes, size: int, entry: int, offset: int, what: str) -> tuple[int, int]:
    """(start, end) of an entry's string field at ``offset`` in its table; (0, 0) when
    the field is absent."""
    if not offset:
        return 0, 0
    field = entry + offset
    if field + 4 > size:
        raise DecodeError(f"{what} of the entry at {entry} is out of bounds")
    target = field + _read_u32(buf, field)[0]
    if target + 4 > size:
        raise DecodeError(f"string at {target} runs past the end ({size} bytes)")
    start = target + 4
    end = start + _read_u32(buf, target)[0]
    if end > size:
        raise DecodeError(f"string at {target} runs past the end ({size} bytes)")
    return start, end


def _text(buf: bytes, start: int, end: int) -> str:
    return buf[start:end].decode(_ENCODING, _ERRORS)


def _text_pairs(buf: bytes, spans: list[_Span]) -> list[tuple[str, str | None]]:
    return [
        (
            buf[name_start:name_end].decode(_ENCODING, _ERRORS),
            None if value_start < 0 else buf[value_start:value_end].decode(_ENCODING, _ERRORS),
        )
        for name_start, name_end, value_start, value_end in spans
    ]


def _u8(buf: bytes, position: int) -> int:
    return buf[position] if position else 0


def _u32(buf: bytes, position: int) -> int:
    return int(_read_u32(buf, position)[0]) if position else 0


# --- readers (runner side: what APISIX sends) ---------------------------------------


class PrepareConfReq:
    __slots__ = ("_buf", "_conf", "_conf_spans", "_key")

    _buf: bytes
    _conf: list[tuple[str, bytes]] | None
    _conf_spans: list[_Span]
    _key: str | None

    @property
    def key(self) -> str | None:
        return self._key

    @property
    def conf(self) -> list[tuple[str, bytes]]:
        """(plugin name, raw JSON conf value as bytes) in execution order; a missing
        value is b""."""
        conf = self._conf
        if conf is None:
            buf = self._buf
            conf = self._conf = [
                (
                    buf[name_start:name_end].decode(_ENCODING, _ERRORS),
                    buf[value_start:value_end] if value_start >= 0 else b"",
                )
                for name_start, name_end, value_start, value_end in self._conf_spans
            ]
        return conf


class HTTPReqCallReq:
    __slots__ = (
        "_args",
        "_args_spans",
        "_buf",
        "_conf_token",
        "_headers",
        "_headers_spans",
        "_id",
        "_method",
        "_path",
        "_path_end",
        "_path_start",
        "_src_ip",
        "_src_ip_end",
        "_src_ip_start",
    )

    _buf: bytes
    _id: int
    _conf_token: int
    _method: int
    _path: str | None
    _path_start: int
    _path_end: int
    _src_ip: bytes | None
    _src_ip_start: int
    _src_ip_end: int
    _args: list[tuple[str, str | None]] | None
    _args_spans: list[_Span]
    _headers: list[tuple[str, str | None]] | None
    _headers_spans: list[_Span]

    @property
    def id(self) -> int:
        return self._id

    @property
    def conf_token(self) -> int:
        return self._conf_token

    @property
    def method(self) -> int:
        """The Method enum value (GET=0 ... TRACE=14; other values are passed through)."""
        return self._method

    @property
    def path(self) -> str:
        path = self._path
        if path is None:
            path = self._path = (
                _text(self._buf, self._path_start, self._path_end) if self._path_start >= 0 else ""
            )
        return path

    @property
    def src_ip(self) -> bytes:
        """4 (IPv4) or 16 (IPv6) bytes as sent; any length is passed through."""
        src_ip = self._src_ip
        if src_ip is None:
            start = self._src_ip_start
            src_ip = self._src_ip = self._buf[start : self._src_ip_end] if start >= 0 else b""
        return src_ip

    @property
    def args(self) -> list[tuple[str, str | None]]:
        args = self._args
        if args is None:
            args = self._args = _text_pairs(self._buf, self._args_spans)
        return args

    @property
    def headers(self) -> list[tuple[str, str | None]]:
        headers = self._headers
        if headers is None:
            headers = self._headers = _text_pairs(self._buf, self._headers_spans)
        return headers


class HTTPRespCallReq:
    __slots__ = ("_buf", "_conf_token", "_headers", "_headers_spans", "_id", "_status")

    _buf: bytes
    _id: int
    _status: int
    _conf_token: int
    _headers: list[tuple[str, str | None]] | None
    _headers_spans: list[_Span]

    @property
    def id(self) -> int:
        return self._id

    @property
    def status(self) -> int:
        return self._status

    @property
    def conf_token(self) -> int:
        return self._conf_token

    @property
    def headers(self) -> list[tuple[str, str | None]]:
        headers = self._headers
        if headers is None:
            headers = self._headers = _text_pairs(self._buf, self._headers_spans)
        return headers


def decode_prepare_conf_req(buf: bytes) -> PrepareConfReq:
    buf = _payload(buf)
    size = len(buf)
    conf_field, key_field = _root_fields(buf, _PREPARE_CONF_REQ_WIDTHS)
    request = PrepareConfReq.__new__(PrepareConfReq)
    request._buf = buf
    request._conf_spans = _text_entry_spans(buf, size, conf_field)
    request._conf = None
    # One short string per PrepareConf (a rare call): decoded along with the table.
    key_start, key_end = _string_span(buf, size, key_field)
    request._key = None if key_start < 0 else _text(buf, key_start, key_end)
    return request


def decode_http_req_call_req(buf: bytes) -> HTTPReqCallReq:
    buf = _payload(buf)
    size = len(buf)
    table, (id_at, src_ip_at, method_at, path_at, args_at, headers_at, token_at) = _root_table(
        buf, size, _HTTP_REQ_CALL_REQ_WIDTHS
    )
    request = HTTPReqCallReq.__new__(HTTPReqCallReq)
    request._buf = buf
    request._id = _read_u32(buf, table + id_at)[0] if id_at else 0
    request._conf_token = _read_u32(buf, table + token_at)[0] if token_at else 0
    request._method = buf[table + method_at] if method_at else 0
    request._path_start, request._path_end = (
        _string_span(buf, size, table + path_at) if path_at else _ABSENT_SPAN
    )
    request._path = None
    request._src_ip_start, request._src_ip_end = (
        _string_span(buf, size, table + src_ip_at) if src_ip_at else _ABSENT_SPAN
    )
    request._src_ip = None
    request._args_spans = _text_entry_spans(buf, size, table + args_at) if args_at else []
    request._args = None
    request._headers_spans = _text_entry_spans(buf, size, table + headers_at) if headers_at else []
    request._headers = None
    return request


def decode_http_resp_call_req(buf: bytes) -> HTTPRespCallReq:
    buf = _payload(buf)
    size = len(buf)
    table, (id_at, status_at, headers_at, token_at) = _root_table(
        buf, size, _HTTP_RESP_CALL_REQ_WIDTHS
    )
    request = HTTPRespCallReq.__new__(HTTPRespCallReq)
    request._buf = buf
    request._id = _read_u32(buf, table + id_at)[0] if id_at else 0
    request._status = _read_u16(buf, table + status_at)[0] if status_at else 0
    request._conf_token = _read_u32(buf, table + token_at)[0] if token_at else 0
    request._headers_spans = _text_entry_spans(buf, size, table + headers_at) if headers_at else []
    request._headers = None
    return request


def decode_extra_info_resp(buf: bytes) -> bytes | None:
    """The ``result`` vector, or None when absent (nil value)."""
    buf = _payload(buf)
    (result_field,) = _root_fields(buf, _EXTRA_INFO_RESP_WIDTHS)
    if not result_field:
        return None
    start, length = _vector(buf, len(buf), result_field, 1)
    return buf[start : start + length]


def decode_err_resp(buf: bytes) -> int:
    """The error code."""
    buf = _payload(buf)
    (code_field,) = _root_fields(buf, _ERR_RESP_WIDTHS)
    return _u8(buf, code_field)
