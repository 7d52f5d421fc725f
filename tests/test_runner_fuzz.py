"""Bad input over the real socket: every frame gets exactly one answer, the connection and
the runner stay up, and a good call afterwards works (DESIGN.md: 'impossible to crash')."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from support_plugins import ALL

from a6runner._kernels import codec
from a6runner.testing import Client, RunnerHandle, decode_reply, run_runner


@pytest.fixture(scope="module")
def runner() -> Iterator[RunnerHandle]:
    with run_runner(plugins=ALL, bundled=True) as handle:
        yield handle


def _seed_payloads(token: int) -> list[tuple[int, bytes]]:
    headers = [("host", "example.com"), ("x-a", "1"), ("cookie", "a=b")]
    return [
        (
            codec.RPC_HTTP_REQ_CALL,
            codec.build_http_req_call_req(
                1, token, 2, "/p", [("a", "1"), ("b", None)], headers, bytes([10, 0, 0, 1])
            )[4:],
        ),
        (
            codec.RPC_HTTP_RESP_CALL,
            codec.build_http_resp_call_req(2, token, 200, headers)[4:],
        ),
        (
            codec.RPC_PREPARE_CONF,
            codec.build_prepare_conf_req([("say", '{"body":"x"}'), ("echo-input", "{}")], "k")[4:],
        ),
    ]


def _mutate(rng: random.Random, payload: bytes) -> bytes:
    data = bytearray(payload)
    kind = rng.randrange(5)
    if kind == 0 and data:  # truncate
        del data[rng.randrange(len(data)) :]
    elif kind == 1:  # flip bits
        for _ in range(rng.randint(1, 8)):
            if data:
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 2:  # overwrite a 32-bit word with something extreme
        if len(data) >= 4:
            at = rng.randrange(len(data) - 3)
            data[at : at + 4] = rng.choice(
                [b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"\xfc\xff\xff\x7f"]
            )
    elif kind == 3:  # insert garbage
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randint(1, 16))
    else:  # garbage of the same length
        data = bytearray(rng.randbytes(len(data)))
    return bytes(data)


def test_mutated_frames_each_get_one_answer_and_nothing_breaks(runner: RunnerHandle) -> None:
    rng = random.Random(20261125)
    with runner.client(timeout=10) as apisix:
        token = apisix.prepare_conf([("echo-input", {})])
        seeds = _seed_payloads(token)
        kinds: dict[str, int] = {}
        for _ in range(1500):
            frame_type, payload = rng.choice(seeds)
            if rng.random() < 0.05:
                frame_type = rng.choice([0, 5, 9, 200, 255])  # never 3: that is not a call
            apisix.send_raw(codec.encode_frame(frame_type, _mutate(rng, payload)))
            reply = decode_reply(*apisix.read_frame())
            kinds[reply.error or reply.kind] = kinds.get(reply.error or reply.kind, 0) + 1
        # the corpus did reach both the error paths and the plugins
        assert kinds.get("BAD_REQUEST", 0) > 100
        assert sum(v for k, v in kinds.items() if k != "BAD_REQUEST") > 50
        assert "SERVICE_UNAVAILABLE" not in kinds  # no internal failure on bad input
        good = apisix.prepare_conf([("say", {"body": "still serving"})])
        assert apisix.http_req_call(good).body == b"still serving"
    with Client(runner.socket_path) as fresh:  # and the runner still accepts
        good = fresh.prepare_conf([("say", {"body": "new connection"})])
        assert fresh.http_req_call(good).body == b"new connection"


def test_random_byte_streams_never_take_the_runner_down(runner: RunnerHandle) -> None:
    """Arbitrary bytes, cut anywhere, then the peer goes away: no reply is owed, but the
    runner must keep serving everyone else."""
    import socket

    rng = random.Random(7)
    for _ in range(50):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(runner.socket_path)
            s.sendall(rng.randbytes(rng.randint(1, 4096)))
    with Client(runner.socket_path) as apisix:
        token = apisix.prepare_conf([("say", {"body": "alive"})])
        assert apisix.http_req_call(token).body == b"alive"
