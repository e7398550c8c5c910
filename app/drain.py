"""SIGTERM's drain: readiness turns 503 at once; after the drain timeout every request still in
flight is answered 503 ``shutting_down``. docs/serving.md has the table of stages, limits and
status codes."""

from __future__ import annotations

import asyncio
import logging
import time

from app.admission import WorkBudget
from app.errors import ApiError

log = logging.getLogger("aeserve")


def shutting_down() -> ApiError:
    return ApiError(
        503, "shutting_down", "this instance is shutting down; retry on another", {"Retry-After": "1"}
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
