"""Typed confs with stdlib dataclasses (a6runner.confs): what decodes, what is refused and
how the refusal reads — a path and a kind of problem, never a value."""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pytest

from a6runner import ConfError, Plugin
from a6runner.confs import (
    JSON_SCHEMA_DIALECT,
    Length,
    Matches,
    Range,
    conf_schema,
    decode_conf,
    ignore_unknown_fields,
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True)
class Rule:
    regex: re.Pattern[str]
    scope: Literal["once", "global"] = "once"


@dataclass(frozen=True)
class Conf:
    count: Annotated[int, Range(ge=1)]
    mode: Literal["a", "b"] = "a"
    color: Color = Color.RED
    level: Level = Level.LOW
    rate: Annotated[float, Range(gt=0, le=100)] = 1.0
    on: bool = False
    name: Annotated[str, Length(min=1, max=8), Matches(r"[a-z]+", "a lowercase word")] = "x"
    body: bytes = b""
    note: str | None = None
    tags: tuple[Annotated[str, Length(min=1)], ...] = ()
    ports: list[Annotated[int, Range(ge=1, le=65535)]] = field(default_factory=list)
    ids: frozenset[int] = frozenset()
    pair: tuple[int, str] = (0, "")
    headers: dict[str, str] = field(default_factory=dict)
    limits: Mapping[Annotated[str, Matches(r"[a-z]+")], int] = field(default_factory=dict)
    whitelist: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    rules: Sequence[Rule] = ()
    first: Rule | None = None
    either: int | str = 0
    extra: Any = None


def decode(document: object, conf_type: type = Conf) -> Any:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return decode_conf(conf_type, raw)


def problem(document: object, conf_type: type = Conf) -> str:
    with pytest.raises(ConfError) as caught:
        decode(document, conf_type)
    return str(caught.value)


def test_decodes_every_kind_of_field() -> None:
    conf = decode(
        {
            "count": 3,
            "mode": "b",
            "color": "blue",
            "level": 2,
            "rate": 5,
            "on": True,
            "name": "abc",
            "body": "hé",
            "note": None,
            "tags": ["t"],
            "ports": [80, 443],
            "ids": [1, 1, 2],
            "pair": [1, "x"],
            "headers": {"X-A": "1"},
            "limits": {"ab": 2},
            "whitelist": ["10.0.0.1/8", " 2001:db8::/32 "],
            "peer": "::1",
            "rules": [{"regex": "a+", "scope": "global"}],
            "first": {"regex": "b"},
            "either": "s",
            "extra": [{"any": "thing"}],
        }
    )
    assert conf.count == 3 and conf.mode == "b" and conf.on is True
    assert conf.color is Color.BLUE and conf.level is Level.HIGH
    assert conf.rate == 5.0 and isinstance(conf.rate, float)
    assert conf.body == "hé".encode()
    assert conf.tags == ("t",) and conf.ports == [80, 443] and conf.ids == frozenset({1, 2})
    assert conf.pair == (1, "x") and conf.headers == {"X-A": "1"} and conf.limits == {"ab": 2}
    assert conf.whitelist == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert conf.peer == ipaddress.ip_address("::1")
    assert conf.rules[0].regex.pattern == "a+" and conf.rules[0].scope == "global"
    assert conf.first == Rule(re.compile("b"))
    assert conf.either == "s" and conf.extra == [{"any": "thing"}]


def test_defaults_fill_what_is_absent_and_an_empty_conf_is_an_empty_object() -> None:
    assert decode({"count": 1}) == Conf(count=1)

    @dataclass
    class AllOptional:
        a: int = 1
        b: list[int] = field(default_factory=lambda: [2])

    assert decode_conf(AllOptional, b"") == AllOptional()
    assert decode_conf(AllOptional, b"  \n") == AllOptional(1, [2])


@pytest.mark.parametrize(
    "document, message",
    [
        ({"count": "5"}, "count: must be an integer >= 1 (got a string)"),
        ({"count": 5.0}, "count: must be an integer >= 1 (got a number)"),
        ({"count": True}, "count: must be an integer >= 1 (got true/false)"),
        ({"count": None}, "count: must be an integer >= 1 (got null)"),
        ({"count": -1}, "count: must be >= 1, got a negative number"),
        ({"count": 0}, "count: must be >= 1, got zero"),
        ({}, "count: is required"),
        ({"count": 1, "on": "yes"}, "on: must be true or false (got a string)"),
        ({"count": 1, "on": 1}, "on: must be true or false (got a number)"),
        ({"count": 1, "rate": 0}, "rate: must be > 0 and <= 100, got zero"),
        ({"count": 1, "rate": 101}, "rate: must be > 0 and <= 100, got a larger number"),
        ({"count": 1, "rate": "1"}, "rate: must be a number > 0 and <= 100 (got a string)"),
        ({"count": 1, "mode": "c"}, 'mode: must be one of "a", "b"'),
        ({"count": 1, "mode": 1}, 'mode: must be one of "a", "b"'),
        ({"count": 1, "color": "green"}, 'color: must be one of "red", "blue"'),
        ({"count": 1, "level": "1"}, "level: must be one of 1, 2"),
        ({"count": 1, "level": True}, "level: must be one of 1, 2"),
        ({"count": 1, "name": ""}, "name: must be a non-empty string"),
        ({"count": 1, "name": "abcdefghi"}, "name: must have at most 8 characters, got more"),
        ({"count": 1, "name": "ABC"}, "name: must be a lowercase word"),
        ({"count": 1, "note": 5}, "note: must be a string or null (got a number)"),
        ({"count": 1, "tags": "t"}, "tags: must be a list (got a string)"),
        ({"count": 1, "tags": ["a", ""]}, "tags[1]: must be a non-empty string"),
        ({"count": 1, "ports": [80, 0]}, "ports[1]: must be in 1..65535, got zero"),
        ({"count": 1, "pair": [1]}, "pair: must be a list of 2 items, got fewer"),
        ({"count": 1, "pair": [1, 2]}, "pair[1]: must be a string (got a number)"),
        ({"count": 1, "headers": {"X-A": 1}}, "headers[…]: must be a string (got a number)"),
        ({"count": 1, "headers": []}, "headers: must be an object (got an array)"),
        ({"count": 1, "limits": {"AB": 1}}, "limits[…]: name must match [a-z]+"),
        (
            {"count": 1, "whitelist": ["10.0.0.0/8", "x", "y"]},
            "whitelist[1]: not an IP address or CIDR",
        ),
        ({"count": 1, "whitelist": ["10.0.0.0/33"]}, "whitelist[0]: not an IP address or CIDR"),
        ({"count": 1, "whitelist": [10]}, "whitelist[0]: must be a string (got a number)"),
        ({"count": 1, "peer": "10.0.0.0/8"}, "peer: not an IP address"),
        (
            {"count": 1, "rules": [{"regex": "("}]},
            "rules[0].regex: is not a valid regular expression (at position 0)",
        ),
        ({"count": 1, "rules": [{}]}, "rules[0].regex: is required"),
        (
            {"count": 1, "rules": [{"regex": "a", "scope": "all"}]},
            'rules[0].scope: must be one of "once", "global"',
        ),
        (
            {"count": 1, "first": 5},
            "first: must be an object with regex and/or scope or null (got a number)",
        ),
        ({"count": 1, "either": []}, "either: must be an integer or a string (got an array)"),
        ({"count": 1, "rate": float("nan")}, "rate: must be a finite number"),
        (
            {"count": 1, "cuont": 1},
            "unknown keys (expected count, mode, color, level, rate, on, name, body, note, "
            "tags, ports, ids, pair, headers, limits, whitelist, peer, rules, first, either, "
            "extra)",
        ),
        (
            {"count": 1, "first": {"regex": "a", "flags": "i"}},
            "first: unknown keys (expected regex, scope)",
        ),
        ([1], "must be a JSON object (got an array)"),
        (b'{"count": ', "is not valid JSON: Expecting value at line 1 column 11"),
        (b"\xff", "is not valid JSON"),
        (
            b'{"count": 1, "body": "\\ud800"}',
            "body: must be valid Unicode text (it has a lone surrogate escape)",
        ),
    ],
)
def test_refusals_name_the_field_and_the_problem(document: object, message: str) -> None:
    assert problem(document) == message


def test_ignore_unknown_fields_drops_keys_the_type_does_not_declare() -> None:
    @ignore_unknown_fields
    @dataclass
    class Lenient:
        a: int = 0

    assert decode({"a": 1, "apisix_only": True}, Lenient) == Lenient(1)
    assert conf_schema(Lenient).get("additionalProperties") is None
    assert conf_schema(Conf)["additionalProperties"] is False


@dataclass
class Window:
    """A time window."""

    low: int = 0
    high: int = 10

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ConfError("low", "must not be above high")


@dataclass
class Outer:
    window: Window = field(default_factory=Window)
    windows: dict[str, Window] = field(default_factory=dict)


def test_a_post_init_conf_error_is_put_under_the_nested_path() -> None:
    assert problem({"low": 5, "high": 1}, Window) == "low: must not be above high"
    assert problem({"window": {"low": 5, "high": 1}}, Outer) == "window.low: must not be above high"
    assert problem({"windows": {"s": {"low": 5, "high": 1}}}, Outer) == (
        "windows[…].low: must not be above high"
    )


def test_a_recursive_dataclass_decodes_and_has_a_schema() -> None:
    @dataclass
    class Node:
        value: int
        children: list[Node] = field(default_factory=list)

    globals()["Node"] = Node  # the annotation names it
    try:
        tree = decode({"value": 1, "children": [{"value": 2}]}, Node)
        assert tree == Node(1, [Node(2)])
        assert problem({"value": 1, "children": [{"value": "x"}]}, Node) == (
            "children[0].value: must be an integer (got a string)"
        )
        schema = conf_schema(Node)
        assert schema["properties"]["children"]["items"] == {"$ref": "#"}
    finally:
        del globals()["Node"]


def test_an_unsupported_type_is_a_type_error_naming_the_field() -> None:
    @dataclass
    class Bad:
        when: complex

    with pytest.raises(TypeError, match="field when"):
        decode({"when": 1}, Bad)


def test_plugin_conf_type_is_what_parse_conf_decodes_into() -> None:
    class Typed(Plugin):
        name = "typed"
        conf_type = Conf

    assert Typed().parse_conf(b'{"count": 2}') == Conf(count=2)
    with pytest.raises(ConfError, match="count: is required"):
        Typed().parse_conf(b"{}")


# -- no value in any message ---------------------------------------------------------------

SECRET = "hunter2-Sekr1t"


def secret_documents() -> list[dict[str, Any]]:
    """A conf with the secret in each position a value (or a map key) can take."""
    s = SECRET
    return [
        {"count": s},
        {"count": 1, "mode": s},
        {"count": 1, "color": s},
        {"count": 1, "level": s},
        {"count": 1, "name": s},
        {"count": 1, "name": s.lower()[:8]},
        {"count": 1, "on": s},
        {"count": 1, "note": [s]},
        {"count": 1, "tags": [s, 1]},
        {"count": 1, "ports": [s]},
        {"count": 1, "pair": [s, s]},
        {"count": 1, "headers": {s: 1}},
        {"count": 1, "headers": {s: [s]}},
        {"count": 1, "limits": {s: 1}},
        {"count": 1, "limits": {"ok": s}},
        {"count": 1, "whitelist": [s]},
        {"count": 1, "peer": s},
        {"count": 1, "rules": [{"regex": f"(?P<{s}>"}]},
        {"count": 1, "rules": [{"regex": f"\\{s}"}]},
        {"count": 1, "rules": [{"regex": "a", "scope": s}]},
        {"count": 1, "first": {"regex": "a", s: 1}},
        {"count": 1, "either": {s: s}},
        {"count": 1, s: s},
        {s: 1},
    ]


@pytest.mark.parametrize("document", secret_documents())
def test_no_value_reaches_a_message(document: dict[str, Any]) -> None:
    with pytest.raises(ConfError) as caught:
        decode(document)
    error = caught.value
    shown = " ".join([str(error), repr(error), *map(str, error.args), error.field, error.problem])
    assert SECRET not in shown and SECRET.lower()[:8] not in shown
    assert error.__cause__ is None and error.__suppress_context__


# -- JSON Schema ----------------------------------------------------------------------------


def test_schema_describes_the_dataclass() -> None:
    schema = conf_schema(Conf, "conf")
    assert schema["$schema"] == JSON_SCHEMA_DIALECT and schema["title"] == "conf"
    props = schema["properties"]
    assert schema["required"] == ["count"]
    assert props["count"] == {"type": "integer", "minimum": 1}
    assert props["mode"] == {"enum": ["a", "b"], "default": "a"}
    assert props["color"] == {"enum": ["red", "blue"], "default": "red"}
    assert props["rate"] == {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 100,
        "default": 1.0,
    }
    assert props["name"]["pattern"] == "^(?:[a-z]+)$" and props["name"]["maxLength"] == 8
    assert props["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert props["pair"]["prefixItems"] == [{"type": "integer"}, {"type": "string"}]
    assert props["headers"]["additionalProperties"] == {"type": "string"}
    assert props["limits"]["propertyNames"] == {"pattern": "^(?:[a-z]+)$"}
    assert props["rules"]["items"] == {"$ref": "#/$defs/Rule"}
    assert schema["$defs"]["Rule"]["required"] == ["regex"]
    assert props["whitelist"]["items"]["type"] == "string"
    assert json.loads(json.dumps(schema)) == schema  # plain JSON


def test_schema_takes_descriptions_from_the_docstring_and_field_metadata() -> None:
    @dataclass
    class Described:
        """What it is.

        More words."""

        a: int = field(default=0, metadata={"description": "the a"})

    schema = conf_schema(Described)
    assert schema["description"] == "What it is."
    assert schema["properties"]["a"]["description"] == "the a"
    assert "description" not in conf_schema(Conf)  # the dataclass's generated docstring
    assert conf_schema(Window)["description"] == "A time window."


# -- the less common kinds, and their schemas ------------------------------------------------


@dataclass
class Unusual:
    anything: list = field(default_factory=list)  # type: ignore[type-arg]
    seq: Sequence[int] = ()
    bag: set = field(default_factory=set)  # type: ignore[type-arg]
    frozen: frozenset = frozenset()  # type: ignore[type-arg]
    loose: tuple = ()  # type: ignore[type-arg]
    table: dict = field(default_factory=dict)  # type: ignore[type-arg]
    nothing: None = None
    ratio: float = 0.5
    v4: ipaddress.IPv4Address | None = None
    v6net: ipaddress.IPv6Network | None = None
    iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface | None = None
    some: Annotated[list[int], Length(min=2, max=3)] = field(default_factory=lambda: [1, 2])
    raw: Annotated[bytes, Length(max=3)] = b""
    choice: int | Window = 0
    odd: Annotated[int, {"not": "ours"}] = 0  # markers of other libraries are ignored


def test_the_less_common_kinds() -> None:
    conf = decode(
        {
            "anything": [1, "a"],
            "seq": [1],
            "bag": [1, 1],
            "frozen": ["a"],
            "loose": [1, None],
            "table": {"a": [1]},
            "nothing": None,
            "ratio": 2.5,
            "v4": "10.1.2.3",
            "v6net": "2001:db8::1/32",
            "iface": "10.0.0.1/24",
            "some": [1, 2, 3],
            "raw": "abc",
            "choice": {"low": 1},
            "odd": 7,
        },
        Unusual,
    )
    assert conf.anything == [1, "a"] and conf.bag == {1} and conf.loose == (1, None)
    assert conf.ratio == 2.5 and conf.v4 == ipaddress.IPv4Address("10.1.2.3")
    assert conf.v6net == ipaddress.IPv6Network("2001:db8::/32")
    assert conf.iface == ipaddress.IPv4Interface("10.0.0.1/24")
    assert conf.choice == Window(1, 10) and conf.odd == 7 and conf.raw == b"abc"


@pytest.mark.parametrize(
    "document, message",
    [
        ({"nothing": 1}, "nothing: must be null (got a number)"),
        ({"some": [1]}, "some: must have at least 2 items, got fewer"),
        ({"some": "x"}, "some: must be a list (got a string)"),
        ({"raw": "abcd"}, "raw: must have at most 3 characters, got more"),
        ({"v4": "::1"}, "v4: not an IPv4 address"),
        ({"v4": 4}, "v4: must be a string or null (got a number)"),
        ({"iface": "x"}, "iface: not an IP interface (address/prefix)"),
        ({"choice": {"low": 5, "high": 1}}, "choice.low: must not be above high"),
        ({"choice": {"low": "x"}}, "choice.low: must be an integer (got a string)"),
        ({"choice": "x"}, "choice: must be an integer or an object with low and/or high"),
        ({"table": []}, "table: must be an object (got an array)"),
    ],
)
def test_the_less_common_refusals(document: object, message: str) -> None:
    assert problem(document, Unusual).startswith(message)


@dataclass
class Picky:
    a: Any = None

    def __post_init__(self) -> None:
        raise ConfError("a", "must be picked", got=self.a)


@dataclass
class Holder:
    inner: Picky


def test_a_post_init_conf_error_keeps_the_kind_it_names() -> None:
    assert problem({"inner": {"a": [1]}}, Holder) == "inner.a: must be picked (got an array)"


def test_a_regex_field_takes_only_a_string() -> None:
    assert problem({"regex": 5}, Rule) == "regex: must be a string (got a number)"
    assert problem({"regex": "a{99999999999}"}, Rule).startswith(
        "regex: is not a valid regular expression"
    )


def test_an_annotation_that_does_not_resolve_is_a_type_error() -> None:
    @dataclass
    class Dangling:
        a: NoSuchType  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(TypeError, match="cannot resolve an annotation"):
        decode({}, Dangling)
    with pytest.raises(TypeError, match="conf types cannot hold"):
        conf_schema(complex)


def test_the_less_common_schemas() -> None:
    props = conf_schema(Unusual)["properties"]
    assert props["anything"] == {"type": "array", "default": []}
    assert props["table"] == {"type": "object", "default": {}}
    assert props["loose"] == {"type": "array", "default": []}
    assert props["nothing"] == {"type": "null", "default": None}
    assert props["v4"]["anyOf"][0] == {
        "type": "string",
        "format": "ipv4",
        "description": "an IP address",
    }
    assert props["iface"]["anyOf"][0]["description"] == "an IP address with a prefix length"
    assert props["some"] == {
        "type": "array",
        "items": {"type": "integer"},
        "minItems": 2,
        "maxItems": 3,
        "default": [1, 2],
    }
    assert props["odd"] == {"type": "integer", "default": 0}

    @dataclass
    class Defaults:
        flag: bool = True
        bad_text: bytes = b"\xff"
        nan: float = float("nan")
        pattern: re.Pattern[str] = re.compile("a+")
        net: ipaddress.IPv4Network = ipaddress.IPv4Network("10.0.0.0/8")  # noqa: RUF009
        mixed: tuple[Any, ...] = (1, object())
        keyed: dict[Any, Any] = field(default_factory=lambda: {1: "a"})
        valued: dict[str, Any] = field(default_factory=lambda: {"a": object()})
        color: Color = Color.BLUE
        lengths: Annotated[dict[str, int], Length(min=1)] = field(default_factory=lambda: {"a": 1})
        unmatched: Annotated[int, Matches("x")] = 0

    props = conf_schema(Defaults)["properties"]
    assert props["flag"] == {"type": "boolean", "default": True}
    assert "default" not in props["bad_text"] and "default" not in props["nan"]
    assert props["pattern"]["default"] == "a+" and props["net"]["default"] == "10.0.0.0/8"
    assert "default" not in props["mixed"] and "default" not in props["keyed"]
    assert "default" not in props["valued"] and props["color"]["default"] == "blue"
    assert props["lengths"]["minProperties"] == 1 and "pattern" not in props["unmatched"]


def _part(kind: type) -> type:
    @dataclass
    class Part:
        value: Any = None

    Part.__annotations__["value"] = kind  # (a real type: nothing to resolve)
    return Part


TextPart, NumberPart = _part(str), _part(int)


@dataclass
class Both:
    text: TextPart  # type: ignore[valid-type]
    number: NumberPart  # type: ignore[valid-type]


def test_two_dataclasses_of_one_name_get_two_definitions() -> None:
    defs = conf_schema(Both)["$defs"]
    assert len(defs) == 2 and "Part" in defs
