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


class PluginError(A6Error):
    """A plugin failed while handling a call (answered with SERVICE_UNAVAILABLE)."""
