"""Loading the plugins again (SIGHUP, ``--reload``) without stopping the runner.

``PluginLoader`` remembers where the plugins came from (``--plugins`` files, folders and
modules, the bundled package, the entry points, classes given to ``run()``) and which
pure-Python modules loading them imported. ``reload()`` imports those modules afresh —
new module objects, so code still running keeps its own globals — and builds a new
registry; when anything fails to import, the modules are put back as they were and the
runner goes on with the plugins it has. ``watch_plugin_files`` is ``--reload``: a thread
that sends this process SIGHUP when a plugin file changes (watchfiles, an optional extra).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from ._errors import ConfigError
from ._plugin import Plugin
from ._registry import (
    BUNDLED_PACKAGE,
    PluginLoadError,
    RegisteredPlugin,
    build_registry,
    installed_entry_points,
)

log = logging.getLogger("a6runner")

FILE_PLUGINS = "a6runner_user_plugins"  # the package _registry names plugin files under


def _is_module_spec(spec: str) -> bool:
    return not (os.path.isdir(spec) or spec.endswith(".py") or os.sep in spec)


class PluginLoader:
    """The plugins a runner serves, and how to load them again."""

    def __init__(
        self,
        classes: Iterable[type[Plugin]] = (),
        paths: Sequence[str] = (),
        *,
        bundled: bool = True,
        entry_points: bool = True,
    ) -> None:
        self.classes = tuple(classes)
        self.paths = tuple(paths)
        self.bundled = bundled
        self.entry_points = entry_points
        self._modules: set[str] = set()  # what the last load imported and a reload imports again

    def _roots(self) -> tuple[str, ...]:
        """The packages whose modules a reload imports again: the plugin files', each
        ``--plugins`` module's top-level package, the bundled plugins, the entry points'."""
        roots = [FILE_PLUGINS]
        roots += [spec.split(".")[0] for spec in self.paths if _is_module_spec(spec)]
        if self.bundled:
            roots.append(BUNDLED_PACKAGE)
        if self.entry_points:
            roots += [ep.module.split(".")[0] for ep in installed_entry_points()]
        return tuple(roots)

    def _ours(self, name: str, roots: tuple[str, ...]) -> bool:
        if not any(name == root or name.startswith(root + ".") for root in roots):
            return False
        module = sys.modules.get(name)
        # compiled modules cannot be initialised twice: only Python source is imported again
        return str(getattr(module, "__file__", None) or "").endswith(".py")

    def load(self) -> dict[str, RegisteredPlugin]:
        """Every plugin, by name; PluginLoadError names the module that failed."""
        roots = self._roots()
        before = set(sys.modules)
        registry = build_registry(
            self.classes, self.paths, bundled=self.bundled, entry_points=self.entry_points
        )
        self._modules = {n for n in set(sys.modules) - before if self._ours(n, roots)}
        return registry

    def reload(self) -> dict[str, RegisteredPlugin]:
        """The plugins from their current source: like ``load()``, with the plugin modules
        imported again. On failure (PluginLoadError) the modules are as they were."""
        saved = {name: sys.modules.pop(name) for name in self._modules if name in sys.modules}
        importlib.invalidate_caches()  # files created since the last import are found
        roots = self._roots()
        before = set(sys.modules)
        try:
            return self.load()  # (which records the modules it imported only on success)
        except BaseException:
            for name in set(sys.modules) - before:
                if any(name == root or name.startswith(root + ".") for root in roots):
                    del sys.modules[name]
            sys.modules.update(saved)
            raise

    def watched_paths(self) -> list[str]:
        """Where ``--reload`` looks for changes: the ``--plugins`` files and folders, and
        the folder of each ``--plugins`` module's top-level package."""
        found: list[str] = []
        for spec in self.paths:
            if not _is_module_spec(spec):
                found.append(os.path.abspath(spec))
                continue
            top = sys.modules.get(spec.split(".")[0])
            folders = list(getattr(top, "__path__", None) or [])
            single_file = getattr(top, "__file__", None)
            if not folders and single_file:
                folders = [str(single_file)]  # a single-file module
            found.extend(os.path.abspath(f) for f in folders)
        return sorted(set(found))


def check_reload_available(paths: Sequence[str]) -> None:
    """ConfigError unless ``--reload`` can work: watchfiles installed, something to watch."""
    if not paths:
        raise ConfigError(
            "--reload watches the files, folders and modules given with --plugins: "
            "name at least one"
        )
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--reload needs the watchfiles package: pip install 'a6runner[reload]'"
        ) from None


def watch_plugin_files(
    paths: Sequence[str], on_change: Callable[[], None] | None = None
) -> threading.Event:
    """``--reload``: a daemon thread that watches ``paths`` (files, or folders and what is
    in them) and, when a ``.py`` file among them changes, calls ``on_change`` (default:
    send this process SIGHUP, which reloads). Set the returned event to stop it."""
    check_reload_available(paths)
    import watchfiles

    files = {p for p in paths if not os.path.isdir(p)}
    folders = tuple(p + os.sep for p in paths if os.path.isdir(p))
    # a file is watched through its folder: editors often save by replacing the file
    roots = sorted({os.path.dirname(p) for p in files} | {p.rstrip(os.sep) for p in folders})

    def relevant(_change: object, path: str) -> bool:
        return path.endswith(".py") and (path in files or path.startswith(folders))

    def reload_this_process() -> None:
        os.kill(os.getpid(), signal.SIGHUP)

    notify = on_change or reload_this_process
    stop = threading.Event()

    def watch() -> None:
        announced = False
        try:
            for changes in watchfiles.watch(
                *roots,
                watch_filter=relevant,
                stop_event=stop,
                yield_on_timeout=True,  # the first (empty) yield: the watch is in place
                rust_timeout=1000,
                raise_interrupt=False,
            ):
                if not announced:
                    log.info("--reload: watching %s for changes", ", ".join(paths))
                    announced = True
                if changes:
                    names = sorted({os.path.basename(path) for _, path in changes})
                    log.info("plugin files changed (%s): reloading", ", ".join(names))
                    notify()
        except Exception:
            log.exception("--reload: watching the plugin files failed: no more reloads")

    threading.Thread(target=watch, name="a6runner-reload", daemon=True).start()
    return stop


class LivePlugins(Mapping[str, Plugin]):
    """The plugins a process serves now: a reload swaps ``current`` in one assignment, so
    a thread reading it (the stall watchdog) sees either the old or the new dict."""

    def __init__(self, plugins: Mapping[str, Plugin]) -> None:
        self.current: Mapping[str, Plugin] = dict(plugins)

    def __getitem__(self, name: str) -> Plugin:
        return self.current[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.current)

    def __len__(self) -> int:
        return len(self.current)


def reload_failed(exc: BaseException) -> None:
    """The one log line of a reload that did not happen (the old plugins keep serving)."""
    log.error(
        "reload failed, still serving the previous plugins: %s",
        exc if isinstance(exc, PluginLoadError) else f"{type(exc).__name__}: {exc}",
    )
