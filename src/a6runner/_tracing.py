"""Trace context and ``--otel`` spans.

``req.trace_context`` / ``resp.trace_context`` (:func:`trace_context_of`) give plugins
the W3C ``traceparent``/``tracestate`` of the request, so they can log it or pass it on.
What the runner can see of it:

* an HTTPReqCall carries the request headers as they are when the ext-plugin runs: the
  client's ``traceparent``, or the one APISIX's ``opentelemetry`` plugin injected (it
  runs before ``ext-plugin-pre-req`` and sets the header to the gateway's own span);
* an HTTPRespCall carries the upstream's response headers only: the request's context is
  then in nginx variables, which cost an ExtraInfo round trip each, so they are used
  only when the call already has them (a plugin declared them in ``required_vars`` or
  awaited them): ``opentelemetry_context_traceparent`` (set by the opentelemetry plugin
  with ``set_ngx_var: true``), else ``http_traceparent`` / ``http_tracestate`` (the
  client request's headers).

With ``--otel`` (extra ``a6runner[otel]``) each HTTPReqCall / HTTPRespCall becomes a
SERVER span, child of that context, and each plugin filter an INTERNAL span under it,
through the OpenTelemetry API only: which SDK and exporter record them is the
deployment's choice (``opentelemetry-instrument`` and the standard ``OTEL_*``
variables); without an SDK the API's spans cost little and go nowhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, Protocol

from ._errors import ConfigError

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
# Where a call's context may be, in order: nginx variables already fetched in this call.
TRACEPARENT_VARS = ("opentelemetry_context_traceparent", "http_traceparent")
TRACESTATE_VAR = "http_tracestate"


class TraceContext(NamedTuple):
    """A request's W3C trace context (https://www.w3.org/TR/trace-context/)."""

    traceparent: str
    """``"00-<trace id>-<parent span id>-<flags>"``, lower-case hex."""
    tracestate: str | None = None
    """The vendor entries, as received; None when there were none."""

    @property
    def trace_id(self) -> str:
        """The trace's id: 32 hex digits."""
        return self.traceparent[3:35]

    @property
    def span_id(self) -> str:
        """The id of the span that called us (the gateway's, or the client's)."""
        return self.traceparent[36:52]

    @property
    def sampled(self) -> bool:
        """The traceparent's sampled flag."""
        return bool(int(self.traceparent[53:55], 16) & 1)

    def headers(self) -> list[tuple[str, str]]:
        """``traceparent`` (and ``tracestate``) headers, to pass the context on."""
        out = [("traceparent", self.traceparent)]
        if self.tracestate:
            out.append(("tracestate", self.tracestate))
        return out


def parse_traceparent(value: str | None) -> str | None:
    """``value`` normalised to lower case when it is a valid traceparent, else None."""
    if not value:
        return None
    value = value.strip().lower()
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, span_id, _, rest = match.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    if version == "00" and rest is not None:
        return None  # version 00 has exactly four fields
    return value[:55]


def trace_context_of(
    request_headers: Iterable[tuple[str, str | None]], fetched: Mapping[str, str | None] | None
) -> TraceContext | None:
    """A call's trace context from what it already has: the request headers as APISIX
    sent them (a request call), else the nginx variables it fetched (``TRACEPARENT_VARS``)."""
    found = headers_context(request_headers)
    if found is not None or not fetched:
        return found
    for name in TRACEPARENT_VARS:
        traceparent = parse_traceparent(fetched.get(name))
        if traceparent is not None:
            return TraceContext(traceparent, fetched.get(TRACESTATE_VAR) or None)
    return None


def headers_context(headers: Iterable[tuple[str, str | None]]) -> TraceContext | None:
    """The trace context in decoded request headers (name, value) pairs."""
    traceparent = tracestate = None
    for name, value in headers:
        lower = name.lower()
        if lower == "traceparent":
            traceparent = value
        elif lower == "tracestate":
            tracestate = value
    parsed = parse_traceparent(traceparent)
    return TraceContext(parsed, tracestate or None) if parsed is not None else None


# -- --otel ---------------------------------------------------------------------------------


def require_opentelemetry() -> None:
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--otel needs the OpenTelemetry API: pip install 'a6runner[otel]' (and an SDK "
            "and exporter, e.g. opentelemetry-distro and opentelemetry-exporter-otlp, "
            "configured by the OTEL_* variables)"
        ) from None


class CallPhase(Protocol):
    """What a call's span reads of its phase (``_chain.Phase``, which imports this module
    through the plugin API: a protocol keeps the import one way)."""

    @property
    def name(self) -> str:
        """``"request"`` (its headers may carry the trace context) or ``"response"``."""

    @property
    def frame(self) -> str:
        """The call's frame, the span's name: ``"HTTPReqCall"`` or ``"HTTPRespCall"``."""


class CallSpan:
    """A call's span: ended with its outcome when the reply is written."""

    __slots__ = ("span",)

    def __init__(self, span: Any) -> None:
        self.span = span

    def end_call(self, outcome: str, error: str | None) -> None:
        span = self.span
        span.set_attribute("a6runner.outcome", outcome)
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("a6runner.error", error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()


class PluginSpan:
    """One filter's span."""

    __slots__ = ("span",)

    def __init__(self, span: Any) -> None:
        self.span = span

    def end(self) -> None:
        self.span.end()

    def end_error(self, exc: BaseException, failed: bool) -> None:
        span = self.span
        if failed:
            from opentelemetry.trace import Status, StatusCode

            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        span.end()


class Tracing:
    """Makes the spans of ``--otel`` through the global tracer provider."""

    def __init__(self, tracer: Any, worker: int | None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._tracer = tracer
        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()
        self._worker = worker

    @classmethod
    def start(cls, worker: int | None = None) -> Tracing:
        require_opentelemetry()
        from opentelemetry import trace

        return cls(trace.get_tracer("a6runner"), worker)

    def call_span(self, phase: CallPhase, decoded: Any) -> CallSpan:
        from opentelemetry.trace import SpanKind

        parent = None
        if phase.name == "request":
            found = headers_context(decoded.headers)
            if found is not None:
                parent = self._propagator.extract(dict(found.headers()))
        attributes: dict[str, Any] = {
            "a6runner.call_id": decoded.id,
            "a6runner.conf_token": decoded.conf_token,
        }
        if self._worker is not None:
            attributes["a6runner.worker"] = self._worker
        span = self._tracer.start_span(
            phase.frame, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        return CallSpan(span)

    def plugin_span(self, plugin: str, call: CallSpan | None) -> PluginSpan:
        from opentelemetry.trace import SpanKind

        parent = self._trace.set_span_in_context(call.span) if call is not None else None
        span = self._tracer.start_span(
            f"plugin {plugin}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes={"a6runner.plugin": plugin},
        )
        return PluginSpan(span)
