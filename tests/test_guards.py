"""Guards fail closed, over the real socket: a guard plugin's conf that fails validation
refuses every call with that token (a Stop, not an error frame APISIX would let through
with allow_degradation), before any filter runs, in both phases, with one process, with
``--workers 2`` and after a SIGHUP reload; ``--unknown-plugins refuse`` does the same for
a conf naming an unregistered plugin. The log says which plugin and field, never the
value."""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest
from test_reload import wait_for_log
from worker_connections import connection_on_each_worker

from a6runner import ConfError, Needs, Plugin, PluginLoadError, Request, Response, run
from a6runner._errors import ConfigError
from a6runner.confs import Range
from a6runner.testing import Client, spawn_runner

pytestmark = pytest.mark.runtime

SECRET = "tok-5ecr3t-77"
SUPPORT = str(Path(__file__).with_name("support_plugins.py"))


@dataclass(frozen=True)
class AuthConf:
    issuer: str
    leeway: Annotated[int, Range(ge=0, le=300)] = 30


class Auth(Plugin):
    """A guard: lets a request through only with the right token."""

    name = "auth"
    conf_type = AuthConf
    guard = True
    calls: list[str] = []

    def request_filter(self, conf: AuthConf, req: Request) -> None:
        Auth.calls.append("request")
        if req.headers.get("authorization") != conf.issuer:
            req.respond(401)

    def response_filter(self, conf: AuthConf, resp: Response) -> None:
        Auth.calls.append("response")


class Teapot(Auth):
    name = "teapot-guard"
    guard_status = 418


class Unnamed(Auth):
    name = "unnamed-status"
    guard_status = 599  # no reason phrase: the body says "Refused"


class NeedsFails(Plugin):
    name = "needs-fails"
    guard = True

    def needs(self, conf: Any) -> Needs:
        raise RuntimeError(SECRET)

    def request_filter(self, conf: Any, req: Request) -> None:
        req.respond(200)


class Greeter(Plugin):
    """Not a guard, and first in the chain: it must not run for a refused conf."""

    name = "greeter"

    def request_filter(self, conf: Any, req: Request) -> None:
        Auth.calls.append("greeter")
        req.resp_headers.set("x-greeted", "yes")

    def response_filter(self, conf: Any, resp: Response) -> None:
        Auth.calls.append("greeter")


PLUGINS = [Auth, Teapot, Unnamed, NeedsFails, Greeter]
UPSTREAM_HEADERS = [("content-type", "application/json"), ("set-cookie", f"sid={SECRET}")]


def assert_refused(apisix: Client, token: int, status: int = 503) -> None:
    reply = apisix.http_req_call(token, headers=[("authorization", "x")])
    assert (reply.kind, reply.action, reply.status, reply.body) == (
        "http_req_call",
        "stop",
        status,
        None,
    )
    assert reply.headers == [] and reply.asked == []
    resp = apisix.http_resp_call(token, status=200, headers=UPSTREAM_HEADERS, body=SECRET)
    assert resp.kind == "http_resp_call" and resp.status == status
    # the upstream's headers and body are replaced: nothing of them reaches the client
    assert resp.headers == [("Content-Type", "text/plain")]
    assert resp.body is not None and resp.body.startswith(f"{status} ".encode())
    assert resp.asked == []


@pytest.fixture
def runner_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="a6runner")
    Auth.calls.clear()
    return caplog


def test_a_guard_with_a_bad_conf_refuses_every_call(
    start_runner: Any, runner_logs: pytest.LogCaptureFixture
) -> None:
    runner = start_runner(*PLUGINS)
    with runner.client() as apisix:
        good = apisix.prepare_conf([("greeter", {}), ("auth", {"issuer": "x"})])
        reply = apisix.http_req_call(good, headers=[("authorization", "x")])
        assert reply.action == "rewrite" and reply.resp_headers == [("x-greeted", "yes")]
        Auth.calls.clear()
        bad = apisix.prepare_conf([("greeter", {}), ("auth", {"issuer": "x", "leeway": -5})])
        for _ in range(2):
            assert_refused(apisix, bad)
        assert Auth.calls == []  # refused before any filter of the chain ran
        missing = apisix.prepare_conf([("auth", {"leeway": 1})])
        assert_refused(apisix, missing)
        assert_refused(apisix, apisix.prepare_conf([("teapot-guard", {"issuer": 5})]), 418)
        assert_refused(apisix, apisix.prepare_conf([("needs-fails", {})]))
        token = apisix.prepare_conf([("unnamed-status", {})])
        assert_refused(apisix, token, 599)
        assert apisix.http_resp_call(token).body == b"599 Refused\n"
    lines = [r.getMessage() for r in runner_logs.records if r.name == "a6runner.conf"]
    refused = [line for line in lines if "rejected" in line]
    assert refused == [
        "conf entry 'auth' rejected: 'auth' is a guard, so every call with this conf is refused "
        "with 503 until the route's conf is fixed: leeway: must be in 0..300, got a negative "
        "number",
        "conf entry 'auth' rejected: 'auth' is a guard, so every call with this conf is refused "
        "with 503 until the route's conf is fixed: issuer: is required",
        "conf entry 'teapot-guard' rejected: 'teapot-guard' is a guard, so every call with this "
        "conf is refused with 418 until the route's conf is fixed: issuer: must be a string "
        "(got a number)",
        "conf entry 'needs-fails' rejected: 'needs-fails' is a guard, so every call with this "
        "conf is refused with 503 until the route's conf is fixed: its plugin raised "
        "RuntimeError (message not logged: it may quote the conf; --log-level debug shows it)",
        "conf entry 'unnamed-status' rejected: 'unnamed-status' is a guard, so every call with "
        "this conf is refused with 599 until the route's conf is fixed: issuer: is required",
    ]  # once each, at PrepareConf: the calls log nothing more
    assert all(r.levelno == logging.ERROR for r in runner_logs.records if "rejected" in r.msg)
    assert SECRET not in runner_logs.text


def test_a_plugin_that_is_not_a_guard_is_still_skipped(start_runner: Any) -> None:
    runner = start_runner(*PLUGINS, bundled=True)
    with runner.client() as apisix:
        token = apisix.prepare_conf([("say", {"body": 5}), ("greeter", {})])
        assert apisix.http_req_call(token).resp_headers == [("x-greeted", "yes")]


def test_unknown_plugins_skip_by_default_and_refuse_on_request(
    start_runner: Any, runner_logs: pytest.LogCaptureFixture
) -> None:
    conf = [("greeter", {}), ("typo-auth", {"issuer": SECRET})]
    with start_runner(Greeter).client() as apisix:
        assert apisix.http_req_call(apisix.prepare_conf(conf)).action == "rewrite"
    with start_runner(Greeter, unknown_plugins="refuse").client() as apisix:
        assert_refused(apisix, apisix.prepare_conf(conf))
        assert apisix.http_req_call(apisix.prepare_conf(conf[:1])).action == "rewrite"
    assert (
        "conf entry 'typo-auth': no plugin with that name is registered; with --unknown-plugins "
        "refuse every call with this conf is refused with 503" in runner_logs.text
    )
    assert SECRET not in runner_logs.text


def test_with_two_workers_every_worker_refuses(tmp_path: Path) -> None:
    args = ["--workers", "2", "--plugins", SUPPORT, "--unknown-plugins", "refuse"]
    with spawn_runner(args) as runner:
        clients = connection_on_each_worker(runner, tmp_path)
        try:
            first, second = clients.values()
            bad = first.prepare_conf([("ip-restriction", {"whitelist": ["10.0.0.0/8", SECRET]})])
            unknown = second.prepare_conf([("nope", {})])
            for apisix in (first, second):  # prepared on one worker, used on both
                assert_refused(apisix, bad)
                assert_refused(apisix, unknown)
            good = first.prepare_conf([("ip-restriction", {"whitelist": ["127.0.0.1"]})])
            assert second.http_req_call(good).action == "none"
        finally:
            for client in clients.values():
                client.close()
        assert runner.stop() == 0
        log = runner.log()
    assert "conf entry 'ip-restriction' rejected" in log
    assert "whitelist[1]: not an IP address or CIDR" in log and SECRET not in log


GUARD_FILE = """\
from a6runner import ConfError, Plugin

class Strict(Plugin):
    name = "strict"
    guard = {guard}

    def parse_conf(self, raw):
        conf = self.parse_json_object(raw)
        if {reject} and "open" in conf:
            raise ConfError("open", "is no longer allowed")
        return conf

    def request_filter(self, conf, req):
        req.respond(200, "served")
"""


def test_a_reload_that_makes_a_conf_bad_refuses_its_calls(tmp_path: Path) -> None:
    source = tmp_path / "strict.py"
    source.write_text(GUARD_FILE.format(guard=True, reject=False))
    with spawn_runner(["--no-bundled", "--no-entry-points", "--plugins", str(source)]) as runner:
        with runner.client() as apisix:
            token = apisix.prepare_conf([("strict", {"open": True})])
            assert apisix.http_req_call(token).body == b"served"
            source.write_text(GUARD_FILE.format(guard=True, reject=True))
            runner.process.send_signal(signal.SIGHUP)
            wait_for_log(runner, "reloaded: 1 plugins (strict)")
            assert_refused(apisix, token)  # the same token, parsed again: now refused
            source.write_text(GUARD_FILE.format(guard=True, reject=False))
            runner.process.send_signal(signal.SIGHUP)
            wait_for_log(runner, "reloaded: 1 plugins (strict)", count=2)
            assert apisix.http_req_call(token).body == b"served"
        assert "conf entry 'strict' rejected" in runner.log()


def test_a_guard_status_that_is_not_an_http_status_is_a_load_error(start_runner: Any) -> None:
    class Odd(Auth):
        name = "odd"
        guard_status = 42

    with pytest.raises(PluginLoadError, match=r"guard_status must be an HTTP status in 100\.\.599"):
        start_runner(Odd)


def test_unknown_plugins_must_be_skip_or_refuse(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown_plugins must be one of skip, refuse"):
        run([], listen=f"unix:{tmp_path}/r.sock", unknown_plugins="allow", bundled=False)


def test_conf_error_is_all_a_guard_needs_to_raise() -> None:
    with pytest.raises(ConfError):
        Auth().parse_conf(b"{}")
