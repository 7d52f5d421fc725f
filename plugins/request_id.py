"""request-id: give every request an id, upstream and (optionally) back to the client.

Conf ``{"header_name": str, "include_in_response": bool, "algorithm": str}``, defaults
``"X-Request-Id"``, ``true``, ``"uuid"``. A request that already carries a non-empty
``header_name`` keeps its id; otherwise one is generated: ``"uuid"`` a random UUID
(``3b241101-e2bb-4255-8caf-4136c566a962``), ``"nanoid"`` 21 random URL-safe characters.
The id is set as request header ``header_name`` upstream and, with
``include_in_response``, as the same header on the response to the client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from a6runner import Plugin, Request
from a6runner.confs import Matches, ignore_unknown_fields

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
HEADER_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # an RFC 9110 token


@ignore_unknown_fields
@dataclass(frozen=True, slots=True)
class RequestIdConf:
    header_name: Annotated[str, Matches(HEADER_NAME, "a valid header name")] = "X-Request-Id"
    include_in_response: bool = True
    algorithm: Literal["uuid", "nanoid"] = "uuid"


class RequestId(Plugin):
    name = "request-id"
    conf_type = RequestIdConf

    def request_filter(self, conf: RequestIdConf, req: Request) -> None:
        request_id = req.headers.get(conf.header_name)
        if not request_id:
            request_id = ALGORITHMS[conf.algorithm]()
            req.headers.set(conf.header_name, request_id)
        if conf.include_in_response:
            req.resp_headers.set(conf.header_name, request_id)
