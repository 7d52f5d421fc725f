"""Runner settings: what APISIX passes in the environment, what flags override, defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ._errors import ConfigError

DEFAULT_CONF_EXPIRE_TIME = 3600.0
CONF_TTL_FACTOR = 1.2  # keep confs a bit longer than APISIX caches their tokens
DEFAULT_SOCKET_MODE = 0o766  # APISIX workers often run as nobody: they must connect
# APISIX reads a call's answer with a 60 s timeout: give up on a call just before it does.
DEFAULT_CALL_TIMEOUT = 56.0
# Bytes held for connections, per serving process: frames may take half, replies the rest.
DEFAULT_MEMORY = 256 << 20
# APISIX writes a whole frame at once: one that stops arriving this many seconds is stalled.
DEFAULT_FRAME_TIMEOUT = 5.0
DEFAULT_STALL_WARNING = 0.1  # seconds a filter may block the event loop before a warning
MAX_BUSY_POLL = 0.01  # --busy-poll: at most 10 ms of polling after each read
UNKNOWN_PLUGINS = ("skip", "refuse")  # --unknown-plugins


def parse_listen_address(value: str, source: str = "APISIX_LISTEN_ADDRESS") -> str:
    """The socket path from ``unix:/path``; ConfigError names ``source`` otherwise."""
    if not value.startswith("unix:") or len(value) <= len("unix:"):
        raise ConfigError(f"{source} must be 'unix:/path/to/socket', got {value!r}")
    return value[len("unix:") :]


def parse_group(value: str, source: str = "--socket-group") -> int:
    """A group name or numeric gid, as chgrp takes it."""
    import grp

    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        if value.isdigit():
            return int(value)
        raise ConfigError(f"{source}: no group named {value!r}") from None


def parse_conf_expire_time(value: str, source: str = "APISIX_CONF_EXPIRE_TIME") -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{source} must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise ConfigError(f"{source} must be positive, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Limits:
    """What one serving process allows a call and a connection, and how it waits for the
    next frame: each field is a flag of ``a6-runner run``, in seconds and bytes (the
    documentation's Hardening page says what happens at each limit)."""

    call_timeout: float = DEFAULT_CALL_TIMEOUT
    """``--call-timeout``: a call not answered after this many seconds is ended (0: no
    deadline). Default 56."""
    memory: int = DEFAULT_MEMORY
    """``--max-memory`` in bytes: everything held for connections may take this much in
    all. Frames arriving, queued or handed to a call until it ends may take half (beyond
    it, connections starting another frame wait, unread, for their turn); replies written
    but not read by the peer the rest (beyond it, the connection with the most is
    closed). Default 256 MiB."""
    stall_warning: float = DEFAULT_STALL_WARNING
    """``--stall-warning``: a filter blocking the event loop this many seconds is logged by
    name (0: no watchdog). Default 0.1."""
    busy_poll: float = 0.0
    """``--busy-poll`` in seconds (the flag is in microseconds): after each read, keep
    polling the sockets instead of sleeping until this long passes with nothing to read
    (0, the default: sleep at once)."""
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT
    """``--frame-timeout``: a frame that stops arriving part-way for this many seconds,
    while the runner reads its connection, closes that connection (0: never). Default 5."""


DEFAULT_LIMITS = Limits()


@dataclass
class Settings:
    socket_path: str
    conf_expire_time: float = DEFAULT_CONF_EXPIRE_TIME
    socket_mode: int = DEFAULT_SOCKET_MODE
    workers: int = 1
    loop: str = "auto"  # auto | uvloop | asyncio
    limits: Limits = DEFAULT_LIMITS
    socket_group: int | None = None  # gid the socket file is given (chgrp), if any
    # Exit when the process that started the runner (APISIX) exits.
    parent_watch: bool = True
    # Observability (docs/operations/monitoring.md): where /metrics and /healthz are served
    # ("HOST:PORT" or "unix:/path"; None: off), and OpenTelemetry spans (--otel).
    metrics: str | None = None
    otel: bool = False
    # A conf entry naming an unregistered plugin: "skip" it (as the reference runners do)
    # or "refuse" every call with that conf (--unknown-plugins).
    unknown_plugins: str = "skip"
    # Replace a worker whose own memory (USS) stays above this many bytes (None: never;
    # docs/operations/reload.md, "Recycling workers").
    max_worker_memory: int | None = None

    @property
    def conf_ttl(self) -> float:
        return self.conf_expire_time * CONF_TTL_FACTOR

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        listen: str | None = None,
        conf_expire_time: float | None = None,
    ) -> Settings:
        """Flags (``listen``, ``conf_expire_time``) override the variables APISIX sets."""
        if listen is not None:
            path = parse_listen_address(listen, "--listen")
        elif "APISIX_LISTEN_ADDRESS" in env:
            path = parse_listen_address(env["APISIX_LISTEN_ADDRESS"])
        else:
            raise ConfigError(
                "APISIX_LISTEN_ADDRESS is not set (APISIX sets it when it starts the runner; "
                "by hand, pass --listen unix:/tmp/runner.sock)"
            )
        if conf_expire_time is not None and not 0 < conf_expire_time < float("inf"):
            raise ConfigError(
                f"--conf-expire-time must be a positive number of seconds, got {conf_expire_time!r}"
            )
        if conf_expire_time is None:
            raw = env.get("APISIX_CONF_EXPIRE_TIME")
            conf_expire_time = (
                parse_conf_expire_time(raw) if raw is not None else DEFAULT_CONF_EXPIRE_TIME
            )
        return cls(socket_path=path, conf_expire_time=conf_expire_time)
