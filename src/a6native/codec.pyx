# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: embedsignature=True, auto_pickle=False
"""Compiled twin of ``a6runner._codec_py``: frames and the FlatBuffers tables of the protocol.

The contract is src/a6native/codec.pyi. Readers validate the whole reachable structure in C
(64-bit arithmetic, every offset checked against the buffer length), remember where each
field lives, and create Python objects on first access. Builders measure the reply first,
then write it forward (each parent before its children, vtables just before their tables)
straight into the one bytes object that is returned as the frame.

Laid out like msgpack's ``_cmsgpack.pyx``: this file holds what every part shares (C
declarations, the protocol vocabulary from cprotocol.pxd, the error types from
a6native.errors) and includes the parts, each the twin of one module of the pure side
(``a6runner._codec_py`` re-exports them), in the same order: codec_frames.pxi
(``_codec_frames_py``), codec_readers.pxi (``_codec_readers_py``), codec_builders.pxi
(``_codec_builders_py``). The FlatBuffers wire
primitives both readers and builders use are inline C helpers in flatbuffers_layout.pxd.
"""

cimport cython
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_Check,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

from a6native cimport cprotocol as proto
from a6native.flatbuffers_layout cimport (
    _Table,
    _byte_vector_size,
    _field_unchecked,
    _get_u16,
    _get_u32,
    _link,
    _put_byte_vector,
    _put_string,
    _put_table,
    _put_u16,
    _put_u32,
    _string_size,
    _target,
    _vtable_size,
)


cdef extern from "Python.h":
    # Declared here rather than cimported: these are the exact C signatures we rely on.
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    bint PyUnicode_Check(object o)
    bint PyLong_Check(object o)
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size)
    void PyErr_Clear()
    object PySequence_Tuple(object o)
    int _PyBytes_Resize(PyObject** bytes, Py_ssize_t newsize) except -1
    char* _raw_bytes_data "PyBytes_AS_STRING" (PyObject* bytes)
    void* _raw_str_data "PyUnicode_DATA" (PyObject* s)
    Py_ssize_t _raw_str_length "PyUnicode_GET_LENGTH" (PyObject* s)
    unsigned long long PyLong_AsUnsignedLongLong(object o) except? <unsigned long long>-1

from collections.abc import Sequence

from a6native.errors import DecodeError, FrameTooLarge

# The protocol vocabulary as Python names, from the C enums: the same names and values as
# a6native.protocol (tests/test_protocol_vocabulary.py checks them).
FRAME_HEADER_SIZE = proto.FRAME_HEADER_SIZE
MAX_PAYLOAD_SIZE = proto.MAX_PAYLOAD_SIZE

RPC_ERROR = proto.RPC_ERROR
RPC_PREPARE_CONF = proto.RPC_PREPARE_CONF
RPC_HTTP_REQ_CALL = proto.RPC_HTTP_REQ_CALL
RPC_EXTRA_INFO = proto.RPC_EXTRA_INFO
RPC_HTTP_RESP_CALL = proto.RPC_HTTP_RESP_CALL

ERR_BAD_REQUEST = proto.ERR_BAD_REQUEST
ERR_SERVICE_UNAVAILABLE = proto.ERR_SERVICE_UNAVAILABLE
ERR_CONF_TOKEN_NOT_FOUND = proto.ERR_CONF_TOKEN_NOT_FOUND

INFO_VAR = proto.INFO_VAR
INFO_REQ_BODY = proto.INFO_REQ_BODY
INFO_RESP_BODY = proto.INFO_RESP_BODY

ACTION_NONE = proto.ACTION_NONE
ACTION_STOP = proto.ACTION_STOP
ACTION_REWRITE = proto.ACTION_REWRITE

TextEntries = Sequence[tuple[str, str | bytes | None]]

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

cdef int64_t C_MAX_PAYLOAD = proto.MAX_PAYLOAD_SIZE


cdef bytes _payload_bytes(object buf):
    if PyBytes_CheckExact(buf):
        return <bytes>buf
    # A mutable buffer could change under our recorded offsets: take a private copy.
    # memoryview() refuses ints, which bytes() would turn into zero-filled buffers.
    return memoryview(buf).tobytes()


# The three parts of the codec, in the order of codec.pyi and of the pure twin's modules.
# Textual includes keep one C module, so every helper still inlines across them.
include "codec_frames.pxi"
include "codec_readers.pxi"
include "codec_builders.pxi"
