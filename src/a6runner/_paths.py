"""Startup errors about a path (the socket, the log file) that say what is wrong with it
and what to do, instead of a bare ``[Errno 2] No such file or directory``."""

from __future__ import annotations

import errno
import os

from ._errors import ConfigError

# The longest path a unix socket address holds on Linux (sun_path is 108 bytes, NUL included).
MAX_SOCKET_PATH = 107


def _user() -> str:
    uid = os.geteuid()
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _missing_folder(path: str) -> str:
    """The first folder on the way to ``path`` that does not exist (or ``path``'s own)."""
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(os.path.dirname(folder)) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


def path_error(exc: OSError, path: str, what: str, hint: str) -> ConfigError:
    """A ConfigError for ``exc``, raised while creating ``what`` at ``path``; ``hint`` says
    how to choose another path (the flag and the variable)."""
    folder = os.path.dirname(os.path.abspath(path))
    if exc.errno == errno.ENOENT:
        why = f"the folder {_missing_folder(path)} does not exist: create it, or {hint}"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        why = (
            f"permission denied: {_user()} may not create files in {folder}: run the runner "
            f"as a user who may, or {hint}"
        )
    elif exc.errno == errno.ENOTDIR:
        why = f"a part of {folder} is a file, not a folder: {hint}"
    elif exc.errno == errno.EROFS:
        why = f"{folder} is on a read-only file system: {hint}"
    elif exc.errno == errno.EISDIR:
        why = f"{path} is a folder: name a file in it, or {hint}"
    else:
        why = f"{exc.strerror or exc}: {hint}"
    return ConfigError(f"cannot create {what} {path}: {why}")


def socket_path_error(exc: OSError, path: str) -> ConfigError:
    """Why the listening socket could not be created at ``path``."""
    hint = "pass another --listen unix:PATH (or APISIX_LISTEN_ADDRESS)"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        return ConfigError(
            f"cannot create the socket {path}: the path is {len(os.fsencode(path))} bytes and "
            f"a unix socket path holds at most {MAX_SOCKET_PATH}: {hint} with a shorter path"
        )
    return path_error(exc, path, "the socket", hint)
