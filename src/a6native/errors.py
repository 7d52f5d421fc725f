"""The exception types the kernels raise, shared by both twins of every kernel.

Pure Python with no imports, so that the compiled kernels (``a6native.codec``,
``a6native.bodyrewrite``) and their pure twins in ``a6runner`` raise the very same classes
without importing the runtime: importing ``a6runner`` would start the whole runner package
(and used to make a cycle through ``a6runner/__init__.py``). The same place msgpack's
``exceptions.py`` has. ``a6runner`` re-exports these classes (``a6runner.DecodeError is
a6native.errors.DecodeError``) and defines its runtime errors (``ConfigError``,
``PluginError``) on :class:`A6Error`.
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


class ConfError(A6Error, ValueError):
    """A plugin rejected its configuration (the conf entry is logged and skipped).

    Here rather than with the runtime errors because a kernel raises it too: the body
    rewriter's filter compiler rejects a bad filter with it.
    """
