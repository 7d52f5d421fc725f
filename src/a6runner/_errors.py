"""Error types. Each maps to one protocol error code in one place (``_chain.error_frame``).

The errors the kernels raise (``DecodeError``, ``FrameTooLarge``, ``ConfError`` and their
bases) are defined in ``a6native.errors``, a dependency-free module both kernel twins
import; they are re-exported here so that the runtime names one set of classes. The
runtime's own errors below subclass the same :class:`A6Error`.
"""

from a6native.errors import A6Error, ConfError, DecodeError, FrameTooLarge, ProtocolError


class OptionalPackageMissing(ConfError):
    """A conf asks for a feature whose optional package is not installed (limit-count with
    ``policy: redis`` without the redis extra): a conf error for the runner, a warning for
    ``a6-runner check-route``, which checks confs for another machine."""

    def __init__(self, package: str, install: str, problem: str) -> None:
        super().__init__(problem)
        self.package = package  # the module that is missing, e.g. "redis"
        self.install = install  # what installs it, e.g. "pip install 'a6runner[redis]'"


class ConfigError(A6Error):
    """A runner setting (environment variable, flag, socket path) is unusable: a startup
    error with a message, not a traceback."""


class UnexpectedFrame(ProtocolError):
    """A frame of a type the runner does not accept at this point (answered BAD_REQUEST)."""

    def __init__(self, frame_type: int, length: int) -> None:
        super().__init__(f"unexpected frame type {frame_type} ({length} bytes)")
        self.frame_type = frame_type


class ConfTokenNotFound(A6Error):
    """A call named a conf token this runner does not hold (never issued, or expired):
    answered CONF_TOKEN_NOT_FOUND, and APISIX prepares the conf again."""

    def __init__(self, token: int) -> None:
        super().__init__(f"conf token {token} not found")
        self.token = token


class CallTimeout(A6Error):
    """A call outlived the call timeout (``--call-timeout``): the plugin still running is
    cancelled and the call answered SERVICE_UNAVAILABLE."""

    def __init__(self, plugin: str | None, timeout: float) -> None:
        where = f" in plugin {plugin!r}" if plugin else ""
        super().__init__(f"call still running{where} after the {timeout:g}s call timeout")
        self.plugin = plugin


class PeerClosed(ConnectionError):
    """APISIX closed the connection while a call was waiting for ExtraInfo."""


class PluginError(A6Error):
    """A plugin failed while handling a call: the runner wraps what the plugin raised (its
    ``__cause__``) with the plugin's name and phase, logs it once and answers
    SERVICE_UNAVAILABLE for that call only."""

    def __init__(self, plugin: str, phase: str, cause: BaseException) -> None:
        super().__init__(f"plugin {plugin!r} {phase} filter raised {type(cause).__name__}")
        self.plugin = plugin
        """The plugin's name."""
        self.phase = phase
        """``"request"`` or ``"response"``."""


__all__ = [
    "A6Error",
    "CallTimeout",
    "ConfError",
    "ConfTokenNotFound",
    "ConfigError",
    "DecodeError",
    "FrameTooLarge",
    "OptionalPackageMissing",
    "PeerClosed",
    "PluginError",
    "ProtocolError",
    "UnexpectedFrame",
]
