"""``--time-budget``: fit a run's epochs to the time there is, and hold it to that time step by step.

Two parts. The plan: after ``CALIBRATION_STEPS`` steps past the first epoch's end the pace is
measured (validation included) and the run's epochs are cut to the whole epochs that fit, so the
cosine schedule still ends at ``lr_min``. The limit: before every step the run checks that the
step, and then the validation after it, still fit in what is left; when they do not it stops
there (a budget shorter than the calibration, or a pace that changed). A validation is not
started when the last one took longer than what is left, unless the run has no checkpoint yet.
The first validation's length cannot be known before it runs, so a run whose budget is spent
before it ends its first validation runs over by that one validation.

All times come from ``clock`` (seconds, monotonic), which the tests replace.
"""

from __future__ import annotations

from collections.abc import Callable

CALIBRATION_STEPS = 300  # steps past the first epoch's end over which the pace is measured


def budget_epochs(budget_s: float, elapsed_s: float, step: int, sec_per_step: float,
                  steps_per_epoch: int, epoch: int) -> int:
    """The whole number of epochs a run can finish within ``budget_s`` at the measured pace."""
    steps_left = max(0.0, budget_s - elapsed_s) * 0.95 / max(sec_per_step, 1e-9)
    return max(epoch + 1, int((step + steps_left) // steps_per_epoch))


class TimeBudget:
    """The plan and the limit of one run's ``--time-budget`` of ``seconds``.

    ``elapsed`` is the run's training time so far (a resumed run's included); the trainer passes it.
    """

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self.clock = clock
        self.calib: tuple[int, float] | None = None  # (step, time) where the pace measurement starts
        self.step_s = 0.0  # how long the last step took
        self.validation_s = 0.0  # how long the last validation took (0: none yet)
        self.step_started: float | None = None

    def plan(self, step: int, elapsed: float, steps_per_epoch: int,
             epoch: int) -> tuple[int, float] | None:
        """At an epoch's end: ``(epochs that fit, seconds per step)`` once the pace is measured,
        else None (the first call starts the measurement)."""
        now = self.clock()
        if self.calib is None:
            self.calib = (step, now)
            return None
        if step - self.calib[0] < CALIBRATION_STEPS:
            return None
        pace = (now - self.calib[1]) / (step - self.calib[0])
        return budget_epochs(self.seconds, elapsed, step, pace, steps_per_epoch, epoch), pace

    def spent(self, elapsed: float) -> bool:
        """Before a step: whether the step (as long as the last one) and the validation after it
        would end past the budget. Starts timing the step."""
        self.step_started = self.clock()
        return elapsed + self.step_s + self.validation_s > self.seconds

    def stepped(self) -> None:
        """After a step: how long it took, for the next ``spent``."""
        if self.step_started is not None:
            self.step_s = self.clock() - self.step_started

    def room_to_validate(self, elapsed: float) -> bool:
        """Whether a validation as long as the last one ends within the budget."""
        return elapsed + self.validation_s <= self.seconds

    def validated(self, seconds: float) -> None:
        self.validation_s = seconds
