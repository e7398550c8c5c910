"""The drain on SIGTERM (the signal handling it hangs on: test_signals.py).

Everything runs on an event loop of its own; the drain's timeout passes by a timer the test awaits
(an event), never by sleeping.
"""

from __future__ import annotations

import asyncio

import pytest

from app.admission import Ticket, WorkBudget
from app.drain import Drain
from app.errors import ApiError
from tests.app.test_admission import LONG_S, after_timers, model_metrics, run


# ---- Drain -------------------------------------------------------------------------------------
def test_a_drain_answers_what_is_still_held_with_503_shutting_down_when_it_expires() -> None:
    async def scenario() -> tuple[bool, bool, BaseException]:
        budget = WorkBudget("m", limit=1000, cap=600, metrics=model_metrics())
        drain = Drain(1e-6)
        drain.watch(budget)
        ticket = Ticket(LONG_S)
        budget.admit(ticket, 100)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket.future = future
        before = drain.draining
        drain.begin()
        drain.begin()  # idempotent
        with pytest.raises(ApiError) as answered:
            await asyncio.wait_for(future, LONG_S)  # the drain's timer ends the wait
        ticket.close()
        drain.cancel()
        return before, drain.draining, answered.value

    before, draining, error = run(scenario)
    assert (before, draining) == (False, True)
    assert isinstance(error, ApiError) and error.code == "shutting_down"


def test_a_cancelled_drain_answers_nothing() -> None:
    async def scenario() -> BaseException | None:
        budget = WorkBudget("m", limit=1000, cap=600, metrics=model_metrics())
        drain = Drain(1e-6)
        drain.watch(budget)
        ticket = Ticket(LONG_S)
        budget.admit(ticket, 100)
        drain.begin()
        drain.cancel()
        await after_timers(1e-3)  # the drain's timer would have fired by now
        error = ticket.error
        ticket.close()
        return error

    assert run(scenario) is None
