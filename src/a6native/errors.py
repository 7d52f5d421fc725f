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


_JSON_TYPES = {
    "str": "a string",
    "int": "a number",
    "float": "a number",
    "bool": "true/false",
    "list": "an array",
    "dict": "an object",
    "NoneType": "null",
}


class ConfError(A6Error, ValueError):
    """A plugin rejected its configuration: the runner logs the plugin's name with this
    error's ``field`` and ``problem`` and skips that entry. Conf values often carry secrets
    (header values, passwords) and the log ends up in APISIX's error.log, so the error holds
    no value: ``ConfError("headers.set", "must map header names to strings", got=value)``
    keeps only what *kind* of value it got ("got an array"), and
    ``ConfError("give exactly one of whitelist and blacklist")`` is a problem with the conf
    as a whole. Never format a conf value into ``field`` or ``problem``.

    Here rather than with the runtime errors because a kernel raises it too: the body
    rewriter's filter compiler rejects a bad filter with it.
    """

    field: str
    """The conf field at fault (``"headers.set"``); ``""`` for the conf as a whole."""
    problem: str
    """What is wrong with it (``"must map header names to strings"``)."""
    got: str | None
    """The kind of value the field had (``"an array"``), never the value; None if not given."""

    def __init__(self, field_or_problem: str, problem: str | None = None, **got: object) -> None:
        if problem is None:
            field, problem = "", field_or_problem
        else:
            field = field_or_problem
        if set(got) - {"got"}:
            raise TypeError(f"unexpected keyword arguments {sorted(set(got) - {'got'})}")
        self.field = field
        self.problem = problem
        # the kind of value only (its JSON type), never the value itself
        self.got = _JSON_TYPES.get(type(got["got"]).__name__, "another value") if got else None
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.field}: {self.problem}" if self.field else self.problem
        return f"{text} (got {self.got})" if self.got else text
