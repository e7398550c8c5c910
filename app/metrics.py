"""Prometheus metrics: requests by route, model and status; queues, compute, loads per model.

Each app has its own ``CollectorRegistry`` (tests build several apps in one process).

With several worker processes (``AESERVE_WORKERS`` > 1) every scrape, whichever worker answers it,
reports the totals of all workers: ``python -m app`` runs uvicorn inside :func:`prepare_multiprocess`,
which gives the workers a fresh ``PROMETHEUS_MULTIPROC_DIR``; each worker writes its values to
files there and :meth:`Metrics.render` merges the files of every worker (prometheus-client's
multiprocess mode). Counters and histograms are summed over all workers, including ones that have
exited (totals never go down); the queue gauges are summed over live workers; the model load time
is the slowest live worker's latest load.

A model's series appear when its checkpoint is loaded. One whose checkpoint a reload refused before
it ever served keeps only ``aeserve_model_loads_total`` (:meth:`Metrics.forget`). In multiprocess
mode nothing is removed (prometheus-client cannot take a value out of a worker's files), but there a
reload only verifies checkpoints (``Registry.check``) and makes no series.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.routing import iter_route_contexts
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.disconnects import SERVER_ANSWER_KEY
from app.errors import ClientDisconnected

log = logging.getLogger("aeserve")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

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
LOAD_RESULTS = ("ok", "refused")


@dataclass(frozen=True, slots=True)
class ModelMetrics:
    """The children of one model's metrics, bound once so the hot path does no label lookup.

    ``rejected`` takes its second label when called: ``m.rejected("overloaded").inc()`` (one label
    lookup a call; it counts rare events). Loads are counted by ``Metrics.count_load``.
    """

    queue_wait: Histogram
    compute: Histogram
    batch_size: Histogram
    queued_requests: Gauge  # inc() on enqueue, dec() when the request leaves the queue
    queued_work: Gauge  # inc(n)/dec(n) (or inc(-n)): work units held, queued and running
    rejected: Callable[[str], Counter]  # by reason
    cancelled: Counter  # requests whose client went away before their answer
    expired: Counter  # requests whose deadline passed before their answer
    load_seconds: Gauge


def multiprocess_dir() -> str | None:
    """The directory the workers share when multiprocess mode is on in this process, else None.

    prometheus-client picks file-backed values when it is first imported, from the environment: a
    variable set later (in the parent, or in a test process) leaves this process single-process.
    """
    path = os.environ.get(MULTIPROC_ENV)
    if path and getattr(values.ValueClass, "_multiprocess", False):
        return path
    return None


@contextlib.contextmanager
def prepare_multiprocess(workers: int, root: str | os.PathLike[str] | None = None) -> Iterator[str | None]:
    """Around ``uvicorn.run`` in the parent: a fresh metrics directory for ``workers`` > 1 workers.

    Sets ``PROMETHEUS_MULTIPROC_DIR`` (uvicorn's spawned workers inherit the environment) to a new
    directory under ``root`` (default: the temp directory, ``TMPDIR``) and removes the directory and
    the variable on exit. With one worker it does nothing and yields None.
    """
    if workers <= 1:
        yield None
        return
    path = tempfile.mkdtemp(prefix="aeserve-metrics-", dir=root)
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def _sweep_dead_workers(path: str) -> None:
    """Drop the live gauges of workers that died without :meth:`Metrics.close` (killed, crashed)."""
    pids = set()
    for name in os.listdir(path):
        match = _LIVE_FILE.fullmatch(name)
        if match:
            pids.add(int(match.group(1)))
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, path)
        except PermissionError:  # alive, another user's
            pass


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.model_names: set[str] = set()
        self.multiprocess_dir = multiprocess_dir()
        if os.environ.get(MULTIPROC_ENV) and self.multiprocess_dir is None:
            log.warning(
                "%s is set but prometheus_client was imported before it: this process's metrics are its own",
                MULTIPROC_ENV,
            )
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
            "aeserve_compute_seconds", "Model time per batch", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "aeserve_batch_size",
            "Rows (images or latents) per model batch",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queued_requests = Gauge(
            "aeserve_queue_depth",
            "Requests waiting in the model's queue (all workers)",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queued_work = Gauge(
            "aeserve_queue_work",
            "Work the model holds queued and running, in work units: pixels decoded plus pixels "
            "the network processes (all workers)",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rejected = Counter(
            "aeserve_queue_rejected",
            "Requests refused at admission, before their work was queued, by reason: the error "
            "code (overloaded, shutting_down, timeout: 503; too_much_work: 413)",
            ["model", "reason"],
            registry=r,
        )
        self.cancelled = Counter(
            "aeserve_requests_cancelled",
            "Requests dropped because their client went away before the answer",
            ["model"],
            registry=r,
        )
        self.expired = Counter(
            "aeserve_requests_expired",
            "Requests dropped because their deadline passed before the answer",
            ["model"],
            registry=r,
        )
        self.load_seconds = Gauge(
            "aeserve_model_load_seconds",
            "Time to load, verify and warm the model (the slowest live worker's latest load)",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.loads = Counter(
            "aeserve_model_loads",
            "Checkpoint loads, at startup and on reloads, by result (ok, refused)",
            ["model", "result"],
            registry=r,
        )
        self._render_registry = r
        if self.multiprocess_dir is not None:
            self._render_registry = CollectorRegistry()
            MultiProcessCollector(self._render_registry, self.multiprocess_dir)

    def for_model(self, name: str) -> ModelMetrics:
        self.model_names.add(name)
        return ModelMetrics(
            queue_wait=self.queue_wait.labels(name),
            compute=self.compute.labels(name),
            batch_size=self.batch_size.labels(name),
            queued_requests=self.queued_requests.labels(name),
            queued_work=self.queued_work.labels(name),
            rejected=lambda reason: self.rejected.labels(name, reason),
            cancelled=self.cancelled.labels(name),
            expired=self.expired.labels(name),
            load_seconds=self.load_seconds.labels(name),
        )

    def count_load(self, name: str, result: str) -> None:
        """One load of ``name``'s checkpoint (startup or reload), by result: ``ok`` or ``refused``."""
        for each in LOAD_RESULTS:  # both series exist from the first load, the other at 0
            self.loads.labels(name, each)
        self.loads.labels(name, result).inc()

    def forget(self, name: str) -> None:
        """Drop the series of a model that never served (its checkpoint was refused, maybe after
        its load had made them), all but its ``aeserve_model_loads_total``. Nothing in
        multiprocess mode (see the module's docstring)."""
        if self.multiprocess_dir is not None or name not in self.model_names:
            return  # (not in model_names: ``for_model`` never made them)
        self.model_names.discard(name)
        # ``for_model`` made each of these; ``rejected`` has none: no request reached the model
        for metric in (self.queue_wait, self.compute, self.batch_size, self.queued_requests,
                       self.queued_work, self.cancelled, self.expired, self.load_seconds):
            metric.remove(name)

    def render(self) -> bytes:
        """The text exposition: this app's metrics, or every worker's merged in multiprocess mode."""
        if self.multiprocess_dir is not None:
            _sweep_dead_workers(self.multiprocess_dir)
        return generate_latest(self._render_registry)

    def close(self) -> None:
        """At the worker's shutdown: its live gauges leave the totals (its counters stay)."""
        if self.multiprocess_dir is not None and Path(self.multiprocess_dir).is_dir():
            mark_process_dead(os.getpid(), self.multiprocess_dir)


UNMATCHED = "unmatched"
PREFLIGHT = "preflight"  # a CORS preflight, answered by the CORS middleware, not by its route


def route_of(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The path template of the route that answered and its path parameters.

    A request refused before routing (a 413 by Content-Length) has no route in its scope: it gets
    the route it would have reached, matched as the router matches (the first full match, else the
    first whose path matches but not its method). ``unmatched`` when no route matches the path: a
    label is a template, never a raw path, so the label set stays bounded. A CORS preflight is
    ``preflight``: counted under the route it asks about, it would add an answer that route never
    gave to the route's counts and latencies.
    """
    route = scope.get("route")
    if route is not None:
        return getattr(route, "path", None) or UNMATCHED, scope.get("path_params", {})
    if scope.get("method") == "OPTIONS" and any(
        key == b"access-control-request-method" for key, _ in scope.get("headers", ())
    ):
        return PREFLIGHT, {}
    partial: tuple[str, dict[str, Any]] | None = None
    for context in iter_route_contexts(getattr(scope.get("app"), "routes", [])):
        match, child = context.matches(scope)
        if match is Match.NONE or context.path is None:
            continue
        found = (context.path, child.get("path_params", {}))
        if match is Match.FULL:
            return found
        partial = partial or found
    return partial or (UNMATCHED, {})


class RequestMetricsMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware overhead) counting and timing every response.

    A client that goes away mid-upload or before its answer (the app raises
    :class:`app.errors.ClientDisconnected` or Starlette's ``ClientDisconnect``) counts as status 499
    and gets one info line; the exception stops here, since nothing can be sent. A request that
    the server answered itself mid-body and cut off (400 for a malformed body, 408 for a slow one;
    ``SERVER_ANSWER_KEY``) counts under that status, and the server's line says why.
    """

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
        counted = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, counted
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # counted before the last part goes out: a client that has its answer finds it
                # in the next scrape
                self._count(scope, status, time.perf_counter() - start)
                counted = True
            await send(message)

        gone = False
        answered: int | None = None
        try:
            await self.app(scope, receive, send_wrapper)
        except (ClientDisconnected, ClientDisconnect):
            # the server cut the connection after answering itself (it logged why), or the client left
            answered = scope.get(SERVER_ANSWER_KEY)
            gone = answered is None
            status = 499 if answered is None else answered
        finally:
            elapsed = time.perf_counter() - start
            model = self._count(scope, status, elapsed) if not counted else ""
        if gone or answered is not None:
            log.info(
                "%s: %s %s model=%s after %.3f s",
                "client went away" if gone else f"the server answered {answered} and closed",
                scope["method"],
                scope["path"],
                model or "-",
                elapsed,
            )

    def _count(self, scope: Scope, status: int, elapsed: float) -> str:
        """Count one answer of ``status`` and time it; returns the model label it went under."""
        path, params = route_of(scope)
        model = params.get("name", "")
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
        children[1].observe(elapsed)
        return model
