"""Plugin discovery: bundled plugins, the ``a6runner.plugins`` entry-point group, and
modules / files / directories named on the command line."""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import pkgutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from ._errors import A6Error
from ._plugin import Plugin

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP = "a6runner.plugins"
BUNDLED_PACKAGE = "a6runner.plugins"


class PluginLoadError(A6Error):
    """A plugin module or class could not be loaded (a startup error)."""


@dataclass(frozen=True)
class RegisteredPlugin:
    name: str
    plugin: Plugin
    origin: str  # where it came from, for logs and ``a6-runner plugins``


def add_plugin_options(p: argparse._ActionsContainer) -> None:
    """The command-line options choosing the plugins (``run``, ``plugins``, ``call``); they
    are build_registry's ``paths``, ``bundled`` and ``entry_points``."""
    p.add_argument(
        "--plugins",
        action="append",
        default=[],
        metavar="PATH|MODULE",
        help="load plugins from a .py file, a directory of them, or a module (repeatable)",
    )
    p.add_argument("--no-bundled", action="store_true", help="do not load the bundled plugins")
    p.add_argument(
        "--no-entry-points",
        action="store_true",
        help="do not load plugins from the 'a6runner.plugins' entry-point group",
    )


def plugin_classes(module: ModuleType) -> list[type[Plugin]]:
    """Plugin subclasses defined in ``module`` itself (not imported into it) with a name."""
    return [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, Plugin)
        and obj is not Plugin
        and obj.__module__ == module.__name__
        and obj.name
    ]


def _module_error(name: str, exc: BaseException) -> PluginLoadError:
    return PluginLoadError(f"cannot import plugin module {name!r}: {type(exc).__name__}: {exc}")


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise _module_error(name, exc) from exc


def _import_file(path: str) -> ModuleType:
    stem = os.path.splitext(os.path.basename(path))[0]
    module_name = f"a6runner_user_plugins.{stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"cannot load plugin file {path!r}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PluginLoadError(
            f"cannot load plugin file {path!r}: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _modules_from_spec(spec: str) -> list[tuple[ModuleType, str]]:
    """``spec`` is a .py file, a directory of them, or a dotted module name."""
    if os.path.isdir(spec):
        files = sorted(
            f for f in os.listdir(spec) if f.endswith(".py") and not f.startswith(("_", "."))
        )
        return [
            (_import_file(os.path.join(spec, f)), f"path {os.path.join(spec, f)}") for f in files
        ]
    if spec.endswith(".py") or os.sep in spec:
        if not os.path.isfile(spec):
            raise PluginLoadError(f"plugin path {spec!r} does not exist")
        return [(_import_file(spec), f"path {spec}")]
    _find_modules_in_current_folder()
    try:
        module = importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (spec + ".").startswith(exc.name + "."):
            raise _module_error(spec, exc) from exc  # the plugin itself imports a missing module
        raise PluginLoadError(
            f"cannot import plugin module {spec!r}: no module {exc.name!r} in the current "
            f"folder ({os.getcwd()}) or on the Python path: run from the folder that holds "
            "it, pass the file or folder path instead, or install its package"
        ) from exc
    except Exception as exc:
        raise _module_error(spec, exc) from exc
    return [(module, f"module {spec}")]


def _find_modules_in_current_folder() -> None:
    """As ``python -m`` does: a module named on the command line is looked up in the current
    folder first (the ``a6-runner`` script's own folder is on sys.path instead)."""
    cwd = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == cwd for entry in sys.path):
        sys.path.insert(0, cwd)


def _bundled_modules() -> list[tuple[ModuleType, str]]:
    package = _import_module(BUNDLED_PACKAGE)
    names = sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")
    )
    return [(_import_module(f"{BUNDLED_PACKAGE}.{n}"), "bundled") for n in names]


def _may_declare_plugins() -> bool:
    """Whether some distribution on sys.path may declare an ``a6runner.plugins`` entry
    point: an ``entry_points.txt`` that names the group, or anything this look cannot see
    into (a zip or an egg on sys.path, a finder other than the path finder that finds
    distributions). False only when none can."""
    for entry in sys.path:
        folder = entry or os.curdir
        try:
            with os.scandir(folder) as it:
                names = [e.name for e in it]
        except NotADirectoryError:
            return True  # a zip file: importlib.metadata looks inside
        except OSError:
            continue  # missing: importlib.metadata skips it too
        for name in names:
            low = name.lower()
            if low.endswith(".egg"):
                return True
            if not low.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(folder, name, "entry_points.txt"), "rb") as f:
                    if ENTRY_POINT_GROUP.encode() in f.read():
                        return True
            except (FileNotFoundError, NotADirectoryError):
                continue  # no entry points (an .egg-info file holds none either)
            except OSError:
                return True
    path_finder = importlib.machinery.PathFinder
    return any(
        hasattr(finder, "find_distributions") and finder is not path_finder
        for finder in sys.meta_path
    )


def installed_entry_points() -> Sequence[EntryPoint]:
    """The installed ``a6runner.plugins`` entry points. importlib.metadata costs about
    2 MiB in every process (it imports email, zipfile, csv, tempfile...) and each worker
    inherits it: it is imported only when a distribution may declare one."""
    if not _may_declare_plugins():
        return ()
    import importlib.metadata

    return tuple(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _entry_point_classes() -> list[tuple[type[Plugin], str]]:
    found: list[tuple[type[Plugin], str]] = []
    for ep in installed_entry_points():
        dist = f" ({ep.dist.name} {ep.dist.version})" if ep.dist is not None else ""
        origin = f"entry point {ep.name} = {ep.value}{dist}"
        try:
            obj = ep.load()
        except Exception as exc:
            raise PluginLoadError(f"cannot load {origin}: {type(exc).__name__}: {exc}") from exc
        if isinstance(obj, ModuleType):
            found.extend((cls, origin) for cls in plugin_classes(obj))
        elif inspect.isclass(obj) and issubclass(obj, Plugin) and obj.name:
            found.append((obj, origin))
        else:
            raise PluginLoadError(f"{origin} is neither a named Plugin subclass nor a module")
    return found


def _instantiate(cls: type[Plugin], origin: str) -> Plugin:
    status = cls.guard_status
    if cls.guard and (
        isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
    ):
        raise PluginLoadError(
            f"plugin {cls.name!r} ({origin}): guard_status must be an HTTP status in 100..599"
        )
    try:
        return cls()
    except Exception as exc:
        raise PluginLoadError(
            f"cannot create plugin {cls.name!r} ({origin}): {type(exc).__name__}: {exc}"
        ) from exc


def build_registry(
    classes: Iterable[type[Plugin]] = (),
    paths: Sequence[str] = (),
    *,
    bundled: bool = True,
    entry_points: bool = True,
) -> dict[str, RegisteredPlugin]:
    """Every plugin the runner serves, by name. Raises PluginLoadError on a module that
    fails to import and on a name registered twice."""
    candidates: list[tuple[type[Plugin], str]] = []
    if bundled:
        for module, origin in _bundled_modules():
            candidates.extend(
                (cls, f"{origin} {module.__name__}") for cls in plugin_classes(module)
            )
    if entry_points:
        candidates.extend(_entry_point_classes())
    for spec in paths:
        for module, origin in _modules_from_spec(spec):
            classes_in = plugin_classes(module)
            if not classes_in:
                raise PluginLoadError(f"{origin} defines no Plugin subclass with a name")
            candidates.extend((cls, origin) for cls in classes_in)
    candidates.extend((cls, f"class {cls.__module__}.{cls.__qualname__}") for cls in classes)

    registry: dict[str, RegisteredPlugin] = {}
    for cls, origin in candidates:
        if not isinstance(cls.name, str) or not cls.name:
            raise PluginLoadError(f"plugin class {cls.__qualname__} ({origin}) has no name")
        seen = registry.get(cls.name)
        if seen is not None:
            raise PluginLoadError(
                f"plugin name {cls.name!r} is registered twice: by {seen.origin} and by {origin}"
            )
        registry[cls.name] = RegisteredPlugin(cls.name, _instantiate(cls, origin), origin)
    return registry
