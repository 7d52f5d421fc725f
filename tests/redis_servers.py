"""Real redis-server processes for the tests (Debian's ``redis-server`` package).

``RedisServer``: one server on a free 127.0.0.1 port, no persistence, its own temp dir.
``RedisClusterNodes``: three ``--cluster-enabled`` servers sharing the 16384 slots. Both
are stopped by PID and remove their temp dirs; ``make test`` installs redis-server when
it is missing. ``HungListener``: ports where something accepts and never answers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis

STARTUP_TIMEOUT = 20.0


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail(
            "redis-server is not installed: the Redis tests start their own. Install Debian's "
            "redis-server package (apt-get install redis-server; `make test` does it as root)."
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: Any, what: str, process: subprocess.Popen[bytes], log_path: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            with open(log_path, errors="replace") as f:
                raise RuntimeError(f"redis-server exited with {process.returncode}: {f.read()}")
        with contextlib.suppress(redis.RedisError):
            if predicate():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis-server: {what} within {STARTUP_TIMEOUT}s")
        time.sleep(0.02)


def _stop(process: subprocess.Popen[Any] | None) -> None:
    """SIGTERM ``process`` if it still runs, and wait (SIGKILL after 10 s)."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class RedisServer:
    """One redis-server on 127.0.0.1; ``stop()`` / ``start()`` again keep its port."""

    def __init__(
        self, args: Sequence[str] = (), directory: str | None = None, tls: bool = False
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.args = list(args)
        self.tls = tls  # TLS only, with a self-signed certificate made here
        self._own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="a6runner-redis-")
        self.log_path = os.path.join(self.dir, f"redis-{self.port}.log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self, **kwargs: Any) -> redis.Redis:
        if self.tls:
            kwargs.update(ssl=True, ssl_cert_reqs="none", ssl_check_hostname=False)
        return redis.Redis(self.host, self.port, socket_timeout=10, **kwargs)

    def _tls_args(self) -> list[str]:
        cert, key = os.path.join(self.dir, "cert.pem"), os.path.join(self.dir, "key.pem")
        if not os.path.exists(cert):
            if shutil.which("openssl") is None:
                pytest.fail("openssl is not installed: the TLS test makes its certificate with it")
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                 "-days", "2", "-subj", "/CN=a6runner-test"],
                check=True, capture_output=True,
            )  # fmt: skip
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", cert,
            "--tls-key-file", key,
            "--tls-ca-cert-file", cert,
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def start(self) -> RedisServer:
        command = [
            redis_server_binary(),
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", self.dir,
            "--save", "",
            "--appendonly", "no",
            *(self._tls_args() if self.tls else ()),
            *self.args,
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        _wait(self.ping, "PING answered", self.process, self.log_path)
        return self

    def ping(self) -> bool:
        password = None
        if "--requirepass" in self.args:
            password = self.args[self.args.index("--requirepass") + 1]
        with self.client(password=password, socket_connect_timeout=1) as c:
            return bool(c.ping())

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 10 s): the port refuses connections after."""
        process, self.process = self.process, None
        _stop(process)

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but nothing answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)  # a paused server cannot stop
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterNodes:
    """Three cluster-enabled servers, each a master of a third of the slots."""

    SIZE = 3

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="a6runner-redis-cluster-")
        self.nodes: list[RedisServer] = []
        self.bus_ports: list[int] = []

    @property
    def addresses(self) -> list[str]:
        return [n.address for n in self.nodes]

    def client(self) -> redis.RedisCluster:
        first = self.nodes[0]
        return redis.RedisCluster(first.host, first.port, socket_timeout=10)

    def start(self) -> RedisClusterNodes:
        for _ in range(self.SIZE):
            node = RedisServer(directory=self.dir)
            bus_port = free_port()
            node.args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{node.port}.conf",
                "--cluster-port", str(bus_port),
                "--cluster-node-timeout", "5000",
            ]  # fmt: skip
            self.nodes.append(node.start())
            self.bus_ports.append(bus_port)
        clients = [n.client() for n in self.nodes]
        try:
            share = 16384 // self.SIZE
            for i, c in enumerate(clients):
                last = 16383 if i == self.SIZE - 1 else (i + 1) * share - 1
                c.execute_command("CLUSTER ADDSLOTS", *range(i * share, last + 1))
            for node, bus_port in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                clients[0].execute_command("CLUSTER MEET", node.host, node.port, bus_port)
            for c, node in zip(clients, self.nodes, strict=True):

                def ready(c: redis.Redis = c) -> bool:
                    info = c.execute_command("CLUSTER INFO")
                    return bool(
                        info["cluster_state"] == "ok"
                        and int(info["cluster_known_nodes"]) == self.SIZE
                    )

                assert node.process is not None
                _wait(ready, "cluster state ok", node.process, node.log_path)
        finally:
            for c in clients:
                c.close()
        return self

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class HungListener:
    """``count`` ports on 127.0.0.1 that accept connections and never answer (a Redis that
    hangs), served by tests/hung_listener.py in a process of its own, stopped by PID; it
    counts the connections each port accepted."""

    def __init__(self, count: int = 1) -> None:
        self.count = count
        self.ports: list[int] = []
        self._accepted: dict[int, int] = {}
        self._changed = threading.Condition()
        self.process: subprocess.Popen[str] | None = None

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def start(self) -> HungListener:
        script = os.path.join(os.path.dirname(__file__), "hung_listener.py")
        self.process = subprocess.Popen(
            [sys.executable, script, str(self.count)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.ports = [int(p) for p in self.process.stdout.readline().split()[1:]]
        self._accepted = dict.fromkeys(self.ports, 0)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self._accepted[int(line.split()[1])] += 1
                self._changed.notify_all()

    def accepted(self) -> int:
        """Connections the ports accepted in all, once every connection made so far is
        counted: a probe connection to each port, accepted after them, is waited for."""
        with self._changed:
            expected = {port: n + 1 for port, n in self._accepted.items()}
        probes = [socket.create_connection(("127.0.0.1", port)) for port in self.ports]
        try:
            with self._changed:
                settled = self._changed.wait_for(
                    lambda: all(self._accepted[p] >= n for p, n in expected.items()),
                    STARTUP_TIMEOUT,
                )
                assert settled, "the hung listener did not report its connections"
                for port in self.ports:
                    self._accepted[port] -= 1  # not the probe
                return sum(self._accepted.values())
        finally:
            for probe in probes:
                probe.close()

    def wait_accepted(self, total: int) -> None:
        """Until the ports have accepted ``total`` connections in all."""
        with self._changed:
            reached = self._changed.wait_for(
                lambda: sum(self._accepted.values()) >= total, STARTUP_TIMEOUT
            )
        assert reached, f"the hung listener never accepted {total} connections"

    def close(self) -> None:
        """Stop it by PID: every connection it held is closed."""
        process, self.process = self.process, None
        _stop(process)


@contextlib.contextmanager
def running(server: RedisServer | RedisClusterNodes | HungListener) -> Iterator[Any]:
    try:
        yield server.start()
    finally:
        server.close()
