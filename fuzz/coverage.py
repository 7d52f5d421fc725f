"""How much of the compiled codec a fuzz corpus reaches, from libFuzzer's own coverage.

    python -m fuzz.coverage [TARGET...]      # default: every target, corpora of make fuzz

Replays each target's corpus (build/fuzz/corpus/<target> and its seeds) once under the
instrumented build with ``-print_coverage=1`` and sums the edges libFuzzer reports for the
functions of codec.c that read frames: the decoders, their validation helpers, the lazy
field getters and the frame splitter (builders and module set-up are not fuzz targets).
Needs llvm-symbolizer (Debian's clang brings it) to name the functions.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from pathlib import Path

from .targets import TARGET_NAMES

ROOT = Path(__file__).resolve().parents[1]
FUZZ_DIR = ROOT / "build" / "fuzz"
LINE = re.compile(r"(UN)?COVERED_FUNC: hits: (\d+) edges: (\d+)/(\d+) (\S+) (\S+)")
# Cython's C names: __pyx_f_<module>_<cdef>, __pyx_pw_<module>_<n><def>, __pyx_getprop_...
READERS = re.compile(
    r"__pyx_(f|pw|getprop|tp_\w+)_8a6native_5codec_\w*("
    r"_check_(root|table|field|vector|text_entries)|_bad_|decode_|_text_entry_list|_name_at"
    r"|_utf8_at|_bytes_at|_payload_bytes|HTTPReqCallReq|HTTPRespCallReq|PrepareConfReq"
    r"|FrameSplitter)"
)


def _symbolizer_path() -> str:
    found = sorted(glob.glob("/usr/lib/llvm-*/bin"))
    return os.pathsep.join([*found[-1:], os.environ.get("PATH", "")])


def reader_coverage(target: str) -> dict[str, tuple[int, int]]:
    """function -> (edges covered, edges in total), for codec.c's readers."""
    corpus = FUZZ_DIR / "corpus" / target
    seeds = FUZZ_DIR / "seeds" / target
    env = dict(os.environ, PATH=_symbolizer_path())
    command = [sys.executable, "-m", "fuzz.run", target, "-runs=0", "-print_coverage=1"]
    output = subprocess.run(
        [*command, str(corpus), str(seeds)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    functions = {}
    for match in LINE.finditer(output):
        _, _, edges, all_edges, function, where = match.groups()
        if "/codec.c:" in where and READERS.match(function):
            functions[function] = int(edges), int(all_edges)
    return functions


def main() -> None:
    best: dict[str, tuple[int, int]] = {}
    for target in sys.argv[1:] or TARGET_NAMES:
        functions = reader_coverage(target)
        reached = {name: edges for name, edges in functions.items() if edges[0]}
        covered = sum(edges for edges, _ in reached.values())
        total = sum(edges for _, edges in reached.values())
        print(
            f"{target}: {covered}/{total} edges in the {len(reached)} reader functions it reaches"
        )
        for name, (edges, all_edges) in functions.items():
            if edges >= best.get(name, (0, 0))[0]:
                best[name] = edges, all_edges
    covered = sum(edges for edges, _ in best.values())
    total = sum(edges for _, edges in best.values())
    print(f"all targets: {covered}/{total} edges of codec.c's {len(best)} reader functions")
    for name, (edges, all_edges) in sorted(best.items()):
        if edges < all_edges:
            print(f"    {edges:4d}/{all_edges:<4d} {name}")


if __name__ == "__main__":
    main()
