#!/usr/bin/env python3
"""The least a runner written in Python on uvloop can cost per call: a "runner" that
answers each frame with the compiled codec and nothing else. Per HTTPReqCall it does
what any Python runner must: uvloop calls ``data_received`` (one Python call, with the
frame as a new bytes object), the compiled kernels split the frame, read its id and build
an empty reply (the `noop` scenario's answer: no plugin ran), and one ``transport.write``.
No conf store, no chain, no Request object, no plugin.

Run it under a6measure like any runner, on the `noop` scenario, beside ours and
echo_limit (the same socket work in C):

    ../shared/tools/a6measure --scenario noop --conns 16 -- .venv/bin/python bench/floor.py
    ../shared/tools/a6measure --scenario noop --conns 16 -- .venv/bin/a6-runner run
    ../shared/tools/a6measure --echo --scenario noop --conns 16

``--workers N`` forks N processes accepting on the socket, as ``a6-runner run --workers``
does. The socket comes from APISIX_LISTEN_ADDRESS (``unix:/path``), as APISIX gives it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import cast

import uvloop

from a6runner._kernels import codec

PREPARE_CONF = codec.RPC_PREPARE_CONF
HTTP_REQ_CALL = codec.RPC_HTTP_REQ_CALL


class Floor(asyncio.Protocol):
    def __init__(self) -> None:
        self.splitter = codec.FrameSplitter()
        self.write: Callable[[bytes], object] = self._unconnected

    def _unconnected(self, data: bytes) -> None:
        raise RuntimeError("data before connection_made")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.write = cast(asyncio.Transport, transport).write

    def data_received(self, data: bytes) -> None:
        for frame_type, payload in self.splitter.feed(data):
            if frame_type == HTTP_REQ_CALL:
                self.write(
                    codec.build_http_req_call_resp(codec.decode_http_req_call_req(payload).id)
                )
            elif frame_type == PREPARE_CONF:
                self.write(codec.build_prepare_conf_resp(1))
            else:  # any other frame: the floor does not serve it
                self.write(codec.build_err_resp(codec.ERR_BAD_REQUEST))


def serve(listener: socket.socket) -> None:
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    async def main() -> None:
        server = await loop.create_unix_server(Floor, sock=listener)
        await stop.wait()
        server.close()

    loop.run_until_complete(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    address = os.environ.get("APISIX_LISTEN_ADDRESS", "")
    if not address.startswith("unix:"):
        sys.exit("APISIX_LISTEN_ADDRESS=unix:/path is needed (a6measure sets it)")
    path = address[len("unix:") :]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1024)
    listener.setblocking(False)
    children = []
    for _ in range(args.workers - 1):
        pid = os.fork()
        if pid == 0:
            serve(listener)
            os._exit(0)
        children.append(pid)
    try:
        serve(listener)
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        os.unlink(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
