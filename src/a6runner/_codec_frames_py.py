"""The frames part of the pure codec twin (native: ``a6native/codec_frames.pxi``): frame
headers and the stream splitter. ``a6runner._codec_py`` re-exports it with the readers
(``_codec_readers_py``) and the builders (``_codec_builders_py``)."""

from __future__ import annotations

import struct

from a6native.errors import DecodeError, FrameTooLarge
from a6native.protocol import FRAME_HEADER_SIZE, MAX_PAYLOAD_SIZE

__all__ = ["FrameSplitter", "decode_frame_header", "encode_frame", "encode_frame_header"]

# --- frames -------------------------------------------------------------------------
# (native: codec_frames.pxi)

_frame_header = struct.Struct(">I")
_read_frame_header = _frame_header.unpack_from
_pack_frame_header = _frame_header.pack  # the builders' too: (type << 24 | length) -> 4 bytes


def encode_frame_header(frame_type: int, length: int) -> bytes:
    """4 header bytes. FrameTooLarge if length > MAX_PAYLOAD_SIZE; ValueError if
    frame_type is not in 0..255 or length < 0."""
    if not 0 <= frame_type <= 0xFF:
        raise ValueError(f"frame type {frame_type} is not in 0..255")
    if length < 0:
        raise ValueError(f"negative payload length {length}")
    if length > MAX_PAYLOAD_SIZE:
        raise FrameTooLarge(f"payload of {length} bytes exceeds {MAX_PAYLOAD_SIZE}")
    return _pack_frame_header(frame_type << 24 | length)


def decode_frame_header(header: bytes) -> tuple[int, int]:
    """(frame_type, payload_length) from the first 4 bytes; DecodeError if fewer."""
    if len(header) < FRAME_HEADER_SIZE:
        raise DecodeError(f"frame header needs 4 bytes, got {len(header)}")
    word: int = _read_frame_header(header)[0]
    return word >> 24, word & 0xFFFFFF


def encode_frame(frame_type: int, payload: bytes) -> bytes:
    """header + payload in one bytes object. FrameTooLarge if the payload is too long."""
    return encode_frame_header(frame_type, len(payload)) + payload


class FrameSplitter:
    """Turns a byte stream cut at arbitrary points into whole frames.

    Memory is linear in the bytes buffered; a 16 MiB frame arriving in 64 KiB chunks costs
    O(total) copying, not O(n^2). Zero-length payloads yield ``(type, b"")``.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add bytes; return every frame completed by them, in order."""
        frames: list[tuple[int, bytes]] = []
        buffer = self._buffer
        if not buffer:
            # Nothing held back: cut whole frames straight out of the caller's bytes.
            end = len(data)
            if end >= FRAME_HEADER_SIZE:
                word = _read_frame_header(data, 0)[0]
                if FRAME_HEADER_SIZE + (word & 0xFFFFFF) == end:  # one frame, the usual read
                    return [(word >> 24, bytes(data[FRAME_HEADER_SIZE:]))]
            pos = 0
            while end - pos >= FRAME_HEADER_SIZE:
                word = _read_frame_header(data, pos)[0]
                stop = pos + FRAME_HEADER_SIZE + (word & 0xFFFFFF)
                if stop > end:
                    break
                frames.append((word >> 24, bytes(data[pos + FRAME_HEADER_SIZE : stop])))
                pos = stop
            if pos < end:
                buffer += data[pos:]
            return frames
        buffer += data
        end = len(buffer)
        pos = 0
        with memoryview(buffer) as view:
            while end - pos >= FRAME_HEADER_SIZE:
                word = _read_frame_header(view, pos)[0]
                stop = pos + FRAME_HEADER_SIZE + (word & 0xFFFFFF)
                if stop > end:
                    break
                frames.append((word >> 24, view[pos + FRAME_HEADER_SIZE : stop].tobytes()))
                pos = stop
        if pos:
            del buffer[:pos]  # CPython drops a bytearray prefix without moving the rest
        return frames

    @property
    def pending(self) -> int:
        """Bytes buffered towards the next, incomplete frame (header bytes included)."""
        return len(self._buffer)

    @property
    def expected(self) -> int:
        """Bytes the incomplete frame will hold when complete (header included) once its
        header has arrived; the header bytes gathered so far before that; 0 between
        frames."""
        buffer = self._buffer
        if len(buffer) < FRAME_HEADER_SIZE:
            return len(buffer)
        word: int = _read_frame_header(buffer, 0)[0]
        return FRAME_HEADER_SIZE + (word & 0xFFFFFF)
