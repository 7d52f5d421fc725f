"""bench/floor.py answers as a runner whose chain has no plugin: what a6measure's `noop`
scenario expects, so its figures compare with ours on the same calls."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from a6runner.testing import spawn_runner

FLOOR = str(Path(__file__).with_name("floor.py"))


@pytest.mark.parametrize("workers", [1, 2])
def test_the_floor_answers_every_call_with_an_empty_reply(workers: int) -> None:
    with spawn_runner(["--workers", str(workers)], command=[sys.executable, FLOOR]) as runner:
        with runner.client() as apisix:
            token = apisix.prepare_conf([("a6load-no-such-plugin", {})])
            for call_id in (7, 8, 2**32 - 1):
                reply = apisix.http_req_call(token, id=call_id)
                assert reply.error is None
                assert reply.id == call_id
                assert reply.action == "none"  # no Stop, no Rewrite
        assert runner.stop() == 0
