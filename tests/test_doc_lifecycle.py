"""docs/writing-plugins/lifecycle.md: the HTTP client pool example keeps one session per
serving process, opened by ``start`` and closed by ``stop``, against a real local HTTP
service (the page's own test covers what needs no service)."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest
from doc_blocks import python_file

from a6runner.testing import run_runner

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject


class TokenService:
    """A token service on 127.0.0.1 (the stdlib's HTTP/1.1 server, keep-alive): 200 for
    ``Authorization: Bearer good``, 403 otherwise; it counts the connections it got and
    those still open."""

    def __init__(self) -> None:
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
    (tmp_path / "my_plugins").mkdir()
    plugin = tmp_path / "my_plugins" / "token_check.py"
    plugin.write_text(python_file("writing-plugins/lifecycle.md", "my_plugins/token_check.py"))
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
            refused = apisix.prepare_conf([("token-check", {"url": "ftp://x"})])  # a guard's
            assert apisix.http_req_call(refused).status == 503
            assert service.open == 1
        deadline = time.monotonic() + 30
        while service.open and time.monotonic() < deadline:  # stop closed the session
            time.sleep(0.01)
        assert service.open == 0
    finally:
        service.close()
