"""``a6-runner new NAME [DIR]``: a plugin package that works at once.

It writes ``pyproject.toml`` (the plugin registered in the ``a6runner.plugins`` entry-point
group), the plugin (a typed dataclass conf, a request and a response filter), tests that
use a6runner's pytest fixtures, and a short README. ``pip install -e 'DIR[test]'`` then
``pytest`` in DIR passes, ``a6-runner plugins`` lists it and ``a6-runner call NAME``
answers.
"""

from __future__ import annotations

import argparse
import keyword
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ._version import VERSION

PLUGIN_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
RESERVED = {"a6runner", "a6native", "tests", "test", "src", "plugins"}
EXIT_OK = 0
EXIT_USAGE = 2

DESCRIPTION = (
    "Start a plugin package: pyproject.toml (the plugin in the a6runner.plugins entry "
    "points), the plugin with a typed conf and both filters, its tests (a6runner's pytest "
    "fixtures) and a README, in DIR (default: ./NAME)."
)
EPILOG = """\
NAME is the plugin's name in routes (lowercase letters, digits and single hyphens, starting
with a letter); the Python package is NAME with '_' for '-'.

then:
  cd DIR && pip install -e '.[test]' && pytest

exit status:
  0  written
  2  NAME is not usable, DIR exists and is not empty, or DIR cannot be written"""


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a plugin and package name, or None."""
    if not PLUGIN_NAME.fullmatch(name):
        return (
            f"{name!r} is not a plugin name: use lowercase letters, digits and single hyphens, "
            "starting with a letter (like 'ip-restriction')"
        )
    package = name.replace("-", "_")
    if keyword.iskeyword(package) or keyword.issoftkeyword(package):
        return f"{name!r} would make the package {package!r}, a Python keyword: choose another"
    if package in RESERVED or package in sys.stdlib_module_names:
        return (
            f"{name!r} would make the package {package!r}, which would shadow "
            f"{'a6runner' if package in RESERVED else 'the standard library'}'s: choose another"
        )
    return None


def class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def files(name: str) -> dict[str, str]:
    """What the package holds, by path relative to DIR."""
    package = name.replace("-", "_")
    cls = class_name(name)
    major_minor = ".".join(VERSION.split(".")[:2])
    return {
        "pyproject.toml": f"""\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
description = "The {name} plugin for a6runner, the Python plugin runner of Apache APISIX"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["a6runner>={major_minor}"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-asyncio>=0.24"]

# `a6-runner run` (and `plugins`, `call`, `check-route`) find the plugin here
[project.entry-points."a6runner.plugins"]
{name} = "{package}:{cls}"

[tool.pytest.ini_options]
testpaths = ["tests"]
asyncio_default_fixture_loop_scope = "function"
""",
        f"src/{package}/__init__.py": f'''\
"""{name}: adds a header to the request sent upstream and to the response.

Conf (JSON, every field optional)::

    {{"header": "X-Hello", "value": "world", "skip_paths": ["/health"]}}

A request whose path is in ``skip_paths`` is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from a6runner import Plugin, Request, Response
from a6runner.confs import Length, Matches


@dataclass(frozen=True)
class {cls}Conf:
    """The route's conf, decoded and checked by the runner (a bad one is refused with the
    field and the problem, never its value)."""

    header: Annotated[str, Matches(r"[A-Za-z0-9-]+", "a header name")] = "X-Hello"
    value: Annotated[str, Length(min=1, max=256)] = "world"
    skip_paths: tuple[str, ...] = ()


class {cls}(Plugin):
    name = "{name}"
    conf_type = {cls}Conf

    # A connection pool (an HTTP client, a database)? Open it in ``async def start(self)``
    # and close it in ``async def stop(self)``: each runs once in every serving process.

    # plain ``def`` filters run inline; make one ``async def`` to await I/O in it
    def request_filter(self, conf: {cls}Conf, req: Request) -> None:
        if req.path not in conf.skip_paths:
            req.headers.set(conf.header, conf.value)

    def response_filter(self, conf: {cls}Conf, resp: Response) -> None:
        resp.headers.set(conf.header, conf.value)
''',
        f"tests/test_{package}.py": f'''\
"""Tests over the real unix socket, with a6runner's pytest fixtures: ``a6_runner`` serves
the plugins of the ``a6runner`` marker, ``apisix`` (``apisix_async``) talks to it as APISIX
does."""

from __future__ import annotations

import pytest

from a6runner import ConfError
from a6runner.testing import AsyncClient, Client
from {package} import {cls}

pytestmark = pytest.mark.a6runner(plugins=[{cls}])


def test_the_request_goes_upstream_with_the_header(apisix: Client) -> None:
    token = apisix.prepare_conf([("{name}", {{"header": "X-Team", "value": "blue"}})])
    reply = apisix.http_req_call(token, path="/orders")
    assert reply.action == "rewrite"
    assert reply.headers == [("X-Team", "blue")]


def test_a_skipped_path_is_left_alone(apisix: Client) -> None:
    token = apisix.prepare_conf([("{name}", {{"skip_paths": ["/health"]}})])
    assert apisix.http_req_call(token, path="/health").action == "none"


def test_the_response_gets_the_header(apisix: Client) -> None:
    token = apisix.prepare_conf([("{name}", {{}})])
    reply = apisix.http_resp_call(token, status=200, headers=[("content-type", "text/plain")])
    assert reply.header("X-Hello") == "world"


def test_a_bad_conf_is_refused_by_field() -> None:
    with pytest.raises(ConfError, match="value: must have at most 256 characters"):
        {cls}().parse_conf(b\'{{"value": "\' + b"x" * 300 + b\'"}}\')


@pytest.mark.asyncio
async def test_asyncio_tests_too(apisix_async: AsyncClient) -> None:
    token = await apisix_async.prepare_conf([("{name}", {{}})])
    assert (await apisix_async.http_req_call(token)).headers == [("X-Hello", "world")]
''',
        "README.md": f"""\
# {name}

A plugin for [a6runner](https://pypi.org/project/a6runner/), the Python plugin runner of
Apache APISIX: it adds a header to the request sent upstream and to the response.

```sh
pip install -e '.[test]'    # the plugin, registered in the a6runner.plugins entry points
pytest                      # its tests, over a real runner's unix socket
a6-runner plugins           # lists {name}
a6-runner call {name} --conf '{{"value": "hi"}}'
a6-runner schema {name}     # the JSON Schema of its conf
```

In a route, as an ext-plugin conf entry:

```json
{{"ext-plugin-pre-req": {{"conf": [{{"name": "{name}", "value": "{{\\"value\\": \\"hi\\"}}"}}]}}}}
```

`a6-runner check-route route.json` checks such confs before they are deployed.
""",
    }


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        formatter_class=argparse.RawDescriptionHelpFormatter,
        prog="a6-runner new",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument("name", metavar="NAME", help="the plugin's name, e.g. my-auth")
    parser.add_argument("dir", nargs="?", metavar="DIR", help="where to write it (default ./NAME)")
    args: argparse.Namespace = parser.parse_args(argv)
    prog = "a6-runner new"
    problem = name_problem(args.name)
    if problem is not None:
        print(f"{prog}: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    target = Path(args.dir or args.name)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        what = "is not a folder" if not target.is_dir() else "exists and is not empty"
        print(f"{prog}: error: {target} {what}: name a new or empty folder", file=sys.stderr)
        return EXIT_USAGE
    try:
        for relative, text in files(args.name).items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"{prog}: error: cannot write {target}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    shown = os.path.relpath(target) if not target.is_absolute() else str(target)
    print(
        f"wrote the {args.name} plugin package in {shown}/; next:\n"
        f"  cd {shown} && pip install -e '.[test]' && pytest\n"
        f"  a6-runner call {args.name}"
    )
    return EXIT_OK
