"""The filter chain: run a call's filters in conf order, decide the answer (Stop / Rewrite /
none for a request, the changes for a response), build the reply frame, and map every
failure to its protocol error code — all error frames come from :func:`error_frame`.

A chain of plain functions runs inline and :func:`run` returns the reply frame. When a
filter returns an awaitable, :func:`run` returns a coroutine instead that finishes the call
and returns the reply frame (or None when the call was abandoned); the server runs it as
the connection's task.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from ._confstore import NO_PREFETCH, Filters, Prefetch, Question
from ._errors import (
    CallTimeout,
    ConfTokenNotFound,
    FrameTooLarge,
    PeerClosed,
    PluginError,
    ProtocolError,
)
from ._kernels import codec
from ._plugin import ExtraInfoSource, Request, Response, RunnerServices

log = logging.getLogger("a6runner")

Call = Request | Response

ERR_BAD_REQUEST = codec.build_err_resp(codec.ERR_BAD_REQUEST)
ERR_SERVICE_UNAVAILABLE = codec.build_err_resp(codec.ERR_SERVICE_UNAVAILABLE)
ERR_CONF_TOKEN_NOT_FOUND = codec.build_err_resp(codec.ERR_CONF_TOKEN_NOT_FOUND)


def error_frame(exc: BaseException, context: str) -> bytes:
    """The error reply for ``exc``, logged once; ``context`` says what failed (the frame
    kind, with the call id when there is one). The one place exceptions become codes."""
    if isinstance(exc, ConfTokenNotFound):
        log.info("%s: %s", context, exc)
        return ERR_CONF_TOKEN_NOT_FOUND
    if isinstance(exc, FrameTooLarge):  # our reply, not the peer's frame: a ProtocolError too
        log.error("%s: reply too large to frame (%s): answered SERVICE_UNAVAILABLE", context, exc)
        return ERR_SERVICE_UNAVAILABLE
    if isinstance(exc, ProtocolError):
        log.warning("%s: %s: answered BAD_REQUEST", context, exc)
        return ERR_BAD_REQUEST
    if isinstance(exc, PluginError):
        log.error(
            "%s: %s: answered SERVICE_UNAVAILABLE", context, exc, exc_info=exc.__cause__ or exc
        )
    elif isinstance(exc, CallTimeout):
        log.error("%s: %s: cancelled, answered SERVICE_UNAVAILABLE", context, exc)
    else:
        log.error(
            "%s failed: %s: answered SERVICE_UNAVAILABLE", context, type(exc).__name__, exc_info=exc
        )
    return ERR_SERVICE_UNAVAILABLE


# -- what ends a chain and what the reply says, per phase ---------------------------------


def request_ended(req: Request) -> bool:
    """True once a filter wrote a response (Stop): later filters are not called."""
    r = req._response
    return r is not None and r.written


def request_reply(req: Request) -> bytes:
    """The HTTPReqCall.Resp frame for what the filters did."""
    r = req._response
    if r is not None and r.written:
        entries = r._headers.items() if r._headers is not None else []
        rh = req._resp_headers
        if rh is not None and len(rh):
            # resp_headers written by earlier plugins still reach the client,
            # unless the stopping plugin set the same name.
            stop_names = {n.lower() for n, _ in entries}
            entries = [e for e in rh.items() if e[0].lower() not in stop_names] + entries
        return codec.build_stop(req.id, r.status, entries, r.body)
    path = req._path
    if path is not None and path == req._decoded.path:
        path = None
    h = req._headers
    hdr_changes = h.changes_joined() if h is not None else ()  # [] when unchanged
    a = req._args
    arg_changes = a.changes() if a is not None else ()
    rh = req._resp_headers
    resp_entries = rh.items() if rh is not None else ()
    body = req._new_body or None
    if path is None and not hdr_changes and not arg_changes and not resp_entries and not body:
        return codec.build_http_req_call_resp(req.id)
    return codec.build_rewrite(req.id, path, hdr_changes, arg_changes, resp_entries, body)


def response_ended(resp: Response) -> bool:
    """True once a filter changed status, headers or body: later filters are skipped."""
    h = resp._headers
    return (
        (resp._status is not None and resp._status != resp._decoded.status)
        or resp._new_body is not None
        or (h is not None and h.changed)
    )


# Hop-by-hop and framing headers never forwarded in an HTTPRespCall reply: APISIX frames
# the (possibly new) body itself.
_DROP_ALWAYS = ("content-length", "transfer-encoding", "connection")
# Representation validators that a new body invalidates.
_DROP_ON_NEW_BODY = (*_DROP_ALWAYS, "etag", "content-md5")


def response_reply(resp: Response) -> bytes:
    """The HTTPRespCall.Resp frame for what the filters did."""
    # A status a filter set is sent even when it equals the upstream's (0 = unchanged).
    status = resp._status if resp._status is not None else 0
    h = resp._headers
    body = resp._new_body
    entries: list[tuple[str, str]] = []
    if body is not None or (h is not None and h.changed):
        # APISIX replaces the upstream headers with exactly what we send: send them all.
        # The filters are done: dropping from the map itself uses its folded names.
        resulting = resp.headers
        for name in _DROP_ON_NEW_BODY if body is not None else _DROP_ALWAYS:
            resulting.delete(name)
        entries = resulting.items()
    return codec.build_http_resp_call_resp(resp.id, status, entries, body)


@dataclass(frozen=True, slots=True)
class Phase:
    """Everything that differs between the request and the response phase."""

    index: int  # of this phase's filters in PreparedConf.filters
    name: str  # "request" | "response"
    frame: str  # the call's frame, for logs
    decode: Callable[[bytes], Any]
    make_call: type[Request] | type[Response]
    ended: Callable[[Any], bool]
    reply: Callable[[Any], bytes]


REQUEST = Phase(
    0,
    "request",
    "HTTPReqCall",
    codec.decode_http_req_call_req,
    Request,
    request_ended,
    request_reply,
)
RESPONSE = Phase(
    1,
    "response",
    "HTTPRespCall",
    codec.decode_http_resp_call_req,
    Response,
    response_ended,
    response_reply,
)


# -- running a chain ----------------------------------------------------------------------


def _plugin_name(filt: Callable[..., Any]) -> str:
    return str(getattr(getattr(filt, "__self__", None), "name", "?"))


def _plugin_failed(phase: Phase, call: Call, filt: Callable[..., Any], exc: BaseException) -> bytes:
    error = PluginError(_plugin_name(filt), phase.name, exc)
    error.__cause__ = exc
    return error_frame(error, f"call {call.id}")


class CallChannel(ExtraInfoSource, Protocol):
    """The connection a call came on: asks APISIX for ExtraInfo, takes the reply."""

    # Why the runner cancelled the call's task ("deadline", "closed"), None otherwise.
    cancel_reason: str | None
    call_timeout: float

    def send(self, frame: bytes) -> None: ...

    def prefetch(
        self, call: Call, questions: tuple[Question, ...], then: Callable[[], Pending]
    ) -> None:
        """Send ``questions`` in one write; once every answer is in the call's cache, call
        ``then()`` to go on with the call (no task: the answers drive it)."""


Pending = Coroutine[Any, Any, None] | None


def run(
    phase: Phase,
    decoded: Any,
    filters: Filters,
    prefetch: Prefetch,
    channel: CallChannel,
    services: RunnerServices,
) -> Pending:
    """Run ``filters`` on the call ``decoded`` and send the reply on ``channel``. When a
    filter returns an awaitable, return a coroutine that finishes the call instead (it
    sends the reply itself, and raises nothing but CancelledError). When the chain
    declared what it reads (``prefetch``), the questions go out before the first filter
    that needs them and the chain goes on when APISIX has answered them all."""
    return resume(phase, phase.make_call(decoded, channel, services), filters, 0, prefetch, channel)


def resume(
    phase: Phase,
    call: Call,
    filters: Filters,
    start: int,
    prefetch: Prefetch,
    channel: CallChannel,
) -> Pending:
    """Run the filters from ``start`` on (see ``run``)."""
    ended = phase.ended
    at = prefetch[0]
    last = len(filters) - 1
    for i in range(start, last + 1):
        if i == at:
            then = functools.partial(resume, phase, call, filters, i, NO_PREFETCH, channel)
            channel.prefetch(call, prefetch[1], then)
            return None
        filt, conf = filters[i]
        try:
            pending = filt(conf, call)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: one call only
            channel.send(_plugin_failed(phase, call, filt, exc))
            return None
        # a filter's return value matters only when it is awaitable
        if pending is not None and inspect.isawaitable(pending):
            return _finish(phase, call, filters, i, pending, prefetch, channel)
        if i < last and ended(call):  # (after the last filter the loop ends anyway)
            break
    try:
        frame = phase.reply(call)
    except BaseException as exc:
        frame = error_frame(exc, f"call {call.id}")
    channel.send(frame)
    return None


def _reply(phase: Phase, call: Call) -> bytes:
    try:
        return phase.reply(call)
    except BaseException as exc:
        return error_frame(exc, f"call {call.id}")


async def _fetch(call: Call, questions: tuple[Question, ...]) -> None:
    """The prefetch, from a task: what the call does not have yet, in one round trip."""
    missing = [q for q in questions if not call._has(*q)]
    if missing:
        answers = call._source.ask_many(missing)
        for (info_type, name), answer in zip(missing, answers, strict=True):
            call._remember(info_type, name, await answer)


async def _finish(
    phase: Phase,
    call: Call,
    filters: Filters,
    index: int,
    pending: Awaitable[None],
    prefetch: Prefetch,
    channel: CallChannel,
) -> None:
    filt = filters[index][0]
    ended = phase.ended
    try:
        await pending
        if not ended(call):
            for i in range(index + 1, len(filters)):
                if i == prefetch[0]:
                    await _fetch(call, prefetch[1])
                filt, conf = filters[i]
                result = filt(conf, call)
                if result is not None and inspect.isawaitable(result):
                    await result
                if ended(call):
                    break
    except asyncio.CancelledError as exc:
        reason = channel.cancel_reason
        if reason == "deadline":
            timeout = CallTimeout(_plugin_name(filt), channel.call_timeout)
            channel.send(error_frame(timeout, f"call {call.id}"))
        elif reason is None:  # not the runner's doing: the plugin raised it
            channel.send(_plugin_failed(phase, call, filt, exc))
        else:
            raise  # the connection is gone: nobody to answer
        return
    except PeerClosed:
        log.info("call %d abandoned: APISIX closed the connection", call.id)
        return
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: one call only
        channel.send(_plugin_failed(phase, call, filt, exc))
        return
    channel.send(_reply(phase, call))
