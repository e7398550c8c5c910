"""Prometheus metrics: requests by route, model and status; queue, compute, batch size per model.

Each app has its own ``CollectorRegistry`` (tests build several apps in one process). With
``AESERVE_WORKERS`` > 1 every worker process exposes its own numbers; scrape each or run one worker
per container.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class ModelMetrics:
    """The children of the per-model metrics, bound once so the hot path does no label lookup."""

    queue_wait: Histogram
    compute: Histogram
    batch_size: Histogram
    queue_depth: Gauge
    rejected: Counter
    load_seconds: Gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.model_names: set[str] = set()
        r = self.registry
        self.requests = Counter(
            "aeserve_requests", "HTTP requests answered", ["route", "model", "status"], registry=r
        )
        self.latency = Histogram(
            "aeserve_request_duration_seconds",
            "Time from request start to the last response byte",
            ["route", "model", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "aeserve_queue_wait_seconds",
            "Time a request waited for its batch to start",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute = Histogram(
            "aeserve_compute_seconds",
            "Model time per batch",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "aeserve_batch_size",
            "Rows (images or latents) per model batch",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "aeserve_queue_depth", "Requests waiting in the model's queue", ["model"], registry=r
        )
        self.rejected = Counter(
            "aeserve_queue_rejected",
            "Requests refused with 503 because the queue was full",
            ["model"],
            registry=r,
        )
        self.load_seconds = Gauge(
            "aeserve_model_load_seconds",
            "Time to load, verify and warm the model",
            ["model"],
            registry=r,
        )

    def for_model(self, name: str) -> ModelMetrics:
        self.model_names.add(name)
        return ModelMetrics(
            queue_wait=self.queue_wait.labels(name),
            compute=self.compute.labels(name),
            batch_size=self.batch_size.labels(name),
            queue_depth=self.queue_depth.labels(name),
            rejected=self.rejected.labels(name),
            load_seconds=self.load_seconds.labels(name),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware overhead) counting and timing every response."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # the labelled children, bound once per (route, model, status): routes are templates and
        # unknown model names collapse to "unknown", so this stays as small as the label set
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            model = scope.get("path_params", {}).get("name", "")
            if model and model not in self.metrics.model_names:
                model = "unknown"  # bound the label set: no series per made-up name
            labels = (path, model, str(status))
            children = self._children.get(labels)
            if children is None:
                children = (
                    self.metrics.requests.labels(*labels),
                    self.metrics.latency.labels(*labels),
                )
                self._children[labels] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - start)
