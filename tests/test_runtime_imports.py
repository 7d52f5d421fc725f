"""What a running runner imports: not the ``flatbuffers`` runtime nor the generated code
(a6runner._fbs), in either mode. Both are the tests' independent FlatBuffers reference;
the runner reads and writes frames with its own codec."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IMPL_PARAMS

from a6runner.testing import spawn_runner

SUPPORT = str(Path(__file__).with_name("support_plugins.py"))
REFERENCE_ONLY = ("flatbuffers", "a6runner._fbs")


def imported_modules(importtime_log: str) -> set[str]:
    """Module names from the lines ``-X importtime`` writes to stderr."""
    modules = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                modules.add(name)
    return modules


@pytest.mark.parametrize("impl", IMPL_PARAMS)
def test_a_serving_runner_never_imports_the_flatbuffers_reference(
    tmp_path: Path, impl: str
) -> None:
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    env["A6_NO_EXTENSIONS"] = "1" if impl == "python" else "0"
    path = str(tmp_path / "r.sock")
    with spawn_runner(["--plugins", SUPPORT], env=env, socket_path=path) as runner:
        with runner.client() as apisix:
            # Every kind of reply the server builds: Stop, Rewrite, ExtraInfo questions,
            # a response change, an error.
            token = apisix.prepare_conf([("rewriter", {"path": "/p"}), ("stopper", {"body": "hi"})])
            assert apisix.http_req_call(token).body == b"hi"
            token = apisix.prepare_conf([("rewriter", {"path": "/p"})])
            assert apisix.http_req_call(token).path == "/p"
            token = apisix.prepare_conf([("ask-vars", {"vars": ["remote_addr"]})])
            assert apisix.http_req_call(token, vars={"remote_addr": "1.2.3.4"}).status == 200
            token = apisix.prepare_conf([("resp-mod", {"read_body": True, "status": 201})])
            assert apisix.http_resp_call(token, status=200, body=b"up").body == b"UP"
            assert apisix.http_req_call(token + 1000).error == "CONF_TOKEN_NOT_FOUND"
        assert runner.stop() == 0
        log = runner.log()
    modules = imported_modules(log)
    assert "a6runner._server" in modules  # the log is the runner's own imports
    assert "a6native.codec" in modules or impl == "python"
    reference = sorted(m for m in modules if m.startswith(REFERENCE_ONLY))
    assert reference == []


# What a plain run imports only on first use: each costs every worker memory (together
# ~3 MiB of its RSS), and a runner whose confs never need them should not pay for them.
# importlib.metadata (email, zipfile, csv, tempfile behind it) only when a distribution
# may declare an entry-point plugin; uuid/secrets/hashlib when request-id generates an id
# or a limit names its conf; ipaddress when a plugin reads src_ip or ip-restriction parses
# a conf. Never in a run: shutil (and bz2, lzma behind it), which argparse imports for the
# terminal width unless given one; pickle (the supervisor link is marshal data). Never in
# a run either: the conf tools (schema, check-route) and PyYAML they read YAML with, the
# scaffold, the pytest plugin, and the conf adapters with msgspec and pydantic (only for a
# conf type of theirs).
ON_FIRST_USE = (
    "yaml",
    "a6runner._conf_tools",
    "a6runner._conf_adapters",
    "a6runner._scaffold",
    "a6runner.pytest_plugin",
    "msgspec",
    "pydantic",
    "jsonschema",
    "importlib.metadata",
    "email",
    "zipfile",
    "csv",
    "tempfile",
    "uuid",
    "secrets",
    "hashlib",
    "ipaddress",
    "shutil",
    "bz2",
    "lzma",
    "pickle",
)


def _bare_interpreter_imports() -> set[str]:
    """What this interpreter imports before any code of ours (site, .pth files)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return imported_modules(done.stderr)


@pytest.mark.parametrize("impl", IMPL_PARAMS)
def test_a_plain_run_imports_the_optional_modules_only_on_first_use(
    tmp_path: Path, impl: str
) -> None:
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    env["A6_NO_EXTENSIONS"] = "1" if impl == "python" else "0"
    with spawn_runner(["--workers", "2"], env=env, socket_path=str(tmp_path / "r.sock")) as runner:
        with runner.client() as apisix:
            token = apisix.prepare_conf([("say", {"body": "hi"})])
            assert apisix.http_req_call(token).body == b"hi"
        assert runner.stop() == 0
        log = runner.log()
    modules = imported_modules(log)
    assert "a6runner._workers" in modules  # the log is the runner's own imports
    baseline = _bare_interpreter_imports()
    loaded = sorted(m for m in ON_FIRST_USE if m in modules and m not in baseline)
    assert loaded == []
