"""The app factory and its lifespan: load, verify and warm every checkpoint, serve, then drain."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from app.auth import require_token
from app.cors import JsonCORSMiddleware
from app.drain import Drain, shutting_down
from app.errors import install_error_handlers, responses
from app.gc_tuning import tuned_gc
from app.head import HeadAsGetMiddleware
from app.limits import BodySizeLimitMiddleware
from app.metrics import Metrics, RequestMetricsMiddleware
from app.ranges import whole_static_mounts
from app.registry import Registry, reload_in_background
from app.request_ids import RequestIdMiddleware
from app.routers import admin, demo, document_bodies, health, images, latents, models
from app.server import exit_for_a_fresh_process, exits_on_a_dead_batch_worker
from app.settings import Settings
from app.signals import on_signals
from app.stopping import STOP_SIGNALS
from app.tracing import setup_tracing, shutdown_tracing
from app.unexpected import UnexpectedErrors
from app.websockets import NoWebSocketsMiddleware


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    registry: Registry = app.state.registry
    drain: Drain = app.state.drain
    torch.set_num_threads(settings.torch_threads)
    undo_stop = on_signals(STOP_SIGNALS, drain.begin)
    undo_hup = on_signals((signal.SIGHUP,), lambda: reload_in_background(registry), chain=False)
    try:
        await registry.load_all()
        with tuned_gc(settings.gc_freeze, settings.gc_gen0_threshold):
            app.state.ready = True
            yield
    finally:
        app.state.ready = False
        undo_stop()
        undo_hup()
        drain.cancel()
        await registry.stop_all(shutting_down())
        app.state.metrics.close()
        shutdown_tracing(app)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured app; models load when its lifespan starts."""
    settings = settings or Settings()
    app = FastAPIOffline(  # /docs and /redoc with their assets served here: no CDN, works offline
        title="aeserve",
        version="0.1.0",
        description="Denoise, encode, decode, sample and score with image autoencoders.",
        lifespan=lifespan,
        # a path with a trailing slash is no route (JSON 404), not a redirect built from the
        # client's Host header
        redirect_slashes=False,
    )
    whole_static_mounts(app.routes)  # the docs' assets answered whole, Range ignored
    metrics = Metrics()
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.drain = Drain(settings.drain_timeout_s)
    on_dead = exit_for_a_fresh_process if exits_on_a_dead_batch_worker() else None
    app.state.registry = Registry(settings, metrics, app.state.drain, on_dead=on_dead)
    app.state.ready = False
    install_error_handlers(app)
    api = [] if settings.api_token is None else [Depends(require_token)]
    api_errors = {} if settings.api_token is None else responses(401)
    for router in (images.router, latents.router, models.router, admin.router):
        app.include_router(router, dependencies=api, responses=api_errors)
    app.include_router(health.router)
    app.include_router(demo.router)
    document_bodies(app, (*images.BODIES, *latents.BODIES))
    # middleware, innermost first: HEAD answered as GET where a GET route is, WebSocket
    # handshakes refused (the service has no WebSocket endpoint), unexpected errors (a logged 500,
    # the connection kept), body limit, CORS (answers preflights), metrics (counts all HTTP),
    # tracing, request id (outermost: every log line of a request carries its id)
    app.add_middleware(HeadAsGetMiddleware, routes=app.router.routes)
    app.add_middleware(NoWebSocketsMiddleware)
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes,
                       max_json_bytes=settings.max_json_bytes, max_bodies_bytes=settings.bodies_limit)
    if settings.cors_origins:
        app.add_middleware(
            JsonCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["Authorization", "Content-Type", "Accept", "X-Request-ID"],
            expose_headers=["X-Noise-Sigma", "X-Seed", "X-Steps", "Retry-After", "X-Request-ID"],
        )
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    setup_tracing(app)
    app.add_middleware(RequestIdMiddleware)
    return app
