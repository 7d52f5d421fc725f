"""``a6-runner call``: one call over the real socket, to a runner started in-process or
to a running one, printed for a human or as JSON; errors name the flag and exit with the
documented status."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from a6runner._call import main
from a6runner.testing import RunnerProcess, spawn_runner

SUPPORT = str(Path(__file__).with_name("support_plugins.py"))

VALIDATION = {"allowed_content_types": ["application/json"], "required_json_fields": ["name"]}


@pytest.fixture(scope="module")
def runner() -> Iterator[RunnerProcess]:
    with spawn_runner(["--plugins", SUPPORT]) as handle:
        yield handle


def call(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def call_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    status, out, err = call(capsys, *argv, "--json")
    assert status == 0, err
    return json.loads(out)


def test_in_process_runner_with_the_bundled_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = call(capsys, "say", "--conf", '{"body": "hello"}')
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "HTTPReqCall (id 0) -> stop (APISIX answers the client with this)",
        "  status        0 (APISIX answers 200)",
        "  headers       X-Resp-A6-Runner: Python",
        "  body          hello  (5 bytes)",
    ]


def test_extra_info_answered_from_vars_and_body(
    runner: RunnerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["request-validation", "--sock", runner.socket_path, "--conf", json.dumps(VALIDATION)]
    argv += ["--var", "content_type=application/json; charset=utf-8"]
    ok = call_json(capsys, *argv, "--body", '{"name": "ada"}')
    assert ok["action"] == "none"
    assert ok["asked"] == [["var", "content_type"], ["req_body", None]]
    assert ok["round_trips"] == 2
    refused = call_json(capsys, *argv, "--body", "{}")
    assert (refused["action"], refused["status"]) == ("stop", 400)
    assert json.loads(refused["body"]) == {"message": "missing required fields: name"}
    status, out, _ = call(capsys, *argv, "--body", "{}")
    assert status == 0
    assert "  ExtraInfo     var content_type, request body  (2 asked, 2 round trips)" in out


def test_request_seen_by_the_plugin(
    runner: RunnerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["echo-input", "--listen", runner.listen_address, "-X", "post", "--path", "/a/b"]
    argv += ["-a", "page=2", "-a", "flag", "-H", "X-Trace: abc", "-H", "Host: example.com"]
    argv += ["--src-ip", "10.1.2.3", "--key", "route-7"]
    seen = json.loads(call_json(capsys, *argv)["body"])
    assert (seen["method"], seen["path"], seen["src_ip"]) == ("POST", "/a/b", "10.1.2.3")
    assert seen["args"][0] == ["page", "2"]
    assert seen["args"][1][0] == "flag" and seen["args"][1][1] in (None, "")  # sent without value
    # -H replaces the default of the same name and adds the others
    headers = {(name.lower(), value) for name, value in seen["headers"]}
    assert {("host", "example.com"), ("x-trace", "abc"), ("accept", "*/*")} <= headers
    assert ("host", "localhost") not in headers


def test_rewrite_diff(capsys: pytest.CaptureFixture[str]) -> None:
    conf = {
        "uri": "/v2/users",
        "headers": {"set": {"X-A": "b"}, "remove": ["X-Gone"]},
        "args": {"set": {"page": "3"}, "remove": ["old"]},
    }
    argv = ["proxy-rewrite", "--conf", json.dumps(conf), "--path", "/users"]
    status, out, _ = call(capsys, *argv, "-H", "X-Gone: 1", "-a", "old=1")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "HTTPReqCall (id 0) -> rewrite (the request goes upstream changed)"
    assert "  path          /users -> /v2/users" in lines
    assert {"X-Gone (removed)", "X-A: b"} <= {line[16:] for line in lines}
    assert {"old (removed)", "page=3"} <= {line[16:] for line in lines}


def test_response_phase(capsys: pytest.CaptureFixture[str]) -> None:
    conf = {
        "status": 201,
        "headers": {"X-A": "b"},
        "filters": [{"regex": "hello", "scope": "global", "replace": "HELLO"}],
    }
    argv = ["response-rewrite", "--conf", json.dumps(conf), "--response", "--body", "hello you"]
    argv += ["-H", "Content-Type: text/html", "-H", 'ETag: "v1"']
    status, out, _ = call(capsys, *argv)
    assert status == 0
    assert out.splitlines() == [
        "HTTPRespCall (id 0) -> changed",
        "  status        200 -> 201",
        "  headers       (replace the upstream's)",
        "                = Content-Type: text/html",
        "                + X-Resp-A6-Runner: Python",
        "                + X-A: b",
        "                - ETag",
        "  body          HELLO you  (9 bytes)",
        "  ExtraInfo     response body  (1 asked, 1 round trip)",
    ]
    reply = call_json(capsys, *argv)
    assert (reply["phase"], reply["kind"], reply["status"]) == ("response", "http_resp_call", 201)
    assert reply["body"] == "HELLO you" and reply["asked"] == [["resp_body", None]]


def test_route_conf_list_runs_the_chain(capsys: pytest.CaptureFixture[str]) -> None:
    route = {
        "conf": [
            {"name": "request-id", "value": "{}"},
            {"name": "say", "value": json.dumps({"body": "after request-id"})},
        ]
    }
    reply = call_json(capsys, "--route-conf", json.dumps(route))
    assert (reply["action"], reply["body"]) == ("stop", "after request-id")
    # the bare list works too, with values given as objects
    listed = [{"name": "say", "value": {"body": "listed"}}]
    assert call_json(capsys, "--route-conf", json.dumps(listed))["body"] == "listed"


def test_files_and_standard_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps(VALIDATION))
    argv = ["request-validation", "--conf", f"@{conf}", "--var", "content_type=application/json"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"name": 1}')))
    assert call_json(capsys, *argv, "--body", "@-")["action"] == "none"
    binary = tmp_path / "body.bin"
    binary.write_bytes(b"\xff\x00")
    reply = call_json(capsys, "ask-body", "--plugins", SUPPORT, "--body", f"@{binary}")
    assert json.loads(reply["body"])["len"] == 2


def test_binary_body_in_json_is_base64(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plugin = tmp_path / "binary_stop.py"
    plugin.write_text(
        "from a6runner import Plugin\n\n"
        "class BinaryStop(Plugin):\n"
        "    name = 'binary-stop'\n"
        "    def request_filter(self, conf, req):\n"
        "        req.respond(200, b'\\xff\\xfe')\n"
    )
    reply = call_json(capsys, "binary-stop", "--plugins", str(plugin), "--no-bundled")
    assert (reply["body"], reply["body_base64"]) == (None, "//4=")


def test_error_reply_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = call(capsys, "boom", "--plugins", SUPPORT)
    assert status == 1
    assert out.splitlines()[0] == "HTTPReqCall -> error SERVICE_UNAVAILABLE"
    assert "a plugin raised" in out
    assert "RuntimeError: plugin bug" in err  # the in-process runner's log, on stderr
    status, out, _ = call(capsys, "boom", "--plugins", SUPPORT, "--json")
    assert status == 1 and json.loads(out)["error"] == "SERVICE_UNAVAILABLE"


def test_no_runner_at_the_socket_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "nobody.sock")
    status, out, err = call(capsys, "say", "--sock", path)
    assert (status, out) == (3, "")
    assert path in err and "a6-runner run --listen" in err
    import socket

    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # a socket file nobody listens on
    status, _, err = call(capsys, "say", "--sock", path)
    assert status == 3 and "nothing accepts connections" in err


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        ([], "name the plugin"),
        (["say", "--route-conf", "[]"], "not both"),
        (["--route-conf", "{nope"], "--route-conf: not valid JSON"),
        (["--route-conf", '[{"value": "{}"}]'], 'entry 0 has no "name"'),
        (["say", "--conf", "@/no/such/file"], "--conf @/no/such/file: cannot read"),
        (["say", "-H", "no colon"], "--header 'no colon': expected 'Name: value'"),
        (["say", "--var", "novalue"], "--var 'novalue': expected NAME=VALUE"),
        (["say", "--response", "--path", "/x", "-a", "a=1"], "--path, --arg: only for the request"),
        (["say", "--status", "201"], "--status is the upstream status: only with --response"),
        (["say", "--path", "x"], "--path 'x': a path starts with /"),
        (["say", "--listen", "/tmp/x.sock"], "--listen must be 'unix:"),
        (["say", "--sock", "/x", "--plugins", "p.py"], "drop them, or drop --sock"),
        (["say", "--plugins", "/no/such/plugin.py"], "'/no/such/plugin.py' does not exist"),
    ],
)
def test_usage_errors_exit_2_and_say_what_to_do(
    capsys: pytest.CaptureFixture[str], argv: list[str], names: str
) -> None:
    status, out, err = call(capsys, *argv)
    assert (status, out) == (2, "")
    assert err.startswith("a6-runner call: error: ") and names in err, err
    assert "Traceback" not in err


def test_command_line_help_and_exit_codes_documented() -> None:
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-m", "a6runner", "call", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 0
    assert "usage: a6-runner call" in result.stdout
    for line in (
        "0  the runner answered",
        "1  the runner answered with an error",
        "2  bad",
        "3  no",
    ):
        assert line in result.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "a6runner", "--help"], capture_output=True, text=True, timeout=30
    )
    assert "call" in listed.stdout and "bench" in listed.stdout


# -- the conf is checked before the call (issue 19) -------------------------------------------


def test_a_plugin_not_served_or_a_refused_conf_exits_1_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = call(capsys, "nope")
    assert (status, out) == (1, "")
    assert err.startswith("a6-runner call: error: no plugin named 'nope' in this runner")
    status, out, err = call(capsys, "say", "--conf", '{"body": 5}')
    assert (status, out) == (1, "")
    assert "the conf of 'say' is refused: body: must be a string (got a number)" in err
    assert "the runner skips that entry" in err
    status, out, err = call(capsys, "ip-restriction", "--conf", '{"whitelist": ["s3cr3t"]}')
    assert (status, out) == (1, "")
    assert "whitelist[0]: not an IP address or CIDR" in err and "'ip-restriction' is a guard" in err
    assert "s3cr3t" not in err


def test_with_sock_the_conf_is_checked_here_first_and_stderr_says_so(
    runner: RunnerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = call(capsys, "say", "--sock", runner.socket_path, "--conf", '{"body": "x"}')
    assert status == 0 and "-> stop" in out
    assert f"conf checked here first: say accepted (the runner at {runner.socket_path}" in err
    status, out, err = call(capsys, "say", "--sock", runner.socket_path, "--conf", '{"body": 5}')
    assert (status, out) == (1, "")
    assert "the conf of 'say' is refused: body: must be a string" in err
    # a plugin this machine does not have: the runner decides, and stderr says what was not
    # checked here
    route = json.dumps([{"name": "say", "value": "{}"}, {"name": "elsewhere", "value": "{}"}])
    status, out, err = call(capsys, "--route-conf", route, "--sock", runner.socket_path)
    assert status == 0 and "-> none" in out
    assert (
        "conf checked here first: say accepted; not installed here, not checked: elsewhere" in err
    )
