"""Conf types of msgspec (``msgspec.Struct``) and pydantic (``BaseModel``): decoded by their
library, errors rebuilt by us from what each says about the problem, never passed on.

msgspec's ValidationError is one line of text (``Expected `int` >= 1 - at `$.count```), and
it quotes the rejected value for enum and Literal fields: we parse its path and classify
its problem against a list of the shapes it uses; anything else becomes "is not valid".
pydantic's ``errors(include_input=False, include_url=False)`` gives each error's ``loc``,
``type`` and ``ctx``: we rebuild the path by walking the model along ``loc`` (a dict key
becomes ``[…]``, a union member's tag is dropped) and word the problem from ``type`` and
``ctx``. Both libraries are imported only here, and only for a type of theirs.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from ._conf_json import KEY, format_path, parse_json
from ._errors import ConfError

_KINDS = {  # their type names -> ours
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
    "bytes": "a string",
}
_GOT = {  # their type names -> ConfError's words for the kind of a value
    "str": "a string",
    "int": "a number",
    "float": "a number",
    "bool": "true/false",
    "array": "an array",
    "object": "an object",
    "null": "null",
}


def _error(path: Sequence[str | int], problem: str, got: str | None = None) -> ConfError:
    error = ConfError(format_path(path), problem)
    if got is not None:
        error.got = got
        error.args = (str(error),)
    return error


def _nested(path: Sequence[str | int], exc: ConfError) -> ConfError:
    """A ConfError a validator or ``__post_init__`` raised, put under ``path``."""
    return _error([*path, exc.field] if exc.field else path, exc.problem, exc.got)


def decode(library: str, conf_type: Any, raw: bytes) -> Any:
    if library == "msgspec":
        return _decode_msgspec(conf_type, raw)
    return _decode_pydantic(conf_type, raw)


def schema(library: str, conf_type: Any) -> dict[str, Any]:
    if library == "msgspec":
        import msgspec

        return dict(msgspec.json.schema(conf_type))
    return dict(conf_type.model_json_schema())


# -- msgspec ------------------------------------------------------------------------------------

_MSGSPEC_PATH = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
_TYPE_MISMATCH = re.compile(r"Expected `([\w |]+)`, got `(\w+)`$")
_BOUND = re.compile(r"Expected `(\w+)` (>=|>|<=|<) (-?[\d.e+-]+)$")
_LENGTH = re.compile(r"Expected `(\w+)` of length (>=|<=) (\d+)$")
_FIXED_LENGTH = re.compile(r"Expected `array` of length (\d+)$")
_PATTERN = re.compile(r"Expected `str` matching regex '(.*)'$", re.DOTALL)
_MISSING = re.compile(r"Object missing required field `(.+)`$")


def _msgspec_path(text: str) -> list[str | int]:
    path: list[str | int] = []
    for name, index in _MSGSPEC_PATH.findall(text.removeprefix("$")):
        path.append(int(index) if index else name if name else KEY)
    return path


def _decode_msgspec(conf_type: Any, raw: bytes) -> Any:
    import msgspec

    if not raw.strip():
        raw = b"{}"
    try:
        return msgspec.json.decode(raw, type=conf_type)
    except msgspec.ValidationError as exc:
        raise _msgspec_error(conf_type, exc) from None
    except msgspec.DecodeError:
        parse_json(raw)  # the same words as for any conf: where the JSON breaks
        raise ConfError("is not valid JSON") from None


def _msgspec_error(conf_type: Any, exc: Exception) -> ConfError:
    text, _, where = str(exc).rpartition(" - at `")
    if not text:  # no path: the problem is at the root
        text, where = where, "$`"
    path = _msgspec_path(where.removesuffix("`"))
    cause = exc.__cause__
    if isinstance(cause, ConfError):  # raised by a __post_init__
        return _nested(path, cause)
    if m := _TYPE_MISMATCH.match(text):
        expected = " or ".join(_KINDS.get(k, "another kind") for k in m[1].split(" | "))
        if not path and expected == "an object":
            expected = "a JSON object"
        return _error(path, f"must be {expected}", _GOT.get(m[2], "another value"))
    if m := _BOUND.match(text):
        return _error(path, f"must be {m[2]} {m[3]}")
    if m := _LENGTH.match(text):
        unit = {"str": "characters", "bytes": "bytes", "object": "entries"}.get(m[1], "items")
        if m[2] == ">=":
            if m[3] == "1":
                noun = {"characters": "string", "bytes": "string", "entries": "object"}
                return _error(path, f"must be a non-empty {noun.get(unit, 'list')}")
            return _error(path, f"must have at least {m[3]} {unit}")
        return _error(path, f"must have at most {m[3]} {unit}")
    if m := _FIXED_LENGTH.match(text):
        return _error(path, f"must be a list of {m[1]} items")
    if m := _PATTERN.match(text):
        return _error(path, f"must match {m[1]}")
    if m := _MISSING.match(text):
        return _error([*path, m[1]], "is required")
    if text.startswith("Object contains unknown field"):  # it names the key: not us
        fields = _msgspec_fields(conf_type, path)
        known = f" (expected {', '.join(fields)})" if fields else ""
        return _error(path, f"unknown keys{known}")
    if text.startswith("Invalid enum value"):  # it quotes the value: not us
        allowed = _msgspec_choices(conf_type, path)
        if allowed:
            return _error(path, f"must be one of {allowed}")
        return _error(path, "is not one of the allowed values")
    return _error(path, "is not valid")


def _msgspec_at(conf_type: Any, path: Sequence[str | int]) -> Any:
    """msgspec's description (``msgspec.inspect``) of the type at ``path``, or None."""
    import msgspec.inspect as mi

    info: Any = mi.type_info(conf_type)
    for part in path:
        info = _msgspec_unwrap(info, part)
        if isinstance(info, mi.StructType) and isinstance(part, str):
            info = next((f.type for f in info.fields if f.encode_name == part), None)
        elif isinstance(info, mi.DictType) and part == KEY:
            info = info.value_type
        elif isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            info = info.item_type
        elif isinstance(info, mi.TupleType) and isinstance(part, int):
            info = info.item_types[part] if part < len(info.item_types) else None
        else:
            return None
    return _msgspec_unwrap(info, None)


def _msgspec_unwrap(info: Any, part: str | int | None) -> Any:
    """Through metadata and unions to what ``part`` can step into."""
    import msgspec.inspect as mi

    while True:
        if isinstance(info, mi.Metadata):
            info = info.type
        elif isinstance(info, mi.UnionType):
            usable = [t for t in info.types if not isinstance(t, mi.NoneType)]
            if part is None and len(usable) == 1:
                info = usable[0]
            elif part is None:
                return info
            else:
                wanted = (
                    (mi.StructType, mi.DictType) if isinstance(part, str) else mi.CollectionType
                )
                info = next((t for t in usable if isinstance(t, wanted)), None)
        else:
            return info


def _msgspec_fields(conf_type: Any, path: Sequence[str | int]) -> list[str]:
    import msgspec.inspect as mi

    info = _msgspec_at(conf_type, path)
    if isinstance(info, mi.UnionType):
        info = next((t for t in info.types if isinstance(t, mi.StructType)), None)
    return [f.encode_name for f in info.fields] if isinstance(info, mi.StructType) else []


def _msgspec_choices(conf_type: Any, path: Sequence[str | int]) -> str:
    import json

    import msgspec.inspect as mi

    info = _msgspec_at(conf_type, path)
    if isinstance(info, mi.LiteralType):
        return ", ".join(json.dumps(v) for v in info.values)
    if isinstance(info, mi.EnumType):
        return ", ".join(json.dumps(m.value) for m in info.cls)
    return ""


# -- pydantic -----------------------------------------------------------------------------------

_PYDANTIC_KINDS = {
    "int": "an integer",
    "float": "a number",
    "string": "a string",
    "bytes": "a string",
    "bool": "true or false",
    "list": "a list",
    "tuple": "a list",
    "set": "a list",
    "frozen_set": "a list",
    "dict": "an object",
    "model": "an object",
    "model_attributes": "an object",
    "dataclass": "an object",
    "none": "null",
}
_PYDANTIC_IP = {
    "ip_any_address": "not an IP address",
    "ip_any_network": "not an IP address or CIDR",
    "ip_any_interface": "not an IP interface (address/prefix)",
    "ip_v4_address": "not an IPv4 address",
    "ip_v6_address": "not an IPv6 address",
    "ip_v4_network": "not an IPv4 address or CIDR",
    "ip_v6_network": "not an IPv6 address or CIDR",
    "ip_v4_interface": "not an IPv4 interface",
    "ip_v6_interface": "not an IPv6 interface",
}
_PYDANTIC_BOUNDS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}


def _decode_pydantic(conf_type: Any, raw: bytes) -> Any:
    import pydantic

    if not raw.strip():
        raw = b"{}"
    try:
        return conf_type.model_validate_json(raw, strict=True)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        # the first field's errors; of a union's (one per member), the deepest: the value
        # had that member's shape, so its error says most
        first = [e for e in errors if e["loc"][:1] == errors[0]["loc"][:1]]
        error = max(first, key=lambda e: len(e["loc"]))
        raise _pydantic_error(conf_type, error, raw) from None


def _kind_at(raw: bytes, loc: Sequence[str | int]) -> str | None:
    """ConfError's word for the kind of the value at pydantic's ``loc`` in the document
    (pydantic was told not to keep the input: we look, and name only its kind)."""
    try:
        value: Any = parse_json(raw)
    except ConfError:
        return None
    for part in loc:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[int(part)]
        elif not isinstance(part, str) or part == "[key]":
            return None  # (a union member's tag is skipped: the value stays the same)
    return ConfError("", "", got=value).got


def _pydantic_error(conf_type: Any, error: Mapping[str, Any], raw: bytes) -> ConfError:
    kind: str = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    loc = tuple(error["loc"])
    if kind == "extra_forbidden":  # the last part is the unknown key itself: never shown
        path = _pydantic_path(conf_type, loc[:-1])
        fields = _pydantic_fields(conf_type, loc[:-1])
        known = f" (expected {', '.join(fields)})" if fields else ""
        return _error(path, f"unknown keys{known}")
    path = _pydantic_path(conf_type, loc)
    if kind == "json_invalid":
        parse_json(raw)  # the same words as for any conf: where the JSON breaks
        return _error(path, "is not valid JSON")
    if kind == "missing":
        return _error(path, "is required")
    cause = ctx.get("error")
    if isinstance(cause, ConfError):  # a validator of the model raised it
        return _nested(path, cause)
    if kind in _PYDANTIC_IP:
        return _error(path, _PYDANTIC_IP[kind])
    if kind in _PYDANTIC_BOUNDS:
        key, op = _PYDANTIC_BOUNDS[kind]
        return _error(path, f"must be {op} {ctx.get(key)}")
    if kind in ("string_too_short", "string_too_long", "too_short", "too_long", "bytes_too_short"):
        unit = "characters" if kind.startswith("string") else "items"
        if kind.endswith("short"):
            least = ctx.get("min_length")
            if least == 1:
                noun = "string" if kind.startswith("string") else "list"
                return _error(path, f"must be a non-empty {noun}")
            return _error(path, f"must have at least {least} {unit}")
        return _error(path, f"must have at most {ctx.get('max_length')} {unit}")
    if kind == "string_pattern_mismatch":
        return _error(path, f"must match {ctx.get('pattern')}")
    if kind in ("literal_error", "enum"):
        return _error(path, f"must be one of {_pydantic_expected(ctx.get('expected', ''))}")
    if kind == "finite_number":
        return _error(path, "must be a finite number")
    base = kind.removesuffix("_type").removesuffix("_parsing").removesuffix("_from_float")
    if kind.endswith(("_type", "_parsing", "_from_float")) and base in _PYDANTIC_KINDS:
        expected = _PYDANTIC_KINDS[base]
        if not path and expected == "an object":
            expected = "a JSON object"
        return _error(path, f"must be {expected}", _kind_at(raw, loc))
    return _error(path, "is not valid")


def _pydantic_expected(expected: str) -> str:
    """pydantic's ``'a', 'b' or 'c'`` (from the type) as ours: ``"a", "b", "c"``."""
    items = re.split(r", | or ", expected)
    return ", ".join('"' + i[1:-1] + '"' if i[:1] == "'" and i[-1:] == "'" else i for i in items)


def _pydantic_unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif _is_union(tp):
            members = [m for m in typing.get_args(tp) if m is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _is_union(tp: Any) -> bool:
    import types

    return typing.get_origin(tp) is typing.Union or isinstance(tp, types.UnionType)


def _model_field(model: Any, name: str) -> Any:
    fields = getattr(model, "model_fields", {})
    for field_name, info in fields.items():
        if name in (field_name, info.alias, info.validation_alias):
            return info
    return None


def _tag(tp: Any) -> str:
    name = getattr(tp, "__name__", None)
    return name if isinstance(tp, type) and name else str(tp)


def _pydantic_walk(conf_type: Any, loc: Sequence[str | int]) -> tuple[list[str | int], Any]:
    """Our path for pydantic's ``loc``, and the type it ends at (None when lost)."""
    path: list[str | int] = []
    tp: Any = conf_type
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        tp = _pydantic_unwrap(tp)
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if isinstance(tp, type) and hasattr(tp, "model_fields"):
            info = _model_field(tp, str(part))
            if info is None:
                path.append(KEY)  # not a field of this model: never show it
                tp = None
            else:
                path.append(str(part))
                tp = info.annotation
        elif origin in (dict, Mapping) or tp is dict:
            path.append(KEY)
            if parts and parts[0] == "[key]":
                parts.pop(0)
                tp = args[0] if args else None
            else:
                tp = args[1] if len(args) == 2 else None
        elif isinstance(part, int):
            path.append(part)
            if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
                tp = args[part] if part < len(args) else None
            else:
                tp = args[0] if args else None
        elif _is_union(tp):  # pydantic names the member it tried: follow it, show nothing
            tp = next((m for m in typing.get_args(tp) if _tag(m) == part), None)
        else:
            path.append(KEY)
            tp = None
    return path, tp


def _pydantic_path(conf_type: Any, loc: Sequence[str | int]) -> list[str | int]:
    return _pydantic_walk(conf_type, loc)[0]


def _pydantic_fields(conf_type: Any, loc: Sequence[str | int]) -> list[str]:
    tp = _pydantic_unwrap(_pydantic_walk(conf_type, loc)[1])
    fields = getattr(tp, "model_fields", None) if isinstance(tp, type) else None
    return [info.alias or name for name, info in fields.items()] if fields else []
