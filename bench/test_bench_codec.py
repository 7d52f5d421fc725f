"""Microbenchmarks of the wire codec, native vs pure, one group per operation.

    .venv/bin/pytest bench/test_bench_codec.py --benchmark-only

The decoders' inputs are built once with the ``flatbuffers`` runtime and the generated
code (back to front, like APISIX's own encoder), so both readers decode the very same
bytes, laid out as APISIX lays them out.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import flatbuffers
import pytest
from conftest import REQUEST_HEADERS

from a6runner import _codec_py as reference
from a6runner._fbs import HTTPReqCallReq, PrepareConfReq, TextEntry

# Sub-microsecond calls: long rounds and a warmup keep timer overhead and calibration
# from moving the medians between runs.
STEADY: dict[str, Any] = {"min_time": 0.0002, "warmup": True}

REQUEST_ARGS = [("page", "2"), ("q", "gateway plugins"), ("verbose", None)]
REQUEST_PATH = "/api/v1/users/42/orders"


def apisix_entries(builder: flatbuffers.Builder, entries: list[tuple[str, Any]]) -> int:
    tables = []
    for name, value in entries:
        name_offset = builder.CreateString(name)
        value_offset = None if value is None else builder.CreateString(value)
        TextEntry.Start(builder)
        if value_offset is not None:
            TextEntry.AddValue(builder, value_offset)
        TextEntry.AddName(builder, name_offset)
        tables.append(TextEntry.End(builder))
    builder.StartVector(4, len(tables), 4)
    for table in reversed(tables):
        builder.PrependUOffsetTRelative(table)
    return int(builder.EndVector())


def apisix_http_req_call() -> bytes:
    builder = flatbuffers.Builder(1024)
    src_ip = builder.CreateByteVector(bytes([203, 0, 113, 7]))
    path = builder.CreateString(REQUEST_PATH)
    args = apisix_entries(builder, REQUEST_ARGS)
    headers = apisix_entries(builder, REQUEST_HEADERS)
    HTTPReqCallReq.Start(builder)
    HTTPReqCallReq.AddHeaders(builder, headers)
    HTTPReqCallReq.AddArgs(builder, args)
    HTTPReqCallReq.AddPath(builder, path)
    HTTPReqCallReq.AddSrcIp(builder, src_ip)
    HTTPReqCallReq.AddId(builder, 123456)
    HTTPReqCallReq.AddConfToken(builder, 7)
    HTTPReqCallReq.AddMethod(builder, 2)
    builder.Finish(HTTPReqCallReq.End(builder))
    return bytes(builder.Output())


def apisix_prepare_conf() -> bytes:
    builder = flatbuffers.Builder(1024)
    conf = apisix_entries(
        builder,
        [
            ("say", '{"body": "hello", "status": 200, "headers": {"x-say": "hi"}}'),
            ("limit_req", '{"rate": 100, "burst": 50, "key": "remote_addr"}'),
            ("proxy_rewrite", '{"uri": "/v2/$1", "headers": {"x-rewritten": "1"}}'),
        ],
    )
    key = builder.CreateString("route#42:1700000000")
    PrepareConfReq.Start(builder)
    PrepareConfReq.AddKey(builder, key)
    PrepareConfReq.AddConf(builder, conf)
    builder.Finish(PrepareConfReq.End(builder))
    return bytes(builder.Output())


HTTP_REQ_CALL_PAYLOAD = apisix_http_req_call()
PREPARE_CONF_PAYLOAD = apisix_prepare_conf()

RESPONSE_HEADERS = [
    ("content-type", "application/json; charset=utf-8"),
    ("cache-control", "no-store"),
    ("date", "Tue, 25 Nov 2025 10:00:00 GMT"),
    ("etag", '"33a64df551425fcc55e4d42a148795d9f25f89d4"'),
    ("server", "upstream/1.2"),
    ("vary", "Accept-Encoding"),
    ("x-request-id", "7c9e6679-7425-40de-944b-e07fc1f90ae7"),
    ("x-upstream-time", "0.012"),
]
BODY_4K = (b'{"items": [' + b'{"id": 1, "name": "item"}, ' * 200)[:4096]


def read_http_req_call(codec: ModuleType) -> tuple[Any, ...]:
    request = codec.decode_http_req_call_req(HTTP_REQ_CALL_PAYLOAD)
    return (
        request.id,
        request.conf_token,
        request.method,
        request.path,
        request.headers,
        request.args,
    )


@pytest.mark.benchmark(
    group="codec: decode HTTPReqCall (12 headers, 3 args), read fields", **STEADY
)
def test_decode_http_req_call(benchmark: Any, codec_impl: ModuleType) -> None:
    fields = benchmark(read_http_req_call, codec_impl)
    assert fields == (123456, 7, 2, REQUEST_PATH, REQUEST_HEADERS, REQUEST_ARGS)


def read_prepare_conf(codec: ModuleType) -> tuple[Any, ...]:
    request = codec.decode_prepare_conf_req(PREPARE_CONF_PAYLOAD)
    return request.key, request.conf


@pytest.mark.benchmark(group="codec: decode PrepareConf (3 plugins, key), read fields", **STEADY)
def test_decode_prepare_conf(benchmark: Any, codec_impl: ModuleType) -> None:
    key, conf = benchmark(read_prepare_conf, codec_impl)
    assert key == "route#42:1700000000"
    assert [name for name, _ in conf] == ["say", "limit_req", "proxy_rewrite"]


@pytest.mark.benchmark(group="codec: build Stop (3 headers, small body)", **STEADY)
def test_build_stop(benchmark: Any, codec_impl: ModuleType) -> None:
    headers = [("content-type", "text/plain"), ("x-say", "hi"), ("x-say", "again")]
    frame = benchmark(codec_impl.build_stop, 123456, 403, headers, b"forbidden by policy\n")
    assert reference.decode_frame_header(frame) == (reference.RPC_HTTP_REQ_CALL, len(frame) - 4)


@pytest.mark.benchmark(
    group="codec: build Rewrite (path, 2 headers, 1 arg, 1 resp header)", **STEADY
)
def test_build_rewrite(benchmark: Any, codec_impl: ModuleType) -> None:
    frame = benchmark(
        codec_impl.build_rewrite,
        123456,
        "/v2/users/42/orders",
        [("x-user-id", "42"), ("cookie", None)],
        [("page", "3")],
        [("x-rewritten", "1")],
        None,
    )
    assert reference.decode_frame_header(frame) == (reference.RPC_HTTP_REQ_CALL, len(frame) - 4)


@pytest.mark.benchmark(group="codec: build HTTPRespCall reply (8 headers, 4 KiB body)", **STEADY)
def test_build_http_resp_call_resp(benchmark: Any, codec_impl: ModuleType) -> None:
    frame = benchmark(codec_impl.build_http_resp_call_resp, 123456, 200, RESPONSE_HEADERS, BODY_4K)
    assert len(frame) > len(BODY_4K)
    assert reference.decode_frame_header(frame) == (reference.RPC_HTTP_RESP_CALL, len(frame) - 4)


FRAME_COUNT = 1000
CHUNK_SIZE = 4096
STREAM = b"".join(
    reference.encode_frame(reference.RPC_HTTP_REQ_CALL, HTTP_REQ_CALL_PAYLOAD[: 64 + i % 512])
    for i in range(FRAME_COUNT)
)
CHUNKS = [STREAM[start : start + CHUNK_SIZE] for start in range(0, len(STREAM), CHUNK_SIZE)]


def split_stream(codec: ModuleType) -> int:
    splitter = codec.FrameSplitter()
    count = 0
    for chunk in CHUNKS:
        count += len(splitter.feed(chunk))
    return count


@pytest.mark.benchmark(group="codec: split 1,000 frames fed in 4 KiB chunks", **STEADY)
def test_split_stream(benchmark: Any, codec_impl: ModuleType) -> None:
    assert benchmark(split_stream, codec_impl) == FRAME_COUNT
