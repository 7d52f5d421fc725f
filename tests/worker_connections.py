"""One connection on each worker of a ``--workers 2`` runner, without racing the kernel's
choice of acceptor: while one worker's event loop is held by a blocking ``hold`` call
(tests/support_plugins.py, which the runner must load), only the other worker accepts, so
the next connection lands there, and a call answered on it proves it before the hold is
released. A worker just started (a replacement) is waited for, not raced: the connection
waits in the backlog until that worker accepts it."""

from __future__ import annotations

from pathlib import Path

from support_plugins import Holding

from a6runner._kernels import codec
from a6runner.testing import Client, RunnerProcess, decode_reply


def _pid_serving(client: Client) -> int:
    """The pid of the worker serving ``client``'s connection (a call answered there)."""
    token = client.prepare_conf([("which-process", {})])
    reply = client.http_req_call(token)
    assert reply.action == "stop", reply
    return int(reply.body or b"0")


def connection_on_each_worker(runner: RunnerProcess, folder: Path) -> dict[int, Client]:
    """{worker pid: an open connection that worker serves}, one per worker (2 workers).
    The caller closes them."""
    first = runner.client()
    second: Client | None = None
    try:
        held = Holding(folder, block=True)
        token = first.prepare_conf([("hold", held.conf)])
        first.send_raw(codec.build_http_req_call_req(1, token, 0, "/", [], [], None))
        first_pid = held.wait_entered()
        second = runner.client()
        second_pid = _pid_serving(second)  # answered while the first worker is held
        held.release()
        reply = decode_reply(*first.read_frame())
        assert reply.action == "stop" and reply.body == b"released", reply
    except BaseException:
        for client in (first, second):
            if client is not None:
                client.close()
        raise
    assert first_pid != second_pid, "both connections on one worker"
    return {first_pid: first, second_pid: second}
