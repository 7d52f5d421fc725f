"""Readers and builders of the codec (PROTOCOL.md §3, src/a6native/codec.pyi), for both
implementations: every field, defaults, the decoding rules on handcrafted buffers, the
argument rules of the builders, and interop with the generated FlatBuffers code."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from types import ModuleType
from typing import Any

import fbs_reference as ref
import pytest

from a6runner._errors import DecodeError, FrameTooLarge, ProtocolError

# An exception swallowed inside a kernel (Cython "Exception ignored in ...") is a bug.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

MAX = 16_777_215
U32_MAX = 2**32 - 1

UNICODE = "ünïcödé ☃ 𝄞 日本"
BINARY = b"\xff\xfe\x80bin\x00ary\xc3"  # not UTF-8
BINARY_TEXT = BINARY.decode("utf-8", "surrogateescape")
IPV4 = bytes([192, 168, 1, 20])
IPV6 = bytes.fromhex("20010db8000000000000ff0000428329")


def payload_of(frame: bytes, frame_type: int) -> bytes:
    """Check a built frame's header; its payload."""
    assert type(frame) is bytes
    assert frame[0] == frame_type
    assert int.from_bytes(frame[1:4], "big") == len(frame) - 4
    return frame[4:]


def test_decode_error_is_a_protocol_and_value_error() -> None:
    assert issubclass(DecodeError, ProtocolError)
    assert issubclass(DecodeError, ValueError)


# --- readers: HTTPReqCall.Req --------------------------------------------------------

FULL_REQ_CALL = {
    "id": 123456,
    "conf_token": 42,
    "method": 2,
    "path": "/api/v1/ünï",
    "args": [("q", "search"), ("flag", None), ("q", "again"), ("", "")],
    "headers": [
        ("host", "example.com"),
        ("x-bin", BINARY),
        ("x-uni", UNICODE),
        ("x-empty", ""),
        ("x-none", None),
        ("x-multi", "1"),
        ("x-multi", "2"),
    ],
    "src_ip": IPV4,
}


def text_entries(entries: list[tuple[Any, Any]]) -> list[tuple[str, str | None]]:
    """What a reader gives back for entries written as (name, value)."""

    def text(value: str | bytes | None) -> str | None:
        if isinstance(value, bytes):
            return value.decode("utf-8", "surrogateescape")
        return value

    return [(text(name) or "", text(value)) for name, value in entries]


def assert_req_call(decoded: Any, expected: dict[str, Any]) -> None:
    assert decoded.id == expected["id"]
    assert decoded.conf_token == expected["conf_token"]
    assert decoded.method == expected["method"]
    assert decoded.path == expected["path"]
    assert decoded.src_ip == expected["src_ip"]
    assert decoded.args == text_entries(expected["args"])
    assert decoded.headers == text_entries(expected["headers"])


def test_http_req_call_req_every_field(codec: ModuleType) -> None:
    decoded = codec.decode_http_req_call_req(ref.encode_http_req_call_req(**FULL_REQ_CALL))
    assert_req_call(decoded, FULL_REQ_CALL)
    assert type(decoded.path) is str
    assert type(decoded.src_ip) is bytes
    assert all(type(name) is str for name, _ in decoded.headers)
    assert dict(decoded.headers)["x-bin"].encode("utf-8", "surrogateescape") == BINARY


def test_http_req_call_req_absent_fields_take_defaults(codec: ModuleType) -> None:
    decoded = codec.decode_http_req_call_req(ref.encode_http_req_call_req())
    assert (decoded.id, decoded.conf_token, decoded.method) == (0, 0, 0)
    assert decoded.path == ""
    assert decoded.src_ip == b""
    assert decoded.args == []
    assert decoded.headers == []


def test_http_req_call_req_present_but_empty_fields(codec: ModuleType) -> None:
    payload = ref.encode_http_req_call_req(path="", args=[], headers=[], src_ip=b"")
    decoded = codec.decode_http_req_call_req(payload)
    assert (decoded.path, decoded.src_ip, decoded.args, decoded.headers) == ("", b"", [], [])


def test_text_entry_without_name_or_value(codec: ModuleType) -> None:
    entries = [(None, "v"), ("n", None), (None, None)]
    decoded = codec.decode_http_req_call_req(ref.encode_http_req_call_req(headers=entries))
    assert decoded.headers == [("", "v"), ("n", None), ("", None)]


@pytest.mark.parametrize("method", [*range(15), 15, 200, 255])
def test_method_values_are_passed_through(codec: ModuleType, method: int) -> None:
    decoded = codec.decode_http_req_call_req(ref.encode_http_req_call_req(method=method))
    assert decoded.method == method


@pytest.mark.parametrize("src_ip", [IPV4, IPV6, b"\x00" * 4, b"\xff" * 16, b"\x01\x02\x03"])
def test_src_ip_is_passed_through(codec: ModuleType, src_ip: bytes) -> None:
    decoded = codec.decode_http_req_call_req(ref.encode_http_req_call_req(src_ip=src_ip))
    assert decoded.src_ip == src_ip


def test_scalars_at_their_limits(codec: ModuleType) -> None:
    decoded = codec.decode_http_req_call_req(
        ref.encode_http_req_call_req(id=U32_MAX, conf_token=U32_MAX, method=255)
    )
    assert (decoded.id, decoded.conf_token, decoded.method) == (U32_MAX, U32_MAX, 255)


CHILD_ORDERS = list(itertools.permutations(("src_ip", "path", "args", "headers")))[::5]
ENCODER_VARIANTS = [
    *(pytest.param({"children_order": order}, id="-".join(order)) for order in CHILD_ORDERS),
    pytest.param({"scalars_first": True}, id="scalars_first"),
    pytest.param({"shared_strings": True}, id="shared_strings"),
    pytest.param({"strings_first": True}, id="strings_first"),
    pytest.param({"reverse_entries": True}, id="reverse_entries"),
    pytest.param({"force_defaults": True}, id="force_defaults"),
    pytest.param(
        {"shared_strings": True, "strings_first": True, "reverse_entries": True}, id="all"
    ),
]


@pytest.mark.parametrize("variant", ENCODER_VARIANTS)
def test_http_req_call_req_from_differently_ordered_encoders(
    codec: ModuleType, variant: dict[str, Any]
) -> None:
    payload = ref.encode_http_req_call_req(**FULL_REQ_CALL, **variant)
    assert ref.read_http_req_call_req(payload)["id"] == FULL_REQ_CALL["id"]
    assert_req_call(codec.decode_http_req_call_req(payload), FULL_REQ_CALL)


def test_force_defaults_writes_zero_scalars_that_still_read_zero(codec: ModuleType) -> None:
    payload = ref.encode_http_req_call_req(id=0, conf_token=0, method=0, force_defaults=True)
    decoded = codec.decode_http_req_call_req(payload)
    assert (decoded.id, decoded.conf_token, decoded.method) == (0, 0, 0)


def test_fields_are_built_once_and_cached(codec: ModuleType) -> None:
    decoded = codec.decode_http_req_call_req(ref.encode_http_req_call_req(**FULL_REQ_CALL))
    assert decoded.path is decoded.path
    assert decoded.src_ip is decoded.src_ip
    assert decoded.args is decoded.args
    assert decoded.headers is decoded.headers
    conf = codec.decode_prepare_conf_req(ref.encode_prepare_conf_req([("p", "{}")], "k"))
    assert conf.conf is conf.conf
    resp = codec.decode_http_resp_call_req(ref.encode_http_resp_call_req(headers=[("a", "b")]))
    assert resp.headers is resp.headers


def test_trailing_bytes_after_the_buffer_are_ignored(codec: ModuleType) -> None:
    payload = ref.encode_http_req_call_req(**FULL_REQ_CALL) + b"\xff" * 37
    assert_req_call(codec.decode_http_req_call_req(payload), FULL_REQ_CALL)


def test_many_headers(codec: ModuleType) -> None:
    headers = [(f"x-header-{i}", f"value {i}" * (i % 5)) for i in range(500)]
    decoded = codec.decode_http_req_call_req(ref.encode_http_req_call_req(headers=headers))
    assert decoded.headers == headers


# --- readers: forward layout ---------------------------------------------------------


def forward_req_call(gap: int) -> bytes:
    return ref.forward_buffer(
        [
            ("u32", 77),
            ("ubytes", IPV6),
            ("u8", 4),
            ("str", "/fwd/ü".encode()),
            ref.forward_entries([("a", "1"), ("b", None)]),
            ref.forward_entries([("h", BINARY), (None, "v"), ("x-uni", UNICODE)]),
            ("u32", 9),
        ],
        gap=gap,
    )


@pytest.mark.parametrize("gap", [0, 1, 2, 3])
def test_forward_layout_decodes(codec: ModuleType, gap: int) -> None:
    payload = forward_req_call(gap)
    root, vtable = ref.table_and_vtable(payload)
    assert vtable > root  # negative soffset: the vtable follows its table
    expected = {
        "id": 77,
        "conf_token": 9,
        "method": 4,
        "path": "/fwd/ü",
        "src_ip": IPV6,
        "args": [("a", "1"), ("b", None)],
        "headers": [("h", BINARY), (None, "v"), ("x-uni", UNICODE)],
    }
    assert_req_call(codec.decode_http_req_call_req(payload), expected)
    # The generated code reads it the same way: it is a legal FlatBuffer.
    assert ref.read_http_req_call_req(payload)["path"] == "/fwd/ü"


def test_forward_layout_of_every_request_table(codec: ModuleType) -> None:
    conf = codec.decode_prepare_conf_req(
        ref.forward_buffer(
            [ref.forward_entries([("a", '{"x":1}'), ("b", None)]), ("str", b"key")], gap=1
        )
    )
    assert conf.conf == [("a", b'{"x":1}'), ("b", b"")]
    assert conf.key == "key"
    resp_call = codec.decode_http_resp_call_req(
        ref.forward_buffer(
            [("u32", 5), ("u16", 502), ref.forward_entries([("a", "b")]), ("u32", 6)], gap=3
        )
    )
    assert (resp_call.id, resp_call.status, resp_call.conf_token) == (5, 502, 6)
    assert resp_call.headers == [("a", "b")]
    assert codec.decode_extra_info_resp(ref.forward_buffer([("ubytes", b"body")], gap=2)) == (
        b"body"
    )
    assert codec.decode_err_resp(ref.forward_buffer([("u8", 2)], gap=1)) == 2


# --- readers: the other tables -------------------------------------------------------


def test_prepare_conf_req(codec: ModuleType) -> None:
    conf = [("plugin-a", '{"body":"x"}'), ("plugin-b", None), ("plugin-ü", BINARY), (None, "{}")]
    decoded = codec.decode_prepare_conf_req(ref.encode_prepare_conf_req(conf, "idem-key"))
    assert decoded.conf == [
        ("plugin-a", b'{"body":"x"}'),
        ("plugin-b", b""),
        ("plugin-ü", BINARY),
        ("", b"{}"),
    ]
    assert all(type(value) is bytes for _, value in decoded.conf)
    assert decoded.key == "idem-key"


@pytest.mark.parametrize(("key", "expected"), [(None, None), ("", ""), (BINARY, BINARY_TEXT)])
def test_prepare_conf_req_key(codec: ModuleType, key: Any, expected: str | None) -> None:
    decoded = codec.decode_prepare_conf_req(ref.encode_prepare_conf_req(None, key))
    assert decoded.key == expected
    assert decoded.conf == []


def test_http_resp_call_req(codec: ModuleType) -> None:
    headers = [("content-type", "text/plain"), ("set-cookie", "a"), ("set-cookie", "b")]
    headers += [("x-bin", BINARY), ("x-none", None)]
    payload = ref.encode_http_resp_call_req(id=9, status=404, conf_token=3, headers=headers)
    decoded = codec.decode_http_resp_call_req(payload)
    assert (decoded.id, decoded.status, decoded.conf_token) == (9, 404, 3)
    assert decoded.headers == text_entries(headers)


def test_http_resp_call_req_defaults_and_limits(codec: ModuleType) -> None:
    decoded = codec.decode_http_resp_call_req(ref.encode_http_resp_call_req())
    assert (decoded.id, decoded.status, decoded.conf_token, decoded.headers) == (0, 0, 0, [])
    payload = ref.encode_http_resp_call_req(id=U32_MAX, status=65535, conf_token=U32_MAX)
    decoded = codec.decode_http_resp_call_req(payload)
    assert (decoded.id, decoded.status, decoded.conf_token) == (U32_MAX, 65535, U32_MAX)


@pytest.mark.parametrize("result", [b"value", b"", None, BINARY, bytes(70000)])
def test_extra_info_resp(codec: ModuleType, result: bytes | None) -> None:
    """A present but empty result is b"" (an empty body); an absent one is None (nil)."""
    decoded = codec.decode_extra_info_resp(ref.encode_extra_info_resp(result))
    assert decoded == result
    assert decoded is None or type(decoded) is bytes


@pytest.mark.parametrize(("code", "expected"), [(0, 0), (1, 1), (2, 2), (None, 0), (200, 200)])
def test_err_resp(codec: ModuleType, code: int | None, expected: int) -> None:
    assert codec.decode_err_resp(ref.encode_err_resp(code)) == expected


# --- decoding rules on handcrafted buffers -------------------------------------------
# ErrResp, backward layout, 20 bytes:
#   [0] root = 12 | [4] vtable: vtsize, tsize, slot0, slot1 | [12] soffset | [16] code, 1, 2, 3


def err_resp_buffer(
    *, root: int = 12, vtsize: int = 6, tsize: int = 8, slot: int = 4, soffset: int = 8
) -> bytes:
    return (
        struct.pack("<I", root)
        + struct.pack("<HHHH", vtsize, tsize, slot, 0xFFFF)
        + struct.pack("<i", soffset)
        + bytes([7, 1, 2, 3])
    )


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ({}, 7),
        ({"slot": 0}, 0),  # offset 0: absent
        ({"vtsize": 4}, 0),  # the slot is outside the vtable: absent
        ({"vtsize": 16}, 7),  # vt + vtsize == len; slot 1 (0xFFFF) is not an ErrResp field
        ({"tsize": 4}, 7),  # fields are only checked against the buffer, not tsize
        ({"tsize": 8}, 7),  # t + tsize == len
        ({"slot": 7}, 3),  # t + off + 1 == len
        ({"slot": 1}, 0),  # inside the soffset: allowed
    ],
)
def test_rule_accepts(codec: ModuleType, layout: dict[str, int], expected: int) -> None:
    assert codec.decode_err_resp(err_resp_buffer(**layout)) == expected


@pytest.mark.parametrize(
    "layout",
    [
        {"root": 17},  # t + 4 > len
        {"root": 16},  # soffset 0x03020107 puts the vtable before the buffer
        {"root": U32_MAX},
        {"soffset": 13},  # vt = -1
        {"soffset": -5},  # vt + 4 > len
        {"soffset": -(2**31)},
        {"vtsize": 5},  # odd
        {"vtsize": 2},  # < 4
        {"vtsize": 0},
        {"vtsize": 18},  # vt + vtsize > len
        {"tsize": 3},  # < 4
        {"tsize": 0},
        {"tsize": 9},  # t + tsize > len
        {"slot": 8},  # t + off + 1 > len
        {"slot": 0xFFFF},
    ],
)
def test_rule_rejects(codec: ModuleType, layout: dict[str, int]) -> None:
    with pytest.raises(DecodeError):
        codec.decode_err_resp(err_resp_buffer(**layout))


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x04\x00\x00", bytes(4), b"\xff" * 4])
def test_rule_rejects_tiny_buffers(codec: ModuleType, payload: bytes) -> None:
    for decode in DECODERS.values():
        with pytest.raises(DecodeError):
            decode(codec)(payload)


def test_an_all_absent_table_is_the_smallest_valid_buffer(codec: ModuleType) -> None:
    # root = 4 | table: soffset = -4 -> vtable at 8 | vtable: vtsize 4, tsize 4
    payload = struct.pack("<IiHH", 4, -4, 4, 4)
    assert codec.decode_err_resp(payload) == 0
    assert codec.decode_extra_info_resp(payload) is None
    assert codec.decode_prepare_conf_req(payload).conf == []
    assert codec.decode_http_req_call_req(payload).headers == []
    assert codec.decode_http_resp_call_req(payload).status == 0


# ExtraInfoResp, forward layout, 27 bytes:
#   [0] root = 4 | [4] soffset -8 | [8] result uoffset | [12] vtable 6, 8, 4, 0 | [20] n, data


def extra_info_resp_buffer(*, uoffset: int = 12, count: int = 3, data: bytes = b"abc") -> bytes:
    return (
        struct.pack("<IiI", 4, -8, uoffset)
        + struct.pack("<HHHH", 6, 8, 4, 0)
        + struct.pack("<I", count)
        + data
    )


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ({}, b"abc"),  # ends exactly at the end of the buffer, no NUL
        ({"count": 0}, b""),
        ({"count": 2}, b"ab"),
    ],
)
def test_vector_rule_accepts(codec: ModuleType, layout: dict[str, Any], expected: bytes) -> None:
    assert codec.decode_extra_info_resp(extra_info_resp_buffer(**layout)) == expected


@pytest.mark.parametrize(
    "layout",
    [
        {"count": 4},  # q + 4 + n > len
        {"count": U32_MAX},
        {"uoffset": 16},  # q + 4 > len
        {"uoffset": U32_MAX},  # no wrap-around
        {"uoffset": 2**31},
    ],
)
def test_vector_rule_rejects(codec: ModuleType, layout: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        codec.decode_extra_info_resp(extra_info_resp_buffer(**layout))


def resp_call_with_headers_vector() -> tuple[bytes, int]:
    """A forward HTTPRespCallReq with only headers (two entries), and its vector position."""
    payload = ref.forward_buffer([None, None, ref.forward_entries([("a", "1"), ("b", "2")])])
    root, _ = ref.table_and_vtable(payload)
    field = root + 4  # the only field follows the soffset
    return payload, field + struct.unpack_from("<I", payload, field)[0]


def test_vector_of_tables_validates_every_element(codec: ModuleType) -> None:
    payload, vector = resp_call_with_headers_vector()
    assert codec.decode_http_resp_call_req(payload).headers == [("a", "1"), ("b", "2")]
    second = vector + 8
    with pytest.raises(DecodeError):  # element offset past the end
        codec.decode_http_resp_call_req(ref.patch_u32(payload, second, U32_MAX - second))
    with pytest.raises(DecodeError):  # element count larger than the buffer allows
        codec.decode_http_resp_call_req(ref.patch_u32(payload, vector, 1 << 30))
    table = second + struct.unpack_from("<I", payload, second)[0]
    with pytest.raises(DecodeError):  # element table whose vtable is out of bounds
        codec.decode_http_resp_call_req(ref.patch_u32(payload, table, 0x7FFFFFFF))
    # Fewer elements than written: the rest is unreachable and never looked at.
    shorter = ref.patch_u32(payload, vector, 1)
    assert codec.decode_http_resp_call_req(shorter).headers == [("a", "1")]


# HTTPRespCallReq whose headers hold one TextEntry, laid out by hand (46 bytes + tail):
#   [0] root = 4 | [4] soffset -8 | [8] headers uoffset 14 | [12] vtable 10, 8, 0, 0, 4
#   [22] vector n = 1 | [26] element uoffset 4 | [30] entry: soffset -4
#   [34] entry vtable: vtsize, tsize, name slot, value slot | [42] tail


def one_entry_buffer(
    *, name: int = 0, value: int = 0, vtsize: int = 8, tsize: int = 4, tail: bytes = bytes(4)
) -> bytes:
    return (
        struct.pack("<IiI", 4, -8, 14)
        + struct.pack("<5H", 10, 8, 0, 0, 4)
        + struct.pack("<IIi", 1, 4, -4)
        + struct.pack("<4H", vtsize, tsize, name, value)
        + tail
    )


HI = struct.pack("<II", 4, 2) + b"hi"  # at 42: a uoffset to a 2-byte string ending the buffer


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ({}, ("", None)),
        ({"vtsize": 4, "name": 12, "value": 12, "tail": HI}, ("", None)),  # slots outside
        ({"vtsize": 6, "name": 12, "value": 12, "tail": HI}, ("hi", None)),
        ({"name": 12, "value": 12, "tail": HI}, ("hi", "hi")),
        ({"name": 12}, ("", None)),  # uoffset 0 targets itself: an empty string
        ({"value": 12}, ("", "")),
        ({"tsize": 16}, ("", None)),  # t + tsize == len
    ],
)
def test_entry_rule_accepts(codec: ModuleType, layout: dict[str, Any], expected: Any) -> None:
    assert codec.decode_http_resp_call_req(one_entry_buffer(**layout)).headers == [expected]


@pytest.mark.parametrize(
    "layout",
    [
        {"vtsize": 7},
        {"vtsize": 2},
        {"vtsize": 14},  # vt + vtsize > len
        {"tsize": 3},
        {"tsize": 17},  # t + tsize > len
        {"name": 13},  # field + 4 > len
        {"value": 13},
        {"name": 12, "tail": struct.pack("<II", 4, 3) + b"hi"},  # string past the end
        {"value": 12, "tail": struct.pack("<II", 4, 3) + b"hi"},
        {"name": 12, "tail": struct.pack("<I", 3)},  # target + 4 > len
        {"value": 12, "tail": struct.pack("<I", U32_MAX)},
    ],
)
def test_entry_rule_rejects(codec: ModuleType, layout: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        codec.decode_http_resp_call_req(one_entry_buffer(**layout))


def test_validation_is_eager(codec: ModuleType) -> None:
    """A bad string anywhere raises at decode time, not on first access of its field."""
    payload = ref.forward_buffer(
        [("u32", 1), None, None, None, ref.forward_entries([("a", "b")]), None, None]
    )
    decoded = codec.decode_http_req_call_req(payload)
    assert decoded.args == [("a", "b")]
    name_length = len(payload) - 10  # the buffer ends with: len, "a", len, "b"
    broken = ref.patch_u32(payload, name_length, 1000)
    with pytest.raises(DecodeError):
        codec.decode_http_req_call_req(broken)


def test_fields_beyond_the_schema_are_not_validated(codec: ModuleType) -> None:
    payload = ref.forward_buffer([("u8", 1), ("u32", U32_MAX), ("u32", U32_MAX)])
    assert codec.decode_err_resp(payload) == 1


def test_offset_fields_of_other_tables_may_alias(codec: ModuleType) -> None:
    """Two entries share one name string and one table (deduplicating encoders do this)."""
    payload = ref.encode_http_resp_call_req(
        headers=[("same", "v"), ("same", "v")], shared_strings=True
    )
    decoded = codec.decode_http_resp_call_req(payload)
    assert decoded.headers == [("same", "v"), ("same", "v")]
    # point both elements of the vector at the first table
    payload, vector = resp_call_with_headers_vector()
    first_target = vector + 4 + struct.unpack_from("<I", payload, vector + 4)[0]
    aliased = ref.patch_u32(payload, vector + 8, first_target - (vector + 8))
    assert codec.decode_http_resp_call_req(aliased).headers == [("a", "1"), ("a", "1")]


# --- builders: our replies decode with the generated code ---------------------------


def test_build_prepare_conf_resp(codec: ModuleType) -> None:
    for token in (0, 1, 42, U32_MAX):
        payload = payload_of(codec.build_prepare_conf_resp(token), 1)
        assert ref.read_prepare_conf_resp(payload) == token


def test_build_http_req_call_resp_without_action(codec: ModuleType) -> None:
    payload = payload_of(codec.build_http_req_call_resp(77), 2)
    assert ref.read_http_req_call_resp(payload) == {"id": 77, "action_type": 0, "action": None}


def test_build_stop(codec: ModuleType) -> None:
    headers = [("x-a", "1"), ("x-a", "2"), ("x-bin", BINARY), ("x-uni", UNICODE), ("x-del", None)]
    payload = payload_of(codec.build_stop(5, 403, headers, b"denied\x00\xff"), 2)
    assert ref.read_http_req_call_resp(payload) == {
        "id": 5,
        "action_type": 1,
        "action": {
            "status": 403,
            "headers": text_entries(headers),
            "body": b"denied\x00\xff",
        },
    }


@pytest.mark.parametrize("body", [None, b""])
def test_build_stop_minimal_leaves_fields_absent(codec: ModuleType, body: bytes | None) -> None:
    payload = payload_of(codec.build_stop(0, 0, [], body), 2)
    assert ref.read_http_req_call_resp(payload) == {
        "id": 0,
        "action_type": 1,
        "action": {"status": 0, "headers": None, "body": None},
    }


def test_build_rewrite(codec: ModuleType) -> None:
    frame = codec.build_rewrite(
        U32_MAX,
        "/new/päth?",
        [("host", "up.example"), ("x-remove", None), ("x-bin", BINARY)],
        [("a", "1"), ("a", "2"), ("gone", None)],
        [("x-resp", UNICODE)],
        b"new body",
    )
    assert ref.read_http_req_call_resp(payload_of(frame, 2)) == {
        "id": U32_MAX,
        "action_type": 2,
        "action": {
            "path": "/new/päth?",
            "headers": [("host", "up.example"), ("x-remove", None), ("x-bin", BINARY_TEXT)],
            "args": [("a", "1"), ("a", "2"), ("gone", None)],
            "resp_headers": [("x-resp", UNICODE)],
            "body": b"new body",
        },
    }


@pytest.mark.parametrize(("path", "expected"), [(None, None), ("", ""), ("/p", "/p")])
def test_build_rewrite_path_none_is_absent_and_empty_is_written(
    codec: ModuleType, path: str | None, expected: str | None
) -> None:
    frame = codec.build_rewrite(1, path, [], [], [], None)
    assert ref.read_http_req_call_resp(payload_of(frame, 2))["action"] == {
        "path": expected,
        "headers": None,
        "args": None,
        "resp_headers": None,
        "body": None,
    }


def test_build_rewrite_accepts_tuples_and_lists(codec: ModuleType) -> None:
    frame = codec.build_rewrite(1, None, (("h", "v"),), [["a", None]], (), b"")
    action = ref.read_http_req_call_resp(payload_of(frame, 2))["action"]
    assert action["headers"] == [("h", "v")]
    assert action["args"] == [("a", None)]
    assert action["resp_headers"] is None


def test_build_http_resp_call_resp(codec: ModuleType) -> None:
    headers = [("content-type", "application/json"), ("set-cookie", "a"), ("set-cookie", "b")]
    frame = codec.build_http_resp_call_resp(8, 201, headers, b'{"ok":true}')
    assert ref.read_http_resp_call_resp(payload_of(frame, 4)) == {
        "id": 8,
        "status": 201,
        "headers": headers,
        "body": b'{"ok":true}',
    }
    frame = codec.build_http_resp_call_resp(8, 0, [], None)
    assert ref.read_http_resp_call_resp(payload_of(frame, 4)) == {
        "id": 8,
        "status": 0,
        "headers": None,
        "body": None,
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((1, "remote_addr"), (1, "remote_addr", True)),
        ((1, ""), (1, "", True)),
        ((1, UNICODE), (1, UNICODE, True)),
        ((2,), (2, None, True)),
        ((3,), (3, None, True)),
        ((2, "ignored"), (2, None, True)),
        ((3, "ignored"), (3, None, True)),
    ],
)
def test_build_extra_info_req(codec: ModuleType, args: tuple[Any, ...], expected: Any) -> None:
    assert ref.read_extra_info_req(payload_of(codec.build_extra_info_req(*args), 3)) == expected


@pytest.mark.parametrize("args", [(1,), (1, None), (0, "x"), (4, "x"), (255,), (-1,)])
def test_build_extra_info_req_rejects(codec: ModuleType, args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError):
        codec.build_extra_info_req(*args)


def test_build_err_resp(codec: ModuleType) -> None:
    for code in (0, 1, 2, 255):
        assert ref.read_err_resp(payload_of(codec.build_err_resp(code), 0)) == code


# --- builders: the client side, checked with the generated code and our readers -----


def test_build_prepare_conf_req(codec: ModuleType) -> None:
    conf = [("a", '{"x": "ü"}'), ("b", b"\xff{}"), ("c", "")]
    payload = payload_of(codec.build_prepare_conf_req(conf, "key-1"), 1)
    assert ref.read_prepare_conf_req(payload) == {
        "conf": [("a", '{"x": "ü"}'.encode()), ("b", b"\xff{}"), ("c", b"")],
        "key": "key-1",
    }
    decoded = codec.decode_prepare_conf_req(payload)
    assert decoded.conf == [("a", '{"x": "ü"}'.encode()), ("b", b"\xff{}"), ("c", b"")]
    assert decoded.key == "key-1"
    payload = payload_of(codec.build_prepare_conf_req([], None), 1)
    assert ref.read_prepare_conf_req(payload) == {"conf": None, "key": None}
    payload = payload_of(codec.build_prepare_conf_req([], ""), 1)
    assert codec.decode_prepare_conf_req(payload).key == ""


def test_build_http_req_call_req(codec: ModuleType) -> None:
    frame = codec.build_http_req_call_req(
        FULL_REQ_CALL["id"],
        FULL_REQ_CALL["conf_token"],
        FULL_REQ_CALL["method"],
        FULL_REQ_CALL["path"],
        FULL_REQ_CALL["args"],
        FULL_REQ_CALL["headers"],
        FULL_REQ_CALL["src_ip"],
    )
    payload = payload_of(frame, 2)
    assert_req_call(codec.decode_http_req_call_req(payload), FULL_REQ_CALL)
    assert ref.read_http_req_call_req(payload) == {
        "id": FULL_REQ_CALL["id"],
        "conf_token": FULL_REQ_CALL["conf_token"],
        "method": FULL_REQ_CALL["method"],
        "path": FULL_REQ_CALL["path"],
        "args": text_entries(FULL_REQ_CALL["args"]),
        "headers": text_entries(FULL_REQ_CALL["headers"]),
        "src_ip": IPV4,
    }


def test_build_http_req_call_req_minimal(codec: ModuleType) -> None:
    payload = payload_of(codec.build_http_req_call_req(0, 0, 0, None, [], [], None), 2)
    assert ref.read_http_req_call_req(payload) == {
        "id": 0,
        "conf_token": 0,
        "method": 0,
        "path": None,
        "args": None,
        "headers": None,
        "src_ip": None,
    }
    payload = payload_of(codec.build_http_req_call_req(1, 2, 14, "", [], [], IPV6), 2)
    decoded = codec.decode_http_req_call_req(payload)
    assert (decoded.method, decoded.path, decoded.src_ip) == (14, "", IPV6)
    assert ref.read_http_req_call_req(payload)["path"] == ""


def test_build_http_resp_call_req(codec: ModuleType) -> None:
    headers = [("server", "up"), ("x-bin", BINARY), ("x-none", None)]
    payload = payload_of(codec.build_http_resp_call_req(3, 7, 502, headers), 4)
    assert ref.read_http_resp_call_req(payload) == {
        "id": 3,
        "status": 502,
        "conf_token": 7,
        "headers": text_entries(headers),
    }
    decoded = codec.decode_http_resp_call_req(payload)
    assert (decoded.id, decoded.conf_token, decoded.status) == (3, 7, 502)
    assert decoded.headers == text_entries(headers)


@pytest.mark.parametrize(
    ("result", "expected"), [(b"v", b"v"), (BINARY, BINARY), (b"", None), (None, None)]
)
def test_build_extra_info_resp(codec: ModuleType, result: bytes | None, expected: Any) -> None:
    """An empty result leaves the field absent, so it reads back as nil (None)."""
    payload = payload_of(codec.build_extra_info_resp(result), 3)
    assert ref.read_extra_info_resp(payload) == expected
    assert codec.decode_extra_info_resp(payload) == expected


# --- builders: size limit ------------------------------------------------------------


def test_builders_refuse_payloads_over_the_frame_limit(codec: ModuleType) -> None:
    huge = bytes(MAX)
    with pytest.raises(FrameTooLarge):
        codec.build_stop(1, 200, [], huge)
    with pytest.raises(FrameTooLarge):
        codec.build_rewrite(1, None, [], [], [], huge)
    with pytest.raises(FrameTooLarge):
        codec.build_http_resp_call_resp(1, 200, [("a", "b")], huge)
    with pytest.raises(FrameTooLarge):
        codec.build_extra_info_resp(huge + b"x")
    many = [("x" * 1000, "y" * 15000)] * 1200  # 18 MB of headers
    with pytest.raises(FrameTooLarge):
        codec.build_http_resp_call_resp(1, 200, many, None)


def test_a_body_just_under_the_limit_fits(codec: ModuleType) -> None:
    body = b"\xaa" * (MAX - 64)
    payload = payload_of(codec.build_http_resp_call_resp(1, 200, [], body), 4)
    assert len(payload) <= MAX
    assert ref.read_http_resp_call_resp(payload)["body"] == body


# --- builders: argument rules --------------------------------------------------------

OK_HEADERS = [("a", "b")]

# (name, call with one bad argument) -> expected exception
OVERFLOWS: dict[str, Callable[[ModuleType], object]] = {
    "prepare_conf_resp token -1": lambda c: c.build_prepare_conf_resp(-1),
    "prepare_conf_resp token 2**32": lambda c: c.build_prepare_conf_resp(2**32),
    "req_call_resp id 2**32": lambda c: c.build_http_req_call_resp(2**32),
    "req_call_resp id -1": lambda c: c.build_http_req_call_resp(-1),
    "stop id 2**32": lambda c: c.build_stop(2**32, 200, [], None),
    "stop status 65536": lambda c: c.build_stop(1, 65536, [], None),
    "stop status -1": lambda c: c.build_stop(1, -1, [], None),
    "rewrite id 2**64": lambda c: c.build_rewrite(2**64, None, [], [], [], None),
    "resp_call_resp id -1": lambda c: c.build_http_resp_call_resp(-1, 200, [], None),
    "resp_call_resp status 65536": lambda c: c.build_http_resp_call_resp(1, 65536, [], None),
    "err_resp code 256": lambda c: c.build_err_resp(256),
    "err_resp code -1": lambda c: c.build_err_resp(-1),
    "req_call_req id 2**32": lambda c: c.build_http_req_call_req(2**32, 1, 0, "/", [], [], None),
    "req_call_req token 2**32": lambda c: c.build_http_req_call_req(1, 2**32, 0, "/", [], [], None),
    "req_call_req method 256": lambda c: c.build_http_req_call_req(1, 1, 256, "/", [], [], None),
    "req_call_req method -1": lambda c: c.build_http_req_call_req(1, 1, -1, "/", [], [], None),
    "resp_call_req id -1": lambda c: c.build_http_resp_call_req(-1, 1, 200, []),
    "resp_call_req token 2**32": lambda c: c.build_http_resp_call_req(1, 2**32, 200, []),
    "resp_call_req status 65536": lambda c: c.build_http_resp_call_req(1, 1, 65536, []),
}

TYPE_ERRORS: dict[str, Callable[[ModuleType], object]] = {
    "token str": lambda c: c.build_prepare_conf_resp("1"),
    "token float": lambda c: c.build_prepare_conf_resp(1.0),
    "status float": lambda c: c.build_stop(1, 200.0, [], None),
    "id None": lambda c: c.build_http_req_call_resp(None),
    "stop status str": lambda c: c.build_stop(1, "200", [], None),
    "stop header name bytes": lambda c: c.build_stop(1, 200, [(b"a", "b")], None),
    "stop header name None": lambda c: c.build_stop(1, 200, [(None, "b")], None),
    "stop header value int": lambda c: c.build_stop(1, 200, [("a", 1)], None),
    "stop headers None": lambda c: c.build_stop(1, 200, None, None),
    "stop body str": lambda c: c.build_stop(1, 200, [], "body"),
    "stop body int": lambda c: c.build_stop(1, 200, [], 5),
    "rewrite path bytes": lambda c: c.build_rewrite(1, b"/p", [], [], [], None),
    "rewrite arg value float": lambda c: c.build_rewrite(1, None, [], [("a", 1.5)], [], None),
    "rewrite resp header name int": lambda c: c.build_rewrite(1, None, [], [], [(1, "v")], None),
    "rewrite args None": lambda c: c.build_rewrite(1, None, [], None, [], None),
    "rewrite body str": lambda c: c.build_rewrite(1, None, [], [], [], "x"),
    "resp_call_resp id str": lambda c: c.build_http_resp_call_resp("1", 200, [], None),
    "resp_call_resp body str": lambda c: c.build_http_resp_call_resp(1, 200, [], "x"),
    "extra_info_req var name bytes": lambda c: c.build_extra_info_req(1, b"host"),
    "extra_info_req type str": lambda c: c.build_extra_info_req("1", "host"),
    "err_resp code str": lambda c: c.build_err_resp("0"),
    "prepare_conf_req key bytes": lambda c: c.build_prepare_conf_req([], b"k"),
    "prepare_conf_req value int": lambda c: c.build_prepare_conf_req([("a", 1)], None),
    "prepare_conf_req name bytes": lambda c: c.build_prepare_conf_req([(b"a", "{}")], None),
    "req_call_req method str": lambda c: c.build_http_req_call_req(1, 1, "GET", "/", [], [], None),
    "req_call_req path bytes": lambda c: c.build_http_req_call_req(1, 1, 0, b"/", [], [], None),
    "req_call_req src_ip str": lambda c: c.build_http_req_call_req(1, 1, 0, "/", [], [], "1.2.3.4"),
    "resp_call_req header value int": lambda c: c.build_http_resp_call_req(1, 1, 200, [("a", 2)]),
    "extra_info_resp str": lambda c: c.build_extra_info_resp("result"),
    # bytes means bytes: copies of mutable buffers are the caller's choice
    "stop body bytearray": lambda c: c.build_stop(1, 200, [], bytearray(b"x")),
    "stop body memoryview": lambda c: c.build_stop(1, 200, [], memoryview(b"x")),
    "stop header value bytearray": lambda c: c.build_stop(1, 200, [("a", bytearray(b"x"))], None),
    "req_call_req src_ip bytearray": lambda c: c.build_http_req_call_req(
        1, 1, 0, "/", [], [], bytearray(4)
    ),
    "extra_info_resp bytearray": lambda c: c.build_extra_info_resp(bytearray(b"x")),
    # entries are a Sequence: len() is taken
    "stop headers generator": lambda c: c.build_stop(1, 200, (e for e in [("a", "b")]), None),
}


@pytest.mark.parametrize("call", OVERFLOWS.values(), ids=OVERFLOWS.keys())
def test_out_of_range_integers_raise_overflow_error(
    codec: ModuleType, call: Callable[[ModuleType], object]
) -> None:
    with pytest.raises(OverflowError):
        call(codec)


@pytest.mark.parametrize("call", TYPE_ERRORS.values(), ids=TYPE_ERRORS.keys())
def test_wrong_types_raise_type_error(
    codec: ModuleType, call: Callable[[ModuleType], object]
) -> None:
    with pytest.raises(TypeError):
        call(codec)


def test_text_that_cannot_be_encoded_raises_unicode_encode_error(codec: ModuleType) -> None:
    """Only the surrogates that surrogateescape produces (U+DC80..U+DCFF) encode."""
    with pytest.raises(UnicodeEncodeError):
        codec.build_stop(1, 200, [("a", "\ud800")], None)
    with pytest.raises(UnicodeEncodeError):
        codec.build_rewrite(1, "/\udfff", [], [], [], None)
    frame = codec.build_stop(1, 200, [("a", "\udcff\udc80")], None)
    headers = ref.read_http_req_call_resp(payload_of(frame, 2))["action"]["headers"]
    assert headers == [("a", "\udcff\udc80")]


def test_decoders_take_any_bytes_like_object(codec: ModuleType) -> None:
    payload = ref.encode_http_req_call_req(**FULL_REQ_CALL)
    for buffer in (bytearray(payload), memoryview(payload)):
        decoded = codec.decode_http_req_call_req(buffer)
        assert_req_call(decoded, FULL_REQ_CALL)
        assert type(decoded.src_ip) is bytes
    for not_bytes in ("text", None, 5):
        with pytest.raises(TypeError):
            codec.decode_err_resp(not_bytes)


def test_integer_limits_are_accepted(codec: ModuleType) -> None:
    payload = payload_of(codec.build_stop(U32_MAX, 65535, [], None), 2)
    assert ref.read_http_req_call_resp(payload)["action"]["status"] == 65535
    payload = payload_of(
        codec.build_http_req_call_req(U32_MAX, U32_MAX, 255, None, [], [], None), 2
    )
    decoded = codec.decode_http_req_call_req(payload)
    assert (decoded.id, decoded.conf_token, decoded.method) == (U32_MAX, U32_MAX, 255)
    assert ref.read_err_resp(payload_of(codec.build_err_resp(255), 0)) == 255


def test_bool_counts_as_an_integer(codec: ModuleType) -> None:
    assert ref.read_err_resp(payload_of(codec.build_err_resp(True), 0)) == 1


# --- decoders: everything is a DecodeError --------------------------------------------

DECODERS: dict[str, Callable[[ModuleType], Callable[[bytes], object]]] = {
    "prepare_conf_req": lambda c: c.decode_prepare_conf_req,
    "http_req_call_req": lambda c: c.decode_http_req_call_req,
    "http_resp_call_req": lambda c: c.decode_http_resp_call_req,
    "extra_info_resp": lambda c: c.decode_extra_info_resp,
    "err_resp": lambda c: c.decode_err_resp,
}


def test_every_truncation_of_a_real_request_is_a_decode_error_or_readable(
    codec: ModuleType,
) -> None:
    payload = ref.encode_http_req_call_req(**FULL_REQ_CALL)
    for end in range(len(payload)):
        try:
            decoded = codec.decode_http_req_call_req(payload[:end])
        except DecodeError:
            continue
        assert_req_call_readable(decoded)


def assert_req_call_readable(decoded: Any) -> None:
    assert isinstance(decoded.id, int)
    assert isinstance(decoded.path, str)
    assert isinstance(decoded.src_ip, bytes)
    assert isinstance(decoded.args, list)
    assert isinstance(decoded.headers, list)
