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


def _import_edges(path: Path, module: str) -> set[str]:
    """The a6runner modules ``module`` imports, at import time or later from a function
    (a lazy import still makes two modules depend on each other); ``if TYPE_CHECKING:``
    blocks do not count."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If):
            test = node.test
            if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                for child in node.orelse:
                    visit(child)
                return
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = package + ("." + base if base else "")
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                edges.add(candidate if (SRC.parent / _as_path(candidate)).exists() else base)
        elif isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {e for e in edges if e.startswith("a6runner") and e != module}


def _as_path(module: str) -> str:
    parts = module.split(".")
    as_dir = Path(*parts)
    return str(as_dir if (SRC.parent / as_dir).is_dir() else as_dir.with_suffix(".py"))


def test_runtime_modules_form_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for path in SRC.glob("*.py"):
        name = "a6runner" if path.name == "__init__.py" else f"a6runner.{path.stem}"
        graph[name] = _import_edges(path, name)
    # Importing a submodule initialises the package first; the package's own imports of
    # its submodules are the normal direction, so edges *to* the package are the risk.
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == "a6runner" and node != "a6runner":
                pytest.fail(f"{node} imports the package a6runner itself")
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt in graph and state.get(nxt) is None:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if state.get(node) is None:
            walk(node)
    # the check saw the real graph: the server depends on the chain, the chain on the API
    assert "a6runner._chain" in graph["a6runner._server"]
    assert "a6runner._plugin" in graph["a6runner._chain"]


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
