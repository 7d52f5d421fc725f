"""Error types. Each maps to one protocol error code in one place (the server's dispatcher).

This module has no dependencies: the compiled kernels import their exception types from
here so that both implementations raise the very same classes.
"""


class A6Error(Exception):
    """Base class of every error a6runner raises on purpose."""


class ProtocolError(A6Error, ValueError):
    """The peer sent something the protocol does not allow (answered with BAD_REQUEST)."""


class DecodeError(ProtocolError):
    """A frame payload is not a valid FlatBuffers buffer of the expected table.

    Raised by every ``decode_*`` function of both codec implementations for truncated,
    malformed or out-of-bounds input. It is the only exception they raise for bad bytes.
    """


class FrameTooLarge(ProtocolError):
    """A payload does not fit the 24-bit frame length (more than 16,777,215 bytes)."""


class ConfigError(A6Error):
    """A runner setting (environment variable, flag, socket path) is unusable: a startup
    error with a message, not a traceback."""


class ConfError(A6Error, ValueError):
    """A plugin rejected its configuration (the conf entry is logged and skipped)."""


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
        self.phase = phase
