"""The wire codec: frames and the FlatBuffers tables of the APISIX ext-plugin protocol.

This stub is the contract of BOTH implementations: ``a6native.codec`` (Cython) and
``a6runner._codec_py`` (pure Python). Same names, same signatures, same results, same
exceptions. See schema/a6.fbs and PROTOCOL.md.

Decoding rules (identical in both implementations)
--------------------------------------------------
* ``decode_*`` functions take the frame *payload* (``bytes``) and validate the whole
  structure they can reach eagerly; afterwards every attribute access succeeds. Python
  objects for fields are created lazily on first access and cached.
* Any structural problem raises ``a6runner.DecodeError`` (a ``ProtocolError`` and a
  ``ValueError``) and nothing else. A buffer is valid iff:
  - ``len(buf) >= 4``; root table position ``r = u32(buf, 0)``;
  - every table position ``t`` satisfies ``t + 4 <= len``; its vtable ``vt = t - i32(buf, t)``
    satisfies ``0 <= vt`` and ``vt + 4 <= len``; ``vtsize = u16(vt)`` is even, ``>= 4`` and
    ``vt + vtsize <= len``; ``tsize = u16(vt + 2)`` is ``>= 4`` and ``t + tsize <= len``;
  - field ``i`` is present iff ``4 + 2*i + 2 <= vtsize`` and ``off = u16(vt + 4 + 2*i) != 0``;
    a present field of byte size ``s`` (scalars 1/2/4, offsets 4) satisfies ``t + off + s <= len``;
  - an offset field at ``p`` targets ``q = p + u32(p)``; a string/vector at ``q`` needs
    ``q + 4 <= len`` and ``q + 4 + n * elem_size <= len`` with ``n = u32(q)`` (no NUL required);
    a table at ``q`` is validated as above; a vector of tables validates every element;
  - no alignment is required; arithmetic never overflows (done in 64 bits / Python ints).
* Absent fields take defaults: integers 0; ``path`` ""; ``key`` None; vectors []/b"";
  TextEntry ``name`` "" and ``value`` None.
* Strings decode as UTF-8 with ``errors="surrogateescape"`` (never fails; binary header
  values round-trip). Builders encode ``str`` the same way; ``bytes`` values are used as is.

Building rules
--------------
* Every ``build_*`` returns a complete frame: 4-byte header (type, 24-bit big-endian length)
  followed by the FlatBuffers payload, ready for one ``write``. Payloads above
  ``MAX_PAYLOAD_SIZE`` raise ``a6runner.FrameTooLarge``.
* A sequence argument that is empty, or a ``bytes`` argument that is None or empty, leaves
  its field absent. ``path=None`` leaves the path absent (``""`` is written as a string).
  Entries are ``(name, value)``; ``value=None`` writes a TextEntry without value.
* An integer outside its field's range (uint32 ids/tokens, uint16 status, ubyte method/code)
  raises ``OverflowError``; a wrong type raises ``TypeError``.
* Both implementations write the same bytes: the root offset, then each table's vtable
  just before the table, each child after the offset that points to it, everything 4-byte
  aligned and zero-padded (codec_builders.pxi; tests/test_codec_builders_identical.py).
* Output must decode with the ``flatbuffers`` runtime + generated code (src/a6runner/_fbs,
  the tests' independent reference; the runner itself never imports them) and with our
  own readers.
"""

from collections.abc import Sequence

# The protocol vocabulary (frame types, error codes, info kinds, action tags, frame
# limits), defined in a6native.protocol and re-exported by both implementations.
from a6native.protocol import ACTION_NONE as ACTION_NONE
from a6native.protocol import ACTION_REWRITE as ACTION_REWRITE
from a6native.protocol import ACTION_STOP as ACTION_STOP
from a6native.protocol import ERR_BAD_REQUEST as ERR_BAD_REQUEST
from a6native.protocol import ERR_CONF_TOKEN_NOT_FOUND as ERR_CONF_TOKEN_NOT_FOUND
from a6native.protocol import ERR_SERVICE_UNAVAILABLE as ERR_SERVICE_UNAVAILABLE
from a6native.protocol import FRAME_HEADER_SIZE as FRAME_HEADER_SIZE
from a6native.protocol import INFO_REQ_BODY as INFO_REQ_BODY
from a6native.protocol import INFO_RESP_BODY as INFO_RESP_BODY
from a6native.protocol import INFO_VAR as INFO_VAR
from a6native.protocol import MAX_PAYLOAD_SIZE as MAX_PAYLOAD_SIZE
from a6native.protocol import RPC_ERROR as RPC_ERROR
from a6native.protocol import RPC_EXTRA_INFO as RPC_EXTRA_INFO
from a6native.protocol import RPC_HTTP_REQ_CALL as RPC_HTTP_REQ_CALL
from a6native.protocol import RPC_HTTP_RESP_CALL as RPC_HTTP_RESP_CALL
from a6native.protocol import RPC_PREPARE_CONF as RPC_PREPARE_CONF

TextEntries = Sequence[tuple[str, str | bytes | None]]

# --- frames -------------------------------------------------------------------------

def encode_frame_header(frame_type: int, length: int) -> bytes:
    """4 header bytes. FrameTooLarge if length > MAX_PAYLOAD_SIZE; ValueError if
    frame_type is not in 0..255 or length < 0."""

def decode_frame_header(header: bytes) -> tuple[int, int]:
    """(frame_type, payload_length) from the first 4 bytes; DecodeError if fewer."""

def encode_frame(frame_type: int, payload: bytes) -> bytes:
    """header + payload in one bytes object. FrameTooLarge if the payload is too long."""

class FrameSplitter:
    """Turns a byte stream cut at arbitrary points into whole frames.

    Memory is linear in the bytes buffered; a 16 MiB frame arriving in 64 KiB chunks costs
    O(total) copying, not O(n^2). Zero-length payloads yield ``(type, b"")``.
    """

    def __init__(self) -> None: ...
    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add bytes; return every frame completed by them, in order."""
    @property
    def pending(self) -> int:
        """Bytes buffered towards the next, incomplete frame (header bytes included)."""
    @property
    def expected(self) -> int:
        """Bytes the incomplete frame will hold when complete (header included) once its
        header has arrived; the header bytes gathered so far before that; 0 between
        frames."""

# --- readers (runner side: what APISIX sends) ---------------------------------------

class PrepareConfReq:
    @property
    def key(self) -> str | None: ...
    @property
    def conf(self) -> list[tuple[str, bytes]]:
        """(plugin name, raw JSON conf value as bytes) in execution order; a missing
        value is b""."""

class HTTPReqCallReq:
    @property
    def id(self) -> int: ...
    @property
    def conf_token(self) -> int: ...
    @property
    def method(self) -> int:
        """The Method enum value (GET=0 ... TRACE=14; other values are passed through)."""
    @property
    def path(self) -> str: ...
    @property
    def src_ip(self) -> bytes:
        """4 (IPv4) or 16 (IPv6) bytes as sent; any length is passed through."""
    @property
    def args(self) -> list[tuple[str, str | None]]: ...
    @property
    def headers(self) -> list[tuple[str, str | None]]: ...

class HTTPRespCallReq:
    @property
    def id(self) -> int: ...
    @property
    def status(self) -> int: ...
    @property
    def conf_token(self) -> int: ...
    @property
    def headers(self) -> list[tuple[str, str | None]]: ...

def decode_prepare_conf_req(buf: bytes) -> PrepareConfReq: ...
def decode_http_req_call_req(buf: bytes) -> HTTPReqCallReq: ...
def decode_http_resp_call_req(buf: bytes) -> HTTPRespCallReq: ...
def decode_extra_info_resp(buf: bytes) -> bytes | None:
    """The ``result`` vector, or None when absent (nil value)."""

def decode_err_resp(buf: bytes) -> int:
    """The error code."""

# --- builders (runner side: our replies) ---------------------------------------------

def build_prepare_conf_resp(conf_token: int) -> bytes: ...
def build_http_req_call_resp(id: int) -> bytes:
    """HTTPReqCall.Resp with no action (let the request through unchanged)."""

def build_stop(id: int, status: int, headers: TextEntries, body: bytes | None) -> bytes:
    """HTTPReqCall.Resp with a Stop action."""

def build_rewrite(
    id: int,
    path: str | None,
    headers: TextEntries,
    args: TextEntries,
    resp_headers: TextEntries,
    body: bytes | None,
) -> bytes:
    """HTTPReqCall.Resp with a Rewrite action."""

def build_http_resp_call_resp(
    id: int, status: int, headers: TextEntries, body: bytes | None
) -> bytes: ...
def build_extra_info_req(info_type: int, name: str | None = None) -> bytes:
    """ExtraInfo.Req; ``name`` is required for INFO_VAR (ValueError otherwise) and ignored
    for the body types. ValueError for an unknown info_type."""

def build_err_resp(code: int) -> bytes: ...

# --- builders (client side: what APISIX sends; used by a6runner.testing and bench) ----

def build_prepare_conf_req(conf: Sequence[tuple[str, str | bytes]], key: str | None) -> bytes: ...
def build_http_req_call_req(
    id: int,
    conf_token: int,
    method: int,
    path: str | None,
    args: TextEntries,
    headers: TextEntries,
    src_ip: bytes | None,
) -> bytes: ...
def build_http_resp_call_req(
    id: int, conf_token: int, status: int, headers: TextEntries
) -> bytes: ...
def build_extra_info_resp(result: bytes | None) -> bytes: ...
