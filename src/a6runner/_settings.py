"""Runner settings: what APISIX passes in the environment, what flags override, defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ._errors import ConfigError

DEFAULT_CONF_EXPIRE_TIME = 3600.0
CONF_TTL_FACTOR = 1.2  # keep confs a bit longer than APISIX caches their tokens
DEFAULT_SOCKET_MODE = 0o766  # APISIX workers often run as nobody: they must connect


def parse_listen_address(value: str, source: str = "APISIX_LISTEN_ADDRESS") -> str:
    """The socket path from ``unix:/path``; ConfigError names ``source`` otherwise."""
    if not value.startswith("unix:") or len(value) <= len("unix:"):
        raise ConfigError(f"{source} must be 'unix:/path/to/socket', got {value!r}")
    return value[len("unix:") :]


def parse_conf_expire_time(value: str, source: str = "APISIX_CONF_EXPIRE_TIME") -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{source} must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise ConfigError(f"{source} must be positive, got {value!r}")
    return seconds


@dataclass
class Settings:
    socket_path: str
    conf_expire_time: float = DEFAULT_CONF_EXPIRE_TIME
    socket_mode: int = DEFAULT_SOCKET_MODE
    workers: int = 1
    loop: str = "auto"  # auto | uvloop | asyncio

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
        if conf_expire_time is None:
            raw = env.get("APISIX_CONF_EXPIRE_TIME")
            conf_expire_time = (
                parse_conf_expire_time(raw) if raw is not None else DEFAULT_CONF_EXPIRE_TIME
            )
        return cls(socket_path=path, conf_expire_time=conf_expire_time)
