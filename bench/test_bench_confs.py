"""PrepareConf's cost for one conf entry (decode the JSON, check it, build the conf object):
the same conf and the same checks written four ways, measured in the same run.

* ``dataclass``: a ``conf_type`` dataclass through a6runner.confs (the runner's default);
* ``hand-written``: a ``parse_conf`` doing the same checks by hand, as the bundled plugins
  did before their port;
* ``msgspec``: a ``msgspec.Struct`` (its decoder, our error words on failure);
* ``pydantic``: a pydantic ``BaseModel`` (its validator in strict mode, our error words).

And for a bundled plugin, its typed conf against the hand-written ``parse_conf`` it had
before (request-validation: lists, bounds, a media-type pattern)::

    .venv/bin/pytest bench/test_bench_confs.py --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
import pydantic
import pytest

from a6runner import ConfError, Plugin
from a6runner.confs import Length, Range
from a6runner.plugins.request_validation import RequestValidation

CONF = json.dumps(
    {
        "count": 100,
        "time_window": 60,
        "mode": "strict",
        "header": "X-Api-Key",
        "allow_anonymous": False,
        "paths": ["/orders", "/users", "/admin"],
        "labels": {"team": "payments", "tier": "gold"},
        "upstream": {"host": "auth.internal", "port": 8443, "timeout": 1.5},
    }
).encode()


# -- the same conf, four ways ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upstream:
    host: Annotated[str, Length(min=1)]
    port: Annotated[int, Range(ge=1, le=65535)] = 443
    timeout: Annotated[float, Range(gt=0)] = 1.0


@dataclass(frozen=True, slots=True)
class Conf:
    count: Annotated[int, Range(ge=1)]
    time_window: Annotated[int, Range(ge=1)]
    upstream: Upstream
    mode: Literal["strict", "lenient"] = "strict"
    header: Annotated[str, Length(min=1, max=64)] = "X-Api-Key"
    allow_anonymous: bool = False
    paths: tuple[Annotated[str, Length(min=1)], ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


class TypedPlugin(Plugin):
    name = "typed"
    conf_type = Conf


def _int(conf: dict[str, Any], name: str, minimum: int, maximum: int | None = None) -> int:
    value = conf.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfError(name, "must be an integer", got=value)
    if value < minimum or (maximum is not None and value > maximum):
        raise ConfError(name, f"must be >= {minimum}")
    return value


def _str(conf: dict[str, Any], name: str, default: str, max_length: int | None = None) -> str:
    value = conf.get(name, default)
    if not isinstance(value, str) or not value or (max_length and len(value) > max_length):
        raise ConfError(name, "must be a non-empty string", got=value)
    return value


class HandWrittenPlugin(Plugin):
    """The same checks, by hand, into the same dataclass."""

    name = "hand-written"

    def parse_conf(self, raw: bytes) -> Conf:
        conf = self.parse_json_object(raw)
        unknown = set(conf) - {
            "count", "time_window", "upstream", "mode", "header", "allow_anonymous", "paths",
            "labels",
        }  # fmt: skip
        if unknown:
            raise ConfError("unknown keys")
        mode = conf.get("mode", "strict")
        if mode not in ("strict", "lenient"):
            raise ConfError("mode", "must be one of strict, lenient")
        allow = conf.get("allow_anonymous", False)
        if not isinstance(allow, bool):
            raise ConfError("allow_anonymous", "must be true or false", got=allow)
        paths = conf.get("paths", [])
        if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            raise ConfError("paths", "must be a list of non-empty strings", got=paths)
        labels = conf.get("labels", {})
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise ConfError("labels", "must map names to strings", got=labels)
        upstream = conf.get("upstream")
        if not isinstance(upstream, dict):
            raise ConfError("upstream", "must be an object", got=upstream)
        if set(upstream) - {"host", "port", "timeout"}:
            raise ConfError("upstream", "unknown keys")
        timeout = upstream.get("timeout", 1.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfError("upstream.timeout", "must be a number > 0", got=timeout)
        return Conf(
            count=_int(conf, "count", 1),
            time_window=_int(conf, "time_window", 1),
            upstream=Upstream(
                _str(upstream, "host", ""),
                _int({"port": upstream.get("port", 443)}, "port", 1, 65535),
                float(timeout),
            ),
            mode=mode,
            header=_str(conf, "header", "X-Api-Key", 64),
            allow_anonymous=allow,
            paths=tuple(paths),
            labels=labels,
        )


class MsgUpstream(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: Annotated[str, msgspec.Meta(min_length=1)]
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 443
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 1.0


class MsgConf(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    count: Annotated[int, msgspec.Meta(ge=1)]
    time_window: Annotated[int, msgspec.Meta(ge=1)]
    upstream: MsgUpstream
    mode: Literal["strict", "lenient"] = "strict"
    header: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "X-Api-Key"
    allow_anonymous: bool = False
    paths: tuple[Annotated[str, msgspec.Meta(min_length=1)], ...] = ()
    labels: dict[str, str] = {}


class MsgspecPlugin(Plugin):
    name = "msgspec"
    conf_type = MsgConf


class PydUpstream(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    host: Annotated[str, pydantic.Field(min_length=1)]
    port: Annotated[int, pydantic.Field(ge=1, le=65535)] = 443
    timeout: Annotated[float, pydantic.Field(gt=0)] = 1.0


class PydConf(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    count: Annotated[int, pydantic.Field(ge=1)]
    time_window: Annotated[int, pydantic.Field(ge=1)]
    upstream: PydUpstream
    mode: Literal["strict", "lenient"] = "strict"
    header: Annotated[str, pydantic.Field(min_length=1, max_length=64)] = "X-Api-Key"
    allow_anonymous: bool = False
    paths: tuple[Annotated[str, pydantic.Field(min_length=1)], ...] = ()
    labels: dict[str, str] = {}


class PydanticPlugin(Plugin):
    name = "pydantic"
    conf_type = PydConf


WAYS = {
    "dataclass": TypedPlugin(),
    "hand-written": HandWrittenPlugin(),
    "msgspec": MsgspecPlugin(),
    "pydantic": PydanticPlugin(),
}
BAD = json.dumps({"count": 0, "time_window": 60, "upstream": {"host": "h"}}).encode()


@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.benchmark(group="PrepareConf: one conf entry (8 fields, a nested object)")
def test_prepare_conf(benchmark: Any, way: str) -> None:
    conf = benchmark(WAYS[way].parse_conf, CONF)
    assert conf.count == 100 and conf.upstream.port == 8443 and conf.labels["tier"] == "gold"


@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.benchmark(group="PrepareConf: a conf refused (count: must be >= 1)")
def test_prepare_conf_refused(benchmark: Any, way: str) -> None:
    def refuse() -> str:
        try:
            WAYS[way].parse_conf(BAD)
        except ConfError as exc:
            return exc.field
        raise AssertionError("accepted")

    assert benchmark(refuse) == "count"


# -- a bundled plugin: its typed conf against the parse_conf it had before ---------------------


class RequestValidationByHand(Plugin):
    """request-validation's parse_conf before its port to a conf_type (the same checks)."""

    name = "request-validation-by-hand"

    def parse_conf(self, raw: bytes) -> Any:
        conf = self.parse_json_object(raw)
        types = conf.get("allowed_content_types", [])
        if not isinstance(types, list) or not all(isinstance(v, str) and v for v in types):
            raise ConfError("allowed_content_types", "must be a list of non-empty strings")
        media = [t.split(";", 1)[0].strip().lower() for t in types]
        for i, (t, m) in enumerate(zip(types, media, strict=True)):
            if m.count("/") != 1 or m != t.strip().lower():
                raise ConfError(f"allowed_content_types[{i}]", "is not a media type")
        max_body = conf.get("max_body_bytes")
        if max_body is not None and (
            isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0
        ):
            raise ConfError("max_body_bytes", "must be an integer >= 0", got=max_body)
        fields = conf.get("required_json_fields", [])
        if not isinstance(fields, list) or not all(isinstance(v, str) and v for v in fields):
            raise ConfError("required_json_fields", "must be a list of non-empty strings")
        status = conf.get("reject_status", 400)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ConfError("reject_status", "must be an integer in 400..599", got=status)
        return (frozenset(media), max_body, tuple(fields), status)


VALIDATION = json.dumps(
    {
        "allowed_content_types": ["application/json", "text/*"],
        "max_body_bytes": 65536,
        "required_json_fields": ["name", "email"],
        "reject_status": 422,
    }
).encode()
BUNDLED = {"typed (conf_type)": RequestValidation(), "hand-written": RequestValidationByHand()}


@pytest.mark.parametrize("way", list(BUNDLED))
@pytest.mark.benchmark(group="PrepareConf: request-validation's conf")
def test_prepare_conf_request_validation(benchmark: Any, way: str) -> None:
    conf = benchmark(BUNDLED[way].parse_conf, VALIDATION)
    assert conf is not None
