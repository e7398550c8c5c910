"""A request's lifecycle: admitted by its cost, bound by a deadline, ended early by a disconnect
or a drain. docs/serving.md has the table of stages, limits and status codes.

- ``Ticket``: one request from its arrival: its deadline (a timer fails it with 503 ``timeout``),
  its reserved work, and ``check()``, which model code calls between batches and tiles to stop
  when the ticket has failed (deadline, client gone, shutdown).
- ``WorkBudget``: a model's queued-and-running work in units (pixels); a request over the
  per-request cap is 413 ``too_much_work``, one that does not fit is 503 ``overloaded``, and so is
  one whose turn would not come before its deadline (``app.pace``).
- ``Drain``: SIGTERM's state: readiness turns 503 at once; after the drain timeout every request
  still in flight is answered 503 ``shutting_down``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, cast

from starlette.types import Receive, Scope

from app.errors import ApiError, ClientDisconnected, overloaded
from app.metrics import ModelMetrics
from app.pace import Pace

log = logging.getLogger("aeserve")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# an ASGI scope extension (app/server.py offers it): ``{"callbacks": [...]}``, a list the request
# appends to, each called when the client disconnects before the answer is complete; the server
# sets ``CLIENT_GONE`` in it then (for a request that looks later), and ``BODY_TIMED_OUT`` when it
# closed the connection because the body was too slow
DISCONNECT_EXTENSION = "aeserve.disconnect"
CLIENT_GONE = "client_gone"
BODY_TIMED_OUT = "body_timed_out"


def disconnect_extension(scope: Mapping[str, object]) -> dict[str, Any] | None:
    """The request's ``aeserve.disconnect`` extension, when its server offers one."""
    extensions = cast(dict[str, Any], scope.get("extensions") or {})
    return cast(dict[str, Any] | None, extensions.get(DISCONNECT_EXTENSION))


def timeout_error(timeout_s: float) -> ApiError:
    return ApiError(
        503,
        "timeout",
        f"the request did not finish within {timeout_s:g} s (AESERVE_REQUEST_TIMEOUT_S); "
        "its work was stopped. Retry later or send less work",
        {"Retry-After": "1"},
    )


def shutting_down() -> ApiError:
    return ApiError(
        503, "shutting_down", "this instance is shutting down; retry on another", {"Retry-After": "1"}
    )


class Ticket:
    """One request in flight. Create on the event loop; ``check`` may run on any thread."""

    __slots__ = ("_receive", "_scope", "_timer", "_watcher", "budget", "cost", "deadline", "error",
                 "future", "timeout_s")

    def __init__(self, timeout_s: float, receive: Receive | None = None,
                 scope: Scope | None = None) -> None:
        self.timeout_s = timeout_s
        self._receive = receive  # the ASGI receive: after the body, it returns on a disconnect
        self._scope = scope
        self._watcher: asyncio.Task[None] | None = None
        self.deadline = time.monotonic() + timeout_s
        self.error: BaseException | None = None
        self.future: asyncio.Future[Any] | None = None  # the queued job's, while it waits
        self.cost = 0
        self.budget: WorkBudget | None = None
        self._timer = asyncio.get_running_loop().call_later(timeout_s, self._expire)

    def _expire(self) -> None:
        self.fail(timeout_error(self.timeout_s))

    def fail(self, error: BaseException) -> None:
        """End the request early with ``error`` (the first failure wins)."""
        if self.error is not None:
            return
        self.error = error
        if self.future is not None and not self.future.done():
            self.future.set_exception(error)

    def watch(self) -> None:
        """Once the body is read: a client that has disconnected, or disconnects from now on,
        fails the ticket.

        Through the server's ``aeserve.disconnect`` extension when it offers one, else with a task
        waiting on ``receive`` (which returns ``http.disconnect`` once the body has been read)."""
        if self._watcher is not None or self._receive is None:
            return
        extension = None if self._scope is None else disconnect_extension(self._scope)
        if extension is not None:
            self._receive = None
            if extension.get(CLIENT_GONE):  # while the body was read and decoded
                self._client_gone()
            else:
                extension["callbacks"].append(self._client_gone)
        else:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(self._receive))

    def _client_gone(self) -> None:
        self.fail(ClientDisconnected())

    async def _watch(self, receive: Receive) -> None:
        message = await receive()
        if message["type"] == "http.disconnect":
            self.fail(ClientDisconnected())

    @property
    def alone(self) -> bool:
        """Whether this is the only request its model's budget holds (none other is being read,
        queued or run for that model)."""
        return self.budget is not None and len(self.budget.live) == 1

    def check(self) -> None:
        """Raise the ticket's failure, or the timeout when the deadline passed: stop the work."""
        if self.error is None and time.monotonic() > self.deadline:
            self.error = timeout_error(self.timeout_s)
        if self.error is not None:
            raise self.error

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(failed=exc_type is not None)

    def close(self, failed: bool = False) -> None:
        """The answer is out, or the request ``failed`` (any error, its own or the ticket's): stop
        the timer, give the work back."""
        self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        if self.budget is not None:
            self.budget.release(self, answered=not failed and self.error is None)
            self.budget = None


class WorkBudget:
    """The work one model holds queued and running, in units; admission happens here. Each
    admission is logged at debug, with its request's id."""

    def __init__(self, model: str, limit: int, cap: int, metrics: ModelMetrics,
                 pace: Pace | None = None) -> None:
        self.model = model
        self.limit = limit
        self.cap = cap
        self.pace = pace or Pace()
        self.used = 0
        self.live: set[Ticket] = set()  # every open request of this model, admitted or not yet
        self.closed: ApiError | None = None
        self.metrics = metrics
        self._idle = asyncio.Event()
        self._idle.set()

    def open(self, ticket: Ticket) -> None:
        """A new request, before its body is read: refused at once when closed or already full."""
        try:
            if self.closed is not None:
                raise self.closed
            if self.used >= self.limit:
                raise self._overloaded(0)
        except ApiError as exc:
            ticket.close()
            self.metrics.rejected(exc.code).inc()
            raise
        ticket.budget = self
        self.live.add(ticket)
        self._idle.clear()

    def admit(self, ticket: Ticket, cost: int) -> None:
        """Reserve ``cost`` units for ``ticket``: 413 over the cap, 503 when it does not fit."""
        try:
            self._admit(ticket, cost)
        except ApiError as exc:
            self.metrics.rejected(exc.code).inc()
            raise

    def _admit(self, ticket: Ticket, cost: int) -> None:
        if ticket.budget is not self:
            self.open(ticket)
        if ticket.cost + cost > self.cap:
            cost += ticket.cost
            raise ApiError(
                413,
                "too_much_work",
                f"this request costs {cost / 1e6:.3g} megapixel-equivalents of work (pixels "
                f"decoded plus pixels the network processes); the limit is {self.cap / 1e6:.3g} "
                "(AESERVE_MAX_WORK). Send fewer or smaller images",
            )
        if self.closed is not None:
            raise self.closed
        if self.used + cost > self.limit:
            raise self._overloaded(cost)
        ticket.check()
        self._check_wait(ticket)
        if self.used == 0:
            self.pace.busy()
        self.used += cost
        ticket.cost += cost
        self.metrics.queued_work.inc(cost)
        log.debug("%s admitted %d work units; it holds %d of %d (AESERVE_QUEUE_WORK)",
                  self.model, cost, self.used, self.limit)

    def _check_wait(self, ticket: Ticket) -> None:
        """503 for a request whose turn would not even come before its deadline: the other
        requests' work ahead of it, at the model's pace, less what the running one has done, past
        the time it has left. Its own work is not counted (one pace serves every kind of request,
        and its own cost could be misjudged), nor are its own earlier steps: a request that finds
        no other work is always let in."""
        ahead = self.used - ticket.cost
        ahead_s = self.pace.wait_s(ahead) if ahead > 0 else None
        if ahead_s is None:
            return
        ahead_s = max(0.0, ahead_s - self.pace.elapsed_s())
        left_s = ticket.deadline - time.monotonic()
        if ahead_s <= left_s:
            return
        raise overloaded(
            f"model {self.model} has about {ahead_s:.1f} s of other requests' work ahead of this "
            f"one, past its deadline in {max(0.0, left_s):.1f} s (AESERVE_REQUEST_TIMEOUT_S). "
            "Retry after the Retry-After delay",
            retry_after_s=max(1, math.ceil(ahead_s)),
        )

    def release(self, ticket: Ticket, answered: bool = False) -> None:
        """Give back ``ticket``'s work; ``answered``: it was answered, and its time teaches the
        pace (a failed request's time is carried over to the next that is)."""
        if ticket.cost:
            self.pace.left(ticket.cost, done=answered)
        self.used -= ticket.cost
        self.live.discard(ticket)
        if not self.live:
            self._idle.set()
        self.metrics.queued_work.dec(ticket.cost)
        ticket.cost = 0
        if isinstance(ticket.error, ClientDisconnected):
            self.metrics.cancelled.inc()
        elif isinstance(ticket.error, ApiError) and ticket.error.code == "timeout":
            self.metrics.expired.inc()

    async def wait_idle(self) -> None:
        """Until no open request holds this model."""
        await self._idle.wait()

    def close(self, error: ApiError) -> None:
        """No more admissions; every open request fails with ``error``."""
        self.closed = error
        for ticket in list(self.live):
            ticket.fail(error)

    def _overloaded(self, cost: int) -> ApiError:
        return overloaded(
            f"model {self.model} has {self.used / 1e6:.3g} of its {self.limit / 1e6:.3g} "
            f"megapixel-equivalents of work queued (AESERVE_QUEUE_WORK); this request needs "
            f"{cost / 1e6:.3g}. Retry after the Retry-After delay"
        )


class Drain:
    """What SIGTERM starts: not ready at once, then 503 for whatever is still in flight."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.started: float | None = None
        self._budgets: set[WorkBudget] = set()  # the models being served or retired, until stopped
        self._timer: asyncio.TimerHandle | None = None

    @property
    def draining(self) -> bool:
        return self.started is not None

    def watch(self, budget: WorkBudget) -> None:
        self._budgets.add(budget)

    def unwatch(self, budget: WorkBudget) -> None:
        """A stopped model's budget: nothing of it is left to drain."""
        self._budgets.discard(budget)

    def begin(self) -> None:
        """Call on the event loop when the server is told to stop; idempotent."""
        if self.started is not None:
            return
        self.started = time.monotonic()
        in_flight = sum(len(b.live) for b in self._budgets)
        log.info("draining: %d request(s) in flight get up to %g s (AESERVE_DRAIN_TIMEOUT_S)",
                 in_flight, self.timeout_s)
        self._timer = asyncio.get_running_loop().call_later(self.timeout_s, self.expire)

    def expire(self) -> None:
        """The drain timeout passed: answer everything still held with 503 ``shutting_down``."""
        held = sum(len(b.live) for b in self._budgets)
        if held:
            log.warning("drain timeout: answering %d request(s) with 503 shutting_down", held)
        for budget in self._budgets:
            budget.close(shutting_down())

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def on_signals(signals: tuple[int, ...], callback: Callable[[], object],
               chain: bool = True) -> Callable[[], None]:
    """Run ``callback`` on the event loop when one of ``signals`` arrives; returns the undo.

    With ``chain`` the handler installed before (the server's: call this from the lifespan's
    startup, uvicorn has installed its handlers by then) runs next, or the default action when
    there was none. Signals reach only the main thread; elsewhere (a test client's portal thread)
    nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in signals}

    def handler(sig: int, frame: FrameType | None) -> None:
        # in a fresh context: the signal may land while a request runs, and its request id (a
        # context variable) is no part of what the callback does
        loop.call_soon_threadsafe(callback, context=contextvars.Context())
        if not chain:
            return
        then = previous[sig]
        if callable(then):
            then(sig, frame)
        else:  # no server handler: restore the default and let the signal act
            signal.signal(sig, then)
            signal.raise_signal(sig)

    for sig in signals:
        signal.signal(sig, handler)

    def undo() -> None:
        for sig, then in previous.items():
            signal.signal(sig, then)

    return undo
