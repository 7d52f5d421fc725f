"""The shape of the package: no import cycles, and the plugin author's objects expose only
the plugin API (runner internals live in the chain module)."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import a6native
import a6runner
from a6runner import Request, Response, ResponseWriter

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject

SRC = Path(a6runner.__file__).parent


def _modules() -> list[str]:
    found = [m.name for m in pkgutil.walk_packages(a6runner.__path__, "a6runner.")]
    found += [m.name for m in pkgutil.walk_packages(a6native.__path__, "a6native.")]
    # the flatc output imports nothing of ours
    return ["a6runner", "a6native"] + [
        m for m in found if not m.startswith("a6runner._fbs.") and m != "a6runner.__main__"
    ]


@pytest.mark.parametrize("module", _modules())
def test_every_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    # A cycle shows up only when one of its modules is imported first: try each one first.
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str, root: Path) -> bool:
    path = root.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _import_edges(path: Path, root: Path) -> set[str]:
    """The modules of the package at ``root`` that the module at ``path`` imports, wherever
    the import statement is: at the top; under ``if TYPE_CHECKING:``, since a cycle of
    annotations is still two modules that each need the other to be read, and turns into
    an ImportError the day one of those names is needed at run time; and inside a
    function, since a lazy import still makes the two modules depend on each other (those
    that keep a heavy module off a plain run's path, like the CLI's of the conf tools,
    point down the graph: they never close a cycle)."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = parent + ("." + base if base else "")
            for alias in node.names:
                candidate = f"{base}.{alias.name}"  # `from . import _chain` names a module
                edges.add(candidate if _is_module(candidate, root) else base)
        elif isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names)
    return {e for e in edges if e.partition(".")[0] == root.name and e != module}


def _import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports, for every module under
    ``root``, read from the source (nothing is imported)."""
    return {_module_name(p, root): _import_edges(p, root) for p in sorted(root.rglob("*.py"))}


def _import_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Each cycle found, as ``a -> b -> a``; and each module that imports its top package:
    importing any submodule first runs the package, whose own imports of its submodules
    are the normal direction, so an edge back to it closes a cycle with whichever module
    is imported first."""
    top = min(graph, key=len)
    found = [f"{m} -> {top} (the package itself)" for m in sorted(graph) if top in graph[m]]
    state: dict[str, str] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = "on the stack"
        stack.append(node)
        for nxt in sorted(graph[node] & graph.keys()):
            if state.get(nxt) == "on the stack":
                found.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    # Every module, the subpackages (the load driver, the generated FlatBuffers code) too.
    graph = _import_graph(SRC)
    cycles = _import_cycles(graph)
    assert cycles == [], "import cycles (move what both sides need to the lower module):\n" + (
        "\n".join(cycles)
    )
    # the check saw the real graph: the server depends on the chain, the chain on the API,
    # at import time; the plugin API on the limits for its annotations only; the CLI on
    # the load driver from a function; the load driver's modules on each other
    assert "a6runner._chain" in graph["a6runner._server"]
    assert "a6runner._plugin" in graph["a6runner._chain"]
    assert "a6runner._limits" in graph["a6runner._plugin"]
    assert "a6runner.bench.cli" in graph["a6runner._cli"]
    assert "a6runner.bench.driver" in graph["a6runner.bench.cli"]


PACKAGE_WITH_A_CYCLE = {
    "__init__.py": "from .low import Low\n",
    "low.py": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from .sub.high import High\n"
        "class Low: ...\n"
    ),
    "sub/__init__.py": "",
    "sub/high.py": "def make():\n    from ..low import Low\n    return Low()\nclass High: ...\n",
    "side.py": "import pkg.low\nfrom pkg import sub\n",
}


def test_the_cycle_check_sees_type_checking_and_function_imports(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    for name, text in PACKAGE_WITH_A_CYCLE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    graph = _import_graph(root)
    assert graph["pkg.side"] == {"pkg.low", "pkg.sub"}
    assert _import_cycles(graph) == ["pkg.low -> pkg.sub.high -> pkg.low"]
    (root / "sub/high.py").write_text("class High: ...\n")
    (root / "side.py").write_text("from pkg import Low\n")
    assert _import_cycles(_import_graph(root)) == ["pkg.side -> pkg (the package itself)"]


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")}


def test_call_objects_expose_only_the_plugin_api() -> None:
    assert _public(Request) == {
        "args",
        "body",
        "conf_token",
        "get_body",
        "get_var",
        "headers",
        "id",
        "method",
        "path",
        "resp_headers",
        "respond",
        "response",
        "services",
        "set_body",
        "src_ip",
        "trace_context",
        "var",
        "vars",
    }
    assert _public(Response) == {
        "body",
        "conf_token",
        "get_body",
        "get_var",
        "headers",
        "id",
        "services",
        "set_body",
        "status",
        "trace_context",
        "var",
        "vars",
    }
    assert _public(ResponseWriter) == {"body", "headers", "status", "written"}
