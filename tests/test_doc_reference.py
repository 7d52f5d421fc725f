"""The API reference (docs/reference/) shows every public name: each name a public module
exports has a ``::: ...`` directive of its own on a reference page, and so do the pytest
plugin's fixtures (mkdocstrings renders each with its types; ``make docs`` fails when a
directive does not resolve)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import a6runner
import a6runner.confs
import a6runner.testing

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference"
DIRECTIVE = re.compile(r"^::: ([\w.]+)$", re.M)
FIXTURES = ["a6_runner", "apisix", "start_runner"]  # apisix_async: see below


def directives() -> set[str]:
    return {d for page in REFERENCE.glob("*.md") for d in DIRECTIVE.findall(page.read_text())}


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("a6runner", a6runner.__all__),
        ("a6runner.testing", a6runner.testing.__all__),
        ("a6runner.confs", a6runner.confs.__all__),
        ("a6runner.pytest_plugin", FIXTURES),
    ],
)
def test_every_public_name_has_its_entry(module: str, names: list[str]) -> None:
    shown = {directive.rpartition(".")[2] for directive in directives()}
    assert module == "a6runner" or module in directives()  # the module's own docstring
    assert sorted(set(names) - shown) == []


def test_the_fixture_pytest_asyncio_adds_is_described() -> None:
    assert "`apisix_async`" in (REFERENCE / "testing.md").read_text()
