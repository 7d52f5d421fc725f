"""``a6-runner call``: curl for the runner.

Sends one PrepareConf and one HTTPReqCall (or, with ``--response``, one HTTPRespCall) to a
runner, answers its ExtraInfo questions from ``--var`` and ``--body``, and prints the
decoded answer. The runner is the one at ``--sock`` / ``--listen``, or, without them, one
started in this process with the plugins ``a6-runner run`` would load. Built on
``a6runner.testing`` (``Client`` and its ``ClientProtocol``); ``a6-runner run`` never
imports this module.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._plugin import METHODS, Plugin
from ._registry import PluginLoadError, add_plugin_options, build_registry

if TYPE_CHECKING:
    from .testing import Reply

EXIT_ANSWERED = 0
EXIT_ERROR_REPLY = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

DESCRIPTION = "Send one call to a plugin runner and print its answer (curl for the runner)."
EPILOG = """\
examples:
  a6-runner call say --conf '{"body": "hello"}'
  a6-runner call request-validation --conf @conf.json -H 'Content-Type: application/json' \\
      --var content_type=application/json --body '{"name": "ada"}'
  a6-runner call --route-conf '[{"name": "say", "value": "{\\"body\\": \\"hi\\"}"}]'
  a6-runner call response-rewrite --conf '{"status": 201}' --response --body upstream
  a6-runner call say --sock /tmp/runner.sock --json

JSON|@FILE|@- arguments take the text itself, a file's content, or standard input.

exit status:
  0  the runner answered the call (any action)
  1  the runner answered with an error (PrepareConf or the call), or the call was not
     made: a plugin it names is not served, or its conf is refused (checked first, with
     --sock against the plugins installed here: stderr says what was checked)
  2  bad arguments or input, or plugins that do not load
  3  no runner to talk to: nothing at the socket, connection closed, or no answer in time
"""

ERROR_HINTS = {
    "BAD_REQUEST": "the runner could not decode the call",
    "SERVICE_UNAVAILABLE": "a plugin raised or the runner failed (see the runner's log); "
    "APISIX answers 503, or lets the request through with allow_degradation",
    "CONF_TOKEN_NOT_FOUND": "the runner does not know the token (expired, or it restarted)",
}
BODY_SHOWN = 4096  # bytes of a body the text output shows (--json shows everything)


class UsageError(Exception):
    """A flag or an input the call cannot be made with; the message says what to do."""


# -- arguments ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="a6-runner call",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("plugin", nargs="?", metavar="PLUGIN", help="the plugin to call")
    p.add_argument(
        "--conf", metavar="JSON|@FILE", help="the plugin's conf, as in a route (default: {})"
    )
    p.add_argument(
        "--route-conf",
        metavar="JSON|@FILE",
        help='instead of PLUGIN: a route\'s ext-plugin conf list, [{"name": ..., "value": ...}, '
        '...], or the object holding it ({"conf": [...]})',
    )
    p.add_argument("--key", help="the PrepareConf key (APISIX sends the route's)")

    runner = p.add_argument_group(
        "the runner", "default: one started in this process, with the plugins `run` would load"
    )
    runner.add_argument("--sock", metavar="PATH", help="a running runner's socket")
    runner.add_argument("--listen", metavar="unix:PATH", help="the same, spelled as for `run`")
    runner.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="default 10")
    add_plugin_options(runner)

    call = p.add_argument_group("the call")
    call.add_argument(
        "--response",
        action="store_true",
        help="send an HTTPRespCall (the response phase) instead of an HTTPReqCall",
    )
    call.add_argument(
        "-X",
        "--method",
        type=str.upper,
        choices=METHODS,
        metavar="METHOD",
        help=f"{', '.join(METHODS[:5])}, ... (default GET)",
    )
    call.add_argument("--path", help="the request path, without query string (default /)")
    call.add_argument(
        "-a", "--arg", action="append", default=[], metavar="NAME[=VALUE]", help="a query arg"
    )
    call.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header (with --response: an upstream response header); "
        "replaces the default of that name",
    )
    call.add_argument("--src-ip", metavar="ADDRESS", help="the client address (default 127.0.0.1)")
    call.add_argument(
        "--status",
        type=int,
        metavar="CODE",
        help="with --response: the upstream status (default 200)",
    )
    call.add_argument(
        "-d",
        "--body",
        metavar="TEXT|@FILE",
        help="the request body (with --response: the upstream body), sent when the runner "
        "asks for it",
    )
    call.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an nginx variable, sent when the runner asks for it (others are missing)",
    )
    p.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    return p


def _text(value: str, flag: str) -> bytes:
    """``value``, or with ``@`` the content of a file (``@-``: standard input)."""
    if not value.startswith("@"):
        return value.encode("utf-8", "surrogateescape")
    path = value[1:]
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"{flag} {value}: cannot read {path}: {exc.strerror}") from None


def _json(value: str, flag: str) -> Any:
    raw = _text(value, flag)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{flag}: not valid JSON ({exc})") from None


def conf_entries(args: argparse.Namespace) -> list[tuple[str, str | bytes]]:
    """The PrepareConf list from PLUGIN [--conf] or --route-conf."""
    if args.route_conf is not None:
        if args.plugin is not None or args.conf is not None:
            raise UsageError("give either PLUGIN [--conf JSON] or --route-conf, not both")
        route = _json(args.route_conf, "--route-conf")
        if isinstance(route, dict) and "conf" in route:
            route = route["conf"]
        if not isinstance(route, list) or not route:
            raise UsageError(
                '--route-conf: expected a non-empty list [{"name": ..., "value": ...}, ...]'
            )
        entries: list[tuple[str, str | bytes]] = []
        for i, entry in enumerate(route):
            if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)):
                raise UsageError(f'--route-conf: entry {i} has no "name" string')
            value = entry.get("value", "{}")
            entries.append((entry["name"], value if isinstance(value, str) else json.dumps(value)))
        return entries
    if args.plugin is None:
        raise UsageError("name the plugin to call (a6-runner call PLUGIN) or give --route-conf")
    return [(args.plugin, b"{}" if args.conf is None else _text(args.conf, "--conf"))]


def _pairs(values: Sequence[str], flag: str, sep: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for item in values:
        name, found, value = item.partition(sep)
        if not name.strip():
            raise UsageError(f"{flag} {item!r}: no name")
        if sep == ":":
            if not found:
                raise UsageError(f"{flag} {item!r}: expected 'Name: value'")
            out.append((name.strip(), value.strip()))
        else:
            out.append((name, value if found else None))
    return out


def _merge_headers(
    defaults: Sequence[tuple[str, str | bytes | None]], given: list[tuple[str, str | None]]
) -> list[tuple[str, str | bytes | None]]:
    """The given headers, after the defaults whose names they do not use."""
    names = {n.lower() for n, _ in given}
    return [(n, v) for n, v in defaults if n.lower() not in names] + list(given)


def call_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for Client.http_req_call / http_resp_call."""
    from .testing import DEFAULT_HEADERS

    body = None if args.body is None else _text(args.body, "--body")
    vars: dict[str, str | bytes | None] = {}
    for name, value in _pairs(args.var, "--var", "="):
        if value is None:
            raise UsageError(f"--var {name!r}: expected NAME=VALUE")
        vars[name] = value
    headers = _pairs(args.header, "--header", ":")
    if args.response:
        request_only = [
            flag
            for flag, value in (
                ("--method", args.method),
                ("--path", args.path),
                ("--arg", args.arg),
                ("--src-ip", args.src_ip),
            )
            if value
        ]
        if request_only:
            raise UsageError(
                f"{', '.join(request_only)}: only for the request phase (drop it or --response)"
            )
        return {
            "status": 200 if args.status is None else args.status,
            "headers": _merge_headers((("content-type", "text/plain"),), headers),
            "body": body,
            "vars": vars,
        }
    if args.status is not None:
        raise UsageError("--status is the upstream status: only with --response")
    if args.path is not None and not args.path.startswith("/"):
        raise UsageError(f"--path {args.path!r}: a path starts with /")
    return {
        "method": args.method or "GET",
        "path": args.path or "/",
        "args": _pairs(args.arg, "--arg", "="),
        "headers": _merge_headers(DEFAULT_HEADERS, headers),
        "src_ip": args.src_ip or "127.0.0.1",
        "vars": vars,
        "body": body,
    }


# -- the runner ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _runner(args: argparse.Namespace) -> Iterator[tuple[str, Mapping[str, Plugin] | None]]:
    """(socket path, the plugins it serves by name, or None when not known)."""
    if args.sock and args.listen:
        raise UsageError("give --sock PATH or --listen unix:PATH, not both")
    if (args.sock or args.listen) and (args.plugins or args.no_bundled or args.no_entry_points):
        raise UsageError(
            "--plugins/--no-bundled/--no-entry-points choose the plugins of a runner started "
            "here: drop them, or drop --sock/--listen"
        )
    if args.listen:
        if not args.listen.startswith("unix:") or len(args.listen) == len("unix:"):
            raise UsageError(f"--listen must be 'unix:/path/to/socket', got {args.listen!r}")
        yield args.listen[len("unix:") :], None
        return
    if args.sock:
        yield args.sock, None
        return
    from .testing import run_runner

    handler = logging.StreamHandler(sys.stderr)  # what the runner logs: skipped confs, errors
    handler.setFormatter(logging.Formatter("a6-runner call: runner %(levelname)s %(message)s"))
    logger = logging.getLogger("a6runner")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        with run_runner(
            paths=args.plugins, bundled=not args.no_bundled, entry_points=not args.no_entry_points
        ) as runner:
            yield runner.socket_path, runner.plugins
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _unreachable(path: str, exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return (
            f"no runner at {path} (no such file): start one with "
            f"`a6-runner run --listen unix:{path}`, or leave out --sock to start one here"
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing accepts connections at {path} (a socket left by a runner that stopped?)"
    if isinstance(exc, PermissionError):
        return f"cannot connect to {path}: permission denied (the socket's mode is too strict?)"
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"the runner at {path} did not answer in time (--timeout)"
    return f"the connection to the runner at {path} failed: {exc}"


# -- output -------------------------------------------------------------------------------------


def _body_json(body: bytes | None) -> dict[str, Any]:
    if body is None:
        return {"body": None}
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body": None, "body_base64": base64.b64encode(body).decode()}


def reply_json(phase: str, token: int, reply: Reply) -> dict[str, Any]:
    out: dict[str, Any] = {"phase": phase, "conf_token": token, "kind": reply.kind}
    if reply.kind == "error":
        out["error"] = reply.error
    else:
        out["id"] = reply.id
        if reply.kind == "http_req_call":
            out["action"] = reply.action
        out["status"] = reply.status
        out["headers"] = reply.headers
        if reply.kind == "http_req_call":
            out["path"] = reply.path
            out["args"] = reply.args
            out["resp_headers"] = reply.resp_headers
        out.update(_body_json(reply.body))
    out["asked"] = reply.asked
    out["round_trips"] = reply.round_trips
    return out


def _show_body(body: bytes) -> str:
    shown = body[:BODY_SHOWN].decode("utf-8", "backslashreplace")
    more = (
        f"; {len(body) - BODY_SHOWN} more not shown, --json prints all"
        if len(body) > BODY_SHOWN
        else ""
    )
    return f"{shown}  ({len(body)} bytes{more})"


def _entry(name: str, value: str | None, sep: str) -> str:
    return f"{name}{sep}{value}" if value is not None else f"{name} (removed)"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


INFO_LABELS = {"req_body": "request body", "resp_body": "response body"}


def format_reply(phase: str, sent: dict[str, Any], reply: Reply) -> str:
    """The answer, for a human: what the runner decided and what it changed."""
    frame = "HTTPRespCall" if phase == "response" else "HTTPReqCall"
    lines: list[str] = []

    def row(label: str, values: Sequence[str]) -> None:
        for i, value in enumerate(values):
            lines.append(f"  {label if i == 0 else '':<13} {value}")

    if reply.kind == "error":
        lines.append(f"{frame} -> error {reply.error}")
        row("meaning", [ERROR_HINTS.get(reply.error or "", "unknown error code")])
    elif phase == "request":
        action = reply.action
        what = {
            "none": "none (the request goes upstream unchanged)",
            "stop": "stop (APISIX answers the client with this)",
            "rewrite": "rewrite (the request goes upstream changed)",
        }.get(action or "", action or "?")
        lines.append(f"{frame} (id {reply.id}) -> {what}")
        if action == "stop":
            row("status", [str(reply.status) if reply.status else "0 (APISIX answers 200)"])
            row("headers", [f"{n}: {v}" for n, v in reply.headers])
            if reply.body:
                row("body", [_show_body(reply.body)])
        elif action == "rewrite":
            if reply.path is not None:
                row("path", [f"{sent['path']} -> {reply.path}"])
            row("headers", [_entry(n, v, ": ") for n, v in reply.headers])
            row("args", [_entry(n, v, "=") for n, v in reply.args])
            row("resp headers", [f"{n}: {v}" for n, v in reply.resp_headers])
            if reply.body:
                row("body", [_show_body(reply.body)])
    else:
        changed = reply.status or reply.headers or reply.body is not None
        lines.append(f"{frame} (id {reply.id}) -> {'changed' if changed else 'unchanged'}")
        if reply.status:
            row("status", [f"{sent['status']} -> {reply.status}"])
        if reply.headers:
            row(
                "headers",
                ["(replace the upstream's)", *_header_diff(sent["headers"], reply.headers)],
            )
        if reply.body is not None:
            row("body", [_show_body(reply.body)])
    if reply.asked:
        asked = ", ".join(
            f"var {name}" if kind == "var" else INFO_LABELS.get(kind, kind)
            for kind, name in reply.asked
        )
        trips = _plural(reply.round_trips, "round trip")
        row("ExtraInfo", [f"{asked}  ({len(reply.asked)} asked, {trips})"])
    return "\n".join(lines)


def _header_diff(
    before: Sequence[tuple[str, Any]], after: Sequence[tuple[str, str | None]]
) -> list[str]:
    """+ added, ~ changed, - dropped, = kept (names compared case-insensitively)."""
    old: dict[str, list[Any]] = {}
    for n, v in before:
        old.setdefault(n.lower(), []).append(v)
    new: dict[str, list[str | None]] = {}
    for n, v in after:
        new.setdefault(n.lower(), []).append(v)
    out = []
    for n, v in after:
        was = old.get(n.lower())
        mark = "+" if was is None else ("=" if was == new[n.lower()] else "~")
        out.append(f"{mark} {n}: {v}")
    out.extend(f"- {n}" for n, _ in before if n.lower() not in new)
    return out


# -- the command ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from .testing import Client

    try:
        conf = conf_entries(args)
        options = call_options(args)
        with _runner(args) as (path, served):
            refused = _refused(conf, served, path)
            if refused is not None:
                print(f"a6-runner call: error: {refused}", file=sys.stderr)
                return EXIT_ERROR_REPLY
            phase = "response" if args.response else "request"
            try:
                with Client(path, args.timeout) as apisix:
                    try:
                        token = apisix.prepare_conf(conf, args.key)
                    except RuntimeError as exc:
                        print(f"a6-runner call: {exc}", file=sys.stderr)
                        return EXIT_ERROR_REPLY
                    if args.response:
                        reply = apisix.http_resp_call(token, **options)
                    else:
                        reply = apisix.http_req_call(token, **options)
            except OSError as exc:
                print(f"a6-runner call: error: {_unreachable(path, exc)}", file=sys.stderr)
                return EXIT_UNREACHABLE
    except UsageError as exc:
        print(f"a6-runner call: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PluginLoadError as exc:
        print(f"a6-runner call: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(reply_json(phase, token, reply)))
    else:
        print(format_reply(phase, options, reply))
    return EXIT_ERROR_REPLY if reply.kind == "error" else EXIT_ANSWERED


def _refused(
    conf: Sequence[tuple[str, str | bytes]], served: Mapping[str, Plugin] | None, path: str
) -> str | None:
    """Why the call is not worth making: a conf entry names no plugin the runner serves,
    or its plugin refuses the conf (as PrepareConf would, which still answers a token).
    For a runner elsewhere (``served`` None) the conf is checked against the plugins
    installed here, and stderr says so."""
    from ._conf_tools import check_conf

    remote = served is None
    if served is None:
        try:
            served = {n: r.plugin for n, r in build_registry().items()}
        except PluginLoadError as exc:
            print(f"a6-runner call: the conf was not checked here: {exc}", file=sys.stderr)
            return None
    checked, absent = [], []
    for name, raw in conf:
        plugin = served.get(name)
        if plugin is None:
            if remote:
                absent.append(name)
                continue
            return (
                f"no plugin named {name!r} in this runner (it serves "
                f"{', '.join(sorted(served)) or 'none'}): load yours with --plugins PATH|MODULE"
            )
        finding = check_conf(plugin, raw.encode() if isinstance(raw, str) else raw)
        if finding is not None and finding.severity == "problem":
            outcome = (
                f"every call with it is refused with {plugin.guard_status} ({name!r} is a guard)"
                if plugin.guard
                else "the runner skips that entry"
            )
            return f"the conf of {name!r} is refused: {finding.message}; {outcome}"
        checked.append(name if finding is None else f"{name} ({finding.message})")
    if remote:
        said = f"checked here first: {', '.join(checked)} accepted" if checked else ""
        if absent:
            not_here = f"not installed here, not checked: {', '.join(absent)}"
            said = f"{said}; {not_here}" if said else not_here
        print(f"a6-runner call: conf {said} (the runner at {path} decides)", file=sys.stderr)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
