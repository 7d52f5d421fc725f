"""Run one fuzz target under atheris (libFuzzer), against the instrumented native build.

    python -m fuzz.run TARGET [libFuzzer flags and corpus dirs...]
    python -m fuzz.run --list

(``--target=TARGET`` anywhere works too: libFuzzer passes ``--`` flags through verbatim,
which is how the processes it spawns through fuzz/a6fuzz know their target.)

The process re-executes itself once with what native-extension fuzzing needs (atheris's
native_extension_fuzzing.md): ``LD_PRELOAD`` of atheris's ``asan_with_fuzzer.so`` (ASan
with libFuzzer linked in, so the coverage callbacks of the instrumented .so reach
libFuzzer), ``PYTHONPATH`` with the instrumented a6native build first (fuzz/build_native.py,
``FUZZ_BUILD`` or build/fuzz/lib), ``PYTHONMALLOC=malloc`` (so that ASan sees every Python
buffer, pymalloc's arenas would hide small overreads) and ``ASAN_OPTIONS`` without leak
detection (CPython keeps interpreter-lifetime allocations). ``FUZZ_NO_ASAN=1`` skips all of
that and fuzzes whatever a6native is installed (Python coverage only).

The pure twin (all of ``a6runner``) is instrumented for Python coverage with
``atheris.instrument_imports``, so libFuzzer is guided by the edges of both twins.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUILD = ROOT / "build" / "fuzz" / "lib"
REEXEC_MARK = "A6_FUZZ_CHILD"


def _instrumented_env() -> dict[str, str]:
    import atheris

    build = Path(os.environ.get("FUZZ_BUILD", DEFAULT_BUILD)).resolve()
    if not any((build / "a6native").glob("codec.*")):
        sys.exit(f"fuzz: no instrumented build in {build}: run `python -m fuzz.build_native`")
    preload = Path(atheris.path()) / "asan_with_fuzzer.so"
    if not preload.exists():
        sys.exit(f"fuzz: {preload} is missing: this atheris cannot fuzz native extensions")
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(filter(None, [str(preload), env.get("LD_PRELOAD")]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(build), env.get("PYTHONPATH")]))
    env["PYTHONMALLOC"] = "malloc"
    env["ASAN_OPTIONS"] = ":".join(
        filter(None, ["detect_leaks=0", "allocator_may_return_null=1", env.get("ASAN_OPTIONS")])
    )
    env[REEXEC_MARK] = str(build)
    return env


def _split_target(args: list[str]) -> tuple[str | None, list[str]]:
    """(target name, the other arguments) from either spelling."""
    for index, arg in enumerate(args):
        if arg.startswith("--target="):
            return arg.removeprefix("--target="), args[:index] + args[index + 1 :]
    if args and not args[0].startswith("-"):
        return args[0], args[1:]
    return None, args


def main() -> None:
    from .targets import TARGET_NAMES

    if sys.argv[1:] == ["--list"]:
        print("\n".join(TARGET_NAMES))
        return
    target_name, libfuzzer_args = _split_target(sys.argv[1:])
    if target_name not in TARGET_NAMES:
        sys.exit(
            f"usage: python -m fuzz.run TARGET [libFuzzer flags] [corpus dirs]\n"
            f"TARGET: one of {', '.join(TARGET_NAMES)}"
        )
    if not os.environ.get("FUZZ_NO_ASAN") and REEXEC_MARK not in os.environ:
        command = [sys.executable, "-m", "fuzz.run", *sys.argv[1:]]
        os.execve(sys.executable, command, _instrumented_env())

    import atheris

    with atheris.instrument_imports(include=["a6runner"]):
        from a6runner import _codec_py
        from a6runner._kernels import load_twin

    native = load_twin("codec", "native")  # ImportError here: build the extension first
    build = os.environ.get(REEXEC_MARK)
    if build and not native.__file__.startswith(build):
        sys.exit(f"fuzz: a6native.codec came from {native.__file__}, not the build in {build}")
    print(f"fuzz: pure {_codec_py.__file__}\nfuzz: native {native.__file__}", flush=True)

    from .targets import make_targets

    os.environ["A6_FUZZ_PYTHON"] = sys.executable  # for fuzz/a6fuzz, see its comment
    argv = [str(ROOT / "fuzz" / "a6fuzz"), f"--target={target_name}", *libfuzzer_args]
    atheris.Setup(argv, make_targets(_codec_py, native)[target_name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
