"""The protocol vocabulary: frame types, error codes, ExtraInfo kinds, Rewrite/Stop action
tags and the frame limits of the APISIX ext-plugin protocol (PROTOCOL.md §2, §3).

Written once for Python here, once for C in ``cprotocol.pxd`` (the ``cdef enum``\\ s the
compiled codec builds its frames with); tests/test_protocol_vocabulary.py checks the two
name by name. Both codec twins re-export these names (``codec.RPC_EXTRA_INFO``), and
anything else that speaks the protocol imports them from here. Pure Python with no
imports beyond ``typing``: light to import, with or without the compiled kernels.
"""

from typing import Final

# Framing: a 4-byte header (type, then a 24-bit big-endian payload length).
FRAME_HEADER_SIZE: Final = 4
MAX_PAYLOAD_SIZE: Final = 16_777_215

# Frame types (byte 0 of the header).
RPC_ERROR: Final = 0
RPC_PREPARE_CONF: Final = 1
RPC_HTTP_REQ_CALL: Final = 2
RPC_EXTRA_INFO: Final = 3
RPC_HTTP_RESP_CALL: Final = 4

# Err.Code
ERR_BAD_REQUEST: Final = 0
ERR_SERVICE_UNAVAILABLE: Final = 1
ERR_CONF_TOKEN_NOT_FOUND: Final = 2

# ExtraInfo.Info union tags: what the runner asks APISIX for mid-call.
INFO_VAR: Final = 1
INFO_REQ_BODY: Final = 2
INFO_RESP_BODY: Final = 3

# HTTPReqCall.Action union tags.
ACTION_NONE: Final = 0
ACTION_STOP: Final = 1
ACTION_REWRITE: Final = 2

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
]
