"""Optional OpenTelemetry tracing of the request stages: :func:`setup_tracing` turns it on when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the ``otel`` extra installs the SDK): one server span per
request and a child span per :func:`stage`. With tracing off, :func:`stage` returns a shared
do-nothing context manager.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.disconnects import SERVER_ANSWER_KEY
from app.request_ids import current_request_id

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

log = logging.getLogger("aeserve")

# the tracer of the request being served; None when its app does not trace
_request_tracer: ContextVar[Tracer | None] = ContextVar("aeserve_request_tracer", default=None)


class _NoStage:
    """The stage of an untraced request: enters and leaves, nothing else."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_STAGE = _NoStage()


def stage(name: str) -> AbstractContextManager[Any]:
    """``with stage("decode"): ...``: a child span of the request's span while tracing is on.

    Works in sync and async code alike (``with`` around an ``await`` keeps the span open across
    it). Outside a traced request it returns a shared do-nothing context manager.
    """
    tracer = _request_tracer.get()
    if tracer is None:
        return _NO_STAGE
    return tracer.start_as_current_span(name)


def record_stage(name: str, start: float, end: float) -> None:
    """A finished child span from two ``time.perf_counter()`` readings taken earlier.

    For stages timed elsewhere, e.g. the queue wait and the batch a batch worker timed for a job.
    """
    tracer = _request_tracer.get()
    if tracer is None:
        return
    offset = time.time_ns() - time.perf_counter_ns()
    span = tracer.start_span(name, start_time=int(start * 1e9) + offset)
    span.end(end_time=int(end * 1e9) + offset)


def record_error(exc: BaseException) -> None:
    """An unexpected error on the request's span (its traceback as an event) while tracing is on."""
    if _request_tracer.get() is None:
        return
    from opentelemetry import trace

    trace.get_current_span().record_exception(exc)


class TracingMiddleware:
    """Pure ASGI middleware: one server span per request, parented by the caller's traceparent."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind, Status, StatusCode

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        status: int | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        attributes = {
            "http.request.method": method,
            "url.path": scope["path"],
            "aeserve.request_id": current_request_id(),
        }
        with self.tracer.start_as_current_span(
            method, context=propagate.extract(carrier), kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            token = _request_tracer.set(self.tracer)
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                _request_tracer.reset(token)
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                model = scope.get("path_params", {}).get("name")
                if model:
                    span.set_attribute("aeserve.model", model)
            if status is None:  # no response from the app: the server answered, or the client left
                status = cast(int, scope.get(SERVER_ANSWER_KEY, 499))  # as the metrics count it
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))


def tracing_requested() -> bool:
    """Whether the environment asks for traces: an OTLP endpoint set and the SDK not disabled."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup_tracing(app: Starlette, exporter: SpanExporter | None = None) -> None:
    """Trace ``app``'s requests when the environment asks for it (or ``exporter`` is given).

    Reads the standard ``OTEL_*`` variables (endpoint, headers, service name, sampler). Adds
    :class:`TracingMiddleware` as the outermost middleware at the time of the call, so call it
    after the middleware that should run inside the request's span. Without the SDK (the ``otel``
    extra) a requested trace setup logs one warning and the app runs untraced.
    """
    if exporter is None and not tracing_requested():
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
            "(pip install 'aeserve[otel]'): requests are not traced"
        )
        return
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "aeserve"}
    provider = TracerProvider(resource=Resource.create(attributes))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    app.state.tracer_provider = provider
    app.add_middleware(TracingMiddleware, tracer=provider.get_tracer("aeserve"))
    log.info("tracing requests to %s", os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "a local exporter")


def shutdown_tracing(app: Starlette) -> None:
    """At the lifespan's end: send the spans still buffered (no-op when the app is not traced)."""
    provider = getattr(app.state, "tracer_provider", None)
    if provider is not None:
        provider.shutdown()
