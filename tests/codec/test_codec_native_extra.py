"""Codec checks written alongside the compiled codec; they run on both implementations.

They cover what a compiled reader/builder gets wrong first: interoperation with the
``flatbuffers`` runtime in both directions, hostile offsets (huge counts, wrap-around,
negative vtable offsets) that must raise DecodeError and never read out of bounds,
truncated and bit-flipped buffers, and the frame splitter under arbitrary chunking.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from types import ModuleType

import fbs_reference as ref
import flatbuffers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from a6runner._errors import DecodeError, FrameTooLarge
from a6runner._fbs import HTTPReqCallReq as ReqTable
from a6runner._fbs import HTTPRespCallReq as RespReqTable
from a6runner._fbs import PrepareConfReq as ConfTable
from a6runner._fbs import TextEntry as EntryTable
from a6runner._fbs.ErrResp import ErrResp
from a6runner._fbs.ExtraInfoReq import ExtraInfoReq
from a6runner._fbs.ExtraInfoResp import ExtraInfoResp
from a6runner._fbs.HTTPReqCallResp import HTTPReqCallResp
from a6runner._fbs.HTTPRespCallResp import HTTPRespCallResp
from a6runner._fbs.PrepareConfResp import PrepareConfResp
from a6runner._fbs.Rewrite import Rewrite
from a6runner._fbs.Stop import Stop
from a6runner._fbs.Var import Var

HEADERS = [(f"x-header-{i}", f"value {i}") for i in range(12)]
ARGS = [("page", "1"), ("q", "caf\u00e9"), ("flag", None)]
ODD_TEXT = "\udcff\udc80 caf\u00e9 \u2603"  # surrogate-escaped bytes and non-ASCII


def payload_of(frame: bytes, frame_type: int) -> bytes:
    assert frame[0] == frame_type
    assert int.from_bytes(frame[1:4], "big") == len(frame) - 4
    return frame[4:]


def generated_entries(table: object, name: str) -> list[tuple[bytes, bytes | None]]:
    count = getattr(table, f"{name}Length")()
    entries = [getattr(table, name)(i) for i in range(count)]
    return [(entry.Name(), entry.Value()) for entry in entries]


def generated_bytes(table: object, name: str) -> bytes:
    return bytes(getattr(table, name)(i) for i in range(getattr(table, f"{name}Length")()))


def encoded(entries: list[tuple[str, str | bytes | None]]) -> list[tuple[bytes, bytes | None]]:
    return [
        (
            name.encode("utf-8", "surrogateescape"),
            value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value,
        )
        for name, value in entries
    ]


# --- builders, read back by the generated code --------------------------------------


class TestBuildersDecodeWithGeneratedCode:
    def test_stop(self, codec: ModuleType) -> None:
        headers = [("content-type", "text/plain"), ("x-odd", ODD_TEXT), ("x-gone", None)]
        frame = codec.build_stop(4_000_000_000, 403, headers, b"forbidden\x00\xff")
        resp = HTTPReqCallResp.GetRootAs(payload_of(frame, codec.RPC_HTTP_REQ_CALL))
        assert resp.Id() == 4_000_000_000
        assert resp.ActionType() == codec.ACTION_STOP
        stop = Stop()
        stop.Init(resp.Action().Bytes, resp.Action().Pos)
        assert stop.Status() == 403
        assert generated_entries(stop, "Headers") == encoded(headers)
        assert generated_bytes(stop, "Body") == b"forbidden\x00\xff"

    def test_stop_without_headers_or_body_leaves_them_absent(self, codec: ModuleType) -> None:
        resp = HTTPReqCallResp.GetRootAs(codec.build_stop(1, 0, [], None)[4:])
        stop = Stop()
        stop.Init(resp.Action().Bytes, resp.Action().Pos)
        assert stop.Status() == 0
        assert stop.HeadersIsNone() and stop.BodyIsNone()

    def test_rewrite(self, codec: ModuleType) -> None:
        frame = codec.build_rewrite(
            9, "/new/p\u00e4th", [("host", "b.example"), ("x-del", None)], [("a", "1")],
            [("x-resp", ODD_TEXT)], b"new body",
        )  # fmt: skip
        resp = HTTPReqCallResp.GetRootAs(payload_of(frame, codec.RPC_HTTP_REQ_CALL))
        assert (resp.Id(), resp.ActionType()) == (9, codec.ACTION_REWRITE)
        rewrite = Rewrite()
        rewrite.Init(resp.Action().Bytes, resp.Action().Pos)
        assert rewrite.Path() == "/new/p\u00e4th".encode()
        assert generated_entries(rewrite, "Headers") == [(b"host", b"b.example"), (b"x-del", None)]
        assert generated_entries(rewrite, "Args") == [(b"a", b"1")]
        assert generated_entries(rewrite, "RespHeaders") == encoded([("x-resp", ODD_TEXT)])
        assert generated_bytes(rewrite, "Body") == b"new body"

    def test_rewrite_empty_path_is_written_none_is_absent(self, codec: ModuleType) -> None:
        for path, expected in (("", b""), (None, None)):
            resp = HTTPReqCallResp.GetRootAs(codec.build_rewrite(1, path, [], [], [], b"")[4:])
            rewrite = Rewrite()
            rewrite.Init(resp.Action().Bytes, resp.Action().Pos)
            assert rewrite.Path() == expected
            assert rewrite.HeadersIsNone() and rewrite.ArgsIsNone()
            assert rewrite.RespHeadersIsNone() and rewrite.BodyIsNone()

    def test_http_req_call_resp_without_action(self, codec: ModuleType) -> None:
        resp = HTTPReqCallResp.GetRootAs(codec.build_http_req_call_resp(77)[4:])
        assert (resp.Id(), resp.ActionType(), resp.Action()) == (77, codec.ACTION_NONE, None)

    def test_http_resp_call_resp(self, codec: ModuleType) -> None:
        body = bytes(range(256)) * 16
        frame = codec.build_http_resp_call_resp(3, 502, HEADERS[:8], body)
        resp = HTTPRespCallResp.GetRootAs(payload_of(frame, codec.RPC_HTTP_RESP_CALL))
        assert (resp.Id(), resp.Status()) == (3, 502)
        assert generated_entries(resp, "Headers") == encoded(HEADERS[:8])
        assert generated_bytes(resp, "Body") == body

    def test_small_replies(self, codec: ModuleType) -> None:
        conf = PrepareConfResp.GetRootAs(payload_of(codec.build_prepare_conf_resp(2**32 - 1), 1))
        assert conf.ConfToken() == 2**32 - 1
        err = ErrResp.GetRootAs(payload_of(codec.build_err_resp(2), codec.RPC_ERROR))
        assert err.Code() == codec.ERR_CONF_TOKEN_NOT_FOUND
        result = ExtraInfoResp.GetRootAs(payload_of(codec.build_extra_info_resp(b"v"), 3))
        assert generated_bytes(result, "Result") == b"v"
        assert ExtraInfoResp.GetRootAs(codec.build_extra_info_resp(None)[4:]).ResultIsNone()

    @pytest.mark.parametrize("info_type", [1, 2, 3])
    def test_extra_info_req(self, codec: ModuleType, info_type: int) -> None:
        frame = codec.build_extra_info_req(info_type, "request_time")
        req = ExtraInfoReq.GetRootAs(payload_of(frame, codec.RPC_EXTRA_INFO))
        assert req.InfoType() == info_type
        info = req.Info()
        assert info is not None
        if info_type == codec.INFO_VAR:
            var = Var()
            var.Init(info.Bytes, info.Pos)
            assert var.Name() == b"request_time"


# --- readers, fed by flatbuffers.Builder ----------------------------------------------


def builder_entries(builder: flatbuffers.Builder, entries: list[tuple[bytes, bytes | None]]) -> int:
    offsets = []
    for name, value in entries:
        name_offset = builder.CreateString(name)
        value_offset = None if value is None else builder.CreateString(value)
        EntryTable.Start(builder)
        EntryTable.AddName(builder, name_offset)
        if value_offset is not None:
            EntryTable.AddValue(builder, value_offset)
        offsets.append(EntryTable.End(builder))
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return int(builder.EndVector())


def runtime_http_req_call(headers: list[tuple[bytes, bytes | None]]) -> bytes:
    builder = flatbuffers.Builder(256)
    src_ip = builder.CreateByteVector(bytes(16))
    path = builder.CreateString("/a%20b?")
    args = builder_entries(builder, [(b"k", b"v"), (b"novalue", None)])
    header_vector = builder_entries(builder, headers)
    ReqTable.Start(builder)
    ReqTable.AddId(builder, 41)
    ReqTable.AddSrcIp(builder, src_ip)
    ReqTable.AddMethod(builder, 14)
    ReqTable.AddPath(builder, path)
    ReqTable.AddArgs(builder, args)
    ReqTable.AddHeaders(builder, header_vector)
    ReqTable.AddConfToken(builder, 5)
    builder.Finish(ReqTable.End(builder))
    return bytes(builder.Output())


class TestReadersOfRuntimeBuffers:
    def test_http_req_call_req(self, codec: ModuleType) -> None:
        headers = [(b"host", b"a.example"), (b"x-bin", b"\xff\xfe"), (b"x-empty", b"")]
        req = codec.decode_http_req_call_req(runtime_http_req_call(headers))
        assert (req.id, req.conf_token, req.method) == (41, 5, 14)
        assert req.path == "/a%20b?"
        assert req.src_ip == bytes(16)
        assert req.args == [("k", "v"), ("novalue", None)]
        assert req.headers == [("host", "a.example"), ("x-bin", "\udcff\udcfe"), ("x-empty", "")]
        # Binary header values survive a decode/encode round trip.
        assert req.headers[1][1].encode("utf-8", "surrogateescape") == b"\xff\xfe"

    def test_absent_fields_take_defaults(self, codec: ModuleType) -> None:
        builder = flatbuffers.Builder(64)
        ReqTable.Start(builder)
        builder.Finish(ReqTable.End(builder))
        req = codec.decode_http_req_call_req(bytes(builder.Output()))
        assert (req.id, req.conf_token, req.method, req.path) == (0, 0, 0, "")
        assert (req.src_ip, req.args, req.headers) == (b"", [], [])

    def test_entry_without_name_reads_as_empty_string(self, codec: ModuleType) -> None:
        builder = flatbuffers.Builder(64)
        value = builder.CreateString("v")
        EntryTable.Start(builder)
        EntryTable.AddValue(builder, value)
        entry = EntryTable.End(builder)
        builder.StartVector(4, 1, 4)
        builder.PrependUOffsetTRelative(entry)
        headers = builder.EndVector()
        RespReqTable.Start(builder)
        RespReqTable.AddHeaders(builder, headers)
        RespReqTable.AddStatus(builder, 204)
        builder.Finish(RespReqTable.End(builder))
        resp = codec.decode_http_resp_call_req(bytes(builder.Output()))
        assert (resp.id, resp.status, resp.conf_token, resp.headers) == (0, 204, 0, [("", "v")])

    def test_prepare_conf_req(self, codec: ModuleType) -> None:
        builder = flatbuffers.Builder(64)
        conf = builder_entries(builder, [(b"say", b'{"body":"hi"}'), (b"bare", None)])
        key = builder.CreateString("route#1")
        ConfTable.Start(builder)
        ConfTable.AddConf(builder, conf)
        ConfTable.AddKey(builder, key)
        builder.Finish(ConfTable.End(builder))
        req = codec.decode_prepare_conf_req(bytes(builder.Output()))
        assert req.key == "route#1"
        assert req.conf == [("say", b'{"body":"hi"}'), ("bare", b"")]

    def test_readers_accept_any_bytes_like(self, codec: ModuleType) -> None:
        payload = runtime_http_req_call([(b"a", b"b")])
        for buf in (bytearray(payload), memoryview(payload)):
            assert codec.decode_http_req_call_req(buf).headers == [("a", "b")]

    def test_fields_are_cached(self, codec: ModuleType) -> None:
        req = codec.decode_http_req_call_req(runtime_http_req_call([(b"a", b"b")]))
        assert req.headers is req.headers
        assert req.path is req.path


# --- own round trips --------------------------------------------------------------------

texts = st.text(max_size=20) | st.sampled_from(["", ODD_TEXT, "\udc80"])
entry_lists = st.lists(st.tuples(texts, st.none() | texts | st.binary(max_size=10)), max_size=6)


def as_read(entries: list[tuple[str, str | bytes | None]]) -> list[tuple[str, str | None]]:
    return [
        (name, value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value)
        for name, value in entries
    ]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    id=st.integers(0, 2**32 - 1),
    token=st.integers(0, 2**32 - 1),
    method=st.integers(0, 255),
    path=st.none() | texts,
    args=entry_lists,
    headers=entry_lists,
    src_ip=st.none() | st.binary(max_size=16),
)
def test_http_req_call_round_trip(
    codec: ModuleType,
    id: int,
    token: int,
    method: int,
    path: str | None,
    args: list[tuple[str, str | bytes | None]],
    headers: list[tuple[str, str | bytes | None]],
    src_ip: bytes | None,
) -> None:
    frame = codec.build_http_req_call_req(id, token, method, path, args, headers, src_ip)
    req = codec.decode_http_req_call_req(payload_of(frame, codec.RPC_HTTP_REQ_CALL))
    assert (req.id, req.conf_token, req.method) == (id, token, method)
    assert req.path == (path or "")
    assert req.src_ip == (src_ip or b"")
    assert req.args == as_read(args)
    assert req.headers == as_read(headers)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=st.integers(0, 65535), headers=entry_lists)
def test_http_resp_call_round_trip(
    codec: ModuleType, status: int, headers: list[tuple[str, str | bytes | None]]
) -> None:
    frame = codec.build_http_resp_call_req(1, 2, status, headers)
    resp = codec.decode_http_resp_call_req(payload_of(frame, codec.RPC_HTTP_RESP_CALL))
    assert (resp.id, resp.conf_token, resp.status) == (1, 2, status)
    assert resp.headers == as_read(headers)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    conf=st.lists(st.tuples(texts, texts | st.binary(max_size=10)), max_size=5),
    key=st.none() | texts,
)
def test_prepare_conf_round_trip(
    codec: ModuleType, conf: list[tuple[str, str | bytes]], key: str | None
) -> None:
    req = codec.decode_prepare_conf_req(payload_of(codec.build_prepare_conf_req(conf, key), 1))
    assert req.key == key
    assert req.conf == [
        (name, value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value)
        for name, value in conf
    ]


def test_entries_accept_any_sequence_of_pairs(codec: ModuleType) -> None:
    from_lists = codec.build_http_resp_call_req(1, 2, 3, [["a", "b"], ["c", None]])
    from_tuple = codec.build_http_resp_call_req(1, 2, 3, (("a", "b"), ("c", None)))
    for frame in (from_lists, from_tuple):
        assert codec.decode_http_resp_call_req(frame[4:]).headers == [("a", "b"), ("c", None)]


def test_small_messages_round_trip(codec: ModuleType) -> None:
    assert codec.decode_extra_info_resp(codec.build_extra_info_resp(b"\x00x")[4:]) == b"\x00x"
    assert codec.decode_extra_info_resp(codec.build_extra_info_resp(None)[4:]) is None
    assert codec.decode_extra_info_resp(codec.build_extra_info_resp(b"")[4:]) is None
    for code in (0, 1, 2, 255):
        assert codec.decode_err_resp(codec.build_err_resp(code)[4:]) == code


def test_names_that_look_alike_decode_exactly(codec: ModuleType) -> None:
    """Names alike in length, head and tail (the compiled reader caches decoded names by
    such a hash), at every length around its branches, read back exactly each time."""
    names = [f"x-aaaaaaaa-{middle:03d}-bbbbbbbb" for middle in range(40)]
    names += ["", "a", "ab", "abc", "abcd", "abcdefg", "abcdefgh", "abcdefghi"]
    names += ["n" * 64, "n" * 65, "n" * 63 + "\u00e9", "caf\u00e9", "\udcff\udcfe", "\u2603" * 30]
    for _ in range(3):
        for start in range(0, len(names), 7):
            batch = [(name, name) for name in names[start : start + 7]]
            frame = codec.build_http_resp_call_req(1, 2, 200, batch)
            headers = codec.decode_http_resp_call_req(frame[4:]).headers
            assert headers == batch
            assert all(type(name) is str for name, _ in headers)


# --- argument rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.build_stop(-1, 200, [], None), OverflowError),
        (lambda c: c.build_stop(2**32, 200, [], None), OverflowError),
        (lambda c: c.build_stop(1, 65536, [], None), OverflowError),
        (lambda c: c.build_http_req_call_req(1, 1, 256, "/", [], [], None), OverflowError),
        (lambda c: c.build_err_resp(256), OverflowError),
        (lambda c: c.build_prepare_conf_resp(2**64), OverflowError),
        (lambda c: c.build_stop("1", 200, [], None), TypeError),
        (lambda c: c.build_stop(1.0, 200, [], None), TypeError),
        (lambda c: c.build_stop(1, 200, None, None), TypeError),
        (lambda c: c.build_stop(1, 200, [(b"name", "v")], None), TypeError),
        (lambda c: c.build_stop(1, 200, [("name", 5)], None), TypeError),
        (lambda c: c.build_stop(1, 200, [], "body"), TypeError),
        (lambda c: c.build_stop(1, 200, [], bytearray(b"body")), TypeError),
        (lambda c: c.build_rewrite(1, b"/path", [], [], [], None), TypeError),
        (lambda c: c.build_prepare_conf_req([], 5), TypeError),
        (lambda c: c.build_extra_info_req(1), ValueError),
        (lambda c: c.build_extra_info_req(4, "x"), ValueError),
        (lambda c: c.build_extra_info_req(1, 5), TypeError),
        (lambda c: c.encode_frame_header(256, 0), ValueError),
        (lambda c: c.encode_frame_header(1, -1), ValueError),
        (lambda c: c.encode_frame_header(1, 2**24), FrameTooLarge),
        (lambda c: c.decode_frame_header(b"\x01\x00"), DecodeError),
    ],
)
def test_argument_errors(
    codec: ModuleType, call: Callable[[ModuleType], object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        call(codec)


def test_integers_must_be_int(codec: ModuleType) -> None:
    class Index:
        def __index__(self) -> int:
            return 7

    with pytest.raises(TypeError):
        codec.build_http_req_call_resp(Index())
    assert codec.decode_err_resp(codec.build_err_resp(True)[4:]) == 1


def test_too_large_payloads(codec: ModuleType) -> None:
    limit = codec.MAX_PAYLOAD_SIZE
    with pytest.raises(FrameTooLarge):
        codec.build_stop(1, 200, [], bytes(limit + 1))
    # The body fits alone but not with the tables around it.
    with pytest.raises(FrameTooLarge):
        codec.build_http_resp_call_resp(1, 200, [("a", "b")], bytes(limit - 8))
    with pytest.raises(FrameTooLarge):
        codec.encode_frame(1, bytes(limit + 1))
    frame = codec.build_extra_info_resp(bytes(limit - 64))
    assert codec.decode_frame_header(frame) == (codec.RPC_EXTRA_INFO, len(frame) - 4)


def test_frame_header_round_trip(codec: ModuleType) -> None:
    assert codec.encode_frame_header(4, 0x123456) == b"\x04\x12\x34\x56"
    assert codec.decode_frame_header(b"\x04\x12\x34\x56rest") == (4, 0x123456)
    assert codec.decode_frame_header(bytearray(b"\xff\xff\xff\xff")) == (255, 2**24 - 1)
    assert codec.encode_frame(3, b"abc") == b"\x03\x00\x00\x03abc"
    assert codec.encode_frame(0, b"") == b"\x00\x00\x00\x00"


# --- hostile buffers ----------------------------------------------------------------------


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def table_with_one_offset_field(field: int, target_bytes: bytes) -> bytes:
    """Root table whose only present field (index ``field``) is an offset to ``target_bytes``
    placed right after the table."""
    vtable_size = 4 + 2 * (field + 1)
    slots = [0] * (field + 1)
    slots[field] = 4
    vtable = struct.pack(f"<HH{field + 1}H", vtable_size, 8, *slots)
    vtable += bytes(-len(vtable) % 4)
    table_pos = 4 + len(vtable)
    return u32(table_pos) + vtable + struct.pack("<iI", table_pos - 4, 4) + target_bytes


HOSTILE = [
    b"",
    b"\x00\x00\x00",
    u32(0),  # root table at 0: its vtable is at 0 - u32(0) = 0, size 0
    u32(0xFFFFFFFC),  # root table far past the end
    u32(4) + struct.pack("<i", 2**31 - 1),  # vtable far before the start
    u32(4) + struct.pack("<i", -(2**31)),  # vtable far past the end
    u32(8) + struct.pack("<HH", 5, 4) + struct.pack("<i", 4),  # odd vtable size
    u32(8) + struct.pack("<HH", 2, 4) + struct.pack("<i", 4),  # vtable size below 4
    u32(8) + struct.pack("<HH", 4, 0) + struct.pack("<i", 4),  # table size below 4
    u32(8) + struct.pack("<HH", 4, 0xFFFF) + struct.pack("<i", 4),  # table past the end
    u32(8) + struct.pack("<HH", 0xFFFE, 4) + struct.pack("<i", 4),  # vtable past the end
    # a field whose offset points past the end of the buffer
    u32(12) + struct.pack("<HHH", 6, 8, 0xFFF0) + bytes(2) + struct.pack("<i", 8),
]


BAD_VECTORS = [
    u32(0xFFFFFFFF),  # length that overflows 32-bit arithmetic
    u32(0x40000001) + b"abcd",  # element count whose byte size overflows 32 bits
    u32(5) + b"abcd",  # one byte short
]
BAD_TABLE_VECTORS = [
    *BAD_VECTORS,
    u32(1) + u32(0xFFFFFFF0),  # element pointing far away
    u32(1) + u32(4) + u32(0xFFFFFFFF),  # TextEntry whose vtable lies past the end
    u32(1) + u32(4) + struct.pack("<i", -4) + u32(4),  # TextEntry vtable half outside
]


@pytest.mark.parametrize(
    ("field", "target"),
    [(field, target) for field in (1, 3) for target in BAD_VECTORS]
    + [(field, target) for field in (4, 5) for target in BAD_TABLE_VECTORS],
)
def test_out_of_bounds_targets_raise_decode_error(
    codec: ModuleType, field: int, target: bytes
) -> None:
    buf = table_with_one_offset_field(field, target)
    with pytest.raises(DecodeError):
        codec.decode_http_req_call_req(buf)


@pytest.mark.parametrize("buf", HOSTILE)
def test_malformed_roots_raise_decode_error(codec: ModuleType, buf: bytes) -> None:
    for decode in (
        codec.decode_http_req_call_req,
        codec.decode_http_resp_call_req,
        codec.decode_prepare_conf_req,
        codec.decode_extra_info_resp,
        codec.decode_err_resp,
    ):
        with pytest.raises(DecodeError):
            decode(buf)


def test_offset_far_past_the_end_of_a_big_string(codec: ModuleType) -> None:
    buf = table_with_one_offset_field(3, u32(2**32 - 1) + b"x" * 64)
    with pytest.raises(DecodeError):
        codec.decode_http_req_call_req(buf)


def read_everything(codec: ModuleType, buf: bytes) -> object:
    """Decode with every reader; the values, or the DecodeError type for each failure."""
    results: list[object] = []
    for decode in (
        codec.decode_http_req_call_req,
        codec.decode_http_resp_call_req,
        codec.decode_prepare_conf_req,
    ):
        try:
            message = decode(buf)
        except DecodeError:
            results.append(DecodeError)
            continue
        names = [name for name in dir(message) if not name.startswith("_")]
        results.append([getattr(message, name) for name in sorted(names)])
    for decode_small in (codec.decode_extra_info_resp, codec.decode_err_resp):
        try:
            results.append(decode_small(buf))
        except DecodeError:
            results.append(DecodeError)
    return results


SAMPLES = [
    lambda c: c.build_http_req_call_req(1, 2, 3, "/path", ARGS, HEADERS, b"\x01\x02\x03\x04"),
    lambda c: c.build_http_resp_call_req(1, 2, 200, HEADERS[:4]),
    lambda c: c.build_prepare_conf_req([("p", '{"a": 1}'), ("q", b"")], "key"),
    lambda c: c.build_extra_info_resp(b"value"),
]


def accepted_agree_with_reference(codec: ModuleType, buf: bytes) -> list[str]:
    """Decode ``buf`` with every reader: each one either raises DecodeError or returns
    exactly what the generated FlatBuffers code reads from the same bytes. Returns the
    decoders that accepted it."""
    accepted = []
    for decoder in ref.DECODER_NAMES:
        try:
            decoded = getattr(codec, f"decode_{decoder}")(buf)
        except DecodeError:
            continue
        assert ref.snapshot(decoder, decoded) == ref.reference_snapshot(decoder, buf), (
            f"decode_{decoder}({buf.hex()})"
        )
        accepted.append(decoder)
    return accepted


SAMPLE_DECODERS = ["http_req_call_req", "http_resp_call_req", "prepare_conf_req", "extra_info_resp"]


@pytest.mark.parametrize("sample", range(len(SAMPLES)))
def test_every_truncation_raises_decode_error_or_reads(codec: ModuleType, sample: int) -> None:
    payload = SAMPLES[sample](codec)[4:]
    assert SAMPLE_DECODERS[sample] in accepted_agree_with_reference(codec, payload)
    for end in range(len(payload)):
        read_everything(codec, payload[:end])
        accepted_agree_with_reference(codec, payload[:end])


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), sample=st.integers(0, len(SAMPLES) - 1))
def test_corrupted_buffers_only_raise_decode_error(
    both_codecs: tuple[ModuleType, ModuleType], data: st.DataObject, sample: int
) -> None:
    pure, native = both_codecs
    payload = bytearray(SAMPLES[sample](native)[4:])
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(payload) - 1))
        if data.draw(st.booleans()):
            payload[position] ^= 1 << data.draw(st.integers(0, 7))
        else:
            payload[position] = data.draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF]))
    buf = bytes(payload)
    # Same verdict and same values from both implementations, and the reference's values.
    assert read_everything(native, buf) == read_everything(pure, buf)
    accepted_agree_with_reference(native, buf)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(buf=st.binary(max_size=64))
def test_random_bytes_only_raise_decode_error(codec: ModuleType, buf: bytes) -> None:
    read_everything(codec, buf)
    accepted_agree_with_reference(codec, buf)


# --- frame splitter -------------------------------------------------------------------------


def stream_of(codec: ModuleType, payloads: list[bytes]) -> bytes:
    return b"".join(codec.encode_frame(i % 5, payload) for i, payload in enumerate(payloads))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=12),
    cuts=st.lists(st.integers(0, 4000), max_size=20),
)
def test_splitter_reassembles_any_chunking(
    codec: ModuleType, payloads: list[bytes], cuts: list[int]
) -> None:
    stream = stream_of(codec, payloads)
    splitter = codec.FrameSplitter()
    frames = []
    start = 0
    for cut in sorted({min(cut, len(stream)) for cut in cuts} | {len(stream)}):
        frames += splitter.feed(stream[start:cut])
        start = cut
    assert frames == [(i % 5, payload) for i, payload in enumerate(payloads)]
    assert splitter.pending == 0


PATTERN = bytes(range(251)) * 1200  # 301,200 bytes; a prime period shows misplaced bytes


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(
    sizes=st.lists(st.integers(0, 300_000), min_size=1, max_size=4),
    chunk_sizes=st.lists(st.integers(1, 150_000), min_size=1, max_size=8),
)
def test_splitter_large_frames_under_random_chunking(
    codec: ModuleType, sizes: list[int], chunk_sizes: list[int]
) -> None:
    """Frames larger than any first allocation, so a frame still arriving has to grow."""
    payloads = [PATTERN[i : i + size] for i, size in enumerate(sizes)]
    stream = stream_of(codec, payloads)
    splitter = codec.FrameSplitter()
    frames = []
    start = 0
    turn = 0
    while start < len(stream):
        end = start + chunk_sizes[turn % len(chunk_sizes)]
        frames += splitter.feed(stream[start:end])
        start = end
        turn += 1
        consumed = sum(4 + len(payload) for _, payload in frames)
        assert splitter.pending == min(start, len(stream)) - consumed
    assert frames == [(i % 5, payload) for i, payload in enumerate(payloads)]


def test_splitter_byte_by_byte_and_pending(codec: ModuleType) -> None:
    stream = codec.encode_frame(2, b"abc") + codec.encode_frame(1, b"")
    splitter = codec.FrameSplitter()
    seen = []
    for i in range(len(stream)):
        frames = splitter.feed(stream[i : i + 1])
        seen += frames
        if i < 6:
            assert splitter.pending == i + 1
    assert seen == [(2, b"abc"), (1, b"")]
    assert splitter.pending == 0
    assert splitter.feed(b"") == []


def test_splitter_whole_frames_in_one_chunk(codec: ModuleType) -> None:
    payloads = [bytes([i]) * i for i in range(50)]
    splitter = codec.FrameSplitter()
    assert splitter.feed(stream_of(codec, payloads)) == [(i % 5, p) for i, p in enumerate(payloads)]
    assert splitter.feed(bytearray(codec.encode_frame(4, b"xyz") + b"\x01\x00")) == [(4, b"xyz")]
    assert splitter.pending == 2


@pytest.mark.slow
def test_splitter_largest_frame_in_64k_chunks(codec: ModuleType) -> None:
    payload = bytes(range(256)) * (codec.MAX_PAYLOAD_SIZE // 256) + b"end"
    stream = codec.encode_frame(2, payload) + codec.encode_frame(3, b"next")
    splitter = codec.FrameSplitter()
    frames = []
    chunk = 65536
    for start in range(0, len(stream), chunk):
        frames += splitter.feed(stream[start : start + chunk])
        if not frames:
            assert splitter.pending == min(start + chunk, len(stream))
    assert len(frames) == 2
    assert frames[0][0] == 2 and frames[0][1] == payload
    assert frames[1] == (3, b"next")
    assert splitter.pending == 0
