"""An independent FlatBuffers encoder/decoder for interop checks of the codecs.

* ``read_*``: decode payloads with the ``flatbuffers`` runtime and the generated code in
  ``a6runner._fbs`` (the way any other FlatBuffers peer would) into plain values. Absent
  strings and vectors read as None here, so tests can see "absent" vs "empty".
* ``encode_*``: build payloads with ``flatbuffers.Builder`` and the generated helpers, as
  APISIX's encoder does, with knobs for absent fields, entries without value, shared
  strings and the order in which children are written.
* ``forward_buffer``: lay a table out front to back (each table before its vtable and its
  children, so soffsets are negative), unaligned, without string terminators: legal
  FlatBuffers that no builder writes.
* ``patch_*``: small helpers for handcrafting exact byte layouts.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import flatbuffers
from flatbuffers.table import Table

from a6runner._fbs import (
    ErrResp,
    ExtraInfoReq,
    ExtraInfoResp,
    HTTPReqCallReq,
    HTTPReqCallResp,
    HTTPRespCallReq,
    HTTPRespCallResp,
    PrepareConfReq,
    PrepareConfResp,
    Rewrite,
    Stop,
    TextEntry,
    Var,
)

RawEntry = tuple["str | bytes | None", "str | bytes | None"]
Entry = tuple[str, "str | None"]

# --- reading with the generated code -------------------------------------------------


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "surrogateescape")


def _ubytes(obj: Any, field_id: int) -> bytes | None:
    """A [ubyte] field as bytes (None when absent), without a per-byte accessor call."""
    tab: Table = obj._tab
    offset = tab.Offset(4 + 2 * field_id)
    if offset == 0:
        return None
    start = tab.Vector(offset)
    return bytes(tab.Bytes[start : start + tab.VectorLen(offset)])


def _entries(obj: Any, accessor: str) -> list[tuple[str | None, str | None]] | None:
    if getattr(obj, f"{accessor}IsNone")():
        return None
    get = getattr(obj, accessor)
    count = getattr(obj, f"{accessor}Length")()
    return [(_text(get(i).Name()), _text(get(i).Value())) for i in range(count)]


def _root(module: Any, name: str, payload: bytes) -> Any:
    return getattr(module, name).GetRootAs(bytearray(payload), 0)


def read_prepare_conf_req(payload: bytes) -> dict[str, Any]:
    req = _root(PrepareConfReq, "PrepareConfReq", payload)
    conf = None
    if not req.ConfIsNone():
        conf = [(_text(req.Conf(i).Name()), req.Conf(i).Value()) for i in range(req.ConfLength())]
    return {"conf": conf, "key": _text(req.Key())}


def read_prepare_conf_resp(payload: bytes) -> int:
    return int(_root(PrepareConfResp, "PrepareConfResp", payload).ConfToken())


def read_http_req_call_req(payload: bytes) -> dict[str, Any]:
    req = _root(HTTPReqCallReq, "HTTPReqCallReq", payload)
    return {
        "id": req.Id(),
        "conf_token": req.ConfToken(),
        "method": req.Method(),
        "path": _text(req.Path()),
        "args": _entries(req, "Args"),
        "headers": _entries(req, "Headers"),
        "src_ip": _ubytes(req, 1),
    }


def read_http_req_call_resp(payload: bytes) -> dict[str, Any]:
    resp = _root(HTTPReqCallResp, "HTTPReqCallResp", payload)
    action_type = resp.ActionType()
    union: Table | None = resp.Action()
    action: dict[str, Any] | None = None
    if action_type == 1 and union is not None:
        stop = Stop.Stop()
        stop.Init(union.Bytes, union.Pos)
        action = {
            "status": stop.Status(),
            "headers": _entries(stop, "Headers"),
            "body": _ubytes(stop, 2),
        }
    elif action_type == 2 and union is not None:
        rewrite = Rewrite.Rewrite()
        rewrite.Init(union.Bytes, union.Pos)
        action = {
            "path": _text(rewrite.Path()),
            "headers": _entries(rewrite, "Headers"),
            "args": _entries(rewrite, "Args"),
            "resp_headers": _entries(rewrite, "RespHeaders"),
            "body": _ubytes(rewrite, 4),
        }
    return {"id": resp.Id(), "action_type": action_type, "action": action}


def read_http_resp_call_req(payload: bytes) -> dict[str, Any]:
    req = _root(HTTPRespCallReq, "HTTPRespCallReq", payload)
    return {
        "id": req.Id(),
        "status": req.Status(),
        "conf_token": req.ConfToken(),
        "headers": _entries(req, "Headers"),
    }


def read_http_resp_call_resp(payload: bytes) -> dict[str, Any]:
    resp = _root(HTTPRespCallResp, "HTTPRespCallResp", payload)
    return {
        "id": resp.Id(),
        "status": resp.Status(),
        "headers": _entries(resp, "Headers"),
        "body": _ubytes(resp, 3),
    }


def read_extra_info_req(payload: bytes) -> tuple[int, str | None, bool]:
    """(info_type, Var name or None, whether the info table is present)."""
    req = _root(ExtraInfoReq, "ExtraInfoReq", payload)
    union: Table | None = req.Info()
    name = None
    if req.InfoType() == 1 and union is not None:
        var = Var.Var()
        var.Init(union.Bytes, union.Pos)
        name = _text(var.Name())
    return req.InfoType(), name, union is not None


def read_extra_info_resp(payload: bytes) -> bytes | None:
    return _ubytes(_root(ExtraInfoResp, "ExtraInfoResp", payload), 0)


def read_err_resp(payload: bytes) -> int:
    return int(_root(ErrResp, "ErrResp", payload).Code())


# --- encoding with flatbuffers.Builder -----------------------------------------------


def _raw(value: str | bytes) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


class ReferenceEncoder:
    """One payload per instance. ``shared_strings`` dedups equal strings (legal, and
    what size-conscious encoders do); ``strings_first`` writes every string of a vector
    before any of its tables; ``reverse_entries`` creates the entry tables last-to-first
    (the vector order stays as given)."""

    def __init__(
        self,
        *,
        shared_strings: bool = False,
        strings_first: bool = False,
        reverse_entries: bool = False,
        force_defaults: bool = False,
    ) -> None:
        self.builder = flatbuffers.Builder(256)
        self.builder.ForceDefaults(force_defaults)
        self.shared_strings = shared_strings
        self.strings_first = strings_first
        self.reverse_entries = reverse_entries

    def string(self, value: str | bytes) -> int:
        raw = _raw(value)
        if self.shared_strings:
            return int(self.builder.CreateSharedString(raw))
        return int(self.builder.CreateString(raw))

    def ubytes(self, value: bytes, *, one_by_one: bool = False) -> int:
        if not one_by_one:
            return int(self.builder.CreateByteVector(value))
        # APISIX's Lua encoder prepends a vector byte by byte.
        self.builder.StartVector(1, len(value), 1)
        for byte in reversed(value):
            self.builder.PrependUint8(byte)
        return int(self.builder.EndVector())

    def entries(self, entries: Sequence[RawEntry]) -> int:
        strings: list[tuple[int | None, int | None]] = []
        if self.strings_first:
            strings = [
                (
                    None if name is None else self.string(name),
                    None if value is None else self.string(value),
                )
                for name, value in entries
            ]
        order = range(len(entries))
        if self.reverse_entries:
            order = order[::-1]
        tables: dict[int, int] = {}
        for index in order:
            if self.strings_first:
                name_offset, value_offset = strings[index]
            else:
                name, value = entries[index]
                name_offset = None if name is None else self.string(name)
                value_offset = None if value is None else self.string(value)
            TextEntry.Start(self.builder)
            if name_offset is not None:
                TextEntry.AddName(self.builder, name_offset)
            if value_offset is not None:
                TextEntry.AddValue(self.builder, value_offset)
            tables[index] = TextEntry.End(self.builder)
        self.builder.StartVector(4, len(entries), 4)
        for index in reversed(range(len(entries))):
            self.builder.PrependUOffsetTRelative(tables[index])
        return int(self.builder.EndVector())

    def finish(self, root: int) -> bytes:
        self.builder.Finish(root)
        return bytes(self.builder.Output())


def encode_prepare_conf_req(
    conf: Sequence[RawEntry] | None, key: str | bytes | None, **options: bool
) -> bytes:
    enc = ReferenceEncoder(**options)
    key_offset = None if key is None else enc.string(key)
    conf_offset = None if conf is None else enc.entries(conf)
    PrepareConfReq.Start(enc.builder)
    if conf_offset is not None:
        PrepareConfReq.AddConf(enc.builder, conf_offset)
    if key_offset is not None:
        PrepareConfReq.AddKey(enc.builder, key_offset)
    return enc.finish(PrepareConfReq.End(enc.builder))


def encode_http_req_call_req(
    *,
    id: int | None = None,
    conf_token: int | None = None,
    method: int | None = None,
    path: str | bytes | None = None,
    args: Sequence[RawEntry] | None = None,
    headers: Sequence[RawEntry] | None = None,
    src_ip: bytes | None = None,
    children_order: Sequence[str] = ("src_ip", "path", "args", "headers"),
    scalars_first: bool = False,
    **options: bool,
) -> bytes:
    """None leaves a field absent; ``children_order`` is the order strings and vectors
    are written in; ``scalars_first`` adds the scalar slots before the offsets."""
    enc = ReferenceEncoder(**options)
    offsets: dict[str, int] = {}
    for child in children_order:
        if child == "src_ip" and src_ip is not None:
            offsets[child] = enc.ubytes(src_ip, one_by_one=True)
        elif child == "path" and path is not None:
            offsets[child] = enc.string(path)
        elif child == "args" and args is not None:
            offsets[child] = enc.entries(args)
        elif child == "headers" and headers is not None:
            offsets[child] = enc.entries(headers)
    b = enc.builder

    def add_scalars() -> None:
        if id is not None:
            HTTPReqCallReq.AddId(b, id)
        if method is not None:
            HTTPReqCallReq.AddMethod(b, method)
        if conf_token is not None:
            HTTPReqCallReq.AddConfToken(b, conf_token)

    HTTPReqCallReq.Start(b)
    if scalars_first:
        add_scalars()
    adders = {
        "src_ip": HTTPReqCallReq.AddSrcIp,
        "path": HTTPReqCallReq.AddPath,
        "args": HTTPReqCallReq.AddArgs,
        "headers": HTTPReqCallReq.AddHeaders,
    }
    for child, offset in offsets.items():
        adders[child](b, offset)
    if not scalars_first:
        add_scalars()
    return enc.finish(HTTPReqCallReq.End(b))


def encode_http_resp_call_req(
    *,
    id: int | None = None,
    status: int | None = None,
    conf_token: int | None = None,
    headers: Sequence[RawEntry] | None = None,
    **options: bool,
) -> bytes:
    enc = ReferenceEncoder(**options)
    headers_offset = None if headers is None else enc.entries(headers)
    b = enc.builder
    HTTPRespCallReq.Start(b)
    if conf_token is not None:
        HTTPRespCallReq.AddConfToken(b, conf_token)
    if headers_offset is not None:
        HTTPRespCallReq.AddHeaders(b, headers_offset)
    if status is not None:
        HTTPRespCallReq.AddStatus(b, status)
    if id is not None:
        HTTPRespCallReq.AddId(b, id)
    return enc.finish(HTTPRespCallReq.End(b))


def encode_extra_info_resp(result: bytes | None, **options: bool) -> bytes:
    """``b""`` writes a present, empty vector (what APISIX sends for an empty body)."""
    enc = ReferenceEncoder(**options)
    result_offset = None if result is None else enc.ubytes(result)
    ExtraInfoResp.Start(enc.builder)
    if result_offset is not None:
        ExtraInfoResp.AddResult(enc.builder, result_offset)
    return enc.finish(ExtraInfoResp.End(enc.builder))


def encode_err_resp(code: int | None, **options: bool) -> bytes:
    enc = ReferenceEncoder(**options)
    ErrResp.Start(enc.builder)
    if code is not None:
        ErrResp.AddCode(enc.builder, code)
    return enc.finish(ErrResp.End(enc.builder))


# --- forward layout ------------------------------------------------------------------
# A field is None (absent) or (kind, value): ("u8" | "u16" | "u32", int), ("str", bytes),
# ("ubytes", bytes), ("table", [field, ...]), ("tables", [[field, ...], ...]).

Field = tuple[str, Any] | None
_SCALARS = {"u8": "<B", "u16": "<H", "u32": "<I"}


def forward_buffer(root: Sequence[Field], *, gap: int = 0, filler: int = 0xA5) -> bytes:
    """A payload with the root table right after the root offset (plus ``gap`` filler
    bytes, to unalign it), every table before its vtable and every child after both."""
    out = bytearray(4) + bytes([filler]) * gap
    struct.pack_into("<I", out, 0, _forward_table(out, root))
    return bytes(out)


def _forward_table(out: bytearray, fields: Sequence[Field]) -> int:
    table = len(out)
    out += bytes(4)  # soffset, patched once the vtable position is known
    slots: list[int] = []
    children: list[tuple[int, str, Any]] = []
    for field in fields:
        if field is None:
            slots.append(0)
            continue
        kind, value = field
        slots.append(len(out) - table)
        if kind in _SCALARS:
            out += struct.pack(_SCALARS[kind], value)
        else:
            children.append((len(out), kind, value))
            out += bytes(4)
    vtable = len(out)
    out += struct.pack(f"<HH{len(slots)}H", 4 + 2 * len(slots), vtable - table, *slots)
    struct.pack_into("<i", out, table, table - vtable)  # negative: the vtable comes after
    for slot, kind, value in children:
        struct.pack_into("<I", out, slot, _forward_child(out, kind, value) - slot)
    return table


def _forward_child(out: bytearray, kind: str, value: Any) -> int:
    if kind in ("str", "ubytes"):
        position = len(out)
        out += struct.pack("<I", len(value)) + value  # no NUL terminator: not required
        return position
    if kind == "table":
        return _forward_table(out, value)
    if kind == "tables":
        position = len(out)
        out += struct.pack("<I", len(value)) + bytes(4 * len(value))
        for index, element in enumerate(value):
            slot = position + 4 + 4 * index
            struct.pack_into("<I", out, slot, _forward_table(out, element) - slot)
        return position
    raise ValueError(f"unknown field kind {kind!r}")


def forward_entries(entries: Sequence[RawEntry]) -> Field:
    """A [TextEntry] field for ``forward_buffer``."""
    return (
        "tables",
        [
            [
                None if name is None else ("str", _raw(name)),
                None if value is None else ("str", _raw(value)),
            ]
            for name, value in entries
        ],
    )


# --- handcrafting ---------------------------------------------------------------------


def patch_u32(buf: bytes, position: int, value: int) -> bytes:
    out = bytearray(buf)
    struct.pack_into("<I", out, position, value)
    return bytes(out)


def table_and_vtable(payload: bytes) -> tuple[int, int]:
    """(root table position, its vtable position) of a payload."""
    (root,) = struct.unpack_from("<I", payload, 0)
    (soffset,) = struct.unpack_from("<i", payload, root)
    return root, root - soffset


# --- expectations ----------------------------------------------------------------------


def entries_as_read(entries: Sequence[RawEntry]) -> list[tuple[str, str | None]]:
    """What our readers give back for entries written as (name, value): an absent name
    is "", bytes are decoded with surrogateescape, an absent value stays None."""
    return [
        (_text(_raw(name)) if name is not None else "", _text_or_none(value))
        for name, value in entries
    ]


def _text_or_none(value: str | bytes | None) -> str | None:
    return None if value is None else _text(_raw(value))


def snapshot(decoder: str, decoded: Any) -> Any:
    """Every field of what ``decode_<decoder>`` returned, as plain comparable values."""
    if decoder == "prepare_conf_req":
        return decoded.key, decoded.conf
    if decoder == "http_req_call_req":
        return (
            decoded.id,
            decoded.conf_token,
            decoded.method,
            decoded.path,
            decoded.src_ip,
            decoded.args,
            decoded.headers,
        )
    if decoder == "http_resp_call_req":
        return decoded.id, decoded.status, decoded.conf_token, decoded.headers
    return decoded  # extra_info_resp: bytes | None; err_resp: int


def _entries_as_decoded(
    entries: list[tuple[str | None, str | None]] | None,
) -> list[tuple[str, str | None]]:
    return [(name or "", value) for name, value in entries or []]


def reference_snapshot(decoder: str, payload: bytes) -> Any:
    """``snapshot(decoder, ...)`` of ``payload`` read with the generated code instead of our
    readers: what a correct ``decode_<decoder>`` returns for a payload it accepts (the
    generated code does not validate: call it only on payloads a decoder accepted). With
    our readers' defaults: an absent string or entry name is "" (PrepareConf's key: None),
    an absent vector [], an absent src_ip b"", an absent conf value b""."""
    if decoder == "prepare_conf_req":
        read = read_prepare_conf_req(payload)
        conf = [(name or "", value or b"") for name, value in read["conf"] or []]
        return read["key"], conf
    if decoder == "http_req_call_req":
        read = read_http_req_call_req(payload)
        return (
            read["id"],
            read["conf_token"],
            read["method"],
            read["path"] or "",
            read["src_ip"] or b"",
            _entries_as_decoded(read["args"]),
            _entries_as_decoded(read["headers"]),
        )
    if decoder == "http_resp_call_req":
        read = read_http_resp_call_req(payload)
        return read["id"], read["status"], read["conf_token"], _entries_as_decoded(read["headers"])
    if decoder == "extra_info_resp":
        return read_extra_info_resp(payload)
    return read_err_resp(payload)


DECODER_NAMES = (
    "prepare_conf_req",
    "http_req_call_req",
    "http_resp_call_req",
    "extra_info_resp",
    "err_resp",
)
