"""Server.stop in this process: calls in flight finish within the grace period (or are
abandoned after it), no new connection is taken, and the connections are closed."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from support_plugins import Hold, Holding

from a6runner._confstore import ConfStore
from a6runner._server import Listener, Server
from a6runner._services import LocalServices
from a6runner.testing import AsyncClient


def serve_and_stop(tmp_path: Path, grace: float, release: bool) -> tuple[object, bool]:
    """Hold one call, stop the server with ``grace``; (that call's reply or the exception
    reading it, whether a connection made during the stop was left in the backlog)."""
    path = str(tmp_path / "r.sock")
    listener = Listener(path, 0o700).sock
    held = Holding(tmp_path / "hold")

    async def main() -> tuple[object, bool]:
        server = Server(listener, ConfStore({"hold": Hold()}, 60.0), LocalServices())
        await server.start()
        client = await AsyncClient.connect(path)
        token = await client.prepare_conf([("hold", held.conf)])
        call = asyncio.ensure_future(client.http_req_call(token))
        await asyncio.to_thread(held.wait_entered)
        stopping = asyncio.ensure_future(server.stop(grace))
        await asyncio.sleep(0)  # stop has begun: it no longer accepts
        late = await AsyncClient.connect(path)
        if release:
            held.release()
        await stopping
        try:
            outcome: object = await call
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            outcome = exc
        try:
            taken, _ = listener.accept()
        except BlockingIOError:
            left_in_backlog = False
        else:
            left_in_backlog = True
            taken.close()
        await late.close()
        await client.close()
        assert not server.connections
        return outcome, left_in_backlog

    try:
        return asyncio.run(main())
    finally:
        listener.close()


def test_stop_lets_the_call_in_flight_finish_and_takes_no_new_connection(
    tmp_path: Path,
) -> None:
    reply, left_in_backlog = serve_and_stop(tmp_path, grace=30, release=True)
    assert getattr(reply, "body", None) == b"released"
    assert left_in_backlog


def test_a_call_outliving_the_grace_period_is_abandoned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="a6runner"):
        outcome, left_in_backlog = serve_and_stop(tmp_path, grace=0.2, release=False)
    assert isinstance(outcome, ConnectionError)  # closed unanswered
    assert left_in_backlog
    assert "1 calls still running at shutdown: abandoned" in caplog.text
