"""Pure-Python twin of ``a6native.codec``: frames and the FlatBuffers tables of the protocol.

Function for function a mirror of src/a6native/codec.pyi, which states the rules both
implementations follow. Readers are hand-written and bounds-checked: they validate the
whole reachable structure eagerly, remember where each field lives, and build the Python
objects on first access. Builders write the very layout of the compiled twin's, byte for
byte, packed with ``struct``; the ``flatbuffers`` runtime and the generated code in
``a6runner._fbs`` are only the tests' independent reference.

The sections come in the order of the compiled twin's parts, so the two read side by
side: shared pieces (codec.pyx), frames (codec_frames.pxi), readers (codec_readers.pxi),
builders (codec_builders.pxi).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from a6native.errors import DecodeError, FrameTooLarge
from a6native.protocol import (
    ACTION_NONE,
    ACTION_REWRITE,
    ACTION_STOP,
    ERR_BAD_REQUEST,
    ERR_CONF_TOKEN_NOT_FOUND,
    ERR_SERVICE_UNAVAILABLE,
    FRAME_HEADER_SIZE,
    INFO_REQ_BODY,
    INFO_RESP_BODY,
    INFO_VAR,
    MAX_PAYLOAD_SIZE,
    RPC_ERROR,
    RPC_EXTRA_INFO,
    RPC_HTTP_REQ_CALL,
    RPC_HTTP_RESP_CALL,
    RPC_PREPARE_CONF,
)

TextEntries = Sequence[tuple[str, str | bytes | None]]

__all__ = [
    "ACTION_NONE",
    "ACTION_REWRITE",
    "ACTION_STOP",
    "ERR_BAD_REQUEST",
    "ERR_CONF_TOKEN_NOT_FOUND",
    "ERR_SERVICE_UNAVAILABLE",
    "FRAME_HEADER_SIZE",
    "INFO_REQ_BODY",
    "INFO_RESP_BODY",
    "INFO_VAR",
    "MAX_PAYLOAD_SIZE",
    "RPC_ERROR",
    "RPC_EXTRA_INFO",
    "RPC_HTTP_REQ_CALL",
    "RPC_HTTP_RESP_CALL",
    "RPC_PREPARE_CONF",
    "FrameSplitter",
    "HTTPReqCallReq",
    "HTTPRespCallReq",
    "PrepareConfReq",
    "TextEntries",
    "build_err_resp",
    "build_extra_info_req",
    "build_extra_info_resp",
    "build_http_req_call_req",
    "build_http_req_call_resp",
    "build_http_resp_call_req",
    "build_http_resp_call_resp",
    "build_prepare_conf_req",
    "build_prepare_conf_resp",
    "build_rewrite",
    "build_stop",
    "decode_err_resp",
    "decode_extra_info_resp",
    "decode_frame_header",
    "decode_http_req_call_req",
    "decode_http_resp_call_req",
    "decode_prepare_conf_req",
    "encode_frame",
    "encode_frame_header",
]

_ENCODING: Final = "utf-8"
_ERRORS: Final = "surrogateescape"


def _payload(buf: bytes) -> bytes:
    if type(buf) is bytes:
        return buf
    # memoryview() refuses ints, which bytes() would turn into zero-filled buffers.
    return memoryview(buf).tobytes()


# --- frames -------------------------------------------------------------------------
# (native: codec_frames.pxi)

_frame_header = struct.Struct(">I")
_read_frame_header = _frame_header.unpack_from


def encode_frame_header(frame_type: int, length: int) -> bytes:
    """4 header bytes. FrameTooLarge if length > MAX_PAYLOAD_SIZE; ValueError if
    frame_type is not in 0..255 or length < 0."""
    if not 0 <= frame_type <= 0xFF:
        raise ValueError(f"frame type {frame_type} is not in 0..255")
    if length < 0:
        raise ValueError(f"negative payload length {length}")
    if length > MAX_PAYLOAD_SIZE:
        raise FrameTooLarge(f"payload of {length} bytes exceeds {MAX_PAYLOAD_SIZE}")
    return _frame_header.pack(frame_type << 24 | length)


def decode_frame_header(header: bytes) -> tuple[int, int]:
    """(frame_type, payload_length) from the first 4 bytes; DecodeError if fewer."""
    if len(header) < FRAME_HEADER_SIZE:
        raise DecodeError(f"frame header needs 4 bytes, got {len(header)}")
    word: int = _read_frame_header(header)[0]
    return word >> 24, word & 0xFFFFFF


def encode_frame(frame_type: int, payload: bytes) -> bytes:
    """header + payload in one bytes object. FrameTooLarge if the payload is too long."""
    return encode_frame_header(frame_type, len(payload)) + payload


class FrameSplitter:
    """Turns a byte stream cut at arbitrary points into whole frames.

    Memory is linear in the bytes buffered; a 16 MiB frame arriving in 64 KiB chunks costs
    O(total) copying, not O(n^2). Zero-length payloads yield ``(type, b"")``.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add bytes; return every frame completed by them, in order."""
        frames: list[tuple[int, bytes]] = []
        buffer = self._buffer
        if not buffer:
            # Nothing held back: cut whole frames straight out of the caller's bytes.
            end = len(data)
            if end >= FRAME_HEADER_SIZE:
                word = _read_frame_header(data, 0)[0]
                if FRAME_HEADER_SIZE + (word & 0xFFFFFF) == end:  # one frame, the usual read
                    return [(word >> 24, bytes(data[FRAME_HEADER_SIZE:]))]
            pos = 0
            while end - pos >= FRAME_HEADER_SIZE:
                word = _read_frame_header(data, pos)[0]
                stop = pos + FRAME_HEADER_SIZE + (word & 0xFFFFFF)
                if stop > end:
                    break
                frames.append((word >> 24, bytes(data[pos + FRAME_HEADER_SIZE : stop])))
                pos = stop
            if pos < end:
                buffer += data[pos:]
            return frames
        buffer += data
        end = len(buffer)
        pos = 0
        with memoryview(buffer) as view:
            while end - pos >= FRAME_HEADER_SIZE:
                word = _read_frame_header(view, pos)[0]
                stop = pos + FRAME_HEADER_SIZE + (word & 0xFFFFFF)
                if stop > end:
                    break
                frames.append((word >> 24, view[pos + FRAME_HEADER_SIZE : stop].tobytes()))
                pos = stop
        if pos:
            del buffer[:pos]  # CPython drops a bytearray prefix without moving the rest
        return frames

    @property
    def pending(self) -> int:
        """Bytes buffered towards the next, incomplete frame (header bytes included)."""
        return len(self._buffer)

    @property
    def expected(self) -> int:
        """Bytes the incomplete frame will hold when complete (header included) once its
        header has arrived; the header bytes gathered so far before that; 0 between
        frames."""
        buffer = self._buffer
        if len(buffer) < FRAME_HEADER_SIZE:
            return len(buffer)
        word: int = _read_frame_header(buffer, 0)[0]
        return FRAME_HEADER_SIZE + (word & 0xFFFFFF)


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


# --- builder primitives -------------------------------------------------------------
# (native: codec_builders.pxi, sizes as in flatbuffers_layout.pxd)
# The compiled twin's layout, byte for byte: [root offset][vtable][table][children...],
# written forward (each child after the offset that points to it), every piece 4-byte
# aligned, padding zeroed. FlatBuffers offsets are relative, so each child (a string, a
# byte vector, a [TextEntry] vector) is encoded on its own, the root and tables in front
# of them are one struct pack, and the frame is one join of the pieces.

# Zero bytes after n bytes of data, by n & 3: a string's NUL and padding, a vector's padding.
_STRING_PAD: Final = (b"\0\0\0\0", b"\0\0\0", b"\0\0", b"\0")
_VECTOR_PAD: Final = (b"", b"\0\0\0", b"\0\0", b"\0")

_pack_u32 = struct.Struct("<I").pack
_U16_MAX: Final = 0xFFFF
_PLAIN_SEQUENCES: Final = (list, tuple)
_U32_MAX: Final = 0xFFFFFFFF
# One TextEntry in front of its name's bytes: vtable (size 8, table size 12, name @4,
# value @8 or 0), table (soffset 8 back to the vtable, name +8, value link or 0), the
# name's length word.
_pack_entry = struct.Struct("<HHHHiIII").pack


def _string_size(n: int) -> int:
    return 4 + ((n + 4) & ~3)  # length word, bytes, NUL, padding


def _uint(value: int, bits: int, what: str) -> int:
    # Only int (and so bool): no float truncation, no __index__ objects.
    if not isinstance(value, int):
        raise TypeError(f"{what} must be int, not {type(value).__name__}")
    if value < 0 or value >> bits:
        raise OverflowError(f"{what} {value} does not fit in uint{bits}")
    return int(value)


def _encode_name(name: object, what: str) -> bytes:
    if isinstance(name, str):
        return name.encode(_ENCODING, _ERRORS)
    raise TypeError(f"{what} must be str, not {type(name).__name__}")


def _encode_value(value: object, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode(_ENCODING, _ERRORS)
    if isinstance(value, bytes):
        return value
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


def _body_bytes(body: object, what: str) -> bytes:
    """The body to write, b"" to leave the field absent."""
    if type(body) is bytes and len(body) <= MAX_PAYLOAD_SIZE:
        return body
    if body is None:
        return b""
    if not isinstance(body, bytes):
        raise TypeError(f"{what} must be bytes or None, not {type(body).__name__}")
    if len(body) > MAX_PAYLOAD_SIZE:
        raise FrameTooLarge(f"{what} of {len(body)} bytes cannot fit in a frame")
    return body


# An entry's bytes up to its value's length word, by name: the vtable and table, then the
# name's string. Header names come from a small vocabulary: like the compiled twin's
# name cache, at most _ENTRY_HEADS_MAX names of at most _ENTRY_HEAD_NAME_MAX bytes.
_ENTRY_HEADS: dict[str, bytes] = {}
_ENTRY_HEADS_MAX: Final = 512
_ENTRY_HEAD_NAME_MAX: Final = 64


def _entry_head(name: object, what: str, with_value: bool) -> bytes:
    """An entry's vtable, table and name string (see _pack_entry)."""
    name_bytes = name.encode(_ENCODING, _ERRORS) if type(name) is str else _encode_name(name, what)
    n = len(name_bytes)
    if not with_value:
        return _pack_entry(8, 12, 4, 0, 8, 8, 0, n) + name_bytes + _STRING_PAD[n & 3]
    head = _pack_entry(8, 12, 4, 8, 8, 8, _string_size(n) + 4, n) + name_bytes + _STRING_PAD[n & 3]
    if type(name) is str and n <= _ENTRY_HEAD_NAME_MAX and len(_ENTRY_HEADS) < _ENTRY_HEADS_MAX:
        _ENTRY_HEADS[name] = head
    return head


def _put_entries(parts: list[bytes], entries: TextEntries, what: str) -> int:
    """Append a [TextEntry] vector to ``parts``; its size, 0 when there are no entries
    (the field stays absent)."""
    if not len(entries):  # len() so that None is a TypeError, as for any non-sequence
        return 0
    # A snapshot: the entries are counted before they are written.
    entries = tuple(entries)
    count = len(entries)
    if not count:
        return 0
    # Slot i holds the offset from itself to entry i's table: past the remaining slots,
    # the entries before i and entry i's vtable.
    links = [count]
    first = len(parts)
    parts.append(b"")  # the length word and the slots, once the links are known
    size = 0  # the entries written so far
    slot_to_entries = 4 * count + 8
    heads = _ENTRY_HEADS
    for name, value in entries:
        links.append(slot_to_entries + size)
        slot_to_entries -= 4
        if value is None:
            head = _entry_head(name, f"{what} name", False)
            parts.append(head)
            size += len(head)
            continue
        head = heads.get(name) if type(name) is str else None  # type: ignore[assignment]
        if head is None:
            head = _entry_head(name, f"{what} name", True)
        # The common type inline; the helper raises the TypeError for the others.
        if type(value) is str:
            value = value.encode(_ENCODING, _ERRORS)
        elif type(value) is not bytes:
            value = _encode_value(value, f"{what} value")
        m = len(value)
        parts += (head, _pack_u32(m), value, _STRING_PAD[m & 3])
        size += len(head) + 8 + (m & ~3)  # the value: length word, bytes, NUL, padding
    parts[first] = _u32s(count + 1).pack(*links)
    return 4 + 4 * count + size


def _put_string(parts: list[bytes], data: bytes) -> int:
    """Append a string (length word, bytes, NUL, padding); its size."""
    n = len(data)
    parts += (_pack_u32(n), data, _STRING_PAD[n & 3])
    return 4 + ((n + 4) & ~3)


def _put_byte_vector(parts: list[bytes], data: bytes) -> int:
    """Append a [ubyte] vector, nothing when ``data`` is empty (absent); its size."""
    n = len(data)
    if not n:
        return 0
    parts += (_pack_u32(n), data, _VECTOR_PAD[n & 3])
    return 4 + ((n + 3) & ~3)


def _finish_frame(parts: list[bytes], frame_type: int, payload_size: int) -> bytes:
    """The frame: its header in ``parts[0]``, then the payload pieces, in one join."""
    if payload_size > MAX_PAYLOAD_SIZE:
        raise FrameTooLarge(f"payload of {payload_size} bytes exceeds {MAX_PAYLOAD_SIZE}")
    parts[0] = _frame_header.pack(frame_type << 24 | payload_size)
    return b"".join(parts)


# Root offset, vtable and table of a root table whose only field is a uint32
# (PrepareConf.Resp, a bare HTTPReqCall.Resp): root 12; vtable (6, 8, field @4); table.
_pack_single_u32 = struct.Struct("<IHHH2xiI").pack
_SINGLE_U32_SIZE: Final = 20


def _single_u32_frame(frame_type: int, value: int) -> bytes:
    return _frame_header.pack(frame_type << 24 | _SINGLE_U32_SIZE) + _pack_single_u32(
        12, 6, 8, 4, 8, value
    )


# --- builders (runner side: our replies) ---------------------------------------------


def build_prepare_conf_resp(conf_token: int) -> bytes:
    return _single_u32_frame(RPC_PREPARE_CONF, _uint(conf_token, 32, "conf_token"))


def build_http_req_call_resp(id: int) -> bytes:
    """HTTPReqCall.Resp with no action (let the request through unchanged)."""
    if type(id) is not int or not 0 <= id <= _U32_MAX:
        id = _uint(id, 32, "id")
    return _single_u32_frame(RPC_HTTP_REQ_CALL, id)


# HTTPReqCall.Resp as the root of a Stop or Rewrite (32 bytes): root 16; vtable (10, 16,
# id @4, action_type @12, action @8); table (soffset 12, id, action link, action_type).
_ACTION_ROOT: Final = "<IHHHHH2xiIIB3x"
_ACTION_ROOT_SIZE: Final = 32
# Then the Stop (28 bytes): vtable (10, 16, status @12, headers @4, body @8); table
# (soffset 12, headers link @48, body link @52, status); children from 60.
_pack_stop = struct.Struct(_ACTION_ROOT + "HHHHH2xiIIH2x").pack
_STOP_SIZE: Final = _ACTION_ROOT_SIZE + 28


def build_stop(id: int, status: int, headers: TextEntries, body: bytes | None) -> bytes:
    """HTTPReqCall.Resp with a Stop action."""
    if type(id) is not int or not 0 <= id <= _U32_MAX:
        id = _uint(id, 32, "id")
    if type(status) is not int or not 0 <= status <= _U16_MAX:
        status = _uint(status, 16, "status")
    body_bytes = _body_bytes(body, "body")
    parts: list[bytes] = [b"", b""]
    headers_size = _put_entries(parts, headers, "header")
    body_size = _put_byte_vector(parts, body_bytes) if body_bytes else 0
    parts[1] = _pack_stop(
        16, 10, 16, 4, 12, 8, 12, id, 20, ACTION_STOP,
        10, 16, 12, 4 if headers_size else 0, 8 if body_size else 0,
        12, 12 if headers_size else 0, 8 + headers_size if body_size else 0, status,
    )  # fmt: skip
    return _finish_frame(parts, RPC_HTTP_REQ_CALL, _STOP_SIZE + headers_size + body_size)


# Then the Rewrite (40 bytes): vtable (14, 24, path @4, headers @8, args @12,
# resp_headers @16, body @20); table (soffset 16, five links @52..@68); children from 72.
_pack_rewrite = struct.Struct(_ACTION_ROOT + "HHHHHHH2xiIIIII").pack
_REWRITE_SIZE: Final = _ACTION_ROOT_SIZE + 40


def build_rewrite(
    id: int,
    path: str | None,
    headers: TextEntries,
    args: TextEntries,
    resp_headers: TextEntries,
    body: bytes | None,
) -> bytes:
    """HTTPReqCall.Resp with a Rewrite action."""
    if type(id) is not int or not 0 <= id <= _U32_MAX:
        id = _uint(id, 32, "id")
    path_bytes = None if path is None else _encode_name(path, "path")
    body_bytes = _body_bytes(body, "body")
    parts: list[bytes] = [b"", b""]
    path_size = 0 if path_bytes is None else _put_string(parts, path_bytes)
    # A Rewrite changes one or two of these: an empty list or tuple costs no call.
    headers_size = (
        0 if not headers and type(headers) in _PLAIN_SEQUENCES
        else _put_entries(parts, headers, "header")
    )  # fmt: skip
    args_size = (
        0 if not args and type(args) in _PLAIN_SEQUENCES
        else _put_entries(parts, args, "arg")
    )  # fmt: skip
    resp_headers_size = (
        0 if not resp_headers and type(resp_headers) in _PLAIN_SEQUENCES
        else _put_entries(parts, resp_headers, "response header")
    )  # fmt: skip
    body_size = _put_byte_vector(parts, body_bytes) if body_bytes else 0
    # Each link: from its slot (52 + 4 * field) to where its child starts (72 + before).
    headers_at = 20 + path_size
    args_at = headers_at + headers_size
    resp_headers_at = args_at + args_size
    body_at = resp_headers_at + resp_headers_size
    parts[1] = _pack_rewrite(
        16, 10, 16, 4, 12, 8, 12, id, 24, ACTION_REWRITE,
        14, 24, 4 if path_size else 0, 8 if headers_size else 0, 12 if args_size else 0,
        16 if resp_headers_size else 0, 20 if body_size else 0,
        16, 20 if path_size else 0, headers_at - 4 if headers_size else 0,
        args_at - 8 if args_size else 0, resp_headers_at - 12 if resp_headers_size else 0,
        body_at - 16 if body_size else 0,
    )  # fmt: skip
    return _finish_frame(parts, RPC_HTTP_REQ_CALL, _REWRITE_SIZE + body_at - 20 + body_size)


# HTTPRespCall.Resp (36 bytes): root 16; vtable (12, 20, id @4, status @16, headers @8,
# body @12); table (soffset 12, id, headers link @24, body link @28, status); children.
_pack_http_resp_call_resp = struct.Struct("<IHHHHHHiIIIH2x").pack
_HTTP_RESP_CALL_RESP_SIZE: Final = 36


def build_http_resp_call_resp(
    id: int, status: int, headers: TextEntries, body: bytes | None
) -> bytes:
    if type(id) is not int or not 0 <= id <= _U32_MAX:
        id = _uint(id, 32, "id")
    if type(status) is not int or not 0 <= status <= _U16_MAX:
        status = _uint(status, 16, "status")
    body_bytes = _body_bytes(body, "body")
    parts: list[bytes] = [b"", b""]
    headers_size = _put_entries(parts, headers, "header")
    body_size = _put_byte_vector(parts, body_bytes) if body_bytes else 0
    parts[1] = _pack_http_resp_call_resp(
        16, 12, 20, 4, 16, 8 if headers_size else 0, 12 if body_size else 0,
        12, id, 12 if headers_size else 0, 8 + headers_size if body_size else 0, status,
    )  # fmt: skip
    return _finish_frame(
        parts, RPC_HTTP_RESP_CALL, _HTTP_RESP_CALL_RESP_SIZE + headers_size + body_size
    )


# ExtraInfo.Req (24 bytes): root 12; vtable (8, 12, info_type @8, info @4); table
# (soffset 8, info link @16, info_type). Then the info table: a Var (vtable (6, 8,
# name @4); table (soffset 8, name link 4)) and the name's string, or an empty table
# (vtable (4, 4); table (soffset 4)).
_pack_var_info_req = struct.Struct("<IHHHHiIB3xHHH2xiII").pack
_VAR_INFO_REQ_SIZE: Final = 40
_pack_body_info_req = struct.Struct("<IHHHHiIB3xHHi").pack
_BODY_INFO_REQ_SIZE: Final = 32


def build_extra_info_req(info_type: int, name: str | None = None) -> bytes:
    """ExtraInfo.Req; ``name`` is required for INFO_VAR (ValueError otherwise) and ignored
    for the body types. ValueError for an unknown info_type."""
    if not isinstance(info_type, int):
        raise TypeError(f"info_type must be int, not {type(info_type).__name__}")
    if info_type == INFO_VAR:
        if name is None:
            raise ValueError("INFO_VAR needs a variable name")
        name_bytes = _encode_name(name, "name")
        n = len(name_bytes)
        return b"".join(
            (
                _frame_header.pack(RPC_EXTRA_INFO << 24 | (_VAR_INFO_REQ_SIZE + _string_size(n))),
                _pack_var_info_req(12, 8, 12, 8, 4, 8, 16, INFO_VAR, 6, 8, 4, 8, 4, n),
                name_bytes,
                _STRING_PAD[n & 3],
            )
        )
    if info_type != INFO_REQ_BODY and info_type != INFO_RESP_BODY:
        raise ValueError(f"unknown info type {info_type}")
    return _frame_header.pack(RPC_EXTRA_INFO << 24 | _BODY_INFO_REQ_SIZE) + _pack_body_info_req(
        12, 8, 12, 8, 4, 8, 12, info_type, 4, 4, 4
    )


# Err.Resp (20 bytes): root 12; vtable (6, 8, code @4); table (soffset 8, code).
_pack_err_resp = struct.Struct("<IHHH2xiB3x").pack
_ERR_RESP_SIZE: Final = 20


def build_err_resp(code: int) -> bytes:
    code = _uint(code, 8, "code")
    return _frame_header.pack(RPC_ERROR << 24 | _ERR_RESP_SIZE) + _pack_err_resp(
        12, 6, 8, 4, 8, code
    )


# --- builders (client side: what APISIX sends; used by a6runner.testing and bench) ----

# PrepareConf.Req (24 bytes): root 12; vtable (8, 12, conf @4, key @8); table (soffset 8,
# conf link @16, key link @20); children from 24.
_pack_prepare_conf_req = struct.Struct("<IHHHHiII").pack
_PREPARE_CONF_REQ_SIZE: Final = 24


def build_prepare_conf_req(conf: Sequence[tuple[str, str | bytes]], key: str | None) -> bytes:
    key_bytes = None if key is None else _encode_name(key, "key")
    parts: list[bytes] = [b"", b""]
    conf_size = _put_entries(parts, conf, "conf")
    key_size = 0 if key_bytes is None else _put_string(parts, key_bytes)
    parts[1] = _pack_prepare_conf_req(
        12, 8, 12, 4 if conf_size else 0, 8 if key_size else 0,
        8, 8 if conf_size else 0, 4 + conf_size if key_size else 0,
    )  # fmt: skip
    return _finish_frame(parts, RPC_PREPARE_CONF, _PREPARE_CONF_REQ_SIZE + conf_size + key_size)


# HTTPReqCall.Req (56 bytes): root 24; vtable (18, 32, id @4, src_ip @8, method @28,
# path @12, args @16, headers @20, conf_token @24); table (soffset 20, id, four links
# @32..@44, conf_token, method); children from 56.
_pack_http_req_call_req = struct.Struct("<IHHHHHHHHH2xiIIIIIIB3x").pack
_HTTP_REQ_CALL_REQ_SIZE: Final = 56


def build_http_req_call_req(
    id: int,
    conf_token: int,
    method: int,
    path: str | None,
    args: TextEntries,
    headers: TextEntries,
    src_ip: bytes | None,
) -> bytes:
    id = _uint(id, 32, "id")
    conf_token = _uint(conf_token, 32, "conf_token")
    method = _uint(method, 8, "method")
    path_bytes = None if path is None else _encode_name(path, "path")
    src_ip_bytes = _body_bytes(src_ip, "src_ip")
    parts: list[bytes] = [b"", b""]
    src_ip_size = _put_byte_vector(parts, src_ip_bytes)
    path_size = 0 if path_bytes is None else _put_string(parts, path_bytes)
    args_size = _put_entries(parts, args, "arg")
    headers_size = _put_entries(parts, headers, "header")
    # Each link: from its slot (32 + 4 * k) to where its child starts (56 + before).
    path_at = 24 + src_ip_size
    args_at = path_at + path_size
    headers_at = args_at + args_size
    parts[1] = _pack_http_req_call_req(
        24, 18, 32, 4, 8 if src_ip_size else 0, 28, 12 if path_size else 0, 16 if args_size else 0,
        20 if headers_size else 0, 24,
        20, id, 24 if src_ip_size else 0, path_at - 4 if path_size else 0,
        args_at - 8 if args_size else 0, headers_at - 12 if headers_size else 0, conf_token, method,
    )  # fmt: skip
    return _finish_frame(
        parts, RPC_HTTP_REQ_CALL, _HTTP_REQ_CALL_REQ_SIZE + headers_at - 24 + headers_size
    )


# HTTPRespCall.Req (36 bytes): root 16; vtable (12, 20, id @4, status @16, headers @8,
# conf_token @12); table (soffset 12, id, headers link @24, conf_token, status).
_pack_http_resp_call_req = struct.Struct("<IHHHHHHiIIIH2x").pack
_HTTP_RESP_CALL_REQ_SIZE: Final = 36


def build_http_resp_call_req(id: int, conf_token: int, status: int, headers: TextEntries) -> bytes:
    id = _uint(id, 32, "id")
    conf_token = _uint(conf_token, 32, "conf_token")
    status = _uint(status, 16, "status")
    parts: list[bytes] = [b"", b""]
    headers_size = _put_entries(parts, headers, "header")
    parts[1] = _pack_http_resp_call_req(
        16, 12, 20, 4, 16, 8 if headers_size else 0, 12,
        12, id, 12 if headers_size else 0, conf_token, status,
    )  # fmt: skip
    return _finish_frame(parts, RPC_HTTP_RESP_CALL, _HTTP_RESP_CALL_REQ_SIZE + headers_size)


# ExtraInfo.Resp (20 bytes): root 12; vtable (6, 8, result @4); table (soffset 8, result
# link @16); the byte vector from 20.
_pack_extra_info_resp = struct.Struct("<IHHH2xiI").pack
_EXTRA_INFO_RESP_SIZE: Final = 20


def build_extra_info_resp(result: bytes | None) -> bytes:
    result_bytes = _body_bytes(result, "result")
    parts: list[bytes] = [b"", b""]
    result_size = _put_byte_vector(parts, result_bytes)
    parts[1] = _pack_extra_info_resp(12, 6, 8, 4 if result_size else 0, 8, 4 if result_size else 0)
    return _finish_frame(parts, RPC_EXTRA_INFO, _EXTRA_INFO_RESP_SIZE + result_size)
