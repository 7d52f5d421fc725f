"""Malformed input: thousands of truncated, bit-flipped, byte-inserted, overwritten and
garbage buffers (seeded, deterministic) go through every decode_* function. Each call
either raises DecodeError or returns an object whose every field reads; no other
exception. With ``both_codecs`` the two implementations classify every buffer alike."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import fbs_reference as ref
import pytest

import a6runner._codec_py as pure
from a6runner._errors import DecodeError

# An exception swallowed inside a kernel (Cython "Exception ignored in ...") is a bug.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

BINARY = b"\xff\xfe\x80bin\x00\xc3"


def base_payloads() -> list[bytes]:
    """Valid payloads of every request table, from both kinds of layout."""
    headers = [("host", "example.com"), ("x-bin", BINARY), ("x-none", None), (None, "v")]
    args = [("a", "1"), ("flag", None), ("ü", "ß")]
    return [
        ref.encode_http_req_call_req(
            id=7,
            conf_token=3,
            method=2,
            path="/api/ünï",
            args=args,
            headers=headers,
            src_ip=bytes(range(16)),
        ),
        ref.encode_http_req_call_req(
            id=1, path="/", headers=headers, shared_strings=True, reverse_entries=True
        ),
        ref.encode_http_req_call_req(),
        ref.encode_http_resp_call_req(id=9, status=502, conf_token=4, headers=headers),
        ref.encode_prepare_conf_req([("p1", '{"a":1}'), ("p2", None)], "key"),
        ref.encode_prepare_conf_req(None, None),
        ref.encode_extra_info_resp(b"some body bytes"),
        ref.encode_extra_info_resp(b""),
        ref.encode_err_resp(2),
        ref.forward_buffer(
            [
                ("u32", 5),
                ("ubytes", b"\x7f\x00\x00\x01"),
                ("u8", 1),
                ("str", b"/fwd"),
                ref.forward_entries(args),
                ref.forward_entries(headers),
                ("u32", 8),
            ],
            gap=3,
        ),
        ref.forward_buffer([("u32", 5), ("u16", 200), ref.forward_entries(headers)], gap=1),
        # The pure codec's client-side builders: fixed input data here, not under test.
        pure.build_http_req_call_req(1, 2, 3, "/b", args, headers[:3], b"\x01\x02\x03\x04")[4:],
        pure.build_prepare_conf_req([("p", "{}"), ("q", b"[1]")], "k")[4:],
        pure.build_http_resp_call_req(4, 5, 404, headers[:3])[4:],
    ]


BASES = base_payloads()
INTERESTING_U32 = [0, 1, 2, 3, 4, 8, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
INTERESTING_U16 = [0, 1, 2, 3, 4, 5, 6, 0x7FFF, 0x8000, 0xFFFF]


def truncations() -> Iterator[bytes]:
    for base in BASES:
        for end in range(len(base)):
            yield base[:end]


def bit_flips(rng: random.Random, count: int) -> Iterator[bytes]:
    for _ in range(count):
        mutant = bytearray(rng.choice(BASES))
        for _ in range(rng.randint(1, 4)):
            mutant[rng.randrange(len(mutant))] ^= 1 << rng.randrange(8)
        yield bytes(mutant)


def insertions_and_deletions(rng: random.Random, count: int) -> Iterator[bytes]:
    for _ in range(count):
        base = rng.choice(BASES)
        at = rng.randrange(len(base) + 1)
        if rng.random() < 0.5:
            yield base[:at] + rng.randbytes(rng.randint(1, 8)) + base[at:]
        else:
            yield base[:at] + base[at + rng.randint(1, 8) :]


def overwrites(rng: random.Random, count: int) -> Iterator[bytes]:
    """Offsets, lengths and vtable entries replaced by boundary values."""
    for _ in range(count):
        mutant = bytearray(rng.choice(BASES))
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.6:
                at = rng.randrange(max(1, len(mutant) - 3))
                value = rng.choice([*INTERESTING_U32, len(mutant), len(mutant) - at])
                struct.pack_into("<I", mutant, at, value & 0xFFFFFFFF)
            else:
                at = rng.randrange(max(1, len(mutant) - 1))
                struct.pack_into("<H", mutant, at, rng.choice(INTERESTING_U16))
        yield bytes(mutant)


def garbage(rng: random.Random, count: int) -> Iterator[bytes]:
    """Random bytes; most of them behind a plausible root, table and vtable header."""
    for _ in range(count):
        size = rng.randrange(96)
        mutant = bytearray(rng.randbytes(size))
        if size >= 16 and rng.random() < 0.8:
            table = rng.randrange(4, size // 2 - 3)
            vtable = rng.randrange(0, size - 4)
            struct.pack_into("<I", mutant, 0, table)
            struct.pack_into("<i", mutant, table, table - vtable)
            if vtable + 4 <= table or vtable >= table + 4:  # the header does not overlap
                vtable_size = 4 + 2 * rng.randrange(8)
                table_size = rng.randrange(4, 16)
                struct.pack_into("<HH", mutant, vtable, vtable_size, table_size)
                for slot in range(vtable + 4, min(vtable + vtable_size, size - 1), 2):
                    struct.pack_into("<H", mutant, slot, rng.choice([0, rng.randrange(24)]))
        yield bytes(mutant)


def splices(rng: random.Random, count: int) -> Iterator[bytes]:
    for _ in range(count):
        first, second = rng.choice(BASES), rng.choice(BASES)
        yield first[: rng.randrange(len(first) + 1)] + second[rng.randrange(len(second) + 1) :]


MUTATIONS: dict[str, Callable[[], list[bytes]]] = {
    "truncated": lambda: list(truncations()),
    "bit_flipped": lambda: list(bit_flips(random.Random(101), 3000)),
    "inserted_deleted": lambda: list(insertions_and_deletions(random.Random(202), 1500)),
    "overwritten": lambda: list(overwrites(random.Random(303), 3000)),
    "garbage": lambda: list(garbage(random.Random(404), 2000)),
    "spliced": lambda: list(splices(random.Random(505), 1000)),
}


def test_the_corpus_is_large_and_deterministic() -> None:
    corpus = {kind: make() for kind, make in MUTATIONS.items()}
    assert sum(len(buffers) for buffers in corpus.values()) > 5000
    assert corpus == {kind: make() for kind, make in MUTATIONS.items()}


# --- reading everything ----------------------------------------------------------------


def is_entries(value: Any, value_type: type) -> bool:
    return isinstance(value, list) and all(
        isinstance(entry, tuple)
        and len(entry) == 2
        and type(entry[0]) is str
        and (entry[1] is None or type(entry[1]) is value_type)
        for entry in value
    )


def check_fields(decoder: str, fields: Any) -> None:
    """The fields read from a decoded object have the contract's types and ranges."""
    if decoder == "prepare_conf_req":
        key, conf = fields
        assert key is None or type(key) is str
        assert is_entries(conf, bytes)
        assert all(value is not None for _, value in conf)
    elif decoder == "http_req_call_req":
        id, conf_token, method, path, src_ip, args, headers = fields
        assert 0 <= id < 2**32 and 0 <= conf_token < 2**32 and 0 <= method < 256
        assert type(path) is str and type(src_ip) is bytes
        assert is_entries(args, str) and is_entries(headers, str)
    elif decoder == "http_resp_call_req":
        id, status, conf_token, headers = fields
        assert 0 <= id < 2**32 and 0 <= status < 2**16 and 0 <= conf_token < 2**32
        assert is_entries(headers, str)
    elif decoder == "extra_info_resp":
        assert fields is None or type(fields) is bytes
    else:
        assert type(fields) is int and 0 <= fields < 256


def outcome(codec: ModuleType, decoder: str, buf: bytes) -> tuple[str, Any]:
    """("error", None) for a DecodeError, ("ok", every field) otherwise. Any other
    exception fails the test with the buffer that caused it."""
    try:
        decoded = getattr(codec, f"decode_{decoder}")(buf)
    except DecodeError:
        return "error", None
    except Exception as exc:  # the point is to name any other exception
        pytest.fail(f"decode_{decoder}({buf.hex()}) raised {exc!r}")
    try:
        fields = ref.snapshot(decoder, decoded)
    except Exception as exc:
        pytest.fail(f"reading decode_{decoder}({buf.hex()}) raised {exc!r}")
    check_fields(decoder, fields)
    return "ok", fields


# --- the tests -------------------------------------------------------------------------


def test_bases_are_valid(codec: ModuleType) -> None:
    """Every base payload decodes as at least one table (the mutants start from sense)."""
    for base in BASES:
        results = [outcome(codec, decoder, base)[0] for decoder in ref.DECODER_NAMES]
        assert "ok" in results


@pytest.mark.parametrize("kind", MUTATIONS)
def test_mutants_raise_decode_error_or_read_fully(codec: ModuleType, kind: str) -> None:
    counts = {"error": 0, "ok": 0}
    for buf in MUTATIONS[kind]():
        for decoder in ref.DECODER_NAMES:
            counts[outcome(codec, decoder, buf)[0]] += 1
    # Both classes occur: the corpus exercises rejection and acceptance.
    assert counts["error"] > 0
    assert counts["ok"] > 0


@pytest.mark.parametrize("kind", MUTATIONS)
def test_implementations_classify_mutants_identically(
    both_codecs: tuple[ModuleType, ModuleType], kind: str
) -> None:
    pure, native = both_codecs
    for buf in MUTATIONS[kind]():
        for decoder in ref.DECODER_NAMES:
            expected = outcome(pure, decoder, buf)
            assert outcome(native, decoder, buf) == expected, f"decode_{decoder}({buf.hex()})"


def test_decoding_does_not_depend_on_the_buffer_object(codec: ModuleType) -> None:
    """Reading fields after the caller dropped the payload still works (fields are built
    lazily from a buffer the decoded object keeps)."""
    decoded = codec.decode_http_req_call_req(bytes(bytearray(BASES[0])))
    assert decoded.headers[0] == ("host", "example.com")
    assert decoded.path == "/api/ünï"
