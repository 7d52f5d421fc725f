"""One protocol vocabulary: a6native.protocol (Python) and cprotocol.pxd (the C enums the
compiled codec builds with) agree name by name, both codec twins re-export it, and it
matches the enums generated from the schema."""

from __future__ import annotations

from types import ModuleType

import pytest

from a6native import protocol
from a6runner._fbs.Action import Action
from a6runner._fbs.ErrCode import ErrCode
from a6runner._fbs.Info import Info

PREFIXES = ("RPC_", "ERR_", "INFO_", "ACTION_", "FRAME_", "MAX_")


def vocabulary_names(module: ModuleType) -> set[str]:
    return {name for name in dir(module) if name.startswith(PREFIXES)}


def test_the_vocabulary_module_exports_every_name_it_defines() -> None:
    assert set(protocol.__all__) == vocabulary_names(protocol)
    assert len(protocol.__all__) == 16


def test_codec_carries_the_vocabulary_name_by_name(codec: ModuleType) -> None:
    """Native: values converted from the cdef enums of cprotocol.pxd; pure: imported."""
    assert vocabulary_names(codec) == set(protocol.__all__)
    for name in protocol.__all__:
        value = getattr(codec, name)
        assert type(value) is int, name
        assert value == getattr(protocol, name), name


@pytest.mark.parametrize(
    ("name", "generated"),
    [
        ("ACTION_NONE", Action.NONE),
        ("ACTION_STOP", Action.Stop),
        ("ACTION_REWRITE", Action.Rewrite),
        ("INFO_VAR", Info.Var),
        ("INFO_REQ_BODY", Info.ReqBody),
        ("INFO_RESP_BODY", Info.RespBody),
        ("ERR_BAD_REQUEST", ErrCode.BAD_REQUEST),
        ("ERR_SERVICE_UNAVAILABLE", ErrCode.SERVICE_UNAVAILABLE),
        ("ERR_CONF_TOKEN_NOT_FOUND", ErrCode.CONF_TOKEN_NOT_FOUND),
    ],
)
def test_vocabulary_matches_the_schema(name: str, generated: int) -> None:
    """The union tags and error codes are those flatc generated from schema/a6.fbs."""
    assert getattr(protocol, name) == generated


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RPC_ERROR", 0),
        ("RPC_PREPARE_CONF", 1),
        ("RPC_HTTP_REQ_CALL", 2),
        ("RPC_EXTRA_INFO", 3),
        ("RPC_HTTP_RESP_CALL", 4),
        ("FRAME_HEADER_SIZE", 4),
        ("MAX_PAYLOAD_SIZE", 16_777_215),
    ],
)
def test_frame_vocabulary_is_protocol_md(name: str, value: int) -> None:
    """PROTOCOL.md §2: frame types and the 24-bit length."""
    assert getattr(protocol, name) == value


def test_builders_write_the_vocabulary(codec: ModuleType) -> None:
    """The native builders take their frame types and tags from the enums: each frame
    starts with the type the vocabulary names."""
    frames = {
        protocol.RPC_ERROR: codec.build_err_resp(protocol.ERR_BAD_REQUEST),
        protocol.RPC_PREPARE_CONF: codec.build_prepare_conf_resp(1),
        protocol.RPC_HTTP_REQ_CALL: codec.build_stop(1, 403, [], None),
        protocol.RPC_EXTRA_INFO: codec.build_extra_info_req(protocol.INFO_REQ_BODY),
        protocol.RPC_HTTP_RESP_CALL: codec.build_http_resp_call_resp(1, 200, [], None),
    }
    for frame_type, frame in frames.items():
        assert codec.decode_frame_header(frame) == (
            frame_type,
            len(frame) - protocol.FRAME_HEADER_SIZE,
        )
