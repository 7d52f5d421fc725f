"""``Plugin.start()`` and ``Plugin.stop()`` in each serving process (the documentation's
"Start and stop" page, docs/writing-plugins/lifecycle.md).

``start`` runs once per plugin instance in every process that serves calls — the single
process, each ``--workers`` worker after its fork (never the supervisor, which serves
nothing), a test's ``run_runner()`` — before that process takes its first call, and for
the new instances a reload makes, before they take over. It runs on the event loop's
thread; an ``async def`` one is awaited, so during a reload the previous instances keep
serving meanwhile.

``stop`` runs once per started instance after its calls in flight ended: at shutdown
(all of them together within ``STOP_GRACE``, so that the whole shutdown fits APISIX's
one-second grace), and for instances a reload or a worker replacement retired (within
``RETIRE_STOP_GRACE``). A plain ``stop`` runs in a daemon thread of its own and an
``async def`` one as a task, all at once: one that hangs is logged and left behind (its
thread never holds up the exit), one that raises is logged; both by the plugin's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, Protocol

from ._plugin import Plugin
from ._registry import PluginLoadError

log = logging.getLogger("a6runner")

STOP_GRACE = 0.1  # seconds every stop hook together gets at shutdown, after the calls ended
RETIRE_STOP_GRACE = 5.0  # seconds for the stop hooks of instances a reload replaced
CALLS_ENDED_POLL = 0.05  # seconds between looks at the calls a retired instance still has


class PluginStartError(PluginLoadError):
    """A plugin's ``start`` raised: a startup error (exit status 2), or a failed reload."""

    def __init__(self, name: str, exc: BaseException) -> None:
        super().__init__(f"plugin {name!r} start raised {type(exc).__name__}: {exc}")
        self.plugin = name


def _overrides(plugin: Plugin, hook: str) -> bool:
    return getattr(type(plugin), hook) is not getattr(Plugin, hook)


def _being_cancelled() -> bool:
    """Whether the running task was cancelled from outside (not a stray CancelledError a
    plugin raised itself); Python 3.10 cannot tell, and takes it for a cancellation."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


class RunningServer(Protocol):
    """The server the instances serve on (``_server.Server``, which imports this module: a
    protocol keeps the import one way), as the lifecycle and a retiring worker use it."""

    def calls_in_flight(self) -> list[tuple[Any, int]]:
        """Each connection with a call in flight now, with its count of ended calls."""

    def still_running(self, calls: list[tuple[Any, int]]) -> bool:
        """Whether one of ``calls`` (from calls_in_flight) is still running."""

    def shorten_retire(self, grace: float) -> None:
        """Shutdown while retiring: calls in flight get ``grace`` seconds, not more."""


class PluginLifecycle:
    """The plugin instances this process serves with: started, and not stopped yet; and
    the server they serve on (set by ``serve()``), whose calls a retired instance waits
    for."""

    def __init__(self) -> None:
        self.server: RunningServer | None = None
        self._in_service: dict[int, tuple[str, Plugin]] = {}  # by id() of the instance
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping: dict[asyncio.Future[None], str] = {}  # stop hooks still running

    async def start(self, plugins: Mapping[str, Plugin]) -> None:
        """``start`` each of ``plugins``, one after the other, in order. When one raises,
        those started here are stopped and PluginStartError names the plugin. Cancelled
        (the process stops meanwhile), those started stay in service: ``stop_all`` stops
        them."""
        started: list[tuple[str, Plugin]] = []
        for name, plugin in list(plugins.items()):
            try:
                if _overrides(plugin, "start"):
                    result = plugin.start()
                    if inspect.isawaitable(result):
                        await result
            except BaseException as exc:  # a start may raise anything
                if isinstance(exc, asyncio.CancelledError) and _being_cancelled():
                    raise
                await self.stop(started, RETIRE_STOP_GRACE)
                raise PluginStartError(name, exc) from None
            started.append((name, plugin))
            self._in_service[id(plugin)] = (name, plugin)

    async def stop(self, plugins: Iterable[tuple[str, Plugin]], grace: float) -> None:
        """``stop`` those of ``plugins`` (name, instance) still in service, all at once,
        waiting for them up to ``grace`` seconds."""
        todo = [(n, p) for n, p in plugins if self._in_service.pop(id(p), None) is not None]
        await self._wait(self._launch(todo), grace)

    async def stop_all(self, grace: float) -> None:
        """At the end of serving: every instance still in service is stopped (those a
        reload retired and whose calls have not all ended too: the server has stopped),
        and every stop still running is waited for, all within ``grace`` seconds."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        todo = list(self._in_service.values())
        self._in_service.clear()
        self._launch(todo)
        await self._wait(dict(self._stopping), grace)

    def _launch(self, plugins: list[tuple[str, Plugin]]) -> dict[asyncio.Future[None], str]:
        """Call each ``stop`` at once: an ``async def`` one as a task, a plain one in a
        daemon thread of its own. Returns what to wait for, by plugin name."""
        loop = asyncio.get_running_loop()
        launched: dict[asyncio.Future[None], str] = {}
        for name, plugin in plugins:
            if not _overrides(plugin, "stop"):
                continue
            if inspect.iscoroutinefunction(plugin.stop):
                done: asyncio.Future[None] = loop.create_task(_stop_async(name, plugin))
            else:
                done = loop.create_future()
                threading.Thread(
                    target=_stop_in_thread,
                    args=(name, plugin, loop, done),
                    name=f"a6runner-stop-{name}",
                    daemon=True,
                ).start()
            launched[done] = name
            self._stopping[done] = name
            done.add_done_callback(self._stopped)
        return launched

    def _stopped(self, done: asyncio.Future[None]) -> None:
        self._stopping.pop(done, None)

    async def _wait(self, running: dict[asyncio.Future[None], str], grace: float) -> None:
        """Wait for ``running`` stops up to ``grace`` seconds; one still running then is
        logged and left behind (a task is cancelled; a thread cannot be)."""
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=grace)
        for done in late:
            if not done.done():
                log.error(
                    "plugin %r stop did not finish within %gs: left behind", running[done], grace
                )
                done.cancel()

    def retire(self, plugins: Mapping[str, Plugin]) -> None:
        """A reload replaced ``plugins``: stop them once every call in flight now has
        ended (calls that start from now on use the new instances)."""
        server = self.server
        calls = server.calls_in_flight() if server is not None else []
        self.track(asyncio.ensure_future(self._retire(list(plugins.items()), calls)))

    async def _retire(
        self, plugins: list[tuple[str, Plugin]], calls: list[tuple[Any, int]]
    ) -> None:
        server = self.server
        while server is not None and server.still_running(calls):
            await asyncio.sleep(CALLS_ENDED_POLL)
        await self.stop(plugins, RETIRE_STOP_GRACE)

    def track(self, task: asyncio.Task[Any]) -> None:
        """A task of this lifecycle (a reload, a retirement): ``stop_all`` cancels it."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _stop_failed(name: str, exc: BaseException) -> None:
    log.error("plugin %r stop raised %s: %s", name, type(exc).__name__, exc, exc_info=exc)


async def _stop_async(name: str, plugin: Plugin) -> None:
    try:
        await plugin.stop()  # type: ignore[misc]  # an async def stop
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        _stop_failed(name, exc)


async def _awaited(awaitable: Awaitable[Any]) -> None:
    await awaitable


def _stop_in_thread(
    name: str, plugin: Plugin, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]
) -> None:
    try:
        result = plugin.stop()
        if inspect.isawaitable(result):  # a plain def that returned an awaitable: the loop's
            asyncio.run_coroutine_threadsafe(_awaited(result), loop).result()
    except BaseException as exc:
        _stop_failed(name, exc)
    finally:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_set_done, done)


def _set_done(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
