"""The fuzz harness's short seeded pass (fuzz/README.md), on the normal build.

Each target of fuzz/targets.py (every decode_* function, and the frame splitter fed
arbitrary chunkings) runs over its generated seed corpus and a fixed number of seeded
pseudo-random mutants, through the same differential check as the long atheris runs:
native and pure twins agree exactly, DecodeError is the only exception. Deterministic:
same inputs on every run. Also checks that the check itself catches what it must.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from a6runner._errors import DecodeError
from a6runner._kernels import load_twin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: fuzz/

from fuzz import mutate, seeds, targets
from fuzz.targets import Finding

MUTANTS_PER_TARGET = 2000
SEED = 20261201

NO_EXTENSIONS = os.environ.get("A6_NO_EXTENSIONS", "") not in ("", "0")
pytestmark = pytest.mark.skipif(NO_EXTENSIONS, reason="differential: needs the native twin")


@pytest.fixture(scope="module")
def twins() -> tuple[ModuleType, ModuleType]:
    return load_twin("codec", "python"), load_twin("codec", "native")


def inputs(target: str, native: ModuleType) -> list[bytes]:
    corpus = seeds.seeds(target, native)
    return corpus + list(
        mutate.mutants(SEED + targets.TARGET_NAMES.index(target), corpus, MUTANTS_PER_TARGET)
    )


def test_the_inputs_are_deterministic(twins: tuple[ModuleType, ModuleType]) -> None:
    _, native = twins
    for target in targets.TARGET_NAMES:
        assert inputs(target, native) == inputs(target, native)


@pytest.mark.parametrize("decoder", targets.DECODERS)
def test_decoders_agree_on_seeds_and_mutants(
    twins: tuple[ModuleType, ModuleType], decoder: str
) -> None:
    pure, native = twins
    outcomes = Counter(
        targets.check_decoder(decoder, data, pure, native) for data in inputs(decoder, native)
    )
    # The pass reaches both sides: whole decodes with every field read, and rejections.
    assert outcomes["ok"] > 50 and outcomes["DecodeError"] > 500, outcomes


def test_splitters_agree_on_seeds_and_mutants(twins: tuple[ModuleType, ModuleType]) -> None:
    pure, native = twins
    frame_counts = [
        targets.check_splitter(data, pure, native) for data in inputs(targets.SPLITTER, native)
    ]
    assert sum(frame_counts) > 1000 and frame_counts.count(0) > 10


def test_the_targets_run_the_same_checks(twins: tuple[ModuleType, ModuleType]) -> None:
    """What atheris calls (make_targets) accepts every seed of its target."""
    pure, native = twins
    for name, target in targets.make_targets(pure, native).items():
        for data in seeds.seeds(name, native)[:50]:
            target(data)


# --- the check catches what it must --------------------------------------------------------


def twin_with(native: ModuleType, **overrides: Any) -> SimpleNamespace:
    """A stand-in for the native twin with some functions replaced."""
    names = {name: getattr(native, name) for name in dir(native) if not name.startswith("__")}
    return SimpleNamespace(__name__="broken", **{**names, **overrides})


VALID_ERR = seeds.frames(load_twin("codec", "python"))[9][4:]  # ErrResp, code 2


@pytest.mark.parametrize(
    "decode, expected",
    [
        (lambda buf: 3, "disagrees"),
        (lambda buf: True, "contract"),  # == 1, but not an int
        (lambda buf: 300, "contract"),
        (lambda buf: buf[99], "IndexError"),
        (lambda buf: int("x"), "ValueError"),
    ],
)
def test_a_wrong_decoder_is_a_finding(
    twins: tuple[ModuleType, ModuleType], decode: Any, expected: str
) -> None:
    pure, native = twins
    broken = twin_with(native, decode_err_resp=decode)
    with pytest.raises(Finding, match=expected):
        targets.check_decoder("err_resp", VALID_ERR, pure, broken)


def test_a_decode_error_subclass_is_a_finding(twins: tuple[ModuleType, ModuleType]) -> None:
    pure, native = twins

    class Special(DecodeError):
        pass

    def decode(buf: bytes) -> int:
        raise Special("x")

    with pytest.raises(Finding, match="subclass"):
        targets.check_decoder("err_resp", b"", pure, twin_with(native, decode_err_resp=decode))


def test_a_lazy_field_that_changes_is_a_finding(twins: tuple[ModuleType, ModuleType]) -> None:
    pure, native = twins
    reads = iter(range(100))

    class Drifting:
        key = None

        @property
        def conf(self) -> list[tuple[str, bytes]]:
            return [("p", str(next(reads)).encode())]

    broken = twin_with(native, decode_prepare_conf_req=lambda buf: Drifting())
    payload = seeds.frames(pure)[0][4:]
    with pytest.raises(Finding, match="second read"):
        targets.check_decoder("prepare_conf_req", payload, pure, broken)


def test_a_splitter_that_loses_a_frame_is_a_finding(twins: tuple[ModuleType, ModuleType]) -> None:
    pure, native = twins

    class Lossy:
        def __init__(self) -> None:
            self.inner = native.FrameSplitter()

        def feed(self, data: bytes) -> list[tuple[int, bytes]]:
            return self.inner.feed(data)[1:]

        @property
        def pending(self) -> int:
            return self.inner.pending

    frames = b"".join(seeds.frames(pure)[:2])
    with pytest.raises(Finding, match="disagrees"):
        targets.check_splitter(
            targets.splitter_input([], frames), pure, twin_with(native, FrameSplitter=Lossy)
        )
    # Both twins equally wrong is still caught, by the reference split.
    with pytest.raises(Finding, match="the stream holds"):
        targets.check_splitter(
            targets.splitter_input([], frames),
            twin_with(pure, FrameSplitter=Lossy),
            twin_with(native, FrameSplitter=Lossy),
        )
