"""Property tests of the codec: random messages round-trip through our builders and
readers, agree with the generated FlatBuffers code, and (``both_codecs``) decode and
build identically in the pure and the native implementation."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import fbs_reference as ref
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# An exception swallowed inside a kernel (Cython "Exception ignored in ...") is a bug.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

# The codec fixtures hand out stateless modules: safe to share across examples.
_SUPPRESSED = [*settings().suppress_health_check, HealthCheck.function_scoped_fixture]
_EXAMPLES = settings().max_examples
PROPERTY = settings(suppress_health_check=_SUPPRESSED)
FEW = settings(suppress_health_check=_SUPPRESSED, max_examples=max(10, _EXAMPLES // 4))

U32 = st.integers(0, 2**32 - 1)
U16 = st.integers(0, 2**16 - 1)
U8 = st.integers(0, 255)

names = st.text(max_size=24)
# Text without lone surrogates, and bytes that are mostly not valid UTF-8.
values = st.one_of(st.none(), st.text(max_size=40), st.binary(max_size=40))
entries = st.lists(st.tuples(names, values), max_size=200)
small_entries = st.lists(st.tuples(names, values), max_size=12)
src_ips = st.one_of(
    st.none(),
    st.binary(min_size=4, max_size=4),
    st.binary(min_size=16, max_size=16),
    st.binary(max_size=20),
)
paths = st.one_of(st.none(), st.text(max_size=100))


@st.composite
def bodies(draw: st.DrawFn) -> bytes | None:
    """None, small bodies, and now and then one of up to 3 MiB."""
    kind = draw(st.sampled_from(["none", "small", "small", "small", "large"]))
    if kind == "none":
        return None
    if kind == "small":
        return draw(st.binary(max_size=300))
    size = draw(st.integers(0, 3 << 20))
    return random.Random(draw(st.integers(0, 2**32))).randbytes(size)


def absent_if_empty(value: Any) -> Any:
    """Our builders leave empty sequences and empty/None bytes absent; the reference
    reader shows an absent field as None."""
    return value if value else None


def entries_or_none(written: list[tuple[str, Any]]) -> list[tuple[str, str | None]] | None:
    return ref.entries_as_read(written) if written else None


# --- our builders -> our readers and the generated code -------------------------------


@PROPERTY
@given(
    id=U32,
    conf_token=U32,
    method=U8,
    path=paths,
    args=entries,
    headers=entries,
    src_ip=src_ips,
)
def test_http_req_call_req_round_trip(
    codec: ModuleType,
    id: int,
    conf_token: int,
    method: int,
    path: str | None,
    args: list[Any],
    headers: list[Any],
    src_ip: bytes | None,
) -> None:
    frame = codec.build_http_req_call_req(id, conf_token, method, path, args, headers, src_ip)
    assert codec.decode_frame_header(frame) == (codec.RPC_HTTP_REQ_CALL, len(frame) - 4)
    payload = frame[4:]
    decoded = codec.decode_http_req_call_req(payload)
    assert ref.snapshot("http_req_call_req", decoded) == (
        id,
        conf_token,
        method,
        path or "",
        src_ip or b"",
        ref.entries_as_read(args),
        ref.entries_as_read(headers),
    )
    assert ref.read_http_req_call_req(payload) == {
        "id": id,
        "conf_token": conf_token,
        "method": method,
        "path": path,
        "args": entries_or_none(args),
        "headers": entries_or_none(headers),
        "src_ip": absent_if_empty(src_ip),
    }


@PROPERTY
@given(id=U32, conf_token=U32, status=U16, headers=entries)
def test_http_resp_call_req_round_trip(
    codec: ModuleType, id: int, conf_token: int, status: int, headers: list[Any]
) -> None:
    payload = codec.build_http_resp_call_req(id, conf_token, status, headers)[4:]
    decoded = codec.decode_http_resp_call_req(payload)
    expected_headers = ref.entries_as_read(headers)
    assert ref.snapshot("http_resp_call_req", decoded) == (id, status, conf_token, expected_headers)
    assert ref.read_http_resp_call_req(payload) == {
        "id": id,
        "status": status,
        "conf_token": conf_token,
        "headers": entries_or_none(headers),
    }


conf_entries = st.lists(st.tuples(names, st.one_of(st.text(max_size=60), st.binary(max_size=60))))


@PROPERTY
@given(conf=conf_entries, key=st.one_of(st.none(), st.text(max_size=30)))
def test_prepare_conf_req_round_trip(
    codec: ModuleType, conf: list[tuple[str, str | bytes]], key: str | None
) -> None:
    payload = codec.build_prepare_conf_req(conf, key)[4:]
    raw_conf = [
        (name, value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value)
        for name, value in conf
    ]
    decoded = codec.decode_prepare_conf_req(payload)
    assert ref.snapshot("prepare_conf_req", decoded) == (key, raw_conf)
    assert ref.read_prepare_conf_req(payload) == {"conf": raw_conf or None, "key": key}


@FEW
@given(result=bodies())
def test_extra_info_resp_round_trip(codec: ModuleType, result: bytes | None) -> None:
    payload = codec.build_extra_info_resp(result)[4:]
    assert codec.decode_extra_info_resp(payload) == absent_if_empty(result)
    assert ref.read_extra_info_resp(payload) == absent_if_empty(result)


@PROPERTY
@given(code=U8)
def test_err_resp_round_trip(codec: ModuleType, code: int) -> None:
    payload = codec.build_err_resp(code)[4:]
    assert codec.decode_err_resp(payload) == code
    assert ref.read_err_resp(payload) == code


# --- our replies -> the generated code -------------------------------------------------


@FEW
@given(id=U32, status=U16, headers=entries, body=bodies())
def test_stop_reads_back(
    codec: ModuleType, id: int, status: int, headers: list[Any], body: bytes | None
) -> None:
    payload = codec.build_stop(id, status, headers, body)[4:]
    assert ref.read_http_req_call_resp(payload) == {
        "id": id,
        "action_type": codec.ACTION_STOP,
        "action": {
            "status": status,
            "headers": entries_or_none(headers),
            "body": absent_if_empty(body),
        },
    }


@FEW
@given(
    id=U32,
    path=paths,
    headers=small_entries,
    args=small_entries,
    resp_headers=small_entries,
    body=bodies(),
)
def test_rewrite_reads_back(
    codec: ModuleType,
    id: int,
    path: str | None,
    headers: list[Any],
    args: list[Any],
    resp_headers: list[Any],
    body: bytes | None,
) -> None:
    payload = codec.build_rewrite(id, path, headers, args, resp_headers, body)[4:]
    assert ref.read_http_req_call_resp(payload) == {
        "id": id,
        "action_type": codec.ACTION_REWRITE,
        "action": {
            "path": path,
            "headers": entries_or_none(headers),
            "args": entries_or_none(args),
            "resp_headers": entries_or_none(resp_headers),
            "body": absent_if_empty(body),
        },
    }


@FEW
@given(id=U32, status=U16, headers=entries, body=bodies())
def test_http_resp_call_resp_reads_back(
    codec: ModuleType, id: int, status: int, headers: list[Any], body: bytes | None
) -> None:
    payload = codec.build_http_resp_call_resp(id, status, headers, body)[4:]
    assert ref.read_http_resp_call_resp(payload) == {
        "id": id,
        "status": status,
        "headers": entries_or_none(headers),
        "body": absent_if_empty(body),
    }


@PROPERTY
@given(info_type=st.sampled_from([1, 2, 3]), name=st.text(max_size=40))
def test_extra_info_req_reads_back(codec: ModuleType, info_type: int, name: str) -> None:
    payload = codec.build_extra_info_req(info_type, name)[4:]
    expected_name = name if info_type == codec.INFO_VAR else None
    assert ref.read_extra_info_req(payload) == (info_type, expected_name, True)


@PROPERTY
@given(token=U32, id=U32)
def test_scalar_replies_read_back(codec: ModuleType, token: int, id: int) -> None:
    assert ref.read_prepare_conf_resp(codec.build_prepare_conf_resp(token)[4:]) == token
    assert ref.read_http_req_call_resp(codec.build_http_req_call_resp(id)[4:]) == {
        "id": id,
        "action_type": codec.ACTION_NONE,
        "action": None,
    }


# --- what other encoders write -> our readers ------------------------------------------

raw_names = st.one_of(st.none(), names, st.binary(max_size=24))
raw_entries = st.one_of(st.none(), st.lists(st.tuples(raw_names, values), max_size=30))
encoder_options = st.fixed_dictionaries(
    {
        "shared_strings": st.booleans(),
        "strings_first": st.booleans(),
        "reverse_entries": st.booleans(),
        "force_defaults": st.booleans(),
    }
)


@st.composite
def reference_req_calls(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """An HTTPReqCall.Req from flatbuffers.Builder with any field absent or empty and
    children written in any order; the fields as written."""
    fields = {
        "id": draw(st.one_of(st.none(), U32)),
        "conf_token": draw(st.one_of(st.none(), U32)),
        "method": draw(st.one_of(st.none(), U8)),
        "path": draw(st.one_of(st.none(), st.text(max_size=60), st.binary(max_size=60))),
        "args": draw(raw_entries),
        "headers": draw(raw_entries),
        "src_ip": draw(src_ips),
    }
    order = draw(st.permutations(["src_ip", "path", "args", "headers"]))
    options = draw(encoder_options)
    payload = ref.encode_http_req_call_req(
        **fields, children_order=order, scalars_first=draw(st.booleans()), **options
    )
    return payload, fields


def expected_req_call(fields: dict[str, Any]) -> tuple[Any, ...]:
    path = fields["path"]
    return (
        fields["id"] or 0,
        fields["conf_token"] or 0,
        fields["method"] or 0,
        "" if path is None else ref.entries_as_read([(path, None)])[0][0],
        fields["src_ip"] or b"",
        ref.entries_as_read(fields["args"] or []),
        ref.entries_as_read(fields["headers"] or []),
    )


@PROPERTY
@given(message=reference_req_calls())
def test_reference_encoded_req_call_decodes(
    codec: ModuleType, message: tuple[bytes, dict[str, Any]]
) -> None:
    payload, fields = message
    decoded = codec.decode_http_req_call_req(payload)
    assert ref.snapshot("http_req_call_req", decoded) == expected_req_call(fields)


@st.composite
def forward_req_calls(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """The same message laid out front to back, unaligned, without NUL terminators."""
    fields = {
        "id": draw(st.one_of(st.none(), U32)),
        "conf_token": draw(st.one_of(st.none(), U32)),
        "method": draw(st.one_of(st.none(), U8)),
        "path": draw(st.one_of(st.none(), st.text(max_size=60), st.binary(max_size=60))),
        "args": draw(raw_entries),
        "headers": draw(raw_entries),
        "src_ip": draw(src_ips),
    }

    def entry_field(written: Any) -> ref.Field:
        return None if written is None else ref.forward_entries(written)

    path = fields["path"]
    table: list[ref.Field] = [
        None if fields["id"] is None else ("u32", fields["id"]),
        None if fields["src_ip"] is None else ("ubytes", fields["src_ip"]),
        None if fields["method"] is None else ("u8", fields["method"]),
        None if path is None else ("str", ref._raw(path)),
        entry_field(fields["args"]),
        entry_field(fields["headers"]),
        None if fields["conf_token"] is None else ("u32", fields["conf_token"]),
    ]
    # Trailing absent fields may be left out of the vtable entirely.
    while draw(st.booleans()) and table and table[-1] is None:
        table.pop()
    return ref.forward_buffer(table, gap=draw(st.integers(0, 7))), fields


@PROPERTY
@given(message=forward_req_calls())
def test_forward_layout_req_call_decodes(
    codec: ModuleType, message: tuple[bytes, dict[str, Any]]
) -> None:
    payload, fields = message
    decoded = codec.decode_http_req_call_req(payload)
    assert ref.snapshot("http_req_call_req", decoded) == expected_req_call(fields)
    generated = ref.read_http_req_call_req(payload)
    assert (generated["id"], generated["method"]) == (fields["id"] or 0, fields["method"] or 0)


# --- both implementations agree ---------------------------------------------------------


@PROPERTY
@given(message=st.one_of(reference_req_calls(), forward_req_calls()))
def test_implementations_decode_req_calls_identically(
    both_codecs: tuple[ModuleType, ModuleType], message: tuple[bytes, dict[str, Any]]
) -> None:
    pure, native = both_codecs
    payload, _ = message
    assert ref.snapshot("http_req_call_req", native.decode_http_req_call_req(payload)) == (
        ref.snapshot("http_req_call_req", pure.decode_http_req_call_req(payload))
    )


@PROPERTY
@given(
    id=st.one_of(st.none(), U32),
    status=st.one_of(st.none(), U16),
    conf_token=st.one_of(st.none(), U32),
    headers=raw_entries,
    conf=raw_entries,
    key=st.one_of(st.none(), st.text(max_size=20), st.binary(max_size=20)),
    result=st.one_of(st.none(), st.binary(max_size=100)),
    code=st.one_of(st.none(), U8),
    options=encoder_options,
)
def test_implementations_decode_other_requests_identically(
    both_codecs: tuple[ModuleType, ModuleType],
    id: int | None,
    status: int | None,
    conf_token: int | None,
    headers: list[Any] | None,
    conf: list[Any] | None,
    key: str | bytes | None,
    result: bytes | None,
    code: int | None,
    options: dict[str, bool],
) -> None:
    pure, native = both_codecs
    payloads = {
        "http_resp_call_req": ref.encode_http_resp_call_req(
            id=id, status=status, conf_token=conf_token, headers=headers, **options
        ),
        "prepare_conf_req": ref.encode_prepare_conf_req(conf, key, **options),
        "extra_info_resp": ref.encode_extra_info_resp(result, **options),
        "err_resp": ref.encode_err_resp(code, **options),
    }
    for decoder, payload in payloads.items():
        decode = f"decode_{decoder}"
        assert ref.snapshot(decoder, getattr(native, decode)(payload)) == ref.snapshot(
            decoder, getattr(pure, decode)(payload)
        )


@FEW
@given(
    id=U32,
    status=U16,
    path=paths,
    headers=small_entries,
    args=small_entries,
    resp_headers=small_entries,
    body=bodies(),
    src_ip=src_ips,
    conf_token=U32,
    method=U8,
)
def test_implementations_build_equivalent_messages(
    both_codecs: tuple[ModuleType, ModuleType],
    id: int,
    status: int,
    path: str | None,
    headers: list[Any],
    args: list[Any],
    resp_headers: list[Any],
    body: bytes | None,
    src_ip: bytes | None,
    conf_token: int,
    method: int,
) -> None:
    """Byte equality is not required: both outputs must read the same with the generated
    code, and carry the same frame type."""
    pure, native = both_codecs
    builds = [
        (ref.read_http_req_call_resp, "build_stop", (id, status, headers, body)),
        (
            ref.read_http_req_call_resp,
            "build_rewrite",
            (id, path, headers, args, resp_headers, body),
        ),
        (ref.read_http_req_call_resp, "build_http_req_call_resp", (id,)),
        (ref.read_http_resp_call_resp, "build_http_resp_call_resp", (id, status, headers, body)),
        (ref.read_prepare_conf_resp, "build_prepare_conf_resp", (conf_token,)),
        (ref.read_extra_info_req, "build_extra_info_req", (1, path or "")),
        (ref.read_extra_info_req, "build_extra_info_req", (3,)),
        (ref.read_err_resp, "build_err_resp", (method,)),
        (
            ref.read_http_req_call_req,
            "build_http_req_call_req",
            (id, conf_token, method, path, args, headers, src_ip),
        ),
        (
            ref.read_http_resp_call_req,
            "build_http_resp_call_req",
            (id, conf_token, status, headers),
        ),
        (ref.read_extra_info_resp, "build_extra_info_resp", (body,)),
    ]
    for read, build, args_ in builds:
        pure_frame = getattr(pure, build)(*args_)
        native_frame = getattr(native, build)(*args_)
        assert type(native_frame) is bytes
        assert native_frame[0] == pure_frame[0], build
        assert native.decode_frame_header(native_frame)[1] == len(native_frame) - 4
        assert read(native_frame[4:]) == read(pure_frame[4:]), build
    conf = [(name, value if value is not None else "") for name, value in headers]
    pure_conf = pure.build_prepare_conf_req(conf, path)
    native_conf = native.build_prepare_conf_req(conf, path)
    assert ref.read_prepare_conf_req(native_conf[4:]) == ref.read_prepare_conf_req(pure_conf[4:])
