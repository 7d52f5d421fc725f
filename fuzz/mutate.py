"""Seeded, atheris-free mutations for the short fuzz pass in CI (tests/test_fuzz_seeded.py).

The same kinds of damage as the mutation tests and libFuzzer's own mutators, in miniature:
bit flips, boundary values written over 16/32-bit words, truncation, inserted or deleted
bytes, splices of two inputs. Deterministic for a given ``random.Random`` seed.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator, Sequence

BOUNDARY_U32 = (0, 1, 4, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
BOUNDARY_U16 = (0, 1, 3, 4, 6, 0x7FFF, 0x8000, 0xFFFF)


def mutate(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> bytes:
    """One to three random mutations of ``data`` (``corpus`` feeds splices)."""
    mutant = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(6)
        size = len(mutant)
        if kind == 0 and size:  # flip a bit
            mutant[rng.randrange(size)] ^= 1 << rng.randrange(8)
        elif kind == 1 and size >= 4:  # a boundary value (or a length) over a u32
            at = rng.randrange(size - 3)
            value = rng.choice((*BOUNDARY_U32, size, size - at))
            struct.pack_into("<I", mutant, at, value & 0xFFFFFFFF)
        elif kind == 2 and size >= 2:  # over a u16 (vtable sizes and slots)
            struct.pack_into("<H", mutant, rng.randrange(size - 1), rng.choice(BOUNDARY_U16))
        elif kind == 3:  # truncate
            del mutant[rng.randrange(size + 1) :]
        elif kind == 4:  # insert or delete a few bytes
            at = rng.randrange(size + 1)
            if rng.random() < 0.5:
                mutant[at:at] = rng.randbytes(rng.randint(1, 8))
            else:
                del mutant[at : at + rng.randint(1, 8)]
        else:  # splice with another input
            other = rng.choice(corpus)
            mutant = mutant[: rng.randrange(size + 1)] + other[rng.randrange(len(other) + 1) :]
    return bytes(mutant)


def mutants(seed: int, corpus: Sequence[bytes], count: int) -> Iterator[bytes]:
    """``count`` mutants of random members of ``corpus``, the same ones for the same seed."""
    rng = random.Random(seed)
    for _ in range(count):
        yield mutate(rng, rng.choice(corpus), corpus)
