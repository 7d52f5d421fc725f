"""Error types. Each maps to one protocol error code in one place (the server's dispatcher).

The errors the kernels raise (``DecodeError``, ``FrameTooLarge``, ``ConfError`` and their
bases) are defined in ``a6native.errors``, a dependency-free module both kernel twins
import; they are re-exported here so that the runtime names one set of classes. The
runtime's own errors below subclass the same :class:`A6Error`.
"""

from a6native.errors import A6Error, ConfError, DecodeError, FrameTooLarge, ProtocolError


class ConfigError(A6Error):
    """A runner setting (environment variable, flag, socket path) is unusable: a startup
    error with a message, not a traceback."""


class PluginError(A6Error):
    """A plugin failed while handling a call (answered with SERVICE_UNAVAILABLE)."""


__all__ = [
    "A6Error",
    "ConfError",
    "ConfigError",
    "DecodeError",
    "FrameTooLarge",
    "PluginError",
    "ProtocolError",
]
