"""``a6-runner run`` loads the runtime only: not the load driver, not ``a6-runner call``,
not the testing kit.

Checked from inside a real ``a6-runner run`` process: a plugin loaded with ``--plugins``
answers which a6runner modules that process has loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from a6runner.testing import spawn_runner

LOADED_MODULES_PLUGIN = """
import json
import sys

from a6runner import Plugin


class LoadedModules(Plugin):
    name = "loaded-modules"

    def request_filter(self, conf, req):
        names = sorted(m for m in sys.modules if m == "a6runner" or m.startswith("a6runner."))
        req.respond(200, json.dumps(names))
"""

TOOLS = ("a6runner.bench", "a6runner._call", "a6runner.testing")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_run_does_not_import_the_tools(tmp_path: Path, workers: str) -> None:
    plugin = tmp_path / "loaded_modules.py"
    plugin.write_text(LOADED_MODULES_PLUGIN)
    with spawn_runner(["--workers", workers, "--plugins", str(plugin)]) as runner:
        with runner.client() as apisix:
            token = apisix.prepare_conf([("loaded-modules", {})])
            reply = apisix.http_req_call(token)
        assert runner.stop() == 0
    assert reply.action == "stop", reply
    loaded = json.loads(reply.body or b"[]")
    assert "a6runner._server" in loaded and "a6runner._cli" in loaded  # the check sees them
    assert [m for m in loaded if m.startswith(TOOLS)] == []
