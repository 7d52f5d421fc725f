"""The fuzz targets and the differential check they share.

One target per ``decode_*`` function of the codec, plus ``frame_splitter``. Each target
takes one input (``bytes``) and runs it through the pure twin (``a6runner._codec_py``) and
the compiled one (``a6native.codec``); a :class:`Finding` is raised when they disagree or
either breaks the contract of src/a6native/codec.pyi:

* a decoder either raises ``DecodeError`` (exactly that class, and only it) or returns an
  object whose every lazily read field reads, twice alike, with the contract's types and
  ranges; both twins must do the same thing with the same field values (and types);
* both splitters, fed the same chunks, return the same frames and ``pending`` after every
  feed, and agree with an independent reference split of the whole stream. ``feed`` has
  no documented exception, so any exception from it is a finding. Both
  ``decode_frame_header`` read the stream's first bytes as the reference does.

The atheris driver (fuzz/run.py) and the seeded CI pass (tests/test_fuzz_seeded.py) both
call :func:`make_targets`, so CI checks exactly what the long runs check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from a6runner._errors import DecodeError

DECODERS = (
    "prepare_conf_req",
    "http_req_call_req",
    "http_resp_call_req",
    "extra_info_resp",
    "err_resp",
)
SPLITTER = "frame_splitter"
TARGET_NAMES = (*DECODERS, SPLITTER)

Target = Callable[[bytes], None]


class Finding(AssertionError):
    """The input exposes a bug: a disagreement, a contract breach or a stray exception."""


# --- decoders --------------------------------------------------------------------------


def read_fields(decoder: str, decoded: Any) -> Any:
    """Every field of a decoded object, as plain values (lazy fields built on access)."""
    if decoder == "prepare_conf_req":
        return decoded.key, decoded.conf
    if decoder == "http_req_call_req":
        return (
            decoded.id,
            decoded.conf_token,
            decoded.method,
            decoded.path,
            decoded.src_ip,
            decoded.args,
            decoded.headers,
        )
    if decoder == "http_resp_call_req":
        return decoded.id, decoded.status, decoded.conf_token, decoded.headers
    return decoded  # extra_info_resp: bytes | None; err_resp: int


def typed(value: Any) -> Any:
    """``value`` with the exact type of every leaf, so that 1 != True and b"" != ""."""
    if type(value) in (list, tuple):
        return type(value).__name__, [typed(item) for item in value]
    return type(value).__name__, value


def _entries_ok(entries: Any, value_types: tuple[type, ...]) -> bool:
    return type(entries) is list and all(
        type(entry) is tuple
        and len(entry) == 2
        and type(entry[0]) is str
        and type(entry[1]) in value_types
        for entry in entries
    )


def _u(value: Any, bits: int) -> bool:
    return type(value) is int and 0 <= value < 1 << bits


def contract_breach(decoder: str, fields: Any) -> str | None:
    """What is wrong with the fields a decoder returned, or None."""
    if decoder == "prepare_conf_req":
        key, conf = fields
        ok = (key is None or type(key) is str) and _entries_ok(conf, (bytes,))
    elif decoder == "http_req_call_req":
        id, conf_token, method, path, src_ip, args, headers = fields
        ok = (
            _u(id, 32)
            and _u(conf_token, 32)
            and _u(method, 8)
            and type(path) is str
            and type(src_ip) is bytes
            and _entries_ok(args, (str, type(None)))
            and _entries_ok(headers, (str, type(None)))
        )
    elif decoder == "http_resp_call_req":
        id, status, conf_token, headers = fields
        ok = (
            _u(id, 32)
            and _u(status, 16)
            and _u(conf_token, 32)
            and _entries_ok(headers, (str, type(None)))
        )
    elif decoder == "extra_info_resp":
        ok = fields is None or type(fields) is bytes
    else:
        ok = _u(fields, 8)
    return None if ok else f"fields outside the contract: {fields!r}"


def decode_outcome(codec: ModuleType, decoder: str, data: bytes) -> tuple[str, Any]:
    """("DecodeError", None), or ("ok", every field with its type). Anything else the
    decoder or a field access does is raised as a Finding."""
    where = f"{codec.__name__}.decode_{decoder}({data.hex()})"
    try:
        decoded = getattr(codec, f"decode_{decoder}")(data)
    except DecodeError as exc:
        if type(exc) is not DecodeError:
            raise Finding(f"{where} raised a subclass of DecodeError: {exc!r}") from exc
        return "DecodeError", None
    except Exception as exc:
        raise Finding(f"{where} raised {exc!r}") from exc
    try:
        fields = read_fields(decoder, decoded)
        again = read_fields(decoder, decoded)  # cached fields must not change
    except Exception as exc:
        raise Finding(f"reading the fields of {where} raised {exc!r}") from exc
    if typed(again) != typed(fields):
        raise Finding(f"{where}: a second read gave {again!r}, the first {fields!r}")
    breach = contract_breach(decoder, fields)
    if breach:
        raise Finding(f"{where}: {breach}")
    return "ok", typed(fields)


def check_decoder(decoder: str, data: bytes, pure: ModuleType, native: ModuleType) -> str:
    """Run ``data`` through both twins' decoder; the common outcome ("ok"/"DecodeError")."""
    expected = decode_outcome(pure, decoder, data)
    got = decode_outcome(native, decoder, data)
    if got != expected:
        raise Finding(
            f"decode_{decoder}({data.hex()}) disagrees:\n  pure:   {expected!r}\n  native: {got!r}"
        )
    return expected[0]


# --- frame splitter ----------------------------------------------------------------------


PADDED = 0x80  # flag in byte 0 of a splitter input, see split_plan
PADDING_UNIT = 2048


def splitter_input(sizes: list[int], stream: bytes, padding: int | None = None) -> bytes:
    """Encode a splitter input: how to cut ``stream`` (chunk sizes 0..255, used in turn),
    and optionally how much padding follows it (0..255, see split_plan)."""
    if len(sizes) > 127 or not all(0 <= size <= 255 for size in sizes):
        raise ValueError("at most 127 chunk sizes, each 0..255")
    if padding is None:
        return bytes([len(sizes), *sizes]) + stream
    return bytes([PADDED | len(sizes), padding, *sizes]) + stream


def split_plan(data: bytes) -> tuple[list[int], bytes]:
    """Decode a splitter input: the low 7 bits of byte 0 are n, and the n bytes after it
    chunk sizes (0 = an empty feed); the rest is the byte stream, fed in one go when there
    are no sizes. With bit 7 of byte 0 set, the byte after it is r and (r + 1) * 2 KiB of
    0xff follow the stream: how inputs of a few bytes reach frames larger than the
    splitter's first 64 KiB allocation. (A frame header read from the padding claims
    16 MiB, so the padding holds at most one frame, never thousands.)"""
    if not data:
        return [], b""
    count = data[0] & ~PADDED
    start = 1
    padding = 0
    if data[0] & PADDED and len(data) > 1:
        padding = (data[1] + 1) * PADDING_UNIT
        start = 2
    return list(data[start : start + count]), data[start + count :] + b"\xff" * padding


MAX_FEEDS = 16  # then the rest of the stream in one feed: a bounded cost per input


def chunks(sizes: list[int], stream: bytes) -> Iterator[bytes]:
    """``stream`` cut by ``sizes`` in turn (every size used at least once, even 0)."""
    pos = feeds = 0
    while feeds < MAX_FEEDS:
        for size in sizes:
            yield stream[pos : pos + size]
            pos += size
            feeds += 1
        if pos >= len(stream) or not any(sizes):
            break
    if pos < len(stream) or not sizes:
        yield stream[pos:]


def reference_split(stream: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The frames in ``stream`` and the bytes left over, straight from PROTOCOL.md: a
    1-byte type, a 3-byte big-endian length, the payload."""
    frames = []
    pos = 0
    while len(stream) - pos >= 4:
        length = int.from_bytes(stream[pos + 1 : pos + 4], "big")
        if len(stream) - pos - 4 < length:
            break
        frames.append((stream[pos], stream[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return frames, len(stream) - pos


def _frames_ok(frames: Any) -> bool:
    return type(frames) is list and all(
        type(frame) is tuple
        and len(frame) == 2
        and type(frame[0]) is int
        and 0 <= frame[0] <= 0xFF
        and type(frame[1]) is bytes
        for frame in frames
    )


def _feed(splitter: Any, chunk: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """(frames, pending) after one feed; a Finding for an exception or wrong types (plain
    values are compared afterwards, much cheaper than typed() on thousands of frames)."""
    where = f"{type(splitter).__module__}.FrameSplitter"
    try:
        frames = splitter.feed(chunk)
        pending = splitter.pending
    except Exception as exc:  # feed documents no exception
        raise Finding(f"{where}.feed raised {exc!r}") from exc
    if not _frames_ok(frames) or type(pending) is not int:
        raise Finding(f"{where}: feed gave {frames!r}, pending {pending!r}")
    return frames, pending


def _frame_header(codec: ModuleType, data: bytes) -> Any:
    """decode_frame_header's (type, length) with types, None for its DecodeError."""
    try:
        return typed(codec.decode_frame_header(data))
    except DecodeError as exc:
        if type(exc) is DecodeError:
            return None
        raise Finding(f"{codec.__name__}.decode_frame_header raised {exc!r}") from exc
    except Exception as exc:
        raise Finding(f"{codec.__name__}.decode_frame_header raised {exc!r}") from exc


def check_splitter(data: bytes, pure: ModuleType, native: ModuleType) -> int:
    """Feed the chunks of one splitter input to both twins (and the stream's first bytes
    to both decode_frame_header); the number of frames."""
    sizes, stream = split_plan(data)
    pure_splitter, native_splitter = pure.FrameSplitter(), native.FrameSplitter()
    frames: list[tuple[int, bytes]] = []
    pending = 0
    for chunk in chunks(sizes, stream):
        expected = _feed(pure_splitter, chunk)
        got = _feed(native_splitter, chunk)
        if got != expected:
            raise Finding(
                f"FrameSplitter disagrees on input {data.hex()} at chunk {chunk.hex()}:\n"
                f"  pure:   {expected!r}\n  native: {got!r}"
            )
        frames.extend(expected[0])
        pending = expected[1]
    reference_frames, leftover = reference_split(stream)
    expected_header = (
        typed((stream[0], int.from_bytes(stream[1:4], "big"))) if len(stream) >= 4 else None
    )
    for codec in (pure, native):
        if _frame_header(codec, stream) != expected_header:
            raise Finding(
                f"{codec.__name__}.decode_frame_header({stream[:8].hex()}) gave "
                f"{_frame_header(codec, stream)!r}, not {expected_header!r}"
            )
    if (frames, pending) != (reference_frames, leftover):
        raise Finding(
            f"FrameSplitter on input {data.hex()} gave {frames!r} pending {pending!r}; "
            f"the stream holds {reference_frames!r} and {leftover} bytes more"
        )
    return len(frames)


# --- the targets -------------------------------------------------------------------------


def make_targets(pure: ModuleType, native: ModuleType) -> dict[str, Target]:
    """name -> the function a fuzzer calls with one input."""
    targets: dict[str, Target] = {}
    for decoder in DECODERS:

        def target(data: bytes, decoder: str = decoder) -> None:
            check_decoder(decoder, data, pure, native)

        targets[decoder] = target

    def splitter_target(data: bytes) -> None:
        check_splitter(data, pure, native)

    targets[SPLITTER] = splitter_target
    return targets
