"""a6runner's pytest plugin (the ``pytest11`` entry point ``a6runner``): fixtures that start
a runner with your plugins and talk to it as APISIX does, over the real unix socket.

* ``a6_runner``: a runner serving the plugins of the test's ``@pytest.mark.a6runner(...)``
  marker (its keyword arguments are ``a6runner.testing.run_runner``'s: ``plugins``,
  ``bundled``, ``paths``, ``entry_points``, ``conf_expire_time``, ``clock``,
  ``unknown_plugins``); without a marker, the plugins installed through the
  ``a6runner.plugins`` entry points. Stopped after the test.
* ``apisix``: an APISIX-like ``a6runner.testing.Client`` connected to ``a6_runner``.
* ``apisix_async``: the same as an ``a6runner.testing.AsyncClient``, for ``async def``
  tests (with pytest-asyncio installed).
* ``start_runner``: a function starting more runners (``start_runner(Hello, bundled=True)``,
  the same keywords), each stopped after the test.

It is loaded wherever a6runner is installed, so at import it touches nothing but pytest
and the ``a6runner`` package (what ``import a6runner.testing`` loads, less the testing
kit itself): ``a6runner.testing`` is imported when a fixture is used, pytest-asyncio only
when pytest already loaded it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._plugin import Plugin
    from .testing import AsyncClient, Client, RunnerHandle

MARKER = "a6runner"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(plugins=[...], bundled=False, paths=[...], ...): the runner the a6_runner "
        "fixture starts for this test (a6runner.testing.run_runner's keyword arguments)",
    )
    if config.pluginmanager.hasplugin("asyncio"):
        config.pluginmanager.register(_async_fixtures(), "a6runner-asyncio")


@pytest.fixture
def start_runner() -> Iterator[Callable[..., RunnerHandle]]:
    """``start_runner(*plugins, **run_runner_options)``: a runner in a background thread of
    this process, stopped after the test."""
    from .testing import run_runner

    with ExitStack() as stack:

        def start(*plugins: type[Plugin], **options: Any) -> RunnerHandle:
            listed = list(options.pop("plugins", ()))
            return stack.enter_context(run_runner([*plugins, *listed], **options))

        yield start


@pytest.fixture
def a6_runner(
    request: pytest.FixtureRequest, start_runner: Callable[..., RunnerHandle]
) -> RunnerHandle:
    """A runner with the plugins of the test's ``a6runner`` marker (nearest one wins), or
    the installed entry-point plugins without one."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return start_runner(entry_points=True)
    if marker.args:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER} takes keyword arguments: {MARKER}(plugins=[MyPlugin])"
        )
    return start_runner(**marker.kwargs)


@pytest.fixture
def apisix(a6_runner: RunnerHandle) -> Iterator[Client]:
    """An APISIX-like client (blocking) connected to ``a6_runner``."""
    with a6_runner.client() as client:
        yield client


def _async_fixtures() -> object:
    """The holder of ``apisix_async``, registered as a plugin when pytest-asyncio is loaded
    (its fixture decorator runs the fixture in the test's event loop; pytest finds fixtures
    on a plugin object's class)."""
    import pytest_asyncio

    class AsyncFixtures:
        @pytest_asyncio.fixture
        async def apisix_async(self, a6_runner: RunnerHandle) -> AsyncIterator[AsyncClient]:
            """An APISIX-like asyncio client connected to ``a6_runner``."""
            client = await a6_runner.async_client()
            try:
                yield client
            finally:
                await client.close()

    return AsyncFixtures()
