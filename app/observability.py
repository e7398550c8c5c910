"""Request ids, log formats and optional OpenTelemetry tracing of the request stages.

- :class:`RequestIdMiddleware` takes the request's ``X-Request-ID`` (or makes one), keeps it in a
  context variable while the request runs and returns it in the response's ``X-Request-ID``.
- :func:`log_config` is the logging setup for uvicorn's ``log_config=``: every line of the
  ``aeserve`` and ``uvicorn`` loggers carries the request id (``-`` outside a request), as text or
  as one JSON object per line.
- :func:`setup_tracing` turns tracing on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the ``otel``
  extra installs the SDK): one server span per request and a child span per :func:`stage`. With
  tracing off, :func:`stage` returns a shared do-nothing context manager.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
from contextlib import AbstractContextManager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

log = logging.getLogger("aeserve")

REQUEST_ID_HEADER = b"x-request-id"
# what a client may send: 1-128 visible ASCII characters (no spaces, so a log line stays parseable)
_VALID_ID = re.compile(rb"[\x21-\x7e]{1,128}")

# a random (version 4) UUID as 32 hex digits without building a UUID object. Request ids need to
# be unique, not unguessable; each process seeds its own.
_UUID4_KEEP = ~(0xF000 << 64) & ~(0xC000 << 48)
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_request_id() -> str:
    return f"{random.getrandbits(128) & _UUID4_KEEP | _UUID4_SET:032x}"


_request_id: ContextVar[str] = ContextVar("aeserve_request_id", default="-")
# the tracer of the request being served; None when its app does not trace
_request_tracer: ContextVar[Tracer | None] = ContextVar("aeserve_request_tracer", default=None)


def current_request_id() -> str:
    """The id of the request being served, ``-`` outside one."""
    return _request_id.get()


# the scope keys by which the server (app/server.py) and the app share what each knows of a request
REQUEST_ID_KEY = "aeserve.request_id"  # its id, decided once (``request_id_of``)
# the status the server answered it with itself, cutting the connection (a malformed or too slow
# body): the app sees a disconnect, and counts and logs the request under that status, not 499
SERVER_ANSWER_KEY = "aeserve.server_answer"


def request_id_of(scope: Scope) -> str:
    """The request's id: its ``X-Request-ID`` when it sent a valid one, else a new one; decided
    once and kept in the scope, so that the app and a refusal by the server name it alike."""
    found = scope.get(REQUEST_ID_KEY)
    if found is None:
        raw = next((value for key, value in scope["headers"] if key == REQUEST_ID_HEADER), b"")
        found = raw.decode("ascii") if _VALID_ID.fullmatch(raw) else new_request_id()
        scope[REQUEST_ID_KEY] = found
    return cast(str, found)


class RequestIdMiddleware:
    """Pure ASGI middleware: a request id for the request's logs and its response header.

    On an exception the id is left set: the request's task ends with it, and the error handler
    that runs outside this middleware still logs it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # a WebSocket denial is an HTTP answer too
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        raw = request_id.encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                message = {**message, "headers": [*message.get("headers", ()), (REQUEST_ID_HEADER, raw)]}
            await send(message)

        token = _request_id.set(request_id)
        await self.app(scope, receive, send_with_id)
        _request_id.reset(token)


# ---------------------------------------------------------------------------------------------- logs


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` on every record (the current request's id, or ``-``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class QuietProbes(logging.Filter):
    """Drops uvicorn's access line of a probe or scrape that succeeded (``/healthz``, ``/readyz``,
    ``/metrics``): an orchestrator asks every few seconds, tens of thousands of lines a day per
    replica that say nothing. A failed one is kept; at ``debug`` level every one is."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:  # client, method, path, version, status
            path, status = args[2], args[4]
            return not (path in PROBE_PATHS and isinstance(status, int) and status < 400)
        return True


_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "color_message",  # uvicorn's colored copy of the message
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, pid, then any extras.

    uvicorn's access lines also get ``client``, ``method``, ``path`` and ``status`` fields.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "pid": record.process,  # which worker, with several
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _version, status = record.args
            entry.update(client=client, method=method, path=path, status=status)
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
_LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10, "trace": 5}


def log_config(level: str = "info", fmt: Literal["text", "json"] = "text") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn's ``log_config=``.

    The ``aeserve`` and ``uvicorn`` loggers (and their children) write to stderr at ``level``,
    every line with its request id; other libraries' warnings go the same way through the root
    logger. Probes that succeed are left out of the access log above ``debug`` (``QuietProbes``).
    uvicorn still applies its own ``log_level`` and ``access_log`` on top of this.
    """
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be text or json, got {fmt!r}")
    numeric = _LEVELS[level.lower()]
    formatter: dict[str, Any] = (
        {"()": "app.observability.JsonFormatter"} if fmt == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "app.observability.RequestIdFilter"},
                    "quiet_probes": {"()": "app.observability.QuietProbes"}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "aeserve": {"handlers": ["default"], "level": numeric, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": numeric, "propagate": False},
            "uvicorn.error": {"level": numeric},
            "uvicorn.access": {"handlers": ["default"], "level": numeric, "propagate": False,
                               "filters": ["quiet_probes"] if numeric > logging.DEBUG else []},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }


# ------------------------------------------------------------------------------------------- tracing


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
            "aeserve.request_id": _request_id.get(),
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
