"""request-id: give every request an id, upstream and (optionally) back to the client.

Conf ``{"header_name": str, "include_in_response": bool, "algorithm": str}``, defaults
``"X-Request-Id"``, ``true``, ``"uuid"``. A request that already carries a non-empty
``header_name`` keeps its id; otherwise one is generated: ``"uuid"`` a random UUID
(``3b241101-e2bb-4255-8caf-4136c566a962``), ``"nanoid"`` 21 random URL-safe characters.
The id is set as request header ``header_name`` upstream and, with
``include_in_response``, as the same header on the response to the client.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from a6runner import ConfError, Plugin, Request

_NANOID_ALPHABET = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


# uuid and secrets are imported on first use: with hashlib, random and platform behind
# them they cost every worker about 0.5 MiB, even one whose confs never use request-id.


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def _nanoid() -> str:
    import secrets

    return "".join(secrets.choice(_NANOID_ALPHABET) for _ in range(21))


ALGORITHMS: dict[str, Callable[[], str]] = {"uuid": _uuid, "nanoid": _nanoid}
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token


@dataclass(frozen=True, slots=True)
class RequestIdConf:
    header_name: str
    include_in_response: bool
    generate: Callable[[], str]


class RequestId(Plugin):
    name = "request-id"

    def parse_conf(self, raw: bytes) -> RequestIdConf:
        conf = self.parse_json_object(raw)
        header_name = conf.get("header_name", "X-Request-Id")
        if not isinstance(header_name, str) or not _HEADER_NAME.fullmatch(header_name):
            raise ConfError("header_name", "must be a valid header name", got=header_name)
        include = conf.get("include_in_response", True)
        if not isinstance(include, bool):
            raise ConfError("include_in_response", "must be true or false", got=include)
        algorithm = conf.get("algorithm", "uuid")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise ConfError("algorithm", f"must be one of {', '.join(ALGORITHMS)}", got=algorithm)
        return RequestIdConf(header_name, include, ALGORITHMS[algorithm])

    def request_filter(self, conf: RequestIdConf, req: Request) -> None:
        request_id = req.headers.get(conf.header_name)
        if not request_id:
            request_id = conf.generate()
            req.headers.set(conf.header_name, request_id)
        if conf.include_in_response:
            req.resp_headers.set(conf.header_name, request_id)
