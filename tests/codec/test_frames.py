"""Frame headers and FrameSplitter (PROTOCOL.md §2), for both codec implementations."""

from __future__ import annotations

import itertools
import random
from types import ModuleType

import pytest

from a6runner._errors import DecodeError, FrameTooLarge, ProtocolError

# An exception swallowed inside a kernel (Cython "Exception ignored in ...") is a bug.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

MAX = 16_777_215


def frame(frame_type: int, payload: bytes) -> bytes:
    """Independent of the codec: type byte + 24-bit big-endian length + payload."""
    return bytes([frame_type]) + len(payload).to_bytes(3, "big") + payload


def test_constants(codec: ModuleType) -> None:
    assert codec.FRAME_HEADER_SIZE == 4
    assert codec.MAX_PAYLOAD_SIZE == MAX
    assert (
        codec.RPC_ERROR,
        codec.RPC_PREPARE_CONF,
        codec.RPC_HTTP_REQ_CALL,
        codec.RPC_EXTRA_INFO,
        codec.RPC_HTTP_RESP_CALL,
    ) == (0, 1, 2, 3, 4)
    assert (codec.ERR_BAD_REQUEST, codec.ERR_SERVICE_UNAVAILABLE) == (0, 1)
    assert codec.ERR_CONF_TOKEN_NOT_FOUND == 2
    assert (codec.INFO_VAR, codec.INFO_REQ_BODY, codec.INFO_RESP_BODY) == (1, 2, 3)
    assert (codec.ACTION_NONE, codec.ACTION_STOP, codec.ACTION_REWRITE) == (0, 1, 2)


# --- headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame_type", "length", "expected"),
    [
        (0, 0, b"\x00\x00\x00\x00"),
        (2, 5, b"\x02\x00\x00\x05"),
        (1, 0x010203, b"\x01\x01\x02\x03"),  # big-endian
        (4, 256, b"\x04\x00\x01\x00"),
        (255, MAX, b"\xff\xff\xff\xff"),
    ],
)
def test_header_encodes_type_and_big_endian_length(
    codec: ModuleType, frame_type: int, length: int, expected: bytes
) -> None:
    header = codec.encode_frame_header(frame_type, length)
    assert type(header) is bytes
    assert header == expected
    assert codec.decode_frame_header(header) == (frame_type, length)


def test_header_length_limit(codec: ModuleType) -> None:
    assert codec.encode_frame_header(2, MAX) == b"\x02\xff\xff\xff"
    with pytest.raises(FrameTooLarge):
        codec.encode_frame_header(2, MAX + 1)
    with pytest.raises(FrameTooLarge):
        codec.encode_frame_header(2, 1 << 40)


@pytest.mark.parametrize(("frame_type", "length"), [(256, 0), (-1, 0), (1000, 5), (0, -1)])
def test_header_rejects_bad_type_or_negative_length(
    codec: ModuleType, frame_type: int, length: int
) -> None:
    with pytest.raises(ValueError) as caught:
        codec.encode_frame_header(frame_type, length)
    assert not isinstance(caught.value, FrameTooLarge)


def test_frame_too_large_is_a_protocol_error() -> None:
    assert issubclass(FrameTooLarge, ProtocolError)
    assert issubclass(FrameTooLarge, ValueError)


@pytest.mark.parametrize("size", [0, 1, 2, 3])
def test_decode_header_needs_four_bytes(codec: ModuleType, size: int) -> None:
    with pytest.raises(DecodeError):
        codec.decode_frame_header(b"\x02" * size)


def test_decode_header_reads_only_the_first_four_bytes(codec: ModuleType) -> None:
    assert codec.decode_frame_header(b"\x03\x00\x00\x02xyz") == (3, 2)
    assert codec.decode_frame_header(b"\x07\x00\x10\x00" + bytes(100)) == (7, 4096)


def test_encode_frame(codec: ModuleType) -> None:
    assert codec.encode_frame(2, b"hello") == b"\x02\x00\x00\x05hello"
    assert codec.encode_frame(0, b"") == b"\x00\x00\x00\x00"
    payload = bytes(range(256)) * 4
    encoded = codec.encode_frame(4, payload)
    assert type(encoded) is bytes
    assert encoded == frame(4, payload)


def test_encode_frame_at_the_size_limit(codec: ModuleType) -> None:
    payload = bytes(MAX)
    encoded = codec.encode_frame(1, payload)
    assert encoded[:4] == b"\x01\xff\xff\xff"
    assert len(encoded) == MAX + 4
    with pytest.raises(FrameTooLarge):
        codec.encode_frame(1, payload + b"!")


# --- FrameSplitter ---------------------------------------------------------------------

SAMPLE_FRAMES = [
    (2, b"first payload"),
    (0, b""),
    (4, bytes(range(40))),
    (3, b"\x00\x00\x00\x04"),  # looks like a header
    (1, b""),
    (255, b"x"),
]
SAMPLE_STREAM = b"".join(frame(t, p) for t, p in SAMPLE_FRAMES)


def test_splitter_starts_empty(codec: ModuleType) -> None:
    splitter = codec.FrameSplitter()
    assert splitter.pending == 0
    assert splitter.feed(b"") == []
    assert splitter.pending == 0


def test_splitter_whole_stream_in_one_chunk(codec: ModuleType) -> None:
    splitter = codec.FrameSplitter()
    frames = splitter.feed(SAMPLE_STREAM)
    assert frames == SAMPLE_FRAMES
    assert all(type(payload) is bytes for _, payload in frames)
    assert splitter.pending == 0


def test_splitter_split_at_every_byte_boundary(codec: ModuleType) -> None:
    for cut in range(len(SAMPLE_STREAM) + 1):
        splitter = codec.FrameSplitter()
        first = splitter.feed(SAMPLE_STREAM[:cut])
        assert splitter.pending == cut - sum(4 + len(p) for _, p in first)
        second = splitter.feed(SAMPLE_STREAM[cut:])
        assert first + second == SAMPLE_FRAMES, cut
        assert splitter.pending == 0


def test_splitter_split_at_every_pair_of_boundaries(codec: ModuleType) -> None:
    stream = SAMPLE_STREAM[:40]  # three frames and a part of the fourth
    expected_done = SAMPLE_FRAMES[:2]
    for first_cut, second_cut in itertools.combinations(range(len(stream) + 1), 2):
        splitter = codec.FrameSplitter()
        frames = splitter.feed(stream[:first_cut])
        frames += splitter.feed(stream[first_cut:second_cut])
        frames += splitter.feed(stream[second_cut:])
        assert frames == expected_done
        assert splitter.pending == len(stream) - sum(4 + len(p) for _, p in expected_done)


def test_splitter_byte_by_byte(codec: ModuleType) -> None:
    splitter = codec.FrameSplitter()
    frames = []
    for index in range(len(SAMPLE_STREAM)):
        frames += splitter.feed(SAMPLE_STREAM[index : index + 1])
    assert frames == SAMPLE_FRAMES
    assert splitter.pending == 0


def test_splitter_random_chunks(codec: ModuleType) -> None:
    rng = random.Random(1234)
    expected = [(rng.randrange(5), rng.randbytes(rng.randrange(300))) for _ in range(200)]
    stream = b"".join(frame(t, p) for t, p in expected)
    for _ in range(20):
        splitter = codec.FrameSplitter()
        frames = []
        pos = 0
        while pos < len(stream):
            step = rng.choice([1, 2, 3, 4, 5, 7, 64, 500, 4096])
            frames += splitter.feed(stream[pos : pos + step])
            pos += step
        assert frames == expected
        assert splitter.pending == 0


def test_splitter_many_frames_in_one_chunk(codec: ModuleType) -> None:
    expected = [(i % 5, str(i).encode() * (i % 7)) for i in range(5000)]
    splitter = codec.FrameSplitter()
    assert splitter.feed(b"".join(frame(t, p) for t, p in expected)) == expected
    assert splitter.pending == 0


def test_splitter_zero_length_payloads(codec: ModuleType) -> None:
    splitter = codec.FrameSplitter()
    assert splitter.feed(b"\x02\x00\x00") == []
    assert splitter.pending == 3
    assert splitter.feed(b"\x00") == [(2, b"")]
    assert splitter.pending == 0
    assert splitter.feed(frame(1, b"") * 3) == [(1, b"")] * 3


def test_splitter_pending_counts_header_and_payload_bytes(codec: ModuleType) -> None:
    splitter = codec.FrameSplitter()
    assert splitter.feed(b"\x02\x00") == []
    assert splitter.pending == 2
    assert splitter.feed(b"\x00\x05ab") == []
    assert splitter.pending == 6
    assert splitter.feed(b"cde" + b"\x04\x00") == [(2, b"abcde")]
    assert splitter.pending == 2
    assert splitter.feed(b"\x00\x00") == [(4, b"")]
    assert splitter.pending == 0


def test_splitter_expected_is_the_declared_size_of_the_frame_in_progress(
    codec: ModuleType,
) -> None:
    splitter = codec.FrameSplitter()
    big = codec.encode_frame(2, b"x" * 100_000)
    small = codec.encode_frame(1, b"abc")
    assert splitter.expected == 0
    assert splitter.feed(big[:2]) == []
    assert splitter.expected == 2  # only header bytes so far
    assert splitter.feed(big[2:4]) == []
    assert splitter.expected == len(big)  # header complete: the whole frame's size
    assert splitter.feed(big[4:5000]) == []
    assert splitter.expected == len(big) and splitter.pending == 5000
    assert splitter.feed(big[5000:] + small[:6]) == [(2, b"x" * 100_000)]
    assert splitter.expected == len(small) and splitter.pending == 6
    assert splitter.feed(small[6:]) == [(1, b"abc")]
    assert splitter.expected == 0 and splitter.pending == 0
    assert splitter.feed(codec.encode_frame(3, b"")) == [(3, b"")]
    assert splitter.expected == 0


def test_splitter_accepts_bytearray_and_memoryview_chunks(codec: ModuleType) -> None:
    splitter = codec.FrameSplitter()
    frames = splitter.feed(bytearray(SAMPLE_STREAM[:10]))
    frames += splitter.feed(memoryview(SAMPLE_STREAM)[10:])
    assert frames == SAMPLE_FRAMES
    assert all(type(payload) is bytes for _, payload in frames)


def test_splitter_returned_payloads_do_not_alias_its_buffer(codec: ModuleType) -> None:
    splitter = codec.FrameSplitter()
    frames = splitter.feed(frame(2, b"abc") + b"\x02\x00")
    frames += splitter.feed(b"\x00\x03def" + frame(2, b"ghi"))
    assert frames == [(2, b"abc"), (2, b"def"), (2, b"ghi")]


def test_splitter_max_size_frame_in_64k_chunks(codec: ModuleType) -> None:
    payload = random.Random(7).randbytes(1 << 16) * 256  # 16 MiB: one byte too many
    payload = payload[:MAX]
    stream = frame(4, payload) + frame(2, b"next")
    chunk = 1 << 16
    splitter = codec.FrameSplitter()
    done: list[tuple[int, bytes]] = []
    for start in range(0, len(stream), chunk):
        done += splitter.feed(stream[start : start + chunk])
        if not done:
            assert splitter.pending == min(start + chunk, len(stream))
    assert len(done) == 2
    assert done[0][0] == 4
    assert done[0][1] == payload
    assert done[1] == (2, b"next")
    assert splitter.pending == 0


def test_splitter_max_size_frame_with_more_frames_after_it(codec: ModuleType) -> None:
    payload = b"\xab" * MAX
    splitter = codec.FrameSplitter()
    assert splitter.feed(b"\x02\xff\xff\xff" + payload[:-1]) == []
    assert splitter.pending == MAX + 3
    frames = splitter.feed(payload[-1:] + frame(0, b"") + frame(3, b"x")[:2])
    assert [(t, len(p)) for t, p in frames] == [(2, MAX), (0, 0)]
    assert frames[0][1] == payload
    assert splitter.pending == 2
