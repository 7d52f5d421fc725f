"""What a failing plugin costs, as APISIX and an operator see it: one error reply, one log
line that names the plugin and the phase, with the traceback."""

from __future__ import annotations

from pathlib import Path

from a6runner.testing import spawn_runner

SUPPORT = str(Path(__file__).with_name("support_plugins.py"))


def test_a_raising_plugin_is_named_in_the_error_line() -> None:
    with spawn_runner(["--plugins", SUPPORT]) as runner, runner.client() as apisix:
        token = apisix.prepare_conf([("stopper", {"body": ""}), ("boom", {})])
        assert apisix.http_req_call(token, id=7).error == "SERVICE_UNAVAILABLE"  # sync filter
        assert apisix.http_resp_call(token, id=8).error == "SERVICE_UNAVAILABLE"  # async filter
        ok = apisix.prepare_conf([("stopper", {"body": "fine"})])
        assert apisix.http_req_call(ok).body == b"fine"
        log = runner.log()
    lines = [line for line in log.splitlines() if " ERROR " in line]
    assert len(lines) == 2, log
    assert "call 7: plugin 'boom' request filter raised RuntimeError" in lines[0]
    assert "call 8: plugin 'boom' response filter raised RuntimeError" in lines[1]
    assert log.count("Traceback") == 2
    assert "RuntimeError: plugin bug in an async filter" in log
