"""The builders part of the pure codec twin (native: ``a6native/codec_builders.pxi``): our
replies, then what APISIX sends (for ``a6runner.testing`` and the benchmarks). Each writes
the compiled twin's layout byte for byte, packed with ``struct``. ``a6runner._codec_py``
re-exports them."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from a6native.errors import FrameTooLarge
from a6native.protocol import (
    ACTION_REWRITE,
    ACTION_STOP,
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

from ._codec_frames_py import _pack_frame_header
from ._codec_readers_py import _u32s

__all__ = [
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
]

TextEntries = Sequence[tuple[str, str | bytes | None]]

_ENCODING: Final = "utf-8"
_ERRORS: Final = "surrogateescape"

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
    parts[0] = _pack_frame_header(frame_type << 24 | payload_size)
    return b"".join(parts)


# Root offset, vtable and table of a root table whose only field is a uint32
# (PrepareConf.Resp, a bare HTTPReqCall.Resp): root 12; vtable (6, 8, field @4); table.
_pack_single_u32 = struct.Struct("<IHHH2xiI").pack
_SINGLE_U32_SIZE: Final = 20


def _single_u32_frame(frame_type: int, value: int) -> bytes:
    return _pack_frame_header(frame_type << 24 | _SINGLE_U32_SIZE) + _pack_single_u32(
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
                _pack_frame_header(RPC_EXTRA_INFO << 24 | (_VAR_INFO_REQ_SIZE + _string_size(n))),
                _pack_var_info_req(12, 8, 12, 8, 4, 8, 16, INFO_VAR, 6, 8, 4, 8, 4, n),
                name_bytes,
                _STRING_PAD[n & 3],
            )
        )
    if info_type != INFO_REQ_BODY and info_type != INFO_RESP_BODY:
        raise ValueError(f"unknown info type {info_type}")
    return _pack_frame_header(RPC_EXTRA_INFO << 24 | _BODY_INFO_REQ_SIZE) + _pack_body_info_req(
        12, 8, 12, 8, 4, 8, 12, info_type, 4, 4, 4
    )


# Err.Resp (20 bytes): root 12; vtable (6, 8, code @4); table (soffset 8, code).
_pack_err_resp = struct.Struct("<IHHH2xiB3x").pack
_ERR_RESP_SIZE: Final = 20


def build_err_resp(code: int) -> bytes:
    code = _uint(code, 8, "code")
    return _pack_frame_header(RPC_ERROR << 24 | _ERR_RESP_SIZE) + _pack_err_resp(
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
