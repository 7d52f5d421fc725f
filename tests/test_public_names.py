"""Each kernel's contract (its .pyi), its compiled module and its pure twin name exactly the
same public things, both ways: nothing declared is missing from a twin, and no twin
defines a public name the contract does not declare."""

from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType

import pytest
from conftest import IMPL_PARAMS, load_kernel

from a6runner._kernels import TWINS

STUBS = Path(__file__).resolve().parent.parent / "src" / "a6native"
FAMILIES = sorted(TWINS)


def stub_names(family: str) -> dict[str, str]:
    """Public top-level names of ``<family>.pyi`` and what each is: class, function or
    value (constants, type aliases, re-exports written ``import X as X``)."""
    tree = ast.parse((STUBS / f"{family}.pyi").read_text())
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = "class"
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = "function"
        elif isinstance(node, ast.Assign):
            names.update((t.id, "value") for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = "value"
        elif isinstance(node, ast.ImportFrom):
            names.update(
                (alias.name, "value") for alias in node.names if alias.asname == alias.name
            )
    return {name: kind for name, kind in names.items() if not name.startswith("_")}


def unexported_definitions(module: ModuleType) -> list[str]:
    """Public names the module itself defines but leaves out of ``__all__`` (imports such
    as ``Sequence`` or a shared helper from another module do not count)."""
    found = []
    for name in dir(module):
        if name.startswith("_") or name in module.__all__:
            continue
        value = getattr(module, name)
        if isinstance(value, ModuleType):
            continue
        if getattr(value, "__module__", module.__name__) == module.__name__:
            found.append(name)
    return found


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("impl", IMPL_PARAMS)
def test_twin_exports_exactly_what_its_stub_declares(family: str, impl: str) -> None:
    module = load_kernel(family, impl)
    declared = stub_names(family)
    assert sorted(module.__all__) == sorted(declared)
    assert len(set(module.__all__)) == len(module.__all__)
    assert unexported_definitions(module) == []
    for name, kind in declared.items():
        value = getattr(module, name)
        if kind == "class":
            assert isinstance(value, type), name
        elif kind == "function":
            assert callable(value) and not isinstance(value, type), name


@pytest.mark.parametrize("family", FAMILIES)
def test_stub_declares_something(family: str) -> None:
    """Guards the parser above: every contract has classes or functions."""
    kinds = set(stub_names(family).values())
    assert kinds & {"class", "function"}


def stub_classes(family: str) -> dict[str, set[str]]:
    """The members (methods, properties, special methods) each stub class declares."""
    tree = ast.parse((STUBS / f"{family}.pyi").read_text())
    return {
        node.name: {
            member.name
            for member in node.body
            if isinstance(member, ast.FunctionDef) and member.name != "__init__"
        }
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("impl", IMPL_PARAMS)
def test_twin_classes_have_exactly_the_stub_members(family: str, impl: str) -> None:
    """Public members match both ways; every special method the stub declares exists."""
    module = load_kernel(family, impl)
    for class_name, members in stub_classes(family).items():
        cls = getattr(module, class_name)
        public = {name for name in dir(cls) if not name.startswith("_")}
        assert public == {name for name in members if not name.startswith("_")}, class_name
        assert {name for name in members if name.startswith("_")} <= set(dir(cls)), class_name


def test_the_typed_confs_module_exports_exactly_its_api() -> None:
    """a6runner.confs is public (plugins import its markers): its names are these, each
    defined there is exported, and a6runner's own public names are unchanged by it."""
    import a6runner
    from a6runner import confs

    assert sorted(confs.__all__) == [
        "JSON_SCHEMA_DIALECT",
        "Length",
        "Matches",
        "Range",
        "conf_schema",
        "decode_conf",
        "ignore_unknown_fields",
        "parse_json",
    ]
    assert unexported_definitions(confs) == []
    assert all(hasattr(confs, name) for name in confs.__all__)
    assert "confs" not in a6runner.__all__  # a module, imported as a6runner.confs
