"""Where the runner's log goes and what a line looks like.

By default one text line per event on stderr, which APISIX merges into its error log (in
reads of at most 3800 bytes, one error-log entry each). ``--log-file PATH`` makes the
runner write the file itself: opened with ``O_APPEND`` and written with one ``write()``
per record, so the supervisor and every worker of ``--workers N`` (each holding the file
open) append whole lines that never interleave; SIGUSR1 reopens it after logrotate moved
it. ``--log-format json`` writes one JSON object per line: ``time``, ``level``, ``pid``,
``worker``, ``message`` and, when the record carries them, ``event``, ``plugin``,
``token``, ``call``, ``error`` and ``exception``/``traceback`` (its newlines escaped, so a
traceback stays on its line, cut to keep the line under 3800 bytes); the per-call debug
line adds ``type``, ``plugins``, ``outcome``, ``asked`` and ``duration_ms``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from typing import Any

from ._errors import CallTimeout, ConfigError, PluginError
from ._paths import path_error

LOGGER = "a6runner"
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s a6runner[%(process)d] %(levelname)s %(message)s"
# APISIX logs what it reads from the runner's stdout/stderr in pieces of at most 3800 bytes:
# a JSON line longer than that would be cut in two entries, neither of them valid JSON.
MAX_LINE = 3800
# The fields a record may carry (``extra=``) that a JSON line shows, in this order (the
# last five: the per-call debug line, _observe.Observer._debug_line).
FIELDS = (
    "event",
    "plugin",
    "token",
    "call",
    "error",
    "type",
    "plugins",
    "outcome",
    "asked",
    "duration_ms",
)

CUT = " ... (cut)"
CUT_FRAMES = "  ... (older frames cut)"

_process_label = "runner"  # "supervisor", "worker 1": what the json ``worker`` field says


def set_process_label(label: str) -> None:
    """Name this process in JSON lines (a record's own ``worker`` field wins)."""
    global _process_label
    _process_label = label


class AppendFileHandler(logging.Handler):
    """Writes each record as one ``write()`` to a file opened with O_APPEND: processes
    sharing the file append whole lines. ``reopen()`` opens the path again (logrotate)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._fd = self._open()

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise path_error(exc, self.path, "the log file", "pass another --log-file") from None

    def reopen(self) -> None:
        """Open the path again (a new file if logrotate moved the old one away); on failure
        keep writing to the file already open, and say why."""
        try:
            fd = self._open()
        except ConfigError as exc:
            logging.getLogger(LOGGER).error("log file not reopened: %s", exc)
            return
        self.acquire()  # logging's own lock: emit() runs under it, and fork resets it
        try:
            old, self._fd = self._fd, fd
        finally:
            self.release()
        os.close(old)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            view = memoryview(data)  # handle() holds self.lock: one record at a time
            while view:  # a regular file takes it in one write; the loop is for the odd case
                view = view[os.write(self._fd, view) :]
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.acquire()
        try:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        finally:
            self.release()
        super().close()


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line of at most MAX_LINE bytes."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "pid": record.process,
            "worker": getattr(record, "worker", _process_label),
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        exc = record.exc_info[1] if record.exc_info else None
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in (exc, *args):  # the chain logs its PluginError / CallTimeout as an arg
            if isinstance(arg, (PluginError, CallTimeout)) and arg.plugin:
                line.setdefault("plugin", arg.plugin)
                if isinstance(arg, PluginError):
                    line.setdefault("phase", arg.phase)
                break
        if exc is not None:
            if isinstance(exc, PluginError):
                exc = exc.__cause__ or exc
            line["exception"] = f"{type(exc).__name__}: {exc}"
            line["traceback"] = "".join(traceback.format_exception(exc)).rstrip("\n")
        return _fit(line)


def _dumps(line: Any) -> str:
    return json.dumps(line, ensure_ascii=False, default=str)


def _fit(line: dict[str, Any]) -> str:
    """The line as JSON, shortened to MAX_LINE bytes: the traceback loses its oldest frames
    first (its last lines say where it failed), then the longest texts are cut."""
    text = _dumps(line)
    over = len(text.encode()) - MAX_LINE
    if over > 0:  # a long message or exception leaves room for the traceback's last lines
        for name, share in (("message", MAX_LINE // 4), ("exception", MAX_LINE // 8)):
            value = line.get(name)
            if isinstance(value, str) and len(value) > share:
                line[name] = value[:share] + CUT
        text = _dumps(line)
        over = len(text.encode()) - MAX_LINE
    tb = line.get("traceback")
    if over > 0 and tb is not None:
        first, *frames = tb.split("\n")
        last = frames.pop() if frames else ""
        over += len(_dumps(CUT_FRAMES).encode())
        while frames and over > 0:  # each line costs its escaped text and a 2-byte "\n"
            over -= len(_dumps(frames.pop(0)).encode())
        line["traceback"] = "\n".join([first, CUT_FRAMES, *frames, last])
        text = _dumps(line)
        over = len(text.encode()) - MAX_LINE
    for name in ("traceback", "message", "exception"):
        value = line.get(name)
        if over > 0 and isinstance(value, str):
            # a character is at least one byte of JSON: cutting `over` of them is enough
            line[name] = value[: max(0, len(value) - over - len(CUT))] + CUT
            text = _dumps(line)
            over = len(text.encode()) - MAX_LINE
    return text


def setup_logging(
    level: str = "info", log_file: str | None = None, log_format: str = "text"
) -> None:
    """The ``a6runner`` loggers at ``level``, to ``log_file`` (stderr when None), as
    ``log_format`` lines (``text`` or ``json``)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"unknown log level {level!r} (debug, info, warning or error)")
    if log_format not in FORMATS:
        raise ConfigError(f"unknown log format {log_format!r} (text or json)")
    handler: logging.Handler = (
        logging.StreamHandler(sys.stderr) if log_file is None else AppendFileHandler(log_file)
    )
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger(LOGGER)
    for old in root.handlers:
        if isinstance(old, AppendFileHandler):
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    root.propagate = False


def reopen_log_file() -> None:
    """SIGUSR1: reopen the log file, if the log goes to one (logrotate's postrotate)."""
    for handler in logging.getLogger(LOGGER).handlers:
        if isinstance(handler, AppendFileHandler):
            handler.reopen()
            logging.getLogger(LOGGER).info("log file %s reopened", handler.path)
