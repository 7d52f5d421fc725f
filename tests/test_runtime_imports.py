"""What a running runner imports: not the ``flatbuffers`` runtime nor the generated code
(a6runner._fbs), in either mode. Both are the tests' independent FlatBuffers reference;
the runner reads and writes frames with its own codec."""

from __future__ import annotations

import os
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
