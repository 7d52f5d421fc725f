"""--busy-poll: after each read the event loop keeps a callback scheduled (so it polls its
sockets without sleeping) until the set time passes with nothing read, then sleeps again;
the calls are answered exactly as without it. Off by default."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from a6runner._confstore import ConfStore
from a6runner._pressure import PRESSURE_LIMIT, PRESSURE_SAMPLE, CpuPressure
from a6runner._registry import build_registry
from a6runner._server import Listener, Server
from a6runner._services import LocalServices
from a6runner._settings import Limits
from a6runner.testing import AsyncClient, spawn_runner

BUNDLED = {n: r.plugin for n, r in build_registry(bundled=True, entry_points=False).items()}


def serve_two_calls(
    tmp_path: Path, busy_poll: float, pressure: CpuPressure | None = None
) -> tuple[list[bytes | None], list[int]]:
    """Two say calls, the second once the loop has stopped polling after the first:
    (their bodies, how many poll callbacks had run after each). ``pressure`` stands for
    the machine's CPU pressure; by default none can be read (so polling is never held
    back by what else this machine runs)."""
    path = str(tmp_path / "r.sock")
    listener = Listener(path, 0o700).sock

    async def stopped_polling(server: Server) -> None:
        while server.polling:  # ends once busy_poll passes with no read
            await asyncio.sleep(0.001)

    async def main() -> tuple[list[bytes | None], list[int]]:
        server = Server(
            listener, ConfStore(BUNDLED, 60.0), LocalServices(), limits=Limits(busy_poll=busy_poll)
        )
        server.pressure = pressure or CpuPressure(str(tmp_path / "no-such-file"))
        polls: list[None] = []
        poll = server._poll

        def counted_poll() -> None:
            polls.append(None)
            poll()

        server._poll = counted_poll  # type: ignore[method-assign]
        await server.start()
        bodies: list[bytes | None] = []
        after: list[int] = []
        async with await AsyncClient.connect(path) as client:
            token = await client.prepare_conf([("say", {"body": "hi"})])
            for _ in range(2):
                await asyncio.wait_for(stopped_polling(server), 60)
                bodies.append((await client.http_req_call(token)).body)
                await asyncio.wait_for(stopped_polling(server), 60)
                after.append(len(polls))
        await server.stop(1.0)
        return bodies, after

    try:
        return asyncio.run(main())
    finally:
        listener.close()


def test_after_a_read_the_loop_polls_then_sleeps_again(tmp_path: Path) -> None:
    bodies, polls_after = serve_two_calls(tmp_path, busy_poll=0.002)
    assert bodies == [b"hi", b"hi"]
    first, second = polls_after
    assert first >= 1  # the loop polled after the first call's read
    assert second > first  # it had stopped, and the second call's read started it again


def test_off_by_default_the_loop_never_polls(tmp_path: Path) -> None:
    assert Limits().busy_poll == 0
    bodies, polls_after = serve_two_calls(tmp_path, busy_poll=0.0)
    assert bodies == [b"hi", b"hi"]
    assert polls_after == [0, 0]


class Pressure(CpuPressure):
    """A pressure file written by the test, and a clock it moves: each reading advances
    the clock by a sample period and the stall total by ``waited`` of it."""

    def __init__(self, path: Path, waited: float) -> None:
        super().__init__(str(path))
        self.file = path
        self.waited = waited
        self.total = 0
        self.now = 0.0
        self._write()

    def _write(self) -> None:
        self.file.write_text(
            f"some avg10=0.00 avg60=0.00 avg300=0.00 total={self.total}\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
        )

    def contended(self, now: float) -> bool:
        self.now += PRESSURE_SAMPLE
        self.total += int(self.waited * PRESSURE_SAMPLE * 1e6)
        self._write()
        return super().contended(self.now)


def test_no_polling_while_other_tasks_wait_for_a_cpu(tmp_path: Path) -> None:
    busy = Pressure(tmp_path / "cpu", waited=PRESSURE_LIMIT * 3)
    bodies, polls_after = serve_two_calls(tmp_path, busy_poll=0.002, pressure=busy)
    assert bodies == [b"hi", b"hi"]
    # the first read only takes the first sample (nothing to compare it with yet): it
    # polls; from the second sample on the machine is contended
    assert polls_after[1] == polls_after[0] >= 1


def test_polling_while_the_cpus_are_free(tmp_path: Path) -> None:
    idle = Pressure(tmp_path / "cpu", waited=PRESSURE_LIMIT / 3)
    bodies, polls_after = serve_two_calls(tmp_path, busy_poll=0.002, pressure=idle)
    assert bodies == [b"hi", b"hi"]
    assert polls_after[1] > polls_after[0] >= 1


def test_cpu_pressure_from_the_stall_total(tmp_path: Path) -> None:
    path = tmp_path / "cpu"
    pressure = CpuPressure(str(path))

    def at(now: float, total: int) -> bool:
        path.write_text(f"some avg10=1.00 avg60=2.00 avg300=3.00 total={total}\nfull x\n")
        return pressure.contended(now)

    assert at(10.0, 1_000_000) is False  # the first sample: nothing to compare with
    assert at(11.0, 1_050_000) is False  # 5 % of the last second spent waiting
    assert at(12.0, 1_300_000) is True  # 25 %
    path.write_text("some total=999999999\n")  # read again only a sample period later
    assert pressure.contended(12.0 + PRESSURE_SAMPLE / 2) is True
    assert at(13.0, 1_310_000) is False  # 1 %
    assert pressure.available


@pytest.mark.parametrize(
    "content", [None, "", "full avg10=0.00 total=5\n", "some avg10=0.00\n", "some total=x\n"]
)
def test_without_a_readable_pressure_nothing_counts_as_contended(
    tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "cpu"
    if content is not None:
        path.write_text(content)
    pressure = CpuPressure(str(path))
    assert pressure.contended(1.0) is False
    assert not pressure.available
    path.write_text("some total=1\n")  # not read again
    assert pressure.contended(100.0) is False


@pytest.mark.runtime
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_busy_polling_runner_answers_as_any(workers: str) -> None:
    with spawn_runner(["--busy-poll", "50", "--workers", workers]) as runner:
        with runner.client() as apisix:
            token = apisix.prepare_conf([("say", {"body": "polled"})])
            for call_id in range(20):
                reply = apisix.http_req_call(token, id=call_id)
                assert (reply.id, reply.action, reply.body) == (call_id, "stop", b"polled")
        assert runner.stop() == 0
