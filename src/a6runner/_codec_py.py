"""Pure-Python twin of ``a6native.codec``: frames and the FlatBuffers tables of the protocol.

Function for function a mirror of src/a6native/codec.pyi, which states the rules both
implementations follow. Readers are hand-written and bounds-checked: they validate the
whole reachable structure eagerly, remember where each field lives, and build the Python
objects on first access. Builders use the ``flatbuffers`` runtime and the generated helpers.

The sections come in the order of the compiled twin's parts, so the two read side by
side: shared pieces (codec.pyx), frames (codec_frames.pxi), readers (codec_readers.pxi),
builders (codec_builders.pxi).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

import flatbuffers

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
from a6runner._fbs import (
    ErrResp,
    ExtraInfoReq,
    ExtraInfoResp,
    HTTPReqCallResp,
    HTTPRespCallResp,
    PrepareConfResp,
    ReqBody,
    RespBody,
    Rewrite,
    Stop,
    TextEntry,
    Var,
)
from a6runner._fbs import HTTPReqCallReq as _HTTPReqCallReqTable
from a6runner._fbs import HTTPRespCallReq as _HTTPRespCallReqTable
from a6runner._fbs import PrepareConfReq as _PrepareConfReqTable

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


# --- reader primitives --------------------------------------------------------------
# (native: codec_readers.pxi, after the wire primitives of flatbuffers_layout.pxd)
# Positions are absolute offsets into the payload. A field position of 0 means "absent"
# (a present field is at t + off with off >= 1, so it is never 0). A string span of
# (-1, -1) means an absent string.

_read_u32 = struct.Struct("<I").unpack_from
_read_i32 = struct.Struct("<i").unpack_from
_read_vtable_head = struct.Struct("<HH").unpack_from
_read_slots = [struct.Struct(f"<{count}H").unpack_from for count in range(8)]

_Span = tuple[int, int, int, int]

_OFFSET: Final = 4  # byte size of an offset field

_PREPARE_CONF_REQ_WIDTHS: Final = (_OFFSET, _OFFSET)  # conf, key
# id, src_ip, method, path, args, headers, conf_token
_HTTP_REQ_CALL_REQ_WIDTHS: Final = (4, _OFFSET, 1, _OFFSET, _OFFSET, _OFFSET, 4)
# id, status, headers, conf_token
_HTTP_RESP_CALL_REQ_WIDTHS: Final = (4, 2, _OFFSET, 4)
_EXTRA_INFO_RESP_WIDTHS: Final = (_OFFSET,)  # result
_ERR_RESP_WIDTHS: Final = (1,)  # code


def _table_fields(buf: bytes, size: int, table: int, widths: tuple[int, ...]) -> list[int]:
    """Validate the table at ``table``; the position of each field in ``widths`` (0: absent)."""
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
    positions = [0] * len(widths)
    offsets = _read_slots[min(len(widths), (vtable_size - 4) >> 1)](buf, vtable + 4)
    for field, offset in enumerate(offsets):
        if offset:
            position = table + offset
            if position + widths[field] > size:
                raise DecodeError(f"field {field} of the table at {table} is out of bounds")
            positions[field] = position
    return positions


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


def _string_span(buf: bytes, size: int, field: int) -> tuple[int, int]:
    if not field:
        return -1, -1
    start, length = _vector(buf, size, field, 1)
    return start, start + length


def _text_entry_spans(buf: bytes, size: int, field: int) -> list[_Span]:
    """Validate a [TextEntry] field; (name_start, name_end, value_start, value_end) per
    entry, an absent name as (0, 0) (reads as ""), an absent value as (-1, -1).

    The hot loop of every request: _table_fields and _vector are inlined (same checks,
    same order) to spend one Python frame per vector instead of four per entry.
    """
    spans: list[_Span] = []
    if not field:
        return spans
    start, count = _vector(buf, size, field, 4)
    read_u32 = _read_u32
    read_pair = _read_vtable_head  # two u16: (vtsize, tsize) or (name slot, value slot)
    for element in range(start, start + 4 * count, 4):
        entry = element + read_u32(buf, element)[0]
        if entry + 4 > size:
            raise DecodeError(f"table at {entry} runs past the end ({size} bytes)")
        vtable = entry - _read_i32(buf, entry)[0]
        if vtable < 0 or vtable + 4 > size:
            raise DecodeError(f"vtable of the table at {entry} is out of bounds")
        vtable_size, table_size = read_pair(buf, vtable)
        if vtable_size & 1 or vtable_size < 4 or vtable + vtable_size > size:
            raise DecodeError(f"bad vtable size {vtable_size} at {vtable}")
        if table_size < 4 or entry + table_size > size:
            raise DecodeError(f"bad table size {table_size} at {entry}")
        if vtable_size >= 8:
            name_offset, value_offset = read_pair(buf, vtable + 4)
        elif vtable_size == 6:
            name_offset, value_offset = read_pair(buf, vtable + 2)[1], 0
        else:
            name_offset = value_offset = 0
        if name_offset:
            name_field = entry + name_offset
            if name_field + 4 > size:
                raise DecodeError(f"name of the entry at {entry} is out of bounds")
            target = name_field + read_u32(buf, name_field)[0]
            if target + 4 > size:
                raise DecodeError(f"string at {target} runs past the end ({size} bytes)")
            name_start = target + 4
            name_end = name_start + read_u32(buf, target)[0]
            if name_end > size:
                raise DecodeError(f"string at {target} runs past the end ({size} bytes)")
        else:
            name_start = name_end = 0
        if value_offset:
            value_field = entry + value_offset
            if value_field + 4 > size:
                raise DecodeError(f"value of the entry at {entry} is out of bounds")
            target = value_field + read_u32(buf, value_field)[0]
            if target + 4 > size:
                raise DecodeError(f"string at {target} runs past the end ({size} bytes)")
            value_start = target + 4
            value_end = value_start + read_u32(buf, target)[0]
            if value_end > size:
                raise DecodeError(f"string at {target} runs past the end ({size} bytes)")
            spans.append((name_start, name_end, value_start, value_end))
        else:
            spans.append((name_start, name_end, -1, -1))
    return spans


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


def _root_fields(buf: bytes, widths: tuple[int, ...]) -> list[int]:
    size = len(buf)
    if size < 4:
        raise DecodeError(f"payload of {size} bytes is too short for a FlatBuffers root")
    return _table_fields(buf, size, _read_u32(buf, 0)[0], widths)


def _u8(buf: bytes, position: int) -> int:
    return buf[position] if position else 0


def _u16(buf: bytes, position: int) -> int:
    return int.from_bytes(buf[position : position + 2], "little") if position else 0


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
    id_field, src_ip_field, method_field, path_field, args_field, headers_field, token_field = (
        _root_fields(buf, _HTTP_REQ_CALL_REQ_WIDTHS)
    )
    request = HTTPReqCallReq.__new__(HTTPReqCallReq)
    request._buf = buf
    request._id = _u32(buf, id_field)
    request._conf_token = _u32(buf, token_field)
    request._method = _u8(buf, method_field)
    request._path_start, request._path_end = _string_span(buf, size, path_field)
    request._path = None
    request._src_ip_start, request._src_ip_end = _string_span(buf, size, src_ip_field)
    request._src_ip = None
    request._args_spans = _text_entry_spans(buf, size, args_field)
    request._args = None
    request._headers_spans = _text_entry_spans(buf, size, headers_field)
    request._headers = None
    return request


def decode_http_resp_call_req(buf: bytes) -> HTTPRespCallReq:
    buf = _payload(buf)
    size = len(buf)
    id_field, status_field, headers_field, token_field = _root_fields(
        buf, _HTTP_RESP_CALL_REQ_WIDTHS
    )
    request = HTTPRespCallReq.__new__(HTTPRespCallReq)
    request._buf = buf
    request._id = _u32(buf, id_field)
    request._status = _u16(buf, status_field)
    request._conf_token = _u32(buf, token_field)
    request._headers_spans = _text_entry_spans(buf, size, headers_field)
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
# (native: codec_builders.pxi)

_BUILDER_BASE_SIZE: Final = 1024


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
    if body is None:
        return b""
    if not isinstance(body, bytes):
        raise TypeError(f"{what} must be bytes or None, not {type(body).__name__}")
    if len(body) > MAX_PAYLOAD_SIZE:
        raise FrameTooLarge(f"{what} of {len(body)} bytes cannot fit in a frame")
    return body


def _new_builder(extra: int = 0) -> flatbuffers.Builder:
    return flatbuffers.Builder(_BUILDER_BASE_SIZE + extra)


def _create_text_entries(builder: flatbuffers.Builder, entries: TextEntries, what: str) -> int:
    """Write a [TextEntry] vector; its offset, or 0 when there are no entries."""
    if not len(entries):  # len() so that None is a TypeError, as for any non-sequence
        return 0
    offsets = []
    for name, value in entries:
        name_offset = builder.CreateString(_encode_name(name, f"{what} name"))
        if value is None:
            TextEntry.Start(builder)
        else:
            value_offset = builder.CreateString(_encode_value(value, f"{what} value"))
            TextEntry.Start(builder)
            TextEntry.AddValue(builder, value_offset)
        TextEntry.AddName(builder, name_offset)
        offsets.append(TextEntry.End(builder))
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return int(builder.EndVector())


def _create_bytes(builder: flatbuffers.Builder, data: bytes) -> int:
    return int(builder.CreateByteVector(data)) if data else 0


def _finish_frame(builder: flatbuffers.Builder, root: int, frame_type: int) -> bytes:
    builder.Finish(root)
    head: int = builder.Head()
    payload_size = len(builder.Bytes) - head
    if payload_size > MAX_PAYLOAD_SIZE:
        raise FrameTooLarge(f"payload of {payload_size} bytes exceeds {MAX_PAYLOAD_SIZE}")
    # The frame header goes right in front of the payload: one copy out of the builder.
    builder.Prep(1, FRAME_HEADER_SIZE)
    builder.Pad(FRAME_HEADER_SIZE)
    head = builder.Head()
    _frame_header.pack_into(builder.Bytes, head, frame_type << 24 | payload_size)
    with memoryview(builder.Bytes) as view:
        return view[head:].tobytes()


# --- builders (runner side: our replies) ---------------------------------------------


def build_prepare_conf_resp(conf_token: int) -> bytes:
    conf_token = _uint(conf_token, 32, "conf_token")
    builder = _new_builder()
    PrepareConfResp.Start(builder)
    PrepareConfResp.AddConfToken(builder, conf_token)
    return _finish_frame(builder, PrepareConfResp.End(builder), RPC_PREPARE_CONF)


def build_http_req_call_resp(id: int) -> bytes:
    """HTTPReqCall.Resp with no action (let the request through unchanged)."""
    id = _uint(id, 32, "id")
    builder = _new_builder()
    HTTPReqCallResp.Start(builder)
    HTTPReqCallResp.AddId(builder, id)
    return _finish_frame(builder, HTTPReqCallResp.End(builder), RPC_HTTP_REQ_CALL)


def _finish_action(builder: flatbuffers.Builder, id: int, action_type: int, action: int) -> bytes:
    HTTPReqCallResp.Start(builder)
    HTTPReqCallResp.AddAction(builder, action)
    HTTPReqCallResp.AddId(builder, id)
    HTTPReqCallResp.AddActionType(builder, action_type)
    return _finish_frame(builder, HTTPReqCallResp.End(builder), RPC_HTTP_REQ_CALL)


def build_stop(id: int, status: int, headers: TextEntries, body: bytes | None) -> bytes:
    """HTTPReqCall.Resp with a Stop action."""
    id = _uint(id, 32, "id")
    status = _uint(status, 16, "status")
    body_bytes = _body_bytes(body, "body")
    builder = _new_builder(len(body_bytes))
    headers_offset = _create_text_entries(builder, headers, "header")
    body_offset = _create_bytes(builder, body_bytes)
    Stop.Start(builder)
    if body_offset:
        Stop.AddBody(builder, body_offset)
    if headers_offset:
        Stop.AddHeaders(builder, headers_offset)
    Stop.AddStatus(builder, status)
    return _finish_action(builder, id, ACTION_STOP, Stop.End(builder))


def build_rewrite(
    id: int,
    path: str | None,
    headers: TextEntries,
    args: TextEntries,
    resp_headers: TextEntries,
    body: bytes | None,
) -> bytes:
    """HTTPReqCall.Resp with a Rewrite action."""
    id = _uint(id, 32, "id")
    path_bytes = None if path is None else _encode_name(path, "path")
    body_bytes = _body_bytes(body, "body")
    builder = _new_builder(len(body_bytes))
    path_offset = 0 if path_bytes is None else builder.CreateString(path_bytes)
    headers_offset = _create_text_entries(builder, headers, "header")
    args_offset = _create_text_entries(builder, args, "arg")
    resp_headers_offset = _create_text_entries(builder, resp_headers, "response header")
    body_offset = _create_bytes(builder, body_bytes)
    Rewrite.Start(builder)
    if body_offset:
        Rewrite.AddBody(builder, body_offset)
    if resp_headers_offset:
        Rewrite.AddRespHeaders(builder, resp_headers_offset)
    if args_offset:
        Rewrite.AddArgs(builder, args_offset)
    if headers_offset:
        Rewrite.AddHeaders(builder, headers_offset)
    if path_offset:
        Rewrite.AddPath(builder, path_offset)
    return _finish_action(builder, id, ACTION_REWRITE, Rewrite.End(builder))


def build_http_resp_call_resp(
    id: int, status: int, headers: TextEntries, body: bytes | None
) -> bytes:
    id = _uint(id, 32, "id")
    status = _uint(status, 16, "status")
    body_bytes = _body_bytes(body, "body")
    builder = _new_builder(len(body_bytes))
    headers_offset = _create_text_entries(builder, headers, "header")
    body_offset = _create_bytes(builder, body_bytes)
    HTTPRespCallResp.Start(builder)
    if body_offset:
        HTTPRespCallResp.AddBody(builder, body_offset)
    if headers_offset:
        HTTPRespCallResp.AddHeaders(builder, headers_offset)
    HTTPRespCallResp.AddId(builder, id)
    HTTPRespCallResp.AddStatus(builder, status)
    return _finish_frame(builder, HTTPRespCallResp.End(builder), RPC_HTTP_RESP_CALL)


def build_extra_info_req(info_type: int, name: str | None = None) -> bytes:
    """ExtraInfo.Req; ``name`` is required for INFO_VAR (ValueError otherwise) and ignored
    for the body types. ValueError for an unknown info_type."""
    if not isinstance(info_type, int):
        raise TypeError(f"info_type must be int, not {type(info_type).__name__}")
    builder = _new_builder()
    if info_type == INFO_VAR:
        if name is None:
            raise ValueError("INFO_VAR needs a variable name")
        name_offset = builder.CreateString(_encode_name(name, "name"))
        Var.Start(builder)
        Var.AddName(builder, name_offset)
        info = Var.End(builder)
    elif info_type == INFO_REQ_BODY:
        ReqBody.Start(builder)
        info = ReqBody.End(builder)
    elif info_type == INFO_RESP_BODY:
        RespBody.Start(builder)
        info = RespBody.End(builder)
    else:
        raise ValueError(f"unknown info type {info_type}")
    ExtraInfoReq.Start(builder)
    ExtraInfoReq.AddInfo(builder, info)
    ExtraInfoReq.AddInfoType(builder, info_type)
    return _finish_frame(builder, ExtraInfoReq.End(builder), RPC_EXTRA_INFO)


def build_err_resp(code: int) -> bytes:
    code = _uint(code, 8, "code")
    builder = _new_builder()
    ErrResp.Start(builder)
    ErrResp.AddCode(builder, code)
    return _finish_frame(builder, ErrResp.End(builder), RPC_ERROR)


# --- builders (client side: what APISIX sends; used by a6runner.testing and bench) ----


def build_prepare_conf_req(conf: Sequence[tuple[str, str | bytes]], key: str | None) -> bytes:
    key_bytes = None if key is None else _encode_name(key, "key")
    builder = _new_builder()
    conf_offset = _create_text_entries(builder, conf, "conf")
    key_offset = 0 if key_bytes is None else builder.CreateString(key_bytes)
    _PrepareConfReqTable.Start(builder)
    if key_offset:
        _PrepareConfReqTable.AddKey(builder, key_offset)
    if conf_offset:
        _PrepareConfReqTable.AddConf(builder, conf_offset)
    return _finish_frame(builder, _PrepareConfReqTable.End(builder), RPC_PREPARE_CONF)


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
    builder = _new_builder()
    src_ip_offset = _create_bytes(builder, src_ip_bytes)
    path_offset = 0 if path_bytes is None else builder.CreateString(path_bytes)
    args_offset = _create_text_entries(builder, args, "arg")
    headers_offset = _create_text_entries(builder, headers, "header")
    table = _HTTPReqCallReqTable
    table.Start(builder)
    if headers_offset:
        table.AddHeaders(builder, headers_offset)
    if args_offset:
        table.AddArgs(builder, args_offset)
    if path_offset:
        table.AddPath(builder, path_offset)
    if src_ip_offset:
        table.AddSrcIp(builder, src_ip_offset)
    table.AddId(builder, id)
    table.AddConfToken(builder, conf_token)
    table.AddMethod(builder, method)
    return _finish_frame(builder, table.End(builder), RPC_HTTP_REQ_CALL)


def build_http_resp_call_req(id: int, conf_token: int, status: int, headers: TextEntries) -> bytes:
    id = _uint(id, 32, "id")
    conf_token = _uint(conf_token, 32, "conf_token")
    status = _uint(status, 16, "status")
    builder = _new_builder()
    headers_offset = _create_text_entries(builder, headers, "header")
    table = _HTTPRespCallReqTable
    table.Start(builder)
    if headers_offset:
        table.AddHeaders(builder, headers_offset)
    table.AddId(builder, id)
    table.AddConfToken(builder, conf_token)
    table.AddStatus(builder, status)
    return _finish_frame(builder, table.End(builder), RPC_HTTP_RESP_CALL)


def build_extra_info_resp(result: bytes | None) -> bytes:
    result_bytes = _body_bytes(result, "result")
    builder = _new_builder(len(result_bytes))
    result_offset = _create_bytes(builder, result_bytes)
    ExtraInfoResp.Start(builder)
    if result_offset:
        ExtraInfoResp.AddResult(builder, result_offset)
    return _finish_frame(builder, ExtraInfoResp.End(builder), RPC_EXTRA_INFO)
