"""The descriptor channels of ``--workers N`` (tests/test_zero_drop.py drives them end to
end): a worker's DescriptorLink and the supervisor's relay, in this process over real
SOCK_SEQPACKET socketpairs — what waits when a queue is full, when no worker can take a
connection yet, when a worker is gone."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from a6runner import _workers
from a6runner._reload import PluginLoader
from a6runner._settings import Settings
from a6runner._workers import DescriptorLink, Supervisor, _Channel

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject

pids = itertools.count(1_000_000)  # dict keys only: no signal is sent to them
MANY = 400  # connections passed one message each: more than a socketpair's queue holds


def seqpacket() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def connection() -> tuple[int, socket.socket]:
    """A connection's descriptor to pass on (ours to give away), and its peer."""
    ours, peer = socket.socketpair()
    return ours.detach(), peer


def received(sock: socket.socket) -> list[int]:
    """Every descriptor waiting in ``sock`` (non-blocking)."""
    sock.setblocking(False)
    fds: list[int] = []
    while True:
        try:
            _, got, _, _ = socket.recv_fds(sock, 1, 64)
        except BlockingIOError:
            return fds
        fds += got


def same_connection(fd: int, peer: socket.socket) -> bool:
    """``fd`` is the other end of ``peer``'s connection."""
    with socket.socket(fileno=fd) as passed:
        passed.sendall(b"ping")
        return peer.recv(4) == b"ping"


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    sup = Supervisor(Settings(str(tmp_path / "r.sock")), {}, PluginLoader(bundled=False))
    yield sup
    for channel in sup.channels.values():
        channel.sock.close()
        if channel.descriptors is not None:
            channel.descriptors.close()
    for fd in sup._held:
        os.close(fd)


def worker(sup: Supervisor, index: int, *, ready: bool = True) -> tuple[_Channel, socket.socket]:
    """A worker as the supervisor sees it, and the worker's end of its descriptor channel."""
    ours, theirs = seqpacket()
    ours.setblocking(False)
    pid = next(pids)
    channel = _Channel(index, socket.socket(), pid, sup.generation, ours)
    channel.ready = ready
    sup.channels[pid] = channel
    return channel, theirs


def test_the_supervisor_relays_to_the_same_index_else_any_else_holds(
    supervisor: Supervisor,
) -> None:
    old, _ = worker(supervisor, 0)
    old.retiring = True
    other, other_end = worker(supervisor, 1)
    starting, starting_end = worker(supervisor, 0, ready=False)
    fd, peer = connection()
    supervisor._relay([fd], old)  # its successor is not ready yet: any ready one
    (got,) = received(other_end)
    assert same_connection(got, peer)
    starting.ready = True
    fd, peer = connection()
    supervisor._relay([fd], old)  # now the successor of the same index
    (got,) = received(starting_end)
    assert same_connection(got, peer)
    assert received(other_end) == []
    for channel in (other, starting):
        channel.ready = False
    fd, peer = connection()
    supervisor._relay([fd], old)  # nobody can take it: held, unread
    assert supervisor._held == [fd]
    other.ready = True
    supervisor._relay_held()
    (got,) = received(other_end)
    assert same_connection(got, peer) and supervisor._held == []


def test_a_full_queue_keeps_the_descriptors_until_the_worker_reads(
    supervisor: Supervisor,
) -> None:
    target, target_end = worker(supervisor, 0)
    peers = []
    for _ in range(MANY):
        fd, peer = connection()
        peers.append(peer)
        supervisor._relay([fd], None)
    assert target.outbox  # the rest waits
    assert supervisor._next_timeout() < 2 * _workers.RELAY_RETRY  # tried again soon
    got = received(target_end)
    while target.outbox:
        supervisor._send_outbox(target)
        got += received(target_end)
    assert len(got) == MANY
    assert all(same_connection(fd, peer) for fd, peer in zip(got, peers, strict=True))


def test_descriptors_for_a_worker_that_is_gone_go_to_another(supervisor: Supervisor) -> None:
    gone, gone_end = worker(supervisor, 0)
    _, other_end = worker(supervisor, 1)
    gone_end.close()  # it exited
    fd, peer = connection()
    gone.outbox.append(fd)
    supervisor._send_outbox(gone)
    assert gone.descriptors is None
    (got,) = received(other_end)
    assert same_connection(got, peer)
    # a worker that exits right after passing its last connections on: they are relayed
    # before its channel is closed
    leaving, leaving_end = worker(supervisor, 2)
    fd, peer = connection()
    socket.send_fds(leaving_end, [b"c"], [fd])
    os.close(fd)
    leaving_end.close()
    supervisor._drop_descriptors(leaving)
    assert leaving.passed_on == 1
    (got,) = received(other_end)
    assert same_connection(got, peer)


def test_a_stopping_supervisor_closes_what_it_gets(supervisor: Supervisor) -> None:
    held, peer = connection()
    supervisor._held.append(held)
    supervisor._begin_stop()  # (no worker process: nothing to signal)
    assert supervisor._held == [] and peer.recv(1) == b""
    fd, peer = connection()
    supervisor._relay([fd], None)
    assert peer.recv(1) == b""


def test_the_worker_link_waits_while_the_supervisor_is_slow_and_gives_up_when_gone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_workers, "HAND_OFF_FLUSH", 0.2)

    async def main() -> None:
        ours, supervisor_end = seqpacket()
        link = DescriptorLink(ours)
        peers = []
        for _ in range(MANY):  # more than the queue holds: the rest waits for a writable socket
            fd, peer = connection()
            peers.append(peer)
            link.send(fd)
        flushing = asyncio.ensure_future(link.flush())
        got: list[int] = []
        while len(got) < MANY:
            await asyncio.sleep(0.001)
            got += received(supervisor_end)
        await flushing
        assert all(same_connection(fd, peer) for fd, peer in zip(got, peers, strict=True))
        # a supervisor that does not read: given up after HAND_OFF_FLUSH, closed
        for _ in range(MANY):
            fd, peer = connection()
            peers.append(peer)
            link.send(fd)
        await link.flush()
        # a supervisor that is gone: the connections are closed
        received(supervisor_end)
        supervisor_end.close()
        fd, peer = connection()
        link.send(fd)
        assert peer.recv(1) == b""
        ours.close()

    with caplog.at_level(logging.WARNING, logger="a6runner"):
        asyncio.run(main())
    assert "connections could not be passed on: closed" in caplog.text
    assert "cannot pass connections on" in caplog.text
