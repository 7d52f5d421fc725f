"""Confs checked away from a running runner: ``a6-runner schema`` (each plugin's JSON
Schema) and ``a6-runner check-route`` (the ext-plugin confs of an APISIX route, an Admin
API export or an ``apisix.yaml``, checked against the installed plugins before they are
deployed). ``a6-runner call`` checks its conf with :func:`check_conf` too.

Neither command starts a plugin (no ``start``) or connects anywhere: a plugin is
instantiated and its ``parse_conf`` and ``needs`` are called, nothing else. ``a6-runner
run`` never imports this module (nor PyYAML, which reading YAML needs).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ._conf_json import format_path
from ._confstore import needs_of
from ._errors import ConfError, OptionalPackageMissing
from ._plugin import Plugin
from ._registry import PluginLoadError, add_plugin_options, build_registry
from .confs import JSON_SCHEMA_DIALECT, conf_schema

EXT_PLUGINS = ("ext-plugin-pre-req", "ext-plugin-post-req", "ext-plugin-post-resp")
EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def plugin_schema(plugin: Plugin) -> dict[str, Any] | None:
    """The JSON Schema (draft 2020-12) of ``plugin``'s conf: from its ``conf_type`` (with
    ``conf_schema``'s keys over it, for what a type cannot say), else its ``conf_schema``;
    None when it has neither."""
    if plugin.conf_type is not None:
        generated = conf_schema(plugin.conf_type, title=plugin.name)
        generated.update(plugin.conf_schema or {})
        return generated
    if plugin.conf_schema is not None:
        schema = {"$schema": JSON_SCHEMA_DIALECT, "title": plugin.name}
        schema.update(plugin.conf_schema)
        return schema
    return None


@dataclass(frozen=True)
class Finding:
    """What checking one conf entry found: a ``problem`` (the conf would be refused), or a
    ``warning`` (it could not be checked here). ``message`` never holds a conf value."""

    severity: str  # "problem" | "warning"
    message: str
    field: str = ""


def check_conf(plugin: Plugin, raw: bytes) -> Finding | None:
    """``raw`` checked as the runner would at PrepareConf: ``parse_conf``, then ``needs``.
    None when the runner would accept it."""
    try:
        needs_of(plugin, plugin.parse_conf(raw))
    except OptionalPackageMissing as exc:
        return Finding("warning", f"not checked: {exc}", exc.field)
    except ConfError as exc:
        return Finding("problem", str(exc), exc.field)
    except Exception as exc:  # its message may quote the conf: the type only
        return Finding(
            "problem",
            f"its plugin raised {type(exc).__name__} (message not shown: it may quote the conf)",
        )
    return None


# -- a6-runner schema ---------------------------------------------------------------------------

SCHEMA_DESCRIPTION = (
    "Print the JSON Schema (draft 2020-12) of each plugin's conf: one NAME prints its schema, "
    "several (or none: every plugin) print an object of them by name, null for a plugin with "
    "no schema (a hand-written parse_conf without conf_schema)."
)
SCHEMA_EPILOG = """\
exit status:
  0  printed
  1  a NAME is not registered, or the one NAME has no schema
  2  bad arguments, or plugins that do not load"""


def schema_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        formatter_class=argparse.RawDescriptionHelpFormatter,
        prog="a6-runner schema",
        description=SCHEMA_DESCRIPTION,
        epilog=SCHEMA_EPILOG,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="plugins (default: every one)")
    add_plugin_options(parser)
    args = parser.parse_args(argv)
    try:
        registry = _registry(args)
    except PluginLoadError as exc:
        print(f"a6-runner schema: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    missing = [n for n in args.names if n not in registry]
    if missing:
        print(
            f"a6-runner schema: error: no plugin named {', '.join(map(repr, missing))} "
            f"(registered: {', '.join(sorted(registry)) or 'none'})",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    names = args.names or sorted(registry)
    schemas = {n: plugin_schema(registry[n].plugin) for n in names}
    without = [n for n, s in schemas.items() if s is None]
    if len(args.names) == 1:
        if without:
            print(f"a6-runner schema: {names[0]!r} has no schema{_NO_SCHEMA}", file=sys.stderr)
            return EXIT_PROBLEMS
        print(json.dumps(schemas[names[0]], indent=2))
        return EXIT_OK
    print(json.dumps(schemas, indent=2))
    if without:
        print(f"a6-runner schema: no schema: {', '.join(without)}{_NO_SCHEMA}", file=sys.stderr)
    return EXIT_OK


_NO_SCHEMA = " (its parse_conf is written by hand and it sets no conf_schema)"


def _registry(args: argparse.Namespace) -> dict[str, Any]:
    return build_registry(
        paths=args.plugins, bundled=not args.no_bundled, entry_points=not args.no_entry_points
    )


# -- a6-runner check-route ----------------------------------------------------------------------

CHECK_DESCRIPTION = (
    "Check the ext-plugin confs of APISIX routes before they are deployed: every "
    "ext-plugin-pre-req, ext-plugin-post-req and ext-plugin-post-resp conf entry must name a "
    "registered plugin and carry a JSON string that plugin accepts. FILE (or - for standard "
    "input) is a route object as sent to the Admin API, an Admin API list export (APISIX 3 "
    '{"list": [...]}, APISIX 2 {"node": {"nodes": [...]}}), or a standalone apisix.yaml '
    "(routes, services, plugin_configs, global_rules). No plugin is started and nothing is "
    "connected to."
)
CHECK_EPILOG = """\
Each problem is one line: where it is in FILE, the plugin, what is wrong (never a value).
A conf that needs an optional package not installed here (limit-count with policy redis
without the redis extra) is a warning: it could not be checked.

exit status:
  0  every conf entry is accepted (warnings allowed)
  1  problems were found
  2  FILE cannot be read or is not an APISIX document, bad arguments, or plugins that do
     not load"""


class DocumentError(Exception):
    """FILE cannot be read or holds no APISIX document we know (exit 2)."""


def read_document(path: str) -> Any:
    """FILE's JSON or YAML document. YAML needs PyYAML (``a6runner[yaml]``), imported
    only when the text is not JSON."""
    try:
        if path == "-":
            text = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                text = f.read()
    except OSError as exc:
        raise DocumentError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml
    except ImportError:
        raise DocumentError(
            f"{path} is not JSON, and reading YAML needs PyYAML: pip install 'a6runner[yaml]'"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:  # says where, and may quote a line: where only
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise DocumentError(f"{path} is neither JSON nor valid YAML{where}") from None


Path = list[str | int]


def _objects_with_plugins(node: Any, path: Path) -> Iterator[tuple[Path, Mapping[str, Any]]]:
    """Every object of the document that has a ``plugins`` object, with its path."""
    if isinstance(node, Mapping):
        plugins = node.get("plugins")
        if isinstance(plugins, Mapping):
            yield path, plugins
        for key, value in node.items():
            if key != "plugins" and isinstance(value, Mapping | list):
                yield from _objects_with_plugins(value, [*path, str(key)])
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects_with_plugins(value, [*path, i])


def _looks_like_apisix(document: Any) -> bool:
    if isinstance(document, list):
        return True
    if not isinstance(document, Mapping):
        return False
    known = ("plugins", "uri", "uris", "routes", "services", "plugin_configs", "global_rules")
    return any(k in document for k in (*known, "list", "node", "value"))


@dataclass(frozen=True)
class Report:
    path: str  # where the entry is, in the document
    plugin: str | None
    severity: str
    message: str
    field: str = ""

    def line(self) -> str:
        who = f" ({self.plugin})" if self.plugin else ""
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{prefix}{self.path}{who}: {self.message}"


def check_document(document: Any, plugins: Mapping[str, Plugin]) -> tuple[int, list[Report]]:
    """(how many conf entries were checked, what was found), in document order."""
    reports: list[Report] = []
    checked = 0
    for path, object_plugins in _objects_with_plugins(document, []):
        for ext in EXT_PLUGINS:
            if ext not in object_plugins:
                continue
            where = [*path, "plugins", ext]
            ext_conf = object_plugins[ext]
            if not isinstance(ext_conf, Mapping):
                reports.append(Report(format_path(where), None, "problem", "must be an object"))
                continue
            entries = ext_conf.get("conf", [])
            if not isinstance(entries, list):
                at = format_path([*where, "conf"])
                reports.append(Report(at, None, "problem", "must be a list of {name, value}"))
                continue
            for i, entry in enumerate(entries):
                checked += 1
                report = _check_entry(entry, format_path([*where, "conf", i]), plugins)
                if report is not None:
                    reports.append(report)
    return checked, reports


def _check_entry(entry: Any, at: str, plugins: Mapping[str, Plugin]) -> Report | None:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        return Report(at, None, "problem", 'must be an object with a "name" string')
    name = entry["name"]
    plugin = plugins.get(name)
    if plugin is None:
        import difflib  # (check-route only: never on a serving runner's import path)

        near = difflib.get_close_matches(name, list(plugins), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        return Report(at, name, "problem", f"no plugin with that name is registered{hint}")
    value = entry.get("value", "")
    if not isinstance(value, str):  # APISIX's schema: a string it sends as is
        return Report(at, name, "problem", "value must be a string of JSON (APISIX sends it as is)")
    finding = check_conf(plugin, value.encode("utf-8", "surrogatepass"))
    if finding is None:
        return None
    message = finding.message
    if finding.severity == "problem" and plugin.guard:
        message += f" (a guard: the runner would refuse every call with {plugin.guard_status})"
    return Report(at, name, finding.severity, message, finding.field)


def check_route_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        formatter_class=argparse.RawDescriptionHelpFormatter,
        prog="a6-runner check-route",
        description=CHECK_DESCRIPTION,
        epilog=CHECK_EPILOG,
    )
    parser.add_argument("file", metavar="FILE|-", help="the document to check (- reads stdin)")
    parser.add_argument("--json", action="store_true", help="print one JSON object, for CI")
    add_plugin_options(parser)
    args = parser.parse_args(argv)
    prog = "a6-runner check-route"
    try:
        document = read_document(args.file)
        if not _looks_like_apisix(document):
            raise DocumentError(
                f"{args.file} is not an APISIX route, Admin API export or apisix.yaml "
                "(expected an object with plugins, routes, list or node)"
            )
        registry = _registry(args)
    except DocumentError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PluginLoadError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    checked, reports = check_document(document, {n: r.plugin for n, r in registry.items()})
    problems = [r for r in reports if r.severity == "problem"]
    warnings = [r for r in reports if r.severity == "warning"]
    if args.json:
        print(
            json.dumps(
                {
                    "file": args.file,
                    "checked": checked,
                    "problems": [asdict(r) for r in problems],
                    "warnings": [asdict(r) for r in warnings],
                }
            )
        )
    else:
        for report in reports:
            print(report.line())
        summary = f"{checked} ext-plugin conf entries checked: {len(problems)} problems"
        if warnings:
            summary += f", {len(warnings)} warnings (not checked here)"
        if checked == 0:
            summary = f"nothing to check: no {', '.join(EXT_PLUGINS)} conf in {args.file}"
        print(f"{prog}: {summary}", file=sys.stderr)
    return EXIT_PROBLEMS if problems else EXIT_OK
