"""Build the Cython kernels instrumented for libFuzzer (+ AddressSanitizer) out of tree.

    python -m fuzz.build_native [BUILD_DIR]     # default build/fuzz/lib

Every ``src/a6native/*.pyx`` is translated to C under BUILD_DIR/../c and compiled with
clang ``-fsanitize=address,fuzzer-no-link`` into BUILD_DIR/a6native/, next to a copy of the
package's Python files. Putting BUILD_DIR first on PYTHONPATH makes that process import the
instrumented modules instead of the ones ``make install`` built in place; nothing in src/
or .venv is written. FUZZ_SANITIZERS overrides the sanitizer list (e.g. "address,undefined";
"" builds with coverage only).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NATIVE_SRC = ROOT / "src" / "a6native"
DEFAULT_BUILD_DIR = ROOT / "build" / "fuzz" / "lib"


def clang() -> str:
    """The clang to use: $CC if it is a clang, else the first clang on PATH."""
    for candidate in (os.environ.get("CC", ""), "clang", "clang-16", "clang-15", "clang-14"):
        if candidate and "clang" in candidate and shutil.which(candidate):
            return candidate
    sys.exit("fuzz: clang not found (Debian: apt-get install clang)")


def fuzz_flags() -> list[str]:
    """libFuzzer's coverage instrumentation, and the sanitizers of FUZZ_SANITIZERS."""
    sanitizers = os.environ.get("FUZZ_SANITIZERS", "address")
    fsanitize = ",".join(filter(None, [sanitizers, "fuzzer-no-link"]))
    return ["-O1", "-g", "-fno-omit-frame-pointer", f"-fsanitize={fsanitize}"]


def build(build_dir: Path, flags: list[str] | None = None) -> list[Path]:
    """Compile every kernel with ``flags`` (default: fuzz_flags()) into build_dir."""
    c_dir = build_dir.parent / "c"
    package_dir = build_dir / "a6native"
    package_dir.mkdir(parents=True, exist_ok=True)
    for source in NATIVE_SRC.iterdir():  # the package's .py/.pyi/typed files, fresh
        if source.suffix in (".py", ".pyi") or source.name == "py.typed":
            shutil.copy2(source, package_dir / source.name)
    compiler = clang()
    include = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    built = []
    for pyx in sorted(NATIVE_SRC.glob("*.pyx")):
        # The directives live in each .pyx header, so this build matches setup.py's.
        c_file = c_dir / f"{pyx.stem}.c"
        c_dir.mkdir(parents=True, exist_ok=True)
        cython = [sys.executable, "-m", "cython", "-3", "--module-name", f"a6native.{pyx.stem}"]
        subprocess.run([*cython, str(pyx), "-o", str(c_file)], check=True)
        target = package_dir / f"{pyx.stem}{suffix}"
        command = [
            compiler,
            "-shared",
            "-fPIC",
            *(fuzz_flags() if flags is None else flags),
            f"-I{include}",
            str(c_file),
            "-o",
            str(target),
        ]
        print("fuzz:", " ".join(command), flush=True)
        subprocess.run(command, check=True)
        built.append(target)
    return built


def main() -> None:
    build_dir = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else DEFAULT_BUILD_DIR
    for target in build(build_dir):
        print(f"fuzz: built {target}")


if __name__ == "__main__":
    main()
