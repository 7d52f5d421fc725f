"""Typed confs: a plugin declares its conf as a type, the runner decodes and checks it.

Set ``conf_type`` on a plugin to a stdlib dataclass (or a ``msgspec.Struct`` or a pydantic
``BaseModel`` when you use those libraries) and the default ``parse_conf`` decodes the
route's JSON conf into an instance of it:

    @dataclass(frozen=True)
    class Conf:
        count: Annotated[int, Range(ge=1)]
        mode: Literal["fast", "safe"] = "safe"
        whitelist: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    class Limit(Plugin):
        name = "limit"
        conf_type = Conf

Decoding is strict: no ``"5"``, ``5.0`` or ``true`` for an int, no ``"yes"`` or ``1`` for a
bool, and a key the type does not declare rejects the conf (unless the dataclass is
decorated with ``ignore_unknown_fields``). Errors are ``ConfError``s built from the
field path and the kind of problem, never from a value: ``count: must be >= 1, got a
negative number``, ``whitelist[2]: not an IP address or CIDR``; a map's keys are shown as
``[…]`` (a header name can be a secret). ``conf_schema`` gives the type's JSON Schema.

Supported in dataclasses: ``str``, ``bytes`` (a JSON string, as UTF-8), ``int``, ``float``,
``bool``, ``None``, ``Any``, ``X | None`` and other unions, ``list[X]``, ``tuple[X, ...]``
and fixed tuples, ``set[X]``/``frozenset[X]``, ``dict[str, X]`` (and ``Sequence``,
``Mapping``), ``Literal[...]``, ``Enum`` subclasses, nested dataclasses, ``re.Pattern``
(compiled; a regex that does not compile rejects the conf), and the ``ipaddress`` address,
network and interface types (a network takes an address or a CIDR, host bits ignored;
surrounding spaces are ignored). Constraints are ``Annotated`` markers: ``Range``,
``Length``, ``Matches``. A dataclass's ``__post_init__`` may check across fields
and raise ``ConfError``; its field is put under the dataclass's own path.

Annotations are resolved at the first decode of a type, not at import: a plugin module may
import ``ipaddress`` only under ``TYPE_CHECKING`` (ipaddress costs every worker ~0.25 MiB;
it is loaded with the first conf that needs it).
"""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import enum
import importlib
import json
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from ._conf_json import KEY as _KEY
from ._conf_json import format_path, parse_json
from ._errors import ConfError

__all__ = [
    "JSON_SCHEMA_DIALECT",
    "Length",
    "Matches",
    "Range",
    "conf_schema",
    "decode_conf",
    "ignore_unknown_fields",
    "parse_json",
]

_T = TypeVar("_T")
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


# -- the markers ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Range:
    """``Annotated[int, Range(ge=1, le=10)]``: bounds of a number (``ge`` >=, ``gt`` >,
    ``le`` <=, ``lt`` <)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def bounds(self) -> str:
        """``in 1..10`` or ``>= 1`` or ``> 0 and < 1``: what the message says."""
        if self.ge is not None and self.le is not None and self.gt is None and self.lt is None:
            return f"in {_number(self.ge)}..{_number(self.le)}"
        parts = [
            f"{op} {_number(bound)}"
            for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if bound is not None
        ]
        return " and ".join(parts)

    def check(self, value: float) -> None:
        low = (self.ge is not None and value < self.ge) or (
            self.gt is not None and value <= self.gt
        )
        high = (self.le is not None and value > self.le) or (
            self.lt is not None and value >= self.lt
        )
        if low or high:
            if value < 0 and low:
                got = "a negative number"
            elif value == 0:
                got = "zero"
            else:
                got = "a smaller number" if low else "a larger number"
            raise _Invalid(f"must be {self.bounds()}, got {got}")


@dataclasses.dataclass(frozen=True, slots=True)
class Length:
    """``Annotated[str, Length(min=1, max=64)]``: how many characters a string (or bytes),
    items a list, or entries an object may have."""

    min: int | None = None
    max: int | None = None

    def check(self, value: Any) -> None:
        n = len(value)
        unit = (
            "characters"
            if isinstance(value, str)
            else "bytes"
            if isinstance(value, bytes)
            else "entries"
            if isinstance(value, dict)
            else "items"
        )
        if self.min is not None and n < self.min:
            if self.min == 1:
                noun = (
                    {"characters": "string", "bytes": "string", "entries": "object"}[unit]
                    if unit != "items"
                    else "list"
                )
                raise _Invalid(f"must be a non-empty {noun}")
            raise _Invalid(f"must have at least {self.min} {unit}, got fewer")
        if self.max is not None and n > self.max:
            raise _Invalid(f"must have at most {self.max} {unit}, got more")


@dataclasses.dataclass(frozen=True, slots=True)
class Matches:
    """``Annotated[str, Matches(r"[a-z][a-z0-9-]*", "a lowercase name")]``: the whole string
    must match the regex; the message says ``must be`` the description (``must match``
    the regex without one)."""

    pattern: str
    description: str | None = None

    def check(self, value: str) -> None:
        if _compiled(self.pattern).fullmatch(value) is None:
            if self.description:
                raise _Invalid(f"must be {self.description}")
            raise _Invalid(f"must match {self.pattern}")


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    found = _PATTERNS.get(pattern)
    if found is None:
        found = _PATTERNS[pattern] = re.compile(pattern)
    return found


def ignore_unknown_fields(cls: type[_T]) -> type[_T]:
    """Let this dataclass's conf objects carry keys it does not declare (they are dropped):
    for confs written for another runner or for APISIX's own plugin of the same name."""
    cls.__a6_ignore_unknown_fields__ = True  # type: ignore[attr-defined]
    return cls


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


# -- errors ---------------------------------------------------------------------------------

_NOTHING: Any = object()


class _Invalid(Exception):
    """A problem found at ``path`` (built on the way out); ``got`` is the value whose kind
    the message names (never the value itself); ``expected`` marks a type mismatch at this
    very place (a union tries its next member)."""

    def __init__(self, problem: str, got: Any = _NOTHING, *, expected: bool = False) -> None:
        self.problem = problem
        self.got = got
        self.expected = expected
        self.path: list[str | int] = []
        self.got_kind: str | None = None

    def at(self, part: str | int) -> _Invalid:
        self.path.append(part)
        return self

    def conf_error(self) -> ConfError:
        where = format_path(reversed(self.path))
        if self.got is _NOTHING:
            error = ConfError(where, self.problem)
        else:
            error = ConfError(where, self.problem, got=self.got)
        if self.got_kind is not None:  # from a ConfError a __post_init__ raised
            error.got = self.got_kind
            error.args = (str(error),)
        return error


def _mismatch(expects: str, value: Any) -> _Invalid:
    return _Invalid(f"must be {expects}", value, expected=True)


# -- decoding -------------------------------------------------------------------------------

_Converter = Callable[[Any], Any]
_CONVERTERS: dict[Any, _Converter] = {}


def decode_conf(conf_type: type[_T], raw: bytes) -> _T:
    """``raw`` (a route's JSON conf) decoded into ``conf_type``; ConfError when it does not
    fit. A ``msgspec.Struct`` or a pydantic ``BaseModel`` is decoded by its library (see
    ``_adapters``), with errors built the same way."""
    library = _library_of(conf_type)
    if library is not None:
        from . import _conf_adapters

        return cast(_T, _conf_adapters.decode(library, conf_type, raw))
    convert = _CONVERTERS.get(conf_type)
    if convert is None:
        convert = _converter(conf_type)
    document = parse_json(raw)
    if type(document) is not dict and dataclasses.is_dataclass(conf_type):
        raise ConfError("must be a JSON object", got=document)
    try:
        return cast(_T, convert(document))
    except _Invalid as exc:
        raise exc.conf_error() from None


def _library_of(conf_type: Any) -> str | None:
    """ "msgspec" or "pydantic" when ``conf_type`` is one of theirs, else None. Looks only at
    modules already imported: a type of theirs means its library is loaded."""
    if not isinstance(conf_type, type):
        return None
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(conf_type, msgspec.Struct):
        return "msgspec"
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(conf_type, pydantic.BaseModel):
        return "pydantic"
    return None


class _TypeNames(dict[str, Any]):
    """Names for resolving a dataclass's string annotations: its class namespace, then
    (when its module imported them only for type checkers) ``ipaddress`` and ``re``, then
    its module's globals."""

    def __missing__(self, key: str) -> Any:
        if key in ("ipaddress", "re"):
            return importlib.import_module(key)
        raise KeyError(key)


def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, localns=_TypeNames(vars(cls)), include_extras=True)
    except NameError as exc:
        raise TypeError(
            f"conf type {cls.__qualname__}: cannot resolve an annotation: {exc}"
        ) from None


def _converter(tp: Any) -> _Converter:
    """The function that turns a decoded JSON value into ``tp`` (cached per type);
    TypeError for a type this module does not support."""
    try:
        found = _CONVERTERS.get(tp)
    except TypeError:  # an Annotated with an unhashable marker (another library's)
        found = None
    if found is not None:
        return found
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        # a placeholder first: a dataclass may contain itself
        slot: list[_Converter] = []
        _CONVERTERS[tp] = lambda value: slot[0](value)
        try:
            slot.append(_dataclass_converter(tp))
        except BaseException:
            del _CONVERTERS[tp]
            raise
        _CONVERTERS[tp] = slot[0]
        return slot[0]
    made = _make_converter(tp)
    with contextlib.suppress(TypeError):  # an unhashable Annotated marker: not cached
        _CONVERTERS[tp] = made
    return made


def _expects(tp: Any) -> str:
    """What a value of ``tp`` must be, for messages: "a string", "one of "a", "b""..."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        inner, *markers = typing.get_args(tp)
        what = _expects(inner)
        if any(isinstance(m, Length) and m.min == 1 for m in markers):
            what = "a non-empty " + what.split(" ", 1)[1] if what.startswith("a") else what
        bounds = [m.bounds() for m in markers if isinstance(m, Range)]
        return " ".join([what, *bounds])  # "an integer in 1..10"
    if tp is type(None) or tp is None:
        return "null"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp in (str, bytes):
        return "a string"
    if origin is typing.Literal:
        return "one of " + ", ".join(json.dumps(v) for v in typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(json.dumps(m.value) for m in tp)
    if _is_union(tp):
        return " or ".join(dict.fromkeys(_expects(t) for t in typing.get_args(tp)))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        names = [f.name for f in dataclasses.fields(tp) if f.init]
        if not names:
            return "an object"
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and/or " + names[-1]
        return f"an object with {listed}"
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return "an object"
    if origin in _SEQUENCES or tp in _SEQUENCES:
        return "a list"
    return "a string"  # re.Pattern, ipaddress types


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Union or isinstance(tp, types.UnionType)


_SEQUENCES = (list, tuple, set, frozenset, typing.Sequence, collections.abc.Sequence)


def _make_converter(tp: Any) -> _Converter:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _annotated(args[0], args[1:])
    if tp is Any or tp is object:
        return _identity
    if tp is type(None) or tp is None:
        return _null
    if tp is bool:
        return _bool
    if tp is int:
        return _int
    if tp is float:
        return _float
    if tp is str:
        return _str
    if tp is bytes:
        return _bytes
    if origin is typing.Literal:
        return _choice(tp, {(type(v), v): v for v in args})
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _choice(tp, {(type(m.value), m.value): m for m in tp})
    if _is_union(tp):
        return _union(tp, args)
    if tp in (list, typing.Sequence, collections.abc.Sequence):
        return _sequence(Any, list)
    if origin in (list, collections.abc.Sequence):
        return _sequence(args[0], list)
    if origin in (set, frozenset):
        return _sequence(args[0], origin)
    if tp in (set, frozenset):
        return _sequence(Any, tp)
    if tp is tuple:
        return _sequence(Any, tuple)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _sequence(args[0], tuple)
        return _fixed_tuple(args)
    if tp in (dict, Mapping):
        return _mapping(str, Any)
    if origin in (dict, Mapping):
        return _mapping(args[0], args[1])
    if tp is re.Pattern or origin is re.Pattern:
        return _regex
    ip = _ip_converter(tp)
    if ip is not None:
        return ip
    raise TypeError(f"conf types cannot hold {tp!r} (see a6runner.confs for what they can)")


def _identity(value: Any) -> Any:
    return value


def _null(value: Any) -> None:
    if value is not None:
        raise _mismatch("null", value)


def _bool(value: Any) -> bool:
    if value is True or value is False:
        return value
    raise _mismatch("true or false", value)


def _int(value: Any) -> int:
    if type(value) is int:
        return value
    raise _mismatch("an integer", value)


def _float(value: Any) -> float:
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            raise _Invalid("must be a finite number")
        return cast(float, value)
    if kind is int:
        return float(value)
    raise _mismatch("a number", value)


def _str(value: Any) -> str:
    if type(value) is str:
        return value
    raise _mismatch("a string", value)


def _bytes(value: Any) -> bytes:
    if type(value) is not str:
        raise _mismatch("a string", value)
    try:
        return value.encode()
    except UnicodeEncodeError:
        raise _Invalid("must be valid Unicode text (it has a lone surrogate escape)") from None


def _regex(value: Any) -> re.Pattern[str]:
    if type(value) is not str:
        raise _mismatch("a string", value)
    try:
        return re.compile(value)
    except re.error as exc:  # its msg may quote a part of the pattern: the position only
        where = f" (at position {exc.pos})" if exc.pos is not None else ""
        raise _Invalid(f"is not a valid regular expression{where}") from None
    except (OverflowError, RecursionError, ValueError):
        raise _Invalid("is not a valid regular expression") from None


def _annotated(inner: Any, markers: tuple[Any, ...]) -> _Converter:
    convert = _converter(inner)
    checks: tuple[Callable[[Any], None], ...] = tuple(
        m.check for m in markers if isinstance(m, Range | Length | Matches)
    )
    if not checks:
        return convert
    message = f"must be {_expects(typing.Annotated[(inner, *markers)])}"

    def checked(value: Any) -> Any:
        try:
            result = convert(value)
        except _Invalid as exc:
            if exc.expected and not exc.path:
                exc.problem = message  # "a non-empty list", say
            raise
        # a bytes field's text is checked, as JSON Schema does (characters, not bytes)
        for check in checks:
            check(value if isinstance(value, str) and isinstance(result, bytes) else result)
        return result

    return checked


def _choice(tp: Any, allowed: dict[tuple[type, Any], Any]) -> _Converter:
    message = _expects(tp)

    def choose(value: Any) -> Any:
        try:
            return allowed[type(value), value]
        except (KeyError, TypeError):  # TypeError: an unhashable value (a list, an object)
            # "one of" lists the values: the kind of the rejected one adds nothing
            raise _Invalid(f"must be {message}", expected=True) from None

    return choose


def _union(tp: Any, members: tuple[Any, ...]) -> _Converter:
    nullable = type(None) in members
    others = [m for m in members if m is not type(None)]
    ip = _ip_converter(tp)
    if ip is not None:
        return ip
    if nullable and len(others) == 1:
        inner = _converter(others[0])
        message = _expects(tp)

        def optional(value: Any) -> Any:
            if value is None:
                return None
            try:
                return inner(value)
            except _Invalid as exc:
                if exc.expected and not exc.path:
                    exc.problem = f"must be {message}"
                raise

        return optional
    convs = [_converter(m) for m in others]
    message = _expects(tp)

    def one_of(value: Any) -> Any:
        if value is None and nullable:
            return None
        deeper: _Invalid | None = None
        for convert in convs:
            try:
                return convert(value)
            except _Invalid as exc:
                if deeper is None and not (exc.expected and not exc.path):
                    deeper = exc  # the value had this member's shape: its error says most
        if deeper is not None:
            raise deeper
        raise _mismatch(message, value)

    return one_of


def _sequence(item_type: Any, make: Callable[[Any], Any]) -> _Converter:
    item = _converter(item_type)
    plain = item is _identity

    def convert(value: Any) -> Any:
        if type(value) is not list:
            raise _mismatch("a list", value)
        if plain:
            return make(value)
        out = []
        for i, entry in enumerate(value):
            try:
                out.append(item(entry))
            except _Invalid as exc:
                raise exc.at(i) from None
        return make(out)

    return convert


def _fixed_tuple(item_types: tuple[Any, ...]) -> _Converter:
    items = [_converter(t) for t in item_types]
    n = len(items)
    message = f"a list of {n} items"

    def convert(value: Any) -> tuple[Any, ...]:
        if type(value) is not list:
            raise _mismatch(message, value)
        if len(value) != n:
            raise _Invalid(f"must be {message}, got {'fewer' if len(value) < n else 'more'}")
        out = []
        for i, (item, entry) in enumerate(zip(items, value, strict=True)):
            try:
                out.append(item(entry))
            except _Invalid as exc:
                raise exc.at(i) from None
        return tuple(out)

    return convert


def _mapping(key_type: Any, value_type: Any) -> _Converter:
    key = _converter(key_type)
    item = _converter(value_type)
    plain_key = key is _str or key is _identity

    def convert(value: Any) -> dict[Any, Any]:
        if type(value) is not dict:
            raise _mismatch("an object", value)
        out = {}
        for name, entry in value.items():
            try:
                k = name if plain_key else key(name)
            except _Invalid as exc:
                exc.problem = f"name {exc.problem}" if not exc.path else exc.problem
                exc.got = _NOTHING
                raise exc.at(_KEY) from None
            try:
                out[k] = item(entry)
            except _Invalid as exc:
                raise exc.at(_KEY) from None
        return out

    return convert


def _dataclass_converter(cls: type) -> _Converter:
    hints = _field_types(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    convs = []
    for f in fields:
        try:
            convs.append((f.name, _converter(hints[f.name])))
        except TypeError as exc:
            raise TypeError(f"conf type {cls.__qualname__}, field {f.name}: {exc}") from None
    required = frozenset(
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    names = frozenset(f.name for f in fields)
    strict = not getattr(cls, "__a6_ignore_unknown_fields__", False)
    message = _expects(cls)
    unknown = f"unknown keys (expected {', '.join(f.name for f in fields) or 'none'})"

    def convert(value: Any) -> Any:
        if type(value) is not dict:
            raise _mismatch(message, value)
        kwargs = {}
        for name, convert_field in convs:
            if name in value:
                try:
                    kwargs[name] = convert_field(value[name])
                except _Invalid as exc:
                    raise exc.at(name) from None
            elif name in required:
                raise _Invalid("is required").at(name)
        if strict and len(kwargs) != len(value) and not names.issuperset(value):
            raise _Invalid(unknown)
        try:
            return cls(**kwargs)
        except ConfError as exc:  # __post_init__: a check across fields, under our path
            raise _from_conf_error(exc) from None

    return convert


def _from_conf_error(exc: ConfError) -> _Invalid:
    invalid = _Invalid(exc.problem)
    invalid.path = [exc.field] if exc.field else []
    invalid.got_kind = exc.got
    return invalid


def _ip_converter(tp: Any) -> _Converter | None:
    """address, network and interface types of ``ipaddress`` (alone or a v4 | v6 union)."""
    members = set(typing.get_args(tp)) if _is_union(tp) else {tp}
    members.discard(type(None))
    nullable = _is_union(tp) and type(None) in typing.get_args(tp)
    ipaddress = sys.modules.get("ipaddress")
    if (
        ipaddress is None
        or not members
        or not all(isinstance(m, type) and m.__module__ == "ipaddress" for m in members)
    ):
        return None
    families = {
        frozenset({ipaddress.IPv4Address, ipaddress.IPv6Address}): (
            ipaddress.ip_address,
            "an IP address",
        ),
        frozenset({ipaddress.IPv4Network, ipaddress.IPv6Network}): (
            lambda s: ipaddress.ip_network(s, strict=False),
            "an IP address or CIDR",
        ),
        frozenset({ipaddress.IPv4Interface, ipaddress.IPv6Interface}): (
            ipaddress.ip_interface,
            "an IP interface (address/prefix)",
        ),
        frozenset({ipaddress.IPv4Address}): (ipaddress.IPv4Address, "an IPv4 address"),
        frozenset({ipaddress.IPv6Address}): (ipaddress.IPv6Address, "an IPv6 address"),
        frozenset({ipaddress.IPv4Network}): (
            lambda s: ipaddress.IPv4Network(s, strict=False),
            "an IPv4 address or CIDR",
        ),
        frozenset({ipaddress.IPv6Network}): (
            lambda s: ipaddress.IPv6Network(s, strict=False),
            "an IPv6 address or CIDR",
        ),
        frozenset({ipaddress.IPv4Interface}): (ipaddress.IPv4Interface, "an IPv4 interface"),
        frozenset({ipaddress.IPv6Interface}): (ipaddress.IPv6Interface, "an IPv6 interface"),
    }
    found = families.get(frozenset(members))
    if found is None:
        return None
    parse, what = found

    def convert(value: Any) -> Any:
        if value is None and nullable:
            return None
        if type(value) is not str:
            raise _mismatch("a string" + (" or null" if nullable else ""), value)
        try:
            return parse(value.strip())
        except ValueError:
            raise _Invalid(f"not {what}") from None

    return convert


# -- JSON Schema ----------------------------------------------------------------------------


def conf_schema(conf_type: Any, title: str | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``conf_type``: our own for a dataclass,
    msgspec's or pydantic's for theirs. What a schema cannot say (``5.0`` is an integer
    to JSON Schema, not to us; checks in ``__post_init__``) the runner still checks."""
    library = _library_of(conf_type)
    if library is not None:
        from . import _conf_adapters

        schema = _conf_adapters.schema(library, conf_type)
    else:
        defs = _Defs(conf_type)
        schema = _schema(conf_type, defs, root=True)
        if defs.schemas:
            schema["$defs"] = defs.schemas
    out = {"$schema": JSON_SCHEMA_DIALECT}
    if title is not None:
        out["title"] = title
    out.update((k, v) for k, v in schema.items() if k not in out)
    return out


def _json_default(value: Any) -> Any:
    """A default as JSON, or _NOTHING when it has no JSON form."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NOTHING
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return _NOTHING
    if isinstance(value, enum.Enum):
        return _json_default(value.value)
    if isinstance(value, list | tuple | set | frozenset):
        items = [_json_default(v) for v in value]
        return _NOTHING if any(i is _NOTHING for i in items) else items
    if isinstance(value, dict):
        entries = {k: _json_default(v) for k, v in value.items()}
        if not all(isinstance(k, str) for k in entries) or _NOTHING in entries.values():
            return _NOTHING
        return entries
    if isinstance(value, re.Pattern):
        return value.pattern
    if type(value).__module__ == "ipaddress":
        return str(value)
    return _NOTHING


class _Defs:
    """The dataclasses a schema refers to (``$defs``), by name: ``__name__``, or the
    qualified name when two share one; the root is ``#``."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.schemas: dict[str, Any] = {}
        self.names: dict[Any, str] = {}

    def ref(self, cls: type) -> dict[str, Any]:
        if cls is self.root:
            return {"$ref": "#"}
        name = self.names.get(cls)
        if name is None:
            name = cls.__name__
            if name in self.schemas:
                name = cls.__qualname__.replace(".", "_").replace("<locals>", "locals")
            self.names[cls] = name
            self.schemas[name] = {}  # a placeholder: a dataclass may contain itself
            self.schemas[name] = _dataclass_schema(cls, self)
        return {"$ref": f"#/$defs/{name}"}


def _schema(tp: Any, defs: _Defs, root: bool = False) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        schema = _schema(args[0], defs)
        for marker in args[1:]:
            _constrain(schema, marker)
        return schema
    if tp is Any or tp is object:
        return {}
    if tp is type(None) or tp is None:
        return {"type": "null"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp in (str, bytes):
        return {"type": "string"}
    if origin is typing.Literal:
        return {"enum": list(args)} if len(args) > 1 else {"const": args[0]}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    ip = _ip_schema(tp)
    if ip is not None:
        return ip
    if _is_union(tp):
        return {"anyOf": [_schema(m, defs) for m in args]}
    if tp is tuple or tp in _SEQUENCES:
        return {"type": "array"}
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return {
            "type": "array",
            "prefixItems": [_schema(a, defs) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin in _SEQUENCES:
        return {"type": "array", "items": _schema(args[0], defs)}
    if tp in (dict, Mapping):
        return {"type": "object"}
    if origin in (dict, Mapping):
        mapping: dict[str, Any] = {"type": "object", "additionalProperties": _schema(args[1], defs)}
        names = _schema(args[0], defs)
        names.pop("type", None)
        if names:
            mapping["propertyNames"] = names
        return mapping
    if tp is re.Pattern or origin is re.Pattern:
        return {"type": "string", "format": "regex"}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_schema(tp, defs) if root else defs.ref(tp)
    raise TypeError(f"conf types cannot hold {tp!r} (see a6runner.confs for what they can)")


def _dataclass_schema(cls: type, defs: _Defs) -> dict[str, Any]:
    hints = _field_types(cls)
    properties: dict[str, Any] = {}
    required = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        prop = _schema(hints[f.name], defs)
        description = f.metadata.get("description")
        if description:
            prop["description"] = description
        if f.default is not dataclasses.MISSING:
            default = _json_default(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _json_default(f.default_factory())
        else:
            default = _NOTHING
            required.append(f.name)
        if default is not _NOTHING:
            prop["default"] = default
        properties[f.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    doc = (cls.__doc__ or "").strip()
    if doc and not doc.startswith(f"{cls.__name__}("):  # not the dataclass's own signature
        schema["description"] = doc.split("\n\n", 1)[0].replace("\n", " ")
    if required:
        schema["required"] = required
    if not getattr(cls, "__a6_ignore_unknown_fields__", False):
        schema["additionalProperties"] = False
    return schema


def _constrain(schema: dict[str, Any], marker: Any) -> None:
    kind = schema.get("type")
    if isinstance(marker, Range):
        for key, bound in (
            ("minimum", marker.ge),
            ("exclusiveMinimum", marker.gt),
            ("maximum", marker.le),
            ("exclusiveMaximum", marker.lt),
        ):
            if bound is not None:
                schema[key] = bound
    elif isinstance(marker, Length):
        names = {
            "string": ("minLength", "maxLength"),
            "array": ("minItems", "maxItems"),
            "object": ("minProperties", "maxProperties"),
        }.get(kind or "")
        if names is not None:
            if marker.min is not None:
                schema[names[0]] = marker.min
            if marker.max is not None:
                schema[names[1]] = marker.max
    elif isinstance(marker, Matches) and kind == "string":
        schema["pattern"] = f"^(?:{marker.pattern})$"  # JSON Schema patterns search: anchor


def _ip_schema(tp: Any) -> dict[str, Any] | None:
    convert = _ip_converter(tp)
    if convert is None:
        return None
    members = {m for m in (typing.get_args(tp) if _is_union(tp) else (tp,))}
    names = {m.__name__ for m in members if m is not type(None)}
    fmt = {
        frozenset({"IPv4Address"}): "ipv4",
        frozenset({"IPv6Address"}): "ipv6",
    }.get(frozenset(names))
    schema: dict[str, Any] = {"type": "string"}
    if fmt:
        schema["format"] = fmt
    kind = next(iter(names))[4:].lower()  # address, network or interface
    schema["description"] = {
        "address": "an IP address",
        "network": "an IP address or CIDR block",
        "interface": "an IP address with a prefix length",
    }[kind]
    if type(None) in members:
        return {"anyOf": [schema, {"type": "null"}]}
    return schema
