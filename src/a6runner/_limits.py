"""Where a limit is kept (``LimitPolicy``) and what a counter answers (``Quota``).

``policy: local`` keeps counters and buckets in the runner (shared by its workers);
``redis`` and ``redis-cluster`` keep them in Redis, shared by every gateway node. The conf
fields are APISIX's (``apisix/utils/redis-schema.lua``), with the same defaults, so a
route written for APISIX's limit-count or limit-req carries over.

Conf errors name the field and what is wrong with it, never the value: a value may be a
password.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import importlib.util
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, NamedTuple

from ._errors import A6Error, ConfError, OptionalPackageMissing

POLICIES = ("local", "redis", "redis-cluster")


class LimitStoreError(A6Error):
    """The store of a limit (Redis) could not answer: unreachable, timed out, or refused
    the command. The message names the target, never its credentials."""


class Quota(NamedTuple):
    """What ``services.counter()`` answers: whether this call fits in the window, the
    limit, what is left of it after this call, and the seconds until the window ends.
    (A named tuple: made on every call, it must be cheap.)"""

    allowed: bool
    """Whether this call fits (a call that does not fit is not counted)."""
    limit: int
    """The window's limit, as asked."""
    remaining: int
    """What is left of the limit after this call (0 when it did not fit)."""
    reset: float
    """Seconds until the window ends."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """One Redis server or one cluster (``nodes`` are then the seed nodes). Equal targets
    share one connection pool per worker. The password is part of the identity, never of
    the repr."""

    nodes: tuple[tuple[str, int], ...]
    """(host, port) of the server, or the cluster's seed nodes."""
    cluster: bool = False
    """A Redis Cluster (``redis-cluster``) rather than one server (``redis``)."""
    username: str | None = None
    """ACL user name (``redis_username``)."""
    password: str | None = field(default=None, repr=False)
    """AUTH password (``redis_password``); never logged."""
    database: int = 0
    """The database number (SELECT), one server only."""
    timeout: float = 1.0
    """Seconds each connect, send and read may take (``redis_timeout`` / 1000)."""
    ssl: bool = False
    """TLS."""
    ssl_verify: bool = False
    """Check the server's certificate."""
    keepalive_timeout: float = 10.0
    """Seconds an unused pool keeps its connections."""
    keepalive_pool: int = 100
    """Connections per worker (per node of a cluster)."""
    cluster_name: str | None = None
    """The cluster's name, for the logs."""
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # the key of a worker's pools, looked up on every call: hash the fields once
        compared = tuple(getattr(self, f.name) for f in dataclasses.fields(self) if f.compare)
        object.__setattr__(self, "_hash", hash(compared))

    def __hash__(self) -> int:
        return self._hash

    def describe(self) -> str:
        """For log lines: the kind and the addresses, no credentials."""
        addresses = ", ".join(_address(host, port) for host, port in self.nodes)
        if self.cluster:
            return f"redis-cluster {self.cluster_name} ({addresses})"
        return f"redis {addresses} db {self.database}"


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """``local`` (``redis`` is None) or a Redis target. ``LimitPolicy.from_conf(conf)``
    reads APISIX's ``policy`` and ``redis_*`` fields."""

    name: str = "local"
    """``"local"``, ``"redis"`` or ``"redis-cluster"``."""
    redis: RedisTarget | None = None
    """Where Redis is; None for ``local`` (the runner keeps the limit)."""

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> LimitPolicy:
        """The policy of a plugin conf; ConfError (naming the field) when a field is
        wrong or a Redis policy is asked for without the ``redis`` package."""
        name = conf.get("policy", "local")
        if name not in POLICIES:
            raise ConfError("policy must be one of local, redis, redis-cluster")
        if name == "local":
            return LOCAL
        if importlib.util.find_spec("redis") is None:
            install = "pip install 'a6runner[redis]'"
            raise OptionalPackageMissing(
                "redis", install, f"policy {name} needs the redis package: {install}"
            )
        load_redis()  # starts now, while the conf is prepared; the first call waits for it
        if name == "redis":
            target = RedisTarget(
                nodes=((_string(conf, "redis_host", min_length=2), _port(conf)),),
                username=_optional_string(conf, "redis_username"),
                password=_optional_string(conf, "redis_password", min_length=0),
                database=_integer(conf, "redis_database", 0, minimum=0),
                timeout=_integer(conf, "redis_timeout", 1000, minimum=1) / 1000,
                ssl=_boolean(conf, "redis_ssl", False),
                ssl_verify=_boolean(conf, "redis_ssl_verify", False),
                keepalive_timeout=_keepalive_timeout(conf),
                keepalive_pool=_integer(conf, "redis_keepalive_pool", 100, minimum=1),
            )
        else:
            target = RedisTarget(
                nodes=_cluster_nodes(conf),
                cluster=True,
                username=_optional_string(conf, "redis_username"),
                password=_optional_string(conf, "redis_password", min_length=0),
                timeout=_integer(conf, "redis_timeout", 1000, minimum=1) / 1000,
                ssl=_boolean(conf, "redis_cluster_ssl", False),
                ssl_verify=_boolean(conf, "redis_cluster_ssl_verify", False),
                keepalive_timeout=_keepalive_timeout(conf),
                keepalive_pool=_integer(conf, "redis_keepalive_pool", 100, minimum=1),
                cluster_name=_string(conf, "redis_cluster_name", min_length=1),
            )
        return cls(name, target)

    @staticmethod
    def conf_schema() -> dict[str, Any]:
        """The JSON Schema of the fields ``LimitPolicy.from_conf`` reads (``policy`` and the
        ``redis_*`` fields), to merge into a limit plugin's ``conf_schema``: ``properties``
        and the ``allOf`` saying which fields each policy requires."""
        string = {"type": "string"}
        flag = {"type": "boolean", "default": False}

        def integer(minimum: int, default: int, maximum: int | None = None) -> dict[str, Any]:
            bounds = {"maximum": maximum} if maximum is not None else {}
            return {"type": "integer", "minimum": minimum, **bounds, "default": default}

        return {
            "properties": {
                "policy": {"enum": list(POLICIES), "default": "local"},
                "redis_host": {**string, "minLength": 2},
                "redis_port": integer(1, 6379, 65535),
                "redis_username": {**string, "minLength": 1},
                "redis_password": string,
                "redis_database": integer(0, 0),
                "redis_timeout": integer(1, 1000),
                "redis_ssl": flag,
                "redis_ssl_verify": flag,
                "redis_keepalive_timeout": integer(1000, 10000),
                "redis_keepalive_pool": integer(1, 100),
                "redis_cluster_nodes": {
                    "type": "array",
                    "minItems": 1,
                    "items": {**string, "minLength": 2, "maxLength": 100},
                },
                "redis_cluster_name": {**string, "minLength": 1},
                "redis_cluster_ssl": flag,
                "redis_cluster_ssl_verify": flag,
            },
            "allOf": [
                {
                    "if": {"properties": {"policy": {"const": "redis"}}, "required": ["policy"]},
                    "then": {"required": ["redis_host"]},
                },
                {
                    "if": {
                        "properties": {"policy": {"const": "redis-cluster"}},
                        "required": ["policy"],
                    },
                    "then": {"required": ["redis_cluster_nodes", "redis_cluster_name"]},
                },
            ],
        }


LOCAL = LimitPolicy()

_redis_module: concurrent.futures.Future[ModuleType] | None = None


def load_redis() -> concurrent.futures.Future[ModuleType]:
    """``a6runner._redis`` (redis-py and what it imports: asyncio streams, ssl, hiredis),
    imported once, in a thread: on the event loop the first import would block every
    connection of the process for about 0.1 s. (Only serving processes use it, and they
    never fork: a fork during an import would leave the child's import lock held.)"""
    global _redis_module
    if _redis_module is None:
        future: concurrent.futures.Future[ModuleType] = concurrent.futures.Future()

        def load() -> None:
            try:
                future.set_result(importlib.import_module("a6runner._redis"))
            except BaseException as exc:  # the first call reports it
                future.set_exception(exc)

        threading.Thread(target=load, name="a6runner-import-redis", daemon=True).start()
        _redis_module = future
    return _redis_module


def conf_fingerprint(conf: Mapping[str, Any]) -> str:
    """A short name for a conf, the same on every gateway node that has it, so a limit
    named after it is one limit cluster-wide. The ``redis_*`` fields (where the limit is
    kept, and the password) are left out; any other change gives a new name, and so a
    fresh limit, as a conf change does in APISIX."""
    kept = {k: v for k, v in conf.items() if not k.startswith("redis_")}
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    import hashlib  # on first use: it loads OpenSSL's libcrypto, ~0.5 MiB per process

    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _string(conf: Mapping[str, Any], name: str, min_length: int) -> str:
    if name not in conf:
        raise ConfError(f"{name} is required")
    value = conf[name]
    if not isinstance(value, str) or len(value) < min_length:
        raise ConfError(f"{name} must be a string of at least {min_length} characters")
    return value


def _optional_string(conf: Mapping[str, Any], name: str, min_length: int = 1) -> str | None:
    if name not in conf:
        return None
    return _string(conf, name, min_length) or None


def _integer(
    conf: Mapping[str, Any], name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    value = conf.get(name, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ConfError(f"{name} must be an integer {bounds}")
    return value


def _boolean(conf: Mapping[str, Any], name: str, default: bool) -> bool:
    value = conf.get(name, default)
    if not isinstance(value, bool):
        raise ConfError(f"{name} must be true or false")
    return value


def _port(conf: Mapping[str, Any]) -> int:
    return _integer(conf, "redis_port", 6379, minimum=1, maximum=65535)


def _keepalive_timeout(conf: Mapping[str, Any]) -> float:
    return _integer(conf, "redis_keepalive_timeout", 10000, minimum=1000) / 1000


def _cluster_nodes(conf: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    nodes = conf.get("redis_cluster_nodes")
    if not isinstance(nodes, list) or not nodes:
        raise ConfError("redis_cluster_nodes must be a non-empty list of 'host:port' strings")
    parsed = []
    for i, node in enumerate(nodes):
        where = f"redis_cluster_nodes[{i}]"
        if not isinstance(node, str) or not 2 <= len(node) <= 100:
            raise ConfError(f"{where} must be a 'host:port' string of 2 to 100 characters")
        host, sep, port = node.rpartition(":")
        if not sep or host.startswith("[") != host.endswith("]"):
            raise ConfError(f"{where} must be 'host:port' (IPv6 as '[addr]:port')")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfError(f"{where} must be 'host:port' with a port in 1..65535")
        parsed.append((host, int(port)))
    return tuple(parsed)
