"""A request's admission: the ticket (deadline, disconnect, failure) and the work budget (the drain:
test_drain.py; the signals: test_signals.py).

Everything runs on an event loop of its own; deadlines are made to pass by moving ``deadline`` into
the past or by a timer of a microsecond that the test awaits (an event), never by sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import Counter, Gauge

from app.admission import Ticket, WorkBudget, timeout_error
from app.disconnects import CLIENT_GONE, DISCONNECT_EXTENSION
from app.drain import shutting_down
from app.errors import ApiError, ClientDisconnected
from app.metrics import Metrics, ModelMetrics
from app.pace import Pace

LONG_S = 600.0  # a deadline no test reaches


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())


def model_metrics() -> ModelMetrics:
    return Metrics().for_model("m")


def value(metric: Counter | Gauge) -> float:
    return float(metric._value.get())


def disconnect_when(event: asyncio.Event) -> Callable[[], Awaitable[dict[str, Any]]]:
    """An ASGI ``receive`` whose body is already read: it returns ``http.disconnect`` on ``event``."""

    async def receive() -> dict[str, Any]:
        await event.wait()
        return {"type": "http.disconnect"}

    return receive


# ---- Ticket ------------------------------------------------------------------------------------
def test_check_passes_before_the_deadline_and_raises_503_timeout_after() -> None:
    async def scenario() -> ApiError:
        ticket = Ticket(LONG_S)
        ticket.check()
        ticket.deadline = time.monotonic() - 1.0  # the deadline has passed
        with pytest.raises(ApiError) as stopped:
            ticket.check()
        ticket.close()
        return stopped.value

    error = run(scenario)
    assert (error.status, error.code) == (503, "timeout")
    assert error.headers["Retry-After"] == "1" and "AESERVE_REQUEST_TIMEOUT_S" in error.message


def test_the_deadline_timer_fails_a_waiting_request_with_timeout() -> None:
    async def scenario() -> tuple[BaseException | None, BaseException]:
        ticket = Ticket(1e-6)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket.future = future
        with pytest.raises(ApiError) as failed:
            await asyncio.wait_for(future, LONG_S)  # the timer, not the test, ends the wait
        ticket.close()
        return ticket.error, failed.value

    error, raised = run(scenario)
    assert error is raised
    assert isinstance(raised, ApiError) and raised.code == "timeout"


def test_the_first_failure_wins() -> None:
    async def scenario() -> Ticket:
        ticket = Ticket(LONG_S)
        ticket.fail(ClientDisconnected())
        ticket.fail(timeout_error(1.0))
        ticket.close()
        return ticket

    ticket = run(scenario)
    assert isinstance(ticket.error, ClientDisconnected)
    with pytest.raises(ClientDisconnected):
        ticket.check()


def test_a_watched_ticket_fails_when_the_client_disconnects() -> None:
    async def scenario() -> tuple[BaseException | None, BaseException | None]:
        gone = asyncio.Event()
        ticket = Ticket(LONG_S, disconnect_when(gone))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket.future = future
        ticket.watch()
        await asyncio.sleep(0)  # the watcher runs and waits for the client
        before = ticket.error
        gone.set()
        with pytest.raises(ClientDisconnected):
            await asyncio.wait_for(future, LONG_S)
        ticket.close()
        return before, ticket.error

    before, after = run(scenario)
    assert before is None and isinstance(after, ClientDisconnected)


@pytest.mark.parametrize("before_watch", [True, False], ids=["gone-before-watch", "gone-after-watch"])
def test_the_servers_disconnect_extension_fails_the_ticket_whenever_the_client_left(
    before_watch: bool,
) -> None:
    """The server (app/server.py) calls the callbacks and marks the request; a client that left
    while its body was still being read or decoded is seen when the ticket starts watching."""
    extension: dict[str, Any] = {"callbacks": []}

    def client_leaves() -> None:  # what the server's connection_lost does
        extension[CLIENT_GONE] = True
        for callback in extension["callbacks"]:
            callback()

    async def scenario() -> BaseException | None:
        ticket = Ticket(LONG_S, disconnect_when(asyncio.Event()),
                        {"type": "http", "extensions": {DISCONNECT_EXTENSION: extension}})
        if before_watch:
            client_leaves()
        ticket.watch()
        if not before_watch:
            assert ticket.error is None
            client_leaves()
        ticket.close()
        return ticket.error

    assert isinstance(run(scenario), ClientDisconnected)


async def after_timers(delay_s: float) -> None:
    """Return once a timer of ``delay_s`` has fired: every timer due before it has fired too."""
    loop = asyncio.get_running_loop()
    fired: asyncio.Future[None] = loop.create_future()
    loop.call_later(delay_s, fired.set_result, None)
    await fired


def test_close_stops_the_timer_and_the_watcher() -> None:
    async def scenario() -> Ticket:
        gone = asyncio.Event()
        ticket = Ticket(1e-6, disconnect_when(gone))
        ticket.watch()
        ticket.close()
        await after_timers(1e-3)
        gone.set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return ticket

    ticket = run(scenario)
    assert ticket.error is None  # neither the timer nor the watcher fired after close


# ---- WorkBudget --------------------------------------------------------------------------------
def test_a_request_over_the_cap_is_413_naming_its_cost_and_the_cap() -> None:
    async def scenario() -> tuple[ApiError, WorkBudget]:
        budget = WorkBudget("m", limit=40_000_000, cap=8_000_000, metrics=model_metrics())
        ticket = Ticket(LONG_S)
        with pytest.raises(ApiError) as refused:
            budget.admit(ticket, 36_066_304)
        ticket.close()
        return refused.value, budget

    error, budget = run(scenario)
    assert (error.status, error.code) == (413, "too_much_work")
    assert "36.1" in error.message and "8" in error.message and "AESERVE_MAX_WORK" in error.message
    assert budget.used == 0 and not budget.live
    assert value(budget.metrics.rejected("too_much_work")) == 1


def test_admitted_work_is_held_until_the_ticket_closes() -> None:
    async def scenario() -> list[tuple[int, int, float]]:
        budget = WorkBudget("m", limit=1000, cap=600, metrics=model_metrics())
        seen = []
        first, second = Ticket(LONG_S), Ticket(LONG_S)
        budget.admit(first, 400)
        budget.admit(first, 100)  # a ticket may reserve in steps (images, then samples)
        seen.append((budget.used, len(budget.live), value(budget.metrics.queued_work)))
        budget.admit(second, 500)
        seen.append((budget.used, len(budget.live), value(budget.metrics.queued_work)))
        first.close()
        seen.append((budget.used, len(budget.live), value(budget.metrics.queued_work)))
        second.close()
        seen.append((budget.used, len(budget.live), value(budget.metrics.queued_work)))
        return seen

    assert run(scenario) == [(500, 1, 500), (1000, 2, 1000), (500, 1, 500), (0, 0, 0)]


def test_the_cap_counts_what_the_ticket_already_holds() -> None:
    async def scenario() -> ApiError:
        budget = WorkBudget("m", limit=1000, cap=600, metrics=model_metrics())
        ticket = Ticket(LONG_S)
        budget.admit(ticket, 400)
        with pytest.raises(ApiError) as refused:
            budget.admit(ticket, 300)
        ticket.close()
        return refused.value

    error = run(scenario)
    assert error.code == "too_much_work" and "0.0007" in error.message


def test_work_that_does_not_fit_is_503_overloaded_and_a_full_budget_refuses_on_arrival() -> None:
    async def scenario() -> tuple[ApiError, ApiError, int, int, BaseException | None]:
        budget = WorkBudget("m", limit=1000, cap=600, metrics=model_metrics())
        holder, late, arriving = Ticket(LONG_S), Ticket(LONG_S), Ticket(LONG_S)
        budget.admit(holder, 600)
        budget.open(late)  # not full yet: this request's body may be read
        with pytest.raises(ApiError) as no_room:
            budget.admit(late, 500)
        budget.admit(late, 400)  # exactly fills it
        with pytest.raises(ApiError) as full:
            budget.open(arriving)  # refused before its body is read
        used, live = budget.used, len(budget.live)
        holder.close()
        late.close()
        return no_room.value, full.value, used, live, arriving.budget

    no_room, full, used, live, refused_holds = run(scenario)
    for error in (no_room, full):
        assert (error.status, error.code) == (503, "overloaded")
        assert int(error.headers["Retry-After"]) >= 1 and "AESERVE_QUEUE_WORK" in error.message
    assert (used, live) == (1000, 2) and refused_holds is None


def paced_budget(clock: list[float]) -> WorkBudget:
    """A budget whose model has shown a pace of 1 ms a unit (one request of 1000 units in 1 s),
    on a clock the test moves."""
    budget = WorkBudget("m", limit=100_000, cap=50_000, metrics=model_metrics(),
                        pace=Pace(lambda: clock[0]))
    with Ticket(LONG_S) as first:
        budget.admit(first, 1000)
        clock[0] += 1.0
    assert budget.pace.seconds_per_unit == pytest.approx(1e-3)
    return budget


def test_a_request_whose_turn_would_come_past_its_deadline_is_503_at_once() -> None:
    async def scenario() -> tuple[ApiError, ApiError, int]:
        clock = [0.0]
        budget = paced_budget(clock)
        with Ticket(5.0) as alone:
            budget.admit(alone, 20_000)  # ~20 s, past its 5 s: but nothing is ahead of it
            with Ticket(10.0) as short, Ticket(30.0) as long:
                with pytest.raises(ApiError) as refused:
                    budget.admit(short, 1000)  # 20 s of others' work ahead, 10 s left
                budget.admit(long, 1000)  # 20 s ahead, 30 s left: its turn comes in time
                clock[0] += 12.0  # the running request is 12 s in: 8 s of it are left
                with Ticket(9.5) as later, Ticket(8.5) as tight:
                    budget.admit(later, 1000)  # 8 s + the 1 s of ``long`` ahead: in time
                    with pytest.raises(ApiError) as too_late:
                        budget.admit(tight, 1000)  # 8 s + 1 s + 1 s of ``later``: 10 s
                    used = budget.used
        return refused.value, too_late.value, used

    refused, too_late, used = run(scenario)
    assert (refused.status, refused.code) == (503, "overloaded")
    assert refused.headers["Retry-After"] == "20"  # the others' work ahead: 20 000 units at 1 ms
    assert "about 20.0 s of other requests' work ahead" in refused.message
    assert "AESERVE_REQUEST_TIMEOUT_S" in refused.message
    assert too_late.headers["Retry-After"] == "10"
    assert used == 22_000


def test_a_request_is_never_behind_its_own_earlier_steps() -> None:
    """interpolate reserves its images, then its decode: only other requests' work is ahead."""

    async def scenario() -> int:
        budget = paced_budget([0.0])
        with Ticket(0.5) as ticket:
            budget.admit(ticket, 20_000)
            budget.admit(ticket, 20_000)  # 20 s of its own work "ahead": not refused
            return budget.used

    assert run(scenario) == 40_000


def test_only_answered_requests_teach_the_pace() -> None:
    """A request that ends in an error of its own (a 422 after admission, say) or of its ticket
    (deadline, disconnect) teaches nothing; its time runs on into the next answered one."""

    async def scenario() -> tuple[float | None, float | None]:
        clock = [0.0]
        budget = paced_budget(clock)
        with pytest.raises(ApiError), Ticket(LONG_S) as invalid:
            budget.admit(invalid, 40_000)
            raise ApiError(422, "wrong_size", "refused after admission")
        after_error = budget.pace.seconds_per_unit
        with Ticket(LONG_S) as timed_out:
            budget.admit(timed_out, 40_000)
            timed_out.fail(timeout_error(1.0))
        with Ticket(LONG_S) as answered:
            budget.admit(answered, 1000)
            clock[0] += 1.0
        return after_error, budget.pace.seconds_per_unit

    after_error, after_all = run(scenario)
    assert after_error == pytest.approx(1e-3)  # 40 000 units in no time would halve it
    assert after_all == pytest.approx(1e-3)


def test_an_open_request_is_live_before_it_is_admitted_and_idle_after() -> None:
    async def scenario() -> tuple[int, bool, bool]:
        budget = WorkBudget("m", limit=1000, cap=600, metrics=model_metrics())
        ticket = Ticket(LONG_S)
        budget.open(ticket)
        live = len(budget.live)
        idle = asyncio.ensure_future(budget.wait_idle())
        await asyncio.sleep(0)
        waited = not idle.done()
        ticket.close()
        await asyncio.wait_for(idle, LONG_S)
        return live, waited, budget.used == 0

    assert run(scenario) == (1, True, True)


def test_a_failed_ticket_reserves_nothing() -> None:
    async def scenario() -> tuple[int, BaseException]:
        budget = WorkBudget("m", limit=1000, cap=600, metrics=model_metrics())
        ticket = Ticket(LONG_S)
        ticket.fail(ClientDisconnected())
        with pytest.raises(ClientDisconnected) as failed:
            budget.admit(ticket, 100)
        ticket.close()
        return budget.used, failed.value

    used, error = run(scenario)
    assert used == 0 and isinstance(error, ClientDisconnected)


def test_released_work_counts_cancelled_and_expired_requests() -> None:
    async def scenario() -> ModelMetrics:
        metrics = model_metrics()
        budget = WorkBudget("m", limit=1000, cap=600, metrics=metrics)
        gone, late, fine = Ticket(LONG_S), Ticket(LONG_S), Ticket(LONG_S)
        for ticket in (gone, late, fine):
            budget.admit(ticket, 100)
        gone.fail(ClientDisconnected())
        late.fail(timeout_error(1.0))
        for ticket in (gone, late, fine):
            ticket.close()
        return metrics

    metrics = run(scenario)
    assert (value(metrics.cancelled), value(metrics.expired)) == (1, 1)


def test_a_closed_budget_fails_what_it_holds_and_refuses_the_rest() -> None:
    async def scenario() -> tuple[BaseException | None, ApiError, ApiError]:
        budget = WorkBudget("m", limit=1000, cap=600, metrics=model_metrics())
        held, later = Ticket(LONG_S), Ticket(LONG_S)
        budget.admit(held, 100)
        budget.close(shutting_down())
        with pytest.raises(ApiError) as refused:
            budget.admit(later, 100)
        with pytest.raises(ApiError) as before_reading:
            budget.open(Ticket(LONG_S))
        held.close()
        later.close()
        return held.error, refused.value, before_reading.value

    held, refused, before_reading = run(scenario)
    for error in (held, refused, before_reading):
        assert isinstance(error, ApiError) and (error.status, error.code) == (503, "shutting_down")
        assert error.headers["Retry-After"] == "1"
