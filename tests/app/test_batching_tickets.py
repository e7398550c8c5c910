"""The micro-batcher and tickets that end work early: a failed ticket's queued job is dropped (and
lets go of its payload at once), a running one stops at its next check, and stop fails the rest.

The same gates as test_batching.py: no sleeps, no timing assertions.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from typing import Any

import pytest
import torch

from app.admission import Ticket, WorkBudget, timeout_error
from app.batching import Check
from app.drain import shutting_down
from app.errors import ApiError, ClientDisconnected
from app.metrics import Metrics
from tests.app.test_batching import (
    LONG_S,
    WAIT_S,
    Counted,
    Denoise,
    denoise,
    digits,
    drained,
    make_batcher,
    occupy,
)

__all__ = ["denoise"]  # the module-scoped fixture, shared


# ---- tickets: a failed ticket's work is dropped or stopped ------------------------------------
async def _queued_job_of_a_failed_ticket(denoise: Denoise, failure: str) -> tuple[BaseException, int]:
    """A request queued behind a busy model fails (deadline or disconnect): it is never run."""
    batcher = make_batcher()
    counted = Counted(denoise)

    gate = threading.Event()
    blocker = await occupy(batcher, gate)
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    ticket = Ticket(LONG_S, receive)
    queued = asyncio.ensure_future(batcher.run(counted, digits(1), "k", ticket))
    await asyncio.sleep(0)  # queued, and the ticket watches the client
    if failure == "deadline":
        ticket.fail(timeout_error(1.0))  # what the deadline's timer does
    else:
        gone.set()
    with pytest.raises((ApiError, ClientDisconnected)) as failed:
        await asyncio.wait_for(queued, WAIT_S)  # answered while the model is still busy
    busy = not blocker.done()
    gate.set()
    await blocker
    await drained(batcher)
    ticket.close()
    await batcher.stop(shutting_down())
    assert busy
    return failed.value, len(counted.sizes)


def test_a_queued_request_past_its_deadline_gets_503_timeout_and_never_runs(denoise: Denoise) -> None:
    error, runs = asyncio.run(_queued_job_of_a_failed_ticket(denoise, "deadline"))
    assert isinstance(error, ApiError) and (error.status, error.code) == (503, "timeout")
    assert "Retry-After" in error.headers
    assert runs == 0


def test_a_queued_request_whose_client_disconnects_is_dropped(denoise: Denoise) -> None:
    error, runs = asyncio.run(_queued_job_of_a_failed_ticket(denoise, "disconnect"))
    assert isinstance(error, ClientDisconnected)
    assert runs == 0


async def _payload_of_a_dead_job(denoise: Denoise) -> tuple[str, bool, float, bool, int]:
    """A request queued behind a long job fails: it leaves the queue, its payload (its decoded
    images) with it, at once, not when the worker reaches it."""
    batcher = make_batcher()
    counted = Counted(denoise)

    gate = threading.Event()
    blocker = await occupy(batcher, gate)
    gone = asyncio.Event()
    held: list[weakref.ref[torch.Tensor]] = []

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def request() -> str:  # stands for the request's handler, which ends with its failure
        with Ticket(LONG_S, receive) as ticket:
            payload = digits(4)
            held.append(weakref.ref(payload))
            try:
                await batcher.run(counted, payload, "k", ticket)
            except ClientDisconnected:
                return "client gone"
        return "answered"

    queued = asyncio.ensure_future(request())
    await asyncio.sleep(0)  # queued behind the long job, and the ticket watches the client
    gone.set()
    outcome = await queued  # the request has ended
    gc.collect()  # what only the queue would still refer to is garbage now
    released = held[0]() is None
    depth = float(batcher.metrics.queued_requests._value.get())
    busy = not blocker.done()  # the worker has not reached the dead job yet
    gate.set()
    await blocker
    await drained(batcher)
    await batcher.stop(shutting_down())
    return outcome, released, depth, busy, len(counted.sizes)


def test_a_dead_queued_job_lets_go_of_its_payload_before_the_worker_reaches_it(
    denoise: Denoise,
) -> None:
    outcome, released, depth, busy, runs = asyncio.run(_payload_of_a_dead_job(denoise))
    assert busy and released and depth == 0
    assert outcome == "client gone" and runs == 0


class Steps:
    """A job that runs alone in steps: ``check()`` before each, then it waits for the test."""

    def __init__(self, total: int = 1000) -> None:
        self.total = total
        self.done: list[int] = []
        self.reached = [threading.Event() for _ in range(total)]
        self.go = [threading.Event() for _ in range(total)]

    def __call__(self, arg: object, check: Check) -> int:
        for i in range(self.total):
            check()
            self.done.append(i)
            self.reached[i].set()
            assert self.go[i].wait(WAIT_S), f"step {i} never allowed"
        return len(self.done)

    async def until(self, step: int) -> None:
        assert await asyncio.to_thread(self.reached[step].wait, WAIT_S)


async def _running_job_of_a_failed_ticket(failure: str) -> tuple[BaseException, list[int], int]:
    """A job running alone (a score, a photo) whose ticket fails stops at its next check."""
    batcher = make_batcher()
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    ticket = Ticket(LONG_S, receive)
    steps = Steps()
    running = asyncio.ensure_future(batcher.run_alone(steps, None, ticket))
    for i in range(3):
        await steps.until(i)
        if i < 2:
            steps.go[i].set()
    if failure == "deadline":
        ticket.fail(timeout_error(1.0))  # what the deadline's timer does
    else:
        gone.set()
    with pytest.raises((ApiError, ClientDisconnected)) as failed:
        await asyncio.wait_for(running, WAIT_S)  # answered at once, mid-step
    steps.go[2].set()  # the step in progress finishes; the next check stops the job
    await drained(batcher)
    computed = sum(int(b.get()) for b in batcher.metrics.compute._buckets) - 1  # less drained's
    ticket.close()
    await batcher.stop(shutting_down())
    return failed.value, steps.done, computed


def test_a_deadline_stops_a_long_job_at_its_next_check() -> None:
    error, done, computed = asyncio.run(_running_job_of_a_failed_ticket("deadline"))
    assert isinstance(error, ApiError) and (error.status, error.code) == (503, "timeout")
    assert error.headers["Retry-After"] == "1"
    assert done == [0, 1, 2]  # of 1000 steps: none after the failure
    assert computed == 0  # a stopped job is not counted as compute


def test_a_disconnect_stops_a_long_job_at_its_next_check() -> None:
    error, done, _ = asyncio.run(_running_job_of_a_failed_ticket("disconnect"))
    assert isinstance(error, ClientDisconnected)
    assert done == [0, 1, 2]


async def _stopped_with_work_queued(denoise: Denoise) -> tuple[BaseException, bool, int]:
    batcher = make_batcher()
    counted = Counted(denoise)

    gate = threading.Event()
    await occupy(batcher, gate)
    queued = asyncio.ensure_future(batcher.run(counted, digits(1), "k", Ticket(LONG_S)))
    await asyncio.sleep(0)
    await batcher.stop(shutting_down())
    with pytest.raises(ApiError) as failed:
        await asyncio.wait_for(queued, WAIT_S)
    gate.set()
    alive = batcher.alive
    with pytest.raises(ApiError) as refused:
        await batcher.run(counted, digits(1), "k", Ticket(LONG_S))
    assert refused.value.code == "unavailable"
    return failed.value, alive, len(counted.sizes)


def test_stop_fails_the_queued_requests_and_refuses_new_ones(denoise: Denoise) -> None:
    error, alive, runs = asyncio.run(_stopped_with_work_queued(denoise))
    assert isinstance(error, ApiError) and error.code == "shutting_down"
    assert not alive and runs == 0


async def _failed_during_the_loop_turns(denoise: Denoise) -> tuple[BaseException, list[int]]:
    """A lone one-row request whose deadline passes while it takes its two loop turns."""
    batcher = make_batcher()
    budget = WorkBudget("test", 10**9, 10**9, Metrics().for_model("test"))
    counted = Counted(denoise)
    ticket = Ticket(LONG_S)
    budget.open(ticket)
    asyncio.get_running_loop().call_soon(ticket.fail, timeout_error(1.0))  # runs on the first turn
    with pytest.raises(ApiError) as failed:
        await batcher.run(counted, digits(1), "k", ticket)
    ticket.close(failed=True)
    await batcher.stop(shutting_down())
    return failed.value, counted.sizes


def test_a_lone_request_that_fails_during_its_loop_turns_never_runs(denoise: Denoise) -> None:
    error, sizes = asyncio.run(_failed_during_the_loop_turns(denoise))
    assert isinstance(error, ApiError) and error.code == "timeout"
    assert sizes == []
