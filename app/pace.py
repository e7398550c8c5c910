"""How fast a model gets through its work: seconds per work unit, learned from its requests.

A model's work runs one request (or one batch) at a time on its model thread, so while it is busy
the time between two requests leaving is the time the second one took: its decode, its share of
the model thread and its encode, as they overlapped with the others'. ``Pace`` keeps a sum of
those intervals and one of the work units that left, both fading with the model's busy time (by
half every ``HALF_LIFE_S`` of it, so that the estimate follows a machine that gets busier), and
their ratio is the model's seconds per unit: a ratio of sums, not a mean of ratios, so that a
batch whose requests leave together (the first one carrying the whole batch's time) counts as
what it was. A request that failed (deadline, disconnect, an error) teaches nothing itself: its
interval carries over to the next request that is answered (a request that timed out in the queue
took no model time; one stopped midway did, and the estimate errs on the slow side).

``WorkBudget`` uses it to refuse at once a request that would only wait for its deadline
(docs/serving.md, "A request's lifecycle").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

HALF_LIFE_S = 30.0  # of busy time: what the model did a minute of work ago weighs a quarter


class Pace:
    """Seconds per work unit of one model, from the requests that have left it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._since: float | None = None  # start of the current interval: busy from, or last left
        self._seconds = 0.0
        self._units = 0.0

    @property
    def seconds_per_unit(self) -> float | None:
        """None until a request has left."""
        return self._seconds / self._units if self._units > 0 else None

    def busy(self) -> None:
        """The model went from holding no work to holding some: an interval starts."""
        self._since = self.clock()

    def left(self, units: int, done: bool) -> None:
        """A request holding ``units`` left; ``done``: it was answered (its interval counts, else
        it runs on into the next one)."""
        if not done or units <= 0:
            return
        now = self.clock()
        if self._since is not None:
            interval = max(0.0, now - self._since)
            keep = math.exp2(-interval / HALF_LIFE_S)
            self._seconds = keep * self._seconds + interval
            self._units = keep * self._units + units
        self._since = now

    def elapsed_s(self) -> float:
        """How long the current interval has run: what the request being served has done."""
        return 0.0 if self._since is None else max(0.0, self.clock() - self._since)

    def wait_s(self, units: int) -> float | None:
        """The estimated seconds to get through ``units``; None while the pace is unknown."""
        pace = self.seconds_per_unit
        return None if pace is None else units * pace
