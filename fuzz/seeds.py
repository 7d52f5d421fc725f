"""The seed corpus, generated (nothing binary is committed).

    python -m fuzz.seeds OUT_DIR        # OUT_DIR/<target>/<n>.bin for every target

Decoder seeds: a valid payload of every message type of the protocol (both directions:
what APISIX sends and what the runner replies), written by both twins' builders (the pure
one lays tables out back to front like flatbuffers, the compiled one front to back), plus
entries without name or value, shared strings and an unaligned copy, and the structural
edge cases the mutation tests use: truncations and boundary values in the root offset,
the vtable offset, the vtable and table sizes and every vtable slot. Every decoder gets
every payload: reading one table as another is part of the attack surface.

Splitter seeds: streams of those frames (with empty payloads, a frame left incomplete, a
16 MiB length), each with several cuttings (whole, byte by byte, headers split), and
padded streams with frames larger than the compiled splitter's first allocation.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import flatbuffers

from a6runner import _codec_py
from a6runner._fbs import HTTPReqCallReq, TextEntry

from .targets import DECODERS, SPLITTER, splitter_input

BINARY = b"\xff\xfe\x80bin\x00\xc3"
HEADERS = [("host", "example.com"), ("x-bin", BINARY), ("x-none", None), ("ü", "ß")]
ARGS = [("a", "1"), ("flag", None), ("q", "")]
U32_EDGES = (0, 1, 3, 4, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFC, 0xFFFFFFFF)
U16_EDGES = (0, 1, 2, 3, 5, 0x8000, 0xFFFF)


def frames(codec: ModuleType) -> list[bytes]:
    """One or more complete frames of every message type, from ``codec``'s builders."""
    return [
        codec.build_prepare_conf_req([("say", '{"body":"x"}'), ("p2", b"[1]")], "route#1"),
        codec.build_prepare_conf_req([], None),
        codec.build_http_req_call_req(7, 3, 2, "/api/ünï", ARGS, HEADERS, bytes([10, 0, 0, 1])),
        codec.build_http_req_call_req(0xFFFFFFFF, 0, 14, "", [], [], bytes(range(16))),
        codec.build_http_req_call_req(1, 1, 0, None, [], [("x", None)], None),
        codec.build_http_resp_call_req(9, 4, 502, HEADERS),
        codec.build_http_resp_call_req(0, 0, 0, []),
        codec.build_extra_info_resp(b"some body bytes"),
        codec.build_extra_info_resp(None),
        codec.build_err_resp(2),
        codec.build_prepare_conf_resp(42),
        codec.build_http_req_call_resp(5),
        codec.build_stop(5, 403, HEADERS, b"denied"),
        codec.build_rewrite(5, "/new", HEADERS, ARGS, [("x-r", "1")], b"body"),
        codec.build_http_resp_call_resp(6, 200, HEADERS, b"changed"),
        codec.build_extra_info_req(codec.INFO_VAR, "remote_addr"),
        codec.build_extra_info_req(codec.INFO_REQ_BODY),
        codec.build_extra_info_req(codec.INFO_RESP_BODY),
    ]


def odd_entries_payload() -> bytes:
    """An HTTPReqCallReq whose entries lack a name, a value or both, and share strings
    (one string object referenced from several entries): legal, and no builder of ours
    writes it."""
    builder = flatbuffers.Builder(256)
    shared = builder.CreateString("shared")
    entries = []
    for name, value in ((shared, shared), (0, shared), (shared, 0), (0, 0)):
        TextEntry.Start(builder)
        if value:
            TextEntry.AddValue(builder, value)
        if name:
            TextEntry.AddName(builder, name)
        entries.append(TextEntry.End(builder))
    builder.StartVector(4, len(entries), 4)
    for entry in reversed(entries):
        builder.PrependUOffsetTRelative(entry)
    vector = builder.EndVector()
    HTTPReqCallReq.Start(builder)
    HTTPReqCallReq.AddHeaders(builder, vector)
    HTTPReqCallReq.AddArgs(builder, vector)
    HTTPReqCallReq.AddPath(builder, shared)
    builder.Finish(HTTPReqCallReq.End(builder))
    return bytes(builder.Output())


def unaligned(payload: bytes) -> bytes:
    """The same message one byte further in: every offset but the root's is relative."""
    (root,) = struct.unpack_from("<I", payload)
    return struct.pack("<I", root + 1) + b"\xa5" + payload[4:]


def edge_cases(payload: bytes) -> Iterator[bytes]:
    """Truncations and boundary values at the structural positions of ``payload``."""
    size = len(payload)
    for end in sorted({0, 3, 4, 7, size // 2, size - 1}):
        yield payload[:end]

    def put(fmt: str, at: int, value: int) -> bytes:
        mutant = bytearray(payload)
        struct.pack_into(fmt, mutant, at, value)
        return bytes(mutant)

    (table,) = struct.unpack_from("<I", payload)
    (soffset,) = struct.unpack_from("<i", payload, table)
    vtable = table - soffset
    vtable_size, _ = struct.unpack_from("<HH", payload, vtable)
    for value in (*U32_EDGES, size, size - 3):
        yield put("<I", 0, value & 0xFFFFFFFF)  # root offset
        yield put("<I", table, value & 0xFFFFFFFF)  # soffset to the vtable
    for value in U16_EDGES:
        yield put("<H", vtable, value)  # vtable size
        yield put("<H", vtable + 2, value)  # table size
    for slot in range(vtable + 4, vtable + vtable_size, 2):
        for value in (1, size, 0xFFFF):
            yield put("<H", slot, value)
        (offset,) = struct.unpack_from("<H", payload, slot)
        if offset and table + offset + 4 <= size:  # what an offset field points to
            yield put("<I", table + offset, 0xFFFFFFFF)
            yield put("<I", table + offset, size - table - offset)


def payloads(native: ModuleType | None) -> list[bytes]:
    """Every valid payload the seeds start from."""
    built = [frame[4:] for frame in frames(_codec_py)]
    if native is not None:
        built += [frame[4:] for frame in frames(native)]
    built.append(odd_entries_payload())
    return built + [unaligned(payload) for payload in built[:3]]


def decoder_seeds(native: ModuleType | None = None) -> list[bytes]:
    """The seed inputs of every decoder target (deduplicated, in a fixed order)."""
    bases = payloads(native)
    seeds = list(bases)
    for base in bases:
        seeds.extend(edge_cases(base))
    return list(dict.fromkeys(seeds))


def splitter_seeds(native: ModuleType | None = None) -> list[bytes]:
    """The seed inputs of the frame_splitter target."""
    all_frames = frames(_codec_py)
    streams = [
        b"".join(all_frames[:6]),
        all_frames[2] + _codec_py.encode_frame(9, b"") + all_frames[5],
        _codec_py.encode_frame(2, b"") * 3 + all_frames[0][:7],  # ends inside a payload
        all_frames[7] + b"\x02\xff",  # ends inside a header
        all_frames[9] + _codec_py.encode_frame_header(1, 0xFFFFFF) + b"x" * 64,
    ]
    if native is not None:
        streams.append(b"".join(frames(native)[:4]))
    cuttings: list[list[int]] = [[], [1], [3], [4], [5, 2], [0, 7], [255], [2, 0, 9, 1]]
    cut = [splitter_input(sizes, stream) for stream in streams for sizes in cuttings]
    # Frames of 100 KB and 70 KB, and one of 16 MiB, in 80 and 256 KiB of padding: payloads
    # that outgrow the compiled splitter's first allocation, fed in small chunks and then
    # the rest at once.
    big = [
        _codec_py.encode_frame_header(2, 100_000) + b"\xa5" * 100,
        _codec_py.encode_frame_header(4, 0xFFFFFF) + b"\x00",
        all_frames[5] + _codec_py.encode_frame_header(1, 70_000) + b"y" * 200,
        all_frames[7] + _codec_py.encode_frame(3, b"z" * 70_000)[:1000],
    ]
    padded = [
        splitter_input(sizes, stream, padding)
        for stream in big
        for sizes in ([], [255], [200, 255, 0])
        for padding in (39, 127)
    ]
    return cut + padded


def seeds(target: str, native: ModuleType | None = None) -> list[bytes]:
    return splitter_seeds(native) if target == SPLITTER else decoder_seeds(native)


def write(out_dir: Path, native: ModuleType | None) -> dict[str, int]:
    """Write every target's seeds under ``out_dir/<target>/``; counts per target."""
    counts = {}
    for target in (*DECODERS, SPLITTER):
        directory = out_dir / target
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("seed-*"):
            old.unlink()
        target_seeds = seeds(target, native)
        for number, seed in enumerate(target_seeds):
            (directory / f"seed-{number:04d}").write_bytes(seed)
        counts[target] = len(target_seeds)
    return counts


def main() -> None:
    from a6runner._kernels import IMPLEMENTATION, load_twin

    native = load_twin("codec", "native") if IMPLEMENTATION == "native" else None
    for target, count in write(Path(sys.argv[1]), native).items():
        print(f"fuzz: {count} seeds for {target}")


if __name__ == "__main__":
    main()
