"""The two codec twins build the very same bytes: the pure builders write the compiled
ones' forward layout, so every frame is compared byte for byte (on random messages, with
hypothesis), and bad arguments raise the same exception type in both. That the layout is
valid FlatBuffers is checked elsewhere with the generated code (fbs_reference)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import fbs_reference as ref
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_SUPPRESSED = [*settings().suppress_health_check, HealthCheck.function_scoped_fixture]
PROPERTY = settings(suppress_health_check=_SUPPRESSED)

U32 = st.integers(0, 2**32 - 1)
U16 = st.integers(0, 2**16 - 1)
U8 = st.integers(0, 255)
# Names and values of every size modulo 4 (padding), lone surrogates (surrogateescape),
# bytes values, entries without value.
texts = st.text(max_size=20)
names = st.one_of(texts, st.text(alphabet="abc\udcff", max_size=9))
values = st.one_of(st.none(), texts, st.binary(max_size=20))
entries = st.lists(st.tuples(names, values), max_size=12)
optional_bytes = st.one_of(st.none(), st.binary(max_size=70))
optional_texts = st.one_of(st.none(), names)


def both_build(pure: ModuleType, native: ModuleType, builder: str, *args: Any) -> bytes:
    pure_frame = getattr(pure, builder)(*args)
    native_frame = getattr(native, builder)(*args)
    assert type(pure_frame) is bytes
    assert pure_frame == native_frame, builder
    return pure_frame


@PROPERTY
@given(id=U32, status=U16, headers=entries, body=optional_bytes)
def test_stop(both_codecs: tuple[ModuleType, ModuleType], id: int, status: int,
              headers: list[Any], body: bytes | None) -> None:  # fmt: skip
    frame = both_build(*both_codecs, "build_stop", id, status, headers, body)
    assert ref.read_http_req_call_resp(frame[4:])["id"] == id


@PROPERTY
@given(
    id=U32,
    path=optional_texts,
    headers=entries,
    args=entries,
    resp_headers=entries,
    body=optional_bytes,
)
def test_rewrite(both_codecs: tuple[ModuleType, ModuleType], id: int, path: str | None,
                 headers: list[Any], args: list[Any], resp_headers: list[Any],
                 body: bytes | None) -> None:  # fmt: skip
    both_build(*both_codecs, "build_rewrite", id, path, headers, args, resp_headers, body)


@PROPERTY
@given(id=U32, status=U16, headers=entries, body=optional_bytes)
def test_http_resp_call_resp(both_codecs: tuple[ModuleType, ModuleType], id: int,
                             status: int, headers: list[Any],
                             body: bytes | None) -> None:  # fmt: skip
    both_build(*both_codecs, "build_http_resp_call_resp", id, status, headers, body)


@PROPERTY
@given(value=U32, code=U8, name=names, kind=st.sampled_from([1, 2, 3]))
def test_small_replies(both_codecs: tuple[ModuleType, ModuleType], value: int, code: int,
                       name: str, kind: int) -> None:  # fmt: skip
    both_build(*both_codecs, "build_prepare_conf_resp", value)
    both_build(*both_codecs, "build_http_req_call_resp", value)
    both_build(*both_codecs, "build_err_resp", code)
    both_build(*both_codecs, "build_extra_info_req", kind, name)
    both_build(*both_codecs, "build_extra_info_req", kind, None if kind != 1 else name)


@PROPERTY
@given(
    id=U32,
    conf_token=U32,
    method=U8,
    path=optional_texts,
    args=entries,
    headers=entries,
    src_ip=optional_bytes,
    status=U16,
    key=optional_texts,
    result=optional_bytes,
)
def test_client_side(both_codecs: tuple[ModuleType, ModuleType], id: int, conf_token: int,
                     method: int, path: str | None, args: list[Any], headers: list[Any],
                     src_ip: bytes | None, status: int, key: str | None,
                     result: bytes | None) -> None:  # fmt: skip
    pure, native = both_codecs
    both_build(pure, native, "build_http_req_call_req", id, conf_token, method, path, args,
               headers, src_ip)  # fmt: skip
    both_build(pure, native, "build_http_resp_call_req", id, conf_token, status, headers)
    both_build(pure, native, "build_prepare_conf_req", args, key)
    both_build(pure, native, "build_extra_info_resp", result)


@pytest.mark.slow
def test_large_body(both_codecs: tuple[ModuleType, ModuleType]) -> None:
    body = bytes(range(256)) * 12_289  # 3 MiB and 256 bytes, not a multiple of 4 + 1
    both_build(*both_codecs, "build_http_resp_call_resp", 1, 200, [("a", "b")], body[:-1])
    both_build(*both_codecs, "build_stop", 1, 200, [], body)


class Weird:
    pass


BAD_ENTRIES = [None, 5, [5], [("a",)], [("a", "b", "c")], [(5, "v")], [("n", 5)], [(b"n", "v")],
               [("n", Weird())], iter([("a", "b")])]  # fmt: skip
BAD_INTS = [-1, 2**32, 1.5, "1", None]


def raised(call: Any) -> type[BaseException] | None:
    try:
        call()
    except Exception as exc:
        return type(exc)
    return None


@pytest.mark.parametrize("bad", BAD_ENTRIES, ids=repr)
def test_bad_entries_raise_alike(both_codecs: tuple[ModuleType, ModuleType], bad: Any) -> None:
    pure, native = both_codecs
    calls = [
        ("build_stop", lambda c: c.build_stop(1, 200, bad, None)),
        ("build_rewrite", lambda c: c.build_rewrite(1, None, [], [], bad, None)),
        ("build_http_resp_call_resp", lambda c: c.build_http_resp_call_resp(1, 200, bad, b"x")),
        ("build_prepare_conf_req", lambda c: c.build_prepare_conf_req(bad, "k")),
    ]
    for name, call in calls:
        expected = raised(lambda: call(native))  # noqa: B023
        assert raised(lambda: call(pure)) is expected, name  # noqa: B023
        assert expected in (TypeError, ValueError), name


@pytest.mark.parametrize("bad", BAD_INTS, ids=repr)
def test_bad_numbers_raise_alike(both_codecs: tuple[ModuleType, ModuleType], bad: Any) -> None:
    pure, native = both_codecs
    calls = [
        lambda c: c.build_stop(bad, 200, [], None),
        lambda c: c.build_stop(1, bad, [], None),
        lambda c: c.build_err_resp(bad),
        lambda c: c.build_prepare_conf_resp(bad),
        lambda c: c.build_http_req_call_req(1, 1, bad, None, [], [], None),
        lambda c: c.build_extra_info_req(bad, "x"),
    ]
    for call in calls:
        assert raised(lambda: call(pure)) is raised(lambda: call(native))  # noqa: B023
