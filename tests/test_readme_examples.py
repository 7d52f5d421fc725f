"""README's plugin guide examples run as written: the response_filter plugin and its test."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject

README = Path(__file__).resolve().parent.parent / "README.md"


def python_block(containing: str) -> str:
    """The README python block that contains ``containing``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    found = [str(b) for b in blocks if containing in b]
    assert len(found) == 1, f"{len(found)} python blocks with {containing!r} in README.md"
    return found[0]


def test_the_response_filter_example_and_its_test_pass(tmp_path: Path) -> None:
    (tmp_path / "my_plugins").mkdir()
    plugin = python_block('name = "json-errors"')
    (tmp_path / "my_plugins" / "json_errors.py").write_text(plugin)
    test = python_block("from my_plugins.json_errors import JsonErrors")
    (tmp_path / "test_json_errors.py").write_text(test)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_json_errors.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_the_typed_greet_example_and_its_fixture_tests_pass(tmp_path: Path) -> None:
    """The plugin guide's first example (a conf_type dataclass) and the tests of
    "Testing a plugin", with the pytest plugin's fixtures, sync and asyncio."""
    (tmp_path / "my_plugins").mkdir()
    (tmp_path / "my_plugins" / "greet.py").write_text(python_block("class GreetConf:"))
    (tmp_path / "test_greet.py").write_text(
        python_block("pytestmark = pytest.mark.a6runner(plugins=[Greet])")
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_greet.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_the_typed_conf_example_decodes_and_refuses_by_field() -> None:
    from a6runner import ConfError

    namespace: dict[str, object] = {}
    exec(
        compile(python_block("class AuthConf:"), "README.md", "exec", dont_inherit=True), namespace
    )
    auth = namespace["Auth"]()  # type: ignore[operator]
    conf = auth.parse_conf(
        b'{"issuer": "https://id.example", "allow": ["10.0.0.0/8"], "skip": "^/health",'
        b' "upstream": {"host": "idp"}}'
    )
    assert conf.upstream.port == 443 and conf.skip.match("/health")
    for raw, said in [
        (b'{"issuer": "http://x"}', "issuer: must be an https URL"),
        (b'{"issuer": "https://x", "mode": "lenient"}', "allow: must not be empty"),
        (b'{"issuer": "https://x", "upstream": {"host": "h", "port": 0}}', "upstream.port"),
        (b'{"issuer": "https://x", "headers": {"k": 1}}', "headers[…]: must be a string"),
    ]:
        with pytest.raises(ConfError, match=re.escape(said)):
            auth.parse_conf(raw)
