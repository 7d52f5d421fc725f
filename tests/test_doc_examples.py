"""Every Python block of the documentation site (docs/**/*.md) is an example that runs, or
says why it does not.

A page's blocks follow one convention (CONTRIBUTING.md, "Documentation"):

* A block whose first line is ``# path/to/file.py`` is a file of the page's project. The
  files of a page are written into a fresh folder and pytest runs there: every test
  function must pass, and every file that is not a test must be used by one (its module
  or its path named in a test file, or in a file a test uses), so no example sits unrun.
* A block right after ``<!-- fragment -->`` is an excerpt: it must parse, and it may not
  be a whole example in disguise (no file line, no plugin class, no test function).
* A block right after ``<!-- other runner -->`` is another runner's code, shown beside
  ours on the migration pages: it must parse and may not import a6runner.

Any other Python block fails the test: it has to be named a file or marked.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject

DOCS = Path(__file__).resolve().parent.parent / "docs"
PYTHON_FENCE = re.compile(r"^```(?:python3?|py)\s*$")
FILE_LINE = re.compile(r"^# ([\w./-]+\.py)\s*$")
TEST_FUNCTION = re.compile(r"^(?:async )?def test_", re.M)
MARKERS = {"<!-- fragment -->": "fragment", "<!-- other runner -->": "other runner"}
# the pages whose examples the site promises are run: each must have some
MUST_RUN = [
    "getting-started.md",
    "writing-plugins/index.md",
    "writing-plugins/confs.md",
    "writing-plugins/waiting.md",
    "writing-plugins/lifecycle.md",
    "writing-plugins/services.md",
    "writing-plugins/testing.md",
    "writing-plugins/packaging.md",
    "migrating/go.md",
    "migrating/java.md",
    "migrating/python.md",
]


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    kind: str  # "file", "fragment", "other runner" or "unmarked"
    code: str
    path: str | None = None  # for a file

    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def python_blocks(page: Path) -> list[Block]:
    name = page.relative_to(DOCS).as_posix()
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = lines[i].strip()
        if not fence.startswith("```"):
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"docs/{name}:{i + 1}: a code block that never ends"
        if PYTHON_FENCE.match(fence):
            code = "\n".join(lines[i + 1 : end]) + "\n"
            before = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
            first = code.splitlines()[0] if code.strip() else ""
            if before in MARKERS:
                blocks.append(Block(name, i + 1, MARKERS[before], code))
            elif match := FILE_LINE.match(first):
                blocks.append(Block(name, i + 1, "file", code, match.group(1)))
            else:
                blocks.append(Block(name, i + 1, "unmarked", code))
        i = end + 1
    return blocks


ALL_BLOCKS = [block for page in sorted(DOCS.rglob("*.md")) for block in python_blocks(page)]
PAGES_WITH_FILES = sorted({block.page for block in ALL_BLOCKS if block.kind == "file"})


def test_every_python_block_is_a_file_or_marked() -> None:
    unmarked = [block.where() for block in ALL_BLOCKS if block.kind == "unmarked"]
    assert not unmarked, (
        "python blocks that neither start with '# path/to/file.py' nor follow "
        f"<!-- fragment --> / <!-- other runner -->: {unmarked}"
    )


def test_the_pages_that_promise_run_examples_have_them() -> None:
    assert sorted(set(MUST_RUN) - set(PAGES_WITH_FILES)) == []


def _defines_an_example(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith(
            "test"
        ):
            found.append(f"test function {node.name}")
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(base) for base in node.bases]
            if any(base.split(".")[-1] == "Plugin" for base in bases):
                found.append(f"plugin class {node.name}")
    return found


@pytest.mark.parametrize(
    "block",
    [block for block in ALL_BLOCKS if block.kind == "fragment"],
    ids=lambda block: block.where(),
)
def test_a_fragment_parses_and_is_no_whole_example(block: Block) -> None:
    assert not FILE_LINE.match(block.code.splitlines()[0]), "a file: drop the fragment mark"
    tree = ast.parse(textwrap.dedent(block.code))
    assert _defines_an_example(tree) == [], "a whole example: make it a file that a test runs"


@pytest.mark.parametrize(
    "block",
    [block for block in ALL_BLOCKS if block.kind == "other runner"],
    ids=lambda block: block.where(),
)
def test_another_runners_code_parses_and_is_not_ours(block: Block) -> None:
    tree = ast.parse(block.code)
    imported = [
        alias.name if isinstance(node, ast.Import) else node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert imported and not [m for m in imported if m.split(".")[0] == "a6runner"]


def _uses(test_sources: list[str], path: str) -> bool:
    module = path.removesuffix(".py").replace("/", ".")
    imports = re.compile(rf"^\s*(from|import)\s+{re.escape(module)}\b", re.M)
    return any(imports.search(source) or path in source for source in test_sources)


@pytest.mark.parametrize("page", PAGES_WITH_FILES)
def test_the_examples_of_a_page_pass_their_tests(page: str, tmp_path: Path) -> None:
    files = [block for block in ALL_BLOCKS if block.page == page and block.kind == "file"]
    paths = [block.path or "" for block in files]
    assert len(set(paths)) == len(paths), f"docs/{page}: two blocks write the same file"
    tests = [block for block in files if Path(block.path or "").name.startswith("test_")]
    assert tests, f"docs/{page}: files but no test_*.py that runs them"
    test_sources = [block.code for block in tests]
    # used: named by a test, or by a file a test uses (a plugin its runner script imports)
    used_sources = list(test_sources)
    unused = {block.path or "": block.code for block in files if block not in tests}
    while newly := [p for p in unused if _uses(used_sources, p)]:
        used_sources += [unused.pop(p) for p in newly]
    assert sorted(unused) == [], f"docs/{page}: files no test uses: {sorted(unused)}"
    for block in files:
        target = tmp_path / (block.path or "")
        assert tmp_path in target.resolve().parents, block.where()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code, encoding="utf-8")
    expected = sum(len(TEST_FUNCTION.findall(source)) for source in test_sources)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    # every test function ran (a parametrized one counts once per case) and none was skipped
    summary = result.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= expected, result.stdout[-3000:]
    assert "skipped" not in summary and "deselected" not in summary, summary
