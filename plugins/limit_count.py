"""limit-count: at most ``count`` requests per ``time_window`` seconds for each client key.

APISIX's limit-count conf: ``count`` (integer > 0) and ``time_window`` (seconds, integer
> 0) are required; ``key_type`` ``var`` (default), ``var_combination`` or ``constant``
with ``key`` (default ``remote_addr``); ``rejected_code`` (200..599, default 503) and
``rejected_msg``; ``policy`` ``local`` (default: counted by this runner, all workers
together), ``redis`` or ``redis-cluster`` (counted in Redis: one count for every gateway
node) with the ``redis_*`` fields; ``allow_degradation`` (default false);
``show_limit_quota_header`` (default true); ``group`` (routes with the same group share
their counts).

A window opens with the first request of a key and lasts ``time_window`` seconds. A
request that fits passes, with ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (seconds until the window resets) on the client response; one that
does not is answered ``rejected_code`` with the same headers (remaining 0) and, with
``rejected_msg``, the body ``{"error_msg": rejected_msg}``. When Redis cannot answer, the
request passes with ``allow_degradation`` and is answered 500
``{"error_msg": "failed to limit count"}`` without it (the failure is logged either way).

The key: ``var`` reads the nginx variable named ``key`` (``remote_addr`` is the client
address every call carries, so it costs no ExtraInfo round trip); ``var_combination``
fills each ``$var`` / ``${var}`` of ``key`` in (at least one must have a value);
``constant`` is ``key`` itself. No value: the client address, as in APISIX.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from a6runner import (
    ConfError,
    LimitPolicy,
    LimitStoreError,
    Plugin,
    Request,
    conf_fingerprint,
)

KEY_TYPES = ("var", "var_combination", "constant")
_VAR = re.compile(r"\$\{([\w.]+)\}|\$(\w+)")
_JSON = {"Content-Type": "application/json"}
FAILED = json.dumps({"error_msg": "failed to limit count"}).encode()


@dataclass(frozen=True, slots=True)
class LimitCountConf:
    count: int
    time_window: int
    key_type: str
    key: str
    key_parts: tuple[str, ...]  # var_combination: literal, var name, literal, var name, ...
    rejected_code: int
    rejected_body: bytes | None
    policy: LimitPolicy
    allow_degradation: bool
    show_headers: bool
    scope: str  # names this conf's counts: its group, or its fingerprint


def _split_vars(template: str) -> tuple[str, ...]:
    """``"a $x b ${y}"`` -> ``("a ", "x", " b ", "y", "")``: odd places name variables."""
    parts: list[str] = []
    last = 0
    for m in _VAR.finditer(template):
        parts += (template[last : m.start()], m[1] or m[2])
        last = m.end()
    parts.append(template[last:])
    return tuple(parts)


def _positive_int(conf: dict[str, Any], name: str) -> int:
    if name not in conf:
        raise ConfError(f"{name} is required")
    value = conf[name]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfError(f"{name} must be an integer > 0")
    return value


def _flag(conf: dict[str, Any], name: str, default: bool) -> bool:
    value = conf.get(name, default)
    if not isinstance(value, bool):
        raise ConfError(f"{name} must be true or false")
    return value


def _text(conf: dict[str, Any], name: str, default: str | None) -> str | None:
    value = conf.get(name, default)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfError(f"{name} must be a non-empty string")
    return value


_POLICY = LimitPolicy.conf_schema()


class LimitCount(Plugin):
    name = "limit-count"
    # parse_conf is written by hand (LimitPolicy.from_conf reads APISIX's redis_* fields):
    # the schema `a6-runner schema` prints says the same, as far as a schema can.
    conf_schema = {
        "type": "object",
        "properties": {
            "count": {"type": "integer", "minimum": 1},
            "time_window": {"type": "integer", "minimum": 1},
            "key_type": {"enum": list(KEY_TYPES), "default": "var"},
            "key": {"type": "string", "minLength": 1, "default": "remote_addr"},
            "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 503},
            "rejected_msg": {"type": "string", "minLength": 1},
            "allow_degradation": {"type": "boolean", "default": False},
            "show_limit_quota_header": {"type": "boolean", "default": True},
            "group": {"type": "string", "minLength": 1},
            **_POLICY["properties"],
        },
        "required": ["count", "time_window"],
        "allOf": _POLICY["allOf"],
    }

    def parse_conf(self, raw: bytes) -> LimitCountConf:
        conf = self.parse_json_object(raw)
        key_type = conf.get("key_type", "var")
        if key_type not in KEY_TYPES:
            raise ConfError("key_type must be one of var, var_combination, constant")
        key = _text(conf, "key", "remote_addr") or ""
        rejected_code = conf.get("rejected_code", 503)
        if (
            isinstance(rejected_code, bool)
            or not isinstance(rejected_code, int)
            or not 200 <= rejected_code <= 599
        ):
            raise ConfError("rejected_code must be an integer in 200..599")
        rejected_msg = _text(conf, "rejected_msg", None)
        group = _text(conf, "group", None)
        return LimitCountConf(
            count=_positive_int(conf, "count"),
            time_window=_positive_int(conf, "time_window"),
            key_type=key_type,
            key=key,
            key_parts=_split_vars(key),
            rejected_code=rejected_code,
            rejected_body=(
                None if rejected_msg is None else json.dumps({"error_msg": rejected_msg}).encode()
            ),
            policy=LimitPolicy.from_conf(conf),
            allow_degradation=_flag(conf, "allow_degradation", False),
            show_headers=_flag(conf, "show_limit_quota_header", True),
            scope=f"group:{group}" if group is not None else conf_fingerprint(conf),
        )

    async def request_filter(self, conf: LimitCountConf, req: Request) -> None:
        key = await self._key(conf, req)
        try:
            quota = await req.services.counter(
                f"{self.name}:{conf.scope}:{key}", conf.count, conf.time_window, conf.policy
            )
        except LimitStoreError:  # logged by the runner's Redis client
            if not conf.allow_degradation:
                req.respond(500, FAILED, _JSON)
            return
        headers = (
            {
                "X-RateLimit-Limit": str(conf.count),
                "X-RateLimit-Remaining": str(quota.remaining),
                "X-RateLimit-Reset": str(math.ceil(quota.reset)),
            }
            if conf.show_headers
            else {}
        )
        if not quota.allowed:
            body = conf.rejected_body
            req.respond(conf.rejected_code, body or b"", {**headers, **_JSON} if body else headers)
            return
        for name, value in headers.items():
            req.resp_headers.set(name, value)

    @staticmethod
    async def _key(conf: LimitCountConf, req: Request) -> str:
        value: str | None
        if conf.key_type == "constant":
            return conf.key
        if conf.key_type == "var":
            value = await _var(req, conf.key)
        else:
            parts = list(conf.key_parts)
            found = False
            for i in range(1, len(parts), 2):
                var = await _var(req, parts[i])
                found = found or var is not None
                parts[i] = var or ""
            value = "".join(parts) if found else None
        return value if value is not None else await _var(req, "remote_addr") or ""


async def _var(req: Request, name: str) -> str | None:
    if name == "remote_addr":
        client = req.src_ip  # what APISIX sends with every call: no round trip
        if client is not None:
            return str(client)
    return await req.var(name)
