"""How much of the compiled codec the fuzz corpora reach.

    python -m fuzz.coverage [TARGET...]      # libFuzzer's edges, per target
    python -m fuzz.coverage --lines          # codec.pyx lines executed by all corpora

Edges: replays each target's corpus (build/fuzz/corpus/<target> and its seeds) once under
the instrumented build with ``-print_coverage=1`` and sums the edges libFuzzer reports for
the functions of codec.c that read frames: the decoders, their validation helpers, the
lazy field getters and the frame splitter (builders and module set-up are not fuzz
targets). Cython's C has edges no input can take (argument parsing, an allocation that
fails), so these never reach 100 %.

Lines: builds the kernels once more with clang's source-based coverage
(build/fuzz/profile), replays every corpus through the same targets without atheris, and
maps the executed C lines back to codec.pyx through the ``/* "a6native/codec.pyx":N``
markers Cython writes before each statement's C code. It prints the reader part of
codec.pyx (reader primitives, readers, frames) line by line where not executed.

Both need the LLVM tools that come with Debian's clang (llvm-symbolizer, llvm-profdata,
llvm-cov).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .targets import TARGET_NAMES

ROOT = Path(__file__).resolve().parents[1]
FUZZ_DIR = ROOT / "build" / "fuzz"
PROFILE_DIR = FUZZ_DIR / "profile"
CODEC_PYX = ROOT / "src" / "a6native" / "codec.pyx"
FUNCTION = re.compile(r"(UN)?COVERED_FUNC: hits: (\d+) edges: (\d+)/(\d+) (\S+) (\S+)")
# Cython's C names: __pyx_f_<module>_<cdef>, __pyx_pw_<module>_<n><def>, __pyx_getprop_...
READERS = re.compile(
    r"__pyx_(f|pw|getprop)_8a6native_5codec_\w*("
    r"_check_(root|table|field|vector|text_entries)|_bad_|decode_|_text_entry_list|_name_at"
    r"|_utf8_at|_bytes_at|_payload_bytes|HTTPReqCallReq|HTTPRespCallReq|PrepareConfReq"
    r"|FrameSplitter)"
)
PYX_MARK = re.compile(r'/\* "a6native/codec\.pyx":(\d+)')
READER_SECTION = ("# --- reader primitives", "# --- builder primitives")


def llvm_tool(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/llvm-*/bin/{name}"))), None)
    if not found:
        sys.exit(f"fuzz: {name} not found (it comes with Debian's clang)")
    return found


def corpus_dirs(target: str) -> list[Path]:
    return [FUZZ_DIR / "corpus" / target, FUZZ_DIR / "seeds" / target]


# --- libFuzzer's edges --------------------------------------------------------------------


def reader_edges(target: str) -> dict[str, tuple[int, int]]:
    """function -> (edges covered, edges in total), for codec.c's readers."""
    symbolizer_dir = str(Path(llvm_tool("llvm-symbolizer")).parent)
    env = dict(os.environ, PATH=os.pathsep.join([symbolizer_dir, os.environ.get("PATH", "")]))
    command = [sys.executable, "-m", "fuzz.run", target, "-runs=0", "-print_coverage=1"]
    output = subprocess.run(
        [*command, *map(str, corpus_dirs(target))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    functions = {}
    for match in FUNCTION.finditer(output):
        _, _, edges, all_edges, function, where = match.groups()
        if "/codec.c:" in where and READERS.match(function):
            functions[function] = int(edges), int(all_edges)
    return functions


def report_edges(targets: list[str]) -> None:
    best: dict[str, tuple[int, int]] = {}
    for target in targets:
        functions = reader_edges(target)
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


# --- codec.pyx lines ----------------------------------------------------------------------


def replay() -> None:
    """Run every corpus through the targets (in the process the profile build is loaded in)."""
    from a6runner import _codec_py
    from a6runner._kernels import load_twin

    from .targets import make_targets

    native = load_twin("codec", "native")
    if not native.__file__.startswith(str(PROFILE_DIR)):
        sys.exit(f"fuzz: replaying on {native.__file__}, not the profile build")
    targets = make_targets(_codec_py, native)
    count = 0
    for target in TARGET_NAMES:
        for directory in corpus_dirs(target):
            for path in sorted(directory.glob("*")):
                targets[target](path.read_bytes())
                count += 1
    print(f"fuzz: replayed {count} inputs")


def executed_pyx_lines(show: str) -> dict[int, bool]:
    """codec.pyx line -> whether any of its C lines ran, from ``llvm-cov show`` of codec.c."""
    lines: dict[int, bool] = {}
    current = None
    for row in show.splitlines():
        parts = row.split("|", 2)
        if len(parts) < 3:
            continue
        count, source = parts[1].strip(), parts[2]
        mark = PYX_MARK.search(source)
        if mark:
            current = int(mark.group(1))
        elif current is not None and count:
            lines[current] = lines.get(current, False) or count != "0"
    return lines


def report_lines() -> None:
    from .build_native import build

    lib = PROFILE_DIR / "lib"
    flags = ["-O0", "-fprofile-instr-generate", "-fcoverage-mapping"]
    (codec_so,) = (path for path in build(lib, flags) if path.name.startswith("codec."))
    raw = PROFILE_DIR / "replay.profraw"
    raw.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(lib), str(ROOT)]))
    env["LLVM_PROFILE_FILE"] = str(raw)
    subprocess.run([sys.executable, "-m", "fuzz.coverage", "--replay"], env=env, check=True)
    data = PROFILE_DIR / "replay.profdata"
    subprocess.run([llvm_tool("llvm-profdata"), "merge", "-o", str(data), str(raw)], check=True)
    codec_c = PROFILE_DIR / "c" / "codec.c"
    show = subprocess.run(
        [llvm_tool("llvm-cov"), "show", str(codec_so), f"-instr-profile={data}", str(codec_c)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    executed = executed_pyx_lines(show)
    source = CODEC_PYX.read_text().splitlines()
    start, end = (
        next(number for number, line in enumerate(source, 1) if line.startswith(header))
        for header in READER_SECTION
    )
    readers = {number: ran for number, ran in executed.items() if start <= number < end}
    print(
        f"codec.pyx lines {start}-{end - 1} (readers, frames): "
        f"{sum(readers.values())} of the {len(readers)} with code executed"
    )
    for number, ran in sorted(readers.items()):
        if not ran:
            print(f"    {number:5d}  {source[number - 1].strip()}")


def main() -> None:
    args = sys.argv[1:]
    if args == ["--replay"]:
        replay()
    elif args == ["--lines"]:
        report_lines()
    else:
        report_edges(args or list(TARGET_NAMES))


if __name__ == "__main__":
    main()
