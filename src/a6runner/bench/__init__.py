"""``a6-runner bench``: an APISIX-like end-to-end load driver, apart from the runtime
(``a6-runner run`` never imports it).

It speaks APISIX's side of the ext-plugin protocol exactly like the shared C driver
(``a6load.c``, run by ``a6measure``) so the two give comparable figures: the same
scenarios (plugin names, confs, 3 args, 13 request headers, 8 response headers), the same
canned ExtraInfo answers and the same reply checks. Given a runner command
(``-- a6-runner run ...``) it starts the runner with ``testing.spawn_runner`` as APISIX
and ``a6measure`` do, measures the runner's CPU over its whole process tree and its RSS
from ``/proc``, and stops it with SIGTERM.

``scenarios`` (the table: add a scenario there), ``stats`` (histogram, results),
``driver`` (the epoll load loop), ``procwatch`` (the runner's CPU and RSS), ``cli``.
"""

from .cli import main
from .driver import Driver, DriverConfig, drive
from .scenarios import (
    ACT_ANY,
    EXTRA_REQ_BODY,
    EXTRA_VAR,
    REQ_ARGS,
    REQ_HEADERS,
    RESP_HEADERS,
    SCENARIOS,
    Scenario,
    resp_body,
)
from .stats import DriverResult, histogram, merge, percentile_us

__all__ = [
    "ACT_ANY",
    "EXTRA_REQ_BODY",
    "EXTRA_VAR",
    "REQ_ARGS",
    "REQ_HEADERS",
    "RESP_HEADERS",
    "SCENARIOS",
    "Driver",
    "DriverConfig",
    "DriverResult",
    "Scenario",
    "drive",
    "histogram",
    "main",
    "merge",
    "percentile_us",
    "resp_body",
]
