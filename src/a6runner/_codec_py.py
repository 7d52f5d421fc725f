"""Pure-Python twin of ``a6native.codec``: frames and the FlatBuffers tables of the protocol.

Function for function a mirror of src/a6native/codec.pyi, which states the rules both
implementations follow. Readers are hand-written and bounds-checked: they validate the
whole reachable structure eagerly, remember where each field lives, and build the Python
objects on first access. Builders write the very layout of the compiled twin's, byte for
byte, packed with ``struct``; the ``flatbuffers`` runtime and the generated code in
``a6runner._fbs`` are only the tests' independent reference.

Split the way the compiled twin is: this module is the one the selector imports: it
holds the protocol vocabulary every part shares and re-exports the parts, modules of their
own, each the pure side of one included file, in the same order:
``_codec_frames_py`` (codec_frames.pxi), ``_codec_readers_py`` (codec_readers.pxi),
``_codec_builders_py`` (codec_builders.pxi).
"""

from __future__ import annotations

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

from ._codec_builders_py import (
    TextEntries,
    build_err_resp,
    build_extra_info_req,
    build_extra_info_resp,
    build_http_req_call_req,
    build_http_req_call_resp,
    build_http_resp_call_req,
    build_http_resp_call_resp,
    build_prepare_conf_req,
    build_prepare_conf_resp,
    build_rewrite,
    build_stop,
)
from ._codec_frames_py import FrameSplitter, decode_frame_header, encode_frame, encode_frame_header
from ._codec_readers_py import (
    HTTPReqCallReq,
    HTTPRespCallReq,
    PrepareConfReq,
    decode_err_resp,
    decode_extra_info_resp,
    decode_http_req_call_req,
    decode_http_resp_call_req,
    decode_prepare_conf_req,
)

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
