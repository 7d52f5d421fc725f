"""APISIX's keepalive pool under load, for the zero-drop tests: each ``PooledConnection``
sends its next call as soon as the previous answer arrived, checks every reply (its id,
and the plugin's answer ``VERSION pid-PID call-ID``) and never retries: its first failure
ends it and is kept."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from a6runner.testing import Client

WAIT = 60.0  # seconds a reply may take on a busy machine


class PooledConnection(threading.Thread):
    """One kept-alive connection of APISIX's pool under load: calls back to back, each
    reply checked (its id, the plugin's answer); the first failure ends it (no retry)."""

    def __init__(self, socket_path: str, plugin: str, conf: dict[str, object]) -> None:
        super().__init__(daemon=True)
        self.socket_path = socket_path
        self.plugin = plugin
        self.conf = conf
        self.answers: list[tuple[str, int]] = []  # (version, pid) of each reply
        self.sent = 0
        self.failure: str | None = None
        self.stop = threading.Event()
        self.connected = threading.Event()

    def run(self) -> None:
        try:
            with Client(self.socket_path, timeout=WAIT) as apisix:
                key = f"{self.plugin} {self.conf!r}"
                token = apisix.prepare_conf([(self.plugin, self.conf)], key=key)
                self.connected.set()
                call_id = 0
                while not self.stop.is_set():
                    call_id += 1
                    self.sent += 1
                    reply = apisix.http_req_call(token, id=call_id)
                    version, pid, answered = (reply.body or b"").decode().split()
                    if (
                        reply.action != "stop"
                        or reply.id != call_id
                        or answered != f"call-{call_id}"
                    ):
                        raise AssertionError(f"wrong reply to call {call_id}: {reply}")
                    self.answers.append((version, int(pid.removeprefix("pid-"))))
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            self.connected.set()


def progressed(pool: list[PooledConnection], calls: int = 20) -> Callable[[], bool]:
    """True once every connection (still going) has had ``calls`` more answers."""
    marks = [len(c.answers) for c in pool]
    return lambda: all(
        len(c.answers) >= m + calls or c.failure for c, m in zip(pool, marks, strict=True)
    )


@contextlib.contextmanager
def busy(pool: list[PooledConnection]) -> Iterator[list[PooledConnection]]:
    """Every connection of ``pool`` calling from now on; at the end each is stopped and
    waited for (its answers, sent count and failure are then final)."""
    for connection in pool:
        connection.start()
    try:
        yield pool
    finally:
        for connection in pool:
            connection.stop.set()
        for connection in pool:
            connection.join(WAIT)
