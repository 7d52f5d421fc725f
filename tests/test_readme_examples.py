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


class TokenService:
    """A token service on 127.0.0.1 (the stdlib's HTTP/1.1 server, keep-alive): 200 for
    ``Authorization: Bearer good``, 403 otherwise; it counts the connections it got and
    those still open."""

    def __init__(self) -> None:
        import http.server
        import threading

        service = self
        self.connections = 0
        self.open = 0
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with service.lock:
                    service.connections += 1
                    service.open += 1

            def finish(self) -> None:
                super().finish()
                with service.lock:
                    service.open -= 1

            def do_GET(self) -> None:  # (the stdlib names it)
                ok = self.headers.get("authorization") == "Bearer good"
                body = b"ok" if ok else b"no"
                self.send_response(200 if ok else 403)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/check"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_http_client_pool_example_keeps_one_session_per_process(tmp_path: Path) -> None:
    import time

    from a6runner.testing import run_runner

    (tmp_path / "my_plugins").mkdir()
    plugin = tmp_path / "my_plugins" / "token_check.py"
    plugin.write_text(python_block('name = "token-check"'))
    service = TokenService()
    try:
        with run_runner(paths=[str(plugin)]) as runner, runner.client() as apisix:
            token = apisix.prepare_conf([("token-check", {"url": service.url})])
            for _ in range(10):
                good = apisix.http_req_call(token, headers=[("Authorization", "Bearer good")])
                assert good.action == "none"  # on to the upstream
            bad = apisix.http_req_call(token, headers=[("Authorization", "Bearer bad")])
            assert bad.action == "stop" and bad.status == 401 and bad.body == b"invalid token"
            assert bad.header("WWW-Authenticate") == "Bearer"
            assert service.connections == 1  # 11 calls, one kept-alive connection
            down = apisix.prepare_conf([("token-check", {"url": "http://127.0.0.1:1/check"})])
            unavailable = apisix.http_req_call(down)
            assert unavailable.status == 503 and unavailable.body == b"token service unavailable"
            assert apisix.prepare_conf([("token-check", {"url": "ftp://x"})]) != 0  # skipped
            assert service.open == 1
        deadline = time.monotonic() + 30
        while service.open and time.monotonic() < deadline:  # stop closed the session
            time.sleep(0.01)
        assert service.open == 0
    finally:
        service.close()
