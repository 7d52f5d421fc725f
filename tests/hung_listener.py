"""Listening sockets on 127.0.0.1 that accept every connection and never read or answer
(a Redis that hangs), run as a process of its own by tests/redis_servers.py: prints
``listening PORT...`` once, then ``accepted PORT`` for each connection, and keeps them
all open until it is stopped."""

from __future__ import annotations

import selectors
import socket
import sys

selector = selectors.DefaultSelector()
for _ in range(int(sys.argv[1])):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    selector.register(listener, selectors.EVENT_READ)
ports = [key.fileobj.getsockname()[1] for key in selector.get_map().values()]  # type: ignore[union-attr]
print("listening", *ports, flush=True)
held = []  # never read, never closed
while True:
    for key, _ in selector.select():
        connection, _ = key.fileobj.accept()  # type: ignore[union-attr]
        held.append(connection)
        print("accepted", key.fileobj.getsockname()[1], flush=True)  # type: ignore[union-attr]
