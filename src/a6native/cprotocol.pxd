# The protocol vocabulary for C: the same names and values as a6native/protocol.py, which
# is what Python code (the pure twin, the .pyi, the runtime) imports. The compiled codec
# cimports these enums so that its builders name every frame type, tag and code;
# tests/test_protocol_vocabulary.py checks both definitions name by name.

cdef enum:
    # Framing: a 4-byte header (type, then a 24-bit big-endian payload length).
    FRAME_HEADER_SIZE = 4
    MAX_PAYLOAD_SIZE = 0xFFFFFF  # 16,777,215

cdef enum FrameType:
    RPC_ERROR = 0
    RPC_PREPARE_CONF = 1
    RPC_HTTP_REQ_CALL = 2
    RPC_EXTRA_INFO = 3
    RPC_HTTP_RESP_CALL = 4

cdef enum ErrCode:
    ERR_BAD_REQUEST = 0
    ERR_SERVICE_UNAVAILABLE = 1
    ERR_CONF_TOKEN_NOT_FOUND = 2

# ExtraInfo.Info union tags: what the runner asks APISIX for mid-call.
cdef enum InfoType:
    INFO_VAR = 1
    INFO_REQ_BODY = 2
    INFO_RESP_BODY = 3

# HTTPReqCall.Action union tags.
cdef enum ActionType:
    ACTION_NONE = 0
    ACTION_STOP = 1
    ACTION_REWRITE = 2
