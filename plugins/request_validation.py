"""request-validation: refuse requests whose content type or body is not acceptable.

Conf (every field optional)::

    {"allowed_content_types": ["application/json", "text/*"],
     "max_body_bytes": 65536,
     "required_json_fields": ["name", "email"],
     "reject_status": 400}

Checks, in order; the first that fails answers ``reject_status`` (400..599, default 400)
with a JSON body ``{"message": ...}`` saying why:

* ``allowed_content_types``: the media type of nginx's ``$content_type`` (asked from
  APISIX, parameters such as ``charset`` ignored, case-insensitive) must be one of these;
  ``type/*`` allows a whole type. A request without a content type is refused.
* ``max_body_bytes``: the body may not be longer. A ``Content-Length`` header over the
  limit is refused without fetching the body; otherwise the body is fetched and measured.
* ``required_json_fields``: the body must be a JSON object that has each of these
  top-level keys.

The filter asks APISIX (ExtraInfo) only for what the conf needs: the ``content_type``
variable for the first check, the body for the other two.

A guard: a conf that does not parse does not let requests through unchecked. Every call
with it is refused with 503 until the route is fixed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated

from a6runner import Plugin, Request
from a6runner.confs import Length, Matches, Range, ignore_unknown_fields

NonEmptyStr = Annotated[str, Length(min=1)]
# one "/" and no parameters (";"): "application/json", "text/*"
MediaType = Annotated[
    str, Length(min=1), Matches(r"[^/;]*/[^/;]*", "a media type like 'type/subtype'")
]


@ignore_unknown_fields
@dataclass(slots=True)
class RequestValidationConf:
    allowed_content_types: tuple[MediaType, ...] = ()
    max_body_bytes: Annotated[int, Range(ge=0)] | None = None
    required_json_fields: tuple[NonEmptyStr, ...] = ()
    reject_status: Annotated[int, Range(ge=400, le=599)] = 400
    media_types: frozenset[str] = field(init=False)  # allowed_content_types, folded

    def __post_init__(self) -> None:
        self.media_types = frozenset(map(_media_type, self.allowed_content_types))


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


class RequestValidation(Plugin):
    name = "request-validation"
    conf_type = RequestValidationConf
    guard = True

    async def request_filter(self, conf: RequestValidationConf, req: Request) -> None:
        problem = await self._problem(conf, req)
        if problem is not None:
            req.respond(
                conf.reject_status,
                json.dumps({"message": problem}),
                {"Content-Type": "application/json"},
            )

    async def _problem(self, conf: RequestValidationConf, req: Request) -> str | None:
        """Why the request is refused, or None when it passes."""
        if conf.media_types:
            media_type = _media_type(await req.var("content_type"))  # an nginx variable
            if not media_type:
                return "a content type is required"
            wildcard = media_type.split("/", 1)[0] + "/*"
            if media_type not in conf.media_types and wildcard not in conf.media_types:
                return f"content type {media_type} is not allowed"
        limit = conf.max_body_bytes
        if limit is None and not conf.required_json_fields:
            return None  # nothing needs the body: do not fetch it
        declared = req.headers.get("content-length") or ""
        if limit is not None and declared.isdecimal() and int(declared) > limit:
            return f"request body is larger than {limit} bytes"  # known without fetching it
        body = await req.body()
        if limit is not None and len(body) > limit:
            return f"request body is larger than {limit} bytes"
        if conf.required_json_fields:
            try:
                document = json.loads(body)
            except (ValueError, RecursionError):
                return "request body is not valid JSON"
            if not isinstance(document, dict):
                return "request body must be a JSON object"
            missing = [f for f in conf.required_json_fields if f not in document]
            if missing:
                return f"missing required fields: {', '.join(missing)}"
        return None
