"""Conf types of msgspec and pydantic: decoded by their library, refused in our words (a
path and a kind of problem, never a value: both libraries quote values in their own)."""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any, Literal

import msgspec
import pydantic
import pytest

from a6runner import ConfError, Plugin
from a6runner.confs import JSON_SCHEMA_DIALECT, conf_schema, decode_conf


class MsgInner(msgspec.Struct, forbid_unknown_fields=True):
    regex: str
    scope: Literal["once", "global"] = "once"


class MsgConf(msgspec.Struct, forbid_unknown_fields=True):
    count: Annotated[int, msgspec.Meta(ge=1)]
    mode: Literal["a", "b"] = "a"
    on: bool = False
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=8, pattern="^[a-z]+$")] = "x"
    note: str | None = None
    tags: list[Annotated[str, msgspec.Meta(min_length=2)]] = []
    pair: tuple[int, int] = (0, 0)
    headers: dict[str, str] = {}
    rules: list[MsgInner] = []
    first: MsgInner | None = None


class PydInner(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    regex: str
    scope: Literal["once", "global"] = "once"


class PydConf(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    count: Annotated[int, pydantic.Field(ge=1)]
    mode: Literal["a", "b"] = "a"
    on: bool = False
    name: Annotated[str, pydantic.Field(min_length=1, max_length=8, pattern="^[a-z]+$")] = "x"
    note: str | None = None
    tags: list[Annotated[str, pydantic.Field(min_length=2)]] = []
    headers: dict[str, str] = {}
    rules: list[PydInner] = []
    first: PydInner | None = None
    either: int | str = 0
    whitelist: list[pydantic.IPvAnyNetwork] = []

    @pydantic.field_validator("note")
    @classmethod
    def _note(cls, value: str | None) -> str | None:
        if value == "forbidden":
            raise ConfError("must not be that word")
        return value


def problem(conf_type: type, document: object) -> str:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(ConfError) as caught:
        decode_conf(conf_type, raw)
    return str(caught.value)


COMMON = [
    ({"count": "5"}, "count: must be an integer (got a string)"),
    ({"count": 5.0}, "count: must be an integer"),
    ({"count": True}, "count: must be an integer"),
    ({"count": 0}, "count: must be >= 1"),
    ({}, "count: is required"),
    ({"count": 1, "on": "yes"}, "on: must be true or false"),
    ({"count": 1, "on": 1}, "on: must be true or false"),
    ({"count": 1, "mode": "c"}, 'mode: must be one of "a", "b"'),
    ({"count": 1, "name": ""}, "name: must be a non-empty string"),
    ({"count": 1, "name": "abcdefghi"}, "name: must have at most 8 characters"),
    ({"count": 1, "name": "ABC"}, "name: must match ^[a-z]+$"),
    ({"count": 1, "tags": ["a"]}, "tags[0]: must have at least 2 characters"),
    ({"count": 1, "headers": {"X-A": 1}}, "headers[…]: must be a string"),
    ({"count": 1, "rules": [{}]}, "rules[0].regex: is required"),
    ({"count": 1, "rules": [{"regex": "a", "scope": "x"}]}, 'rules[0].scope: must be one of "'),
    (
        {"count": 1, "first": {"regex": "a", "flags": 1}},
        "first: unknown keys (expected regex, scope)",
    ),
    ({"count": 1, "cuont": 1}, "unknown keys (expected count, mode, on, name, note, tags"),
    ([1], "must be a JSON object"),
    (b'{"count": ', "is not valid JSON: Expecting value at line 1 column 11"),
]


@pytest.mark.parametrize("conf_type", [MsgConf, PydConf], ids=["msgspec", "pydantic"])
@pytest.mark.parametrize("document, message", COMMON)
def test_refusals_read_as_for_a_dataclass(conf_type: type, document: object, message: str) -> None:
    assert problem(conf_type, document).startswith(message)


def test_msgspec_specifics() -> None:
    assert decode_conf(MsgConf, b'{"count": 2, "headers": {"a": "b"}}') == MsgConf(
        count=2, headers={"a": "b"}
    )
    assert problem(MsgConf, {"count": 1, "rules": [{"regex": "a", "scope": "x"}]}) == (
        'rules[0].scope: must be one of "global", "once"'  # msgspec sorts them
    )
    assert problem(MsgConf, {"count": 1, "pair": [1]}) == "pair: must be a list of 2 items"
    assert problem(MsgConf, {"count": 1, "note": 5}) == (
        "note: must be a string or null (got a number)"
    )


def test_pydantic_specifics() -> None:
    assert decode_conf(PydConf, b'{"count": 2}') == PydConf(count=2)
    assert problem(PydConf, {"count": 1, "whitelist": ["10.0.0.0/8", "x"]}) == (
        "whitelist[1]: not an IP address or CIDR"
    )
    assert problem(PydConf, {"count": 1, "either": []}) == (
        "either: must be an integer (got an array)"
    )
    assert problem(PydConf, {"count": 1, "rules": [{"regex": "a", "scope": "x"}]}) == (
        'rules[0].scope: must be one of "once", "global"'
    )
    assert problem(PydConf, {"count": 1, "note": "forbidden"}) == "note: must not be that word"


def test_an_empty_conf_is_an_empty_object() -> None:
    class Optional_(msgspec.Struct):
        a: int = 1

    class OptionalModel(pydantic.BaseModel):
        a: int = 1

    assert decode_conf(Optional_, b"") == Optional_()
    assert decode_conf(OptionalModel, b" ") == OptionalModel()


def test_plugins_declare_them_as_conf_type() -> None:
    class WithStruct(Plugin):
        name = "with-struct"
        conf_type = MsgConf

    class WithModel(Plugin):
        name = "with-model"
        conf_type = PydConf

    assert WithStruct().parse_conf(b'{"count": 3}').count == 3
    assert WithModel().parse_conf(b'{"count": 3}').count == 3


def test_their_schemas_are_theirs_with_the_dialect_set() -> None:
    for conf_type in (MsgConf, PydConf):
        schema = conf_schema(conf_type, "x")
        assert schema["$schema"] == JSON_SCHEMA_DIALECT and schema["title"] == "x"
        assert "$defs" in schema or "properties" in schema


SECRET = "hunter2-Sekr1t"


def secret_documents() -> list[Any]:
    s = SECRET
    return [
        {"count": s},
        {"count": 1, "mode": s},
        {"count": 1, "name": s},
        {"count": 1, "on": s},
        {"count": 1, "note": [s]},
        {"count": 1, "tags": [s, 1]},
        {"count": 1, "headers": {s: 1}},
        {"count": 1, "headers": {s: [s]}},
        {"count": 1, "rules": [{"regex": s, "scope": s}]},
        {"count": 1, "first": {"regex": "a", s: 1}},
        {"count": 1, "first": {"regex": [s]}},
        {"count": 1, s: s},
        {s: 1},
        f'{{"count": 1, "{s}"'.encode(),
    ]


@pytest.mark.parametrize("conf_type", [MsgConf, PydConf], ids=["msgspec", "pydantic"])
@pytest.mark.parametrize("document", secret_documents())
def test_no_value_reaches_a_message(conf_type: type, document: object) -> None:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(ConfError) as caught:
        decode_conf(conf_type, raw)
    error = caught.value
    shown = " ".join([str(error), repr(error), *map(str, error.args), error.field, error.problem])
    assert SECRET not in shown
    assert error.__cause__ is None and error.__suppress_context__


@pytest.mark.parametrize(
    "document", [{"count": 1, "either": {SECRET: 1}}, {"count": 1, "whitelist": [SECRET]}]
)
def test_no_value_reaches_a_pydantic_message_through_unions(document: object) -> None:
    assert SECRET not in problem(PydConf, document)


# -- the rarer shapes of their errors ---------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class MsgChecked(msgspec.Struct):
    low: int = 0
    high: int = 10

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ConfError("low", "must not be above high")


class MsgRare(msgspec.Struct, forbid_unknown_fields=True):
    color: Color = Color.RED
    modes: dict[str, Literal["a", "b"]] = {}
    pair: tuple[int, Literal["x", "y"]] = (0, "x")
    meta: Annotated[Literal["p", "q"], msgspec.Meta(title="m")] = "p"
    maybe: MsgInner | None = None
    checked: MsgChecked | None = None
    window: Annotated[int, msgspec.Meta(multiple_of=5)] = 5


@pytest.mark.parametrize(
    "document, message",
    [
        (b'{"color": NaN}', "is not valid JSON"),
        ({"color": "green"}, 'color: must be one of "red", "blue"'),
        ({"modes": {"k": "c"}}, 'modes[…]: must be one of "a", "b"'),
        ({"pair": [1, "z"]}, 'pair[1]: must be one of "x", "y"'),
        ({"meta": "r"}, 'meta: must be one of "p", "q"'),
        ({"maybe": {"regex": "a", "scope": "z"}}, 'maybe.scope: must be one of "global", "once"'),
        ({"maybe": {"regex": "a", "zz": 1}}, "maybe: unknown keys (expected regex, scope)"),
        ({"checked": {"low": 5, "high": 1}}, "checked.low: must not be above high"),
        ({"window": 7}, "window: is not valid"),
    ],
)
def test_msgspec_rarer_refusals(document: object, message: str) -> None:
    assert problem(MsgRare, document) == message


def pyd_check(value: str) -> str:
    if value == "nope":
        raise ValueError(f"{SECRET} is not welcome")
    return value


class PydRare(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    ratio: Annotated[float, pydantic.Field(allow_inf_nan=False)] = 1.0
    names: dict[Annotated[str, pydantic.Field(min_length=2)], int] = {}
    pair: tuple[int, str] = (0, "")
    nested: Annotated[PydInner | None, pydantic.Field(description="d")] = None
    many: list[int] = []
    either: int | PydInner = 0
    checked: Annotated[str, pydantic.AfterValidator(pyd_check)] = ""
    mapping: dict = {}  # type: ignore[type-arg]


@pytest.mark.parametrize(
    "document, message",
    [
        (b'{"ratio": NaN}', "ratio: must be a finite number"),
        ({"names": {"a": 1}}, "names[…]: must have at least 2 characters"),
        ({"pair": [1, 2]}, "pair[1]: must be a string"),
        ({"nested": {"regex": 5}}, "nested.regex: must be a string"),
        ({"many": [1, "x"]}, "many[1]: must be an integer (got a string)"),
        ({"either": {"regex": 1}}, "either.regex: must be a string"),
        ({"checked": "nope"}, "checked: is not valid"),
        ({"mapping": {SECRET: [1]}}, None),
    ],
)
def test_pydantic_rarer_refusals(document: object, message: str | None) -> None:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    if message is None:
        assert decode_conf(PydRare, raw).mapping == {SECRET: [1]}
        return
    said = problem(PydRare, document)
    assert said.startswith(message) and SECRET not in said


def test_the_pydantic_path_never_shows_what_it_does_not_know() -> None:
    from a6runner._conf_adapters import _kind_at, _pydantic_fields, _pydantic_path

    assert _pydantic_path(PydRare, ("nested", "regex")) == ["nested", "regex"]
    assert _pydantic_path(PydRare, (SECRET, "x")) == ["[…]", "[…]"]
    assert _pydantic_path(PydRare, ("ratio", SECRET)) == ["ratio", "[…]"]
    assert _pydantic_path(PydRare, ("pair", 5)) == ["pair", 5]
    assert _pydantic_path(PydRare, ("either", "int")) == ["either"]
    assert _pydantic_fields(PydRare, ("pair",)) == []
    assert _kind_at(b"{not json", ("a",)) is None
    assert _kind_at(b'{"a": [1]}', ("a", 5)) is None
    assert _kind_at(b'{"a": {"b": "c"}}', ("a", "tag", "b")) == "a string"
