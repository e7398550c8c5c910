"""A request's admission: admitted by its cost, bound by a deadline, ended early by a disconnect
or a drain (``app.drain``). docs/serving.md has the table of stages, limits and status codes.

- ``Ticket``: one request from its arrival: its deadline (a timer fails it with 503 ``timeout``),
  its reserved work, and ``check()``, which model code calls between batches and tiles to stop
  when the ticket has failed (deadline, client gone, shutdown).
- ``WorkBudget``: a model's queued-and-running work in units (pixels); a request over the
  per-request cap is 413 ``too_much_work``, one that does not fit is 503 ``overloaded``, and so is
  one whose turn would not come before its deadline (``app.pace``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from starlette.types import Receive, Scope

from app.disconnects import CLIENT_GONE, disconnect_extension
from app.errors import ApiError, ClientDisconnected, overloaded
from app.metrics import ModelMetrics
from app.pace import Pace

log = logging.getLogger("aeserve")


def timeout_error(timeout_s: float) -> ApiError:
    return ApiError(
        503,
        "timeout",
        f"the request did not finish within {timeout_s:g} s (AESERVE_REQUEST_TIMEOUT_S); "
        "its work was stopped. Retry later or send less work",
        {"Retry-After": "1"},
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
