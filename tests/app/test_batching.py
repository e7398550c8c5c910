"""The micro-batcher on a real model: merging, ordering, failures (tickets that end work early:
test_batching_tickets.py).

A gate job (a callable that waits on a ``threading.Event`` on the model thread) holds the worker so
that requests queue up deterministically; a job that runs alone waits on an event per step, so the
test decides when each step happens. No sleeps, no timing assertions.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, assert_type

import pytest
import torch

from app.admission import Ticket, WorkBudget
from app.batching import Batcher, Check
from app.drain import shutting_down
from app.metrics import Metrics
from app.runtime import to_uint8, to_unit
from model.checkpoint import load_checkpoint

LONG_S = 600.0
WAIT_S = 60.0  # the longest any event is waited for: a hang fails the test, it never times it

Denoise = Callable[[torch.Tensor], torch.Tensor]


def make_batcher(max_batch_size: int = 32, max_delay_s: float = 0.002) -> Batcher:
    batcher = Batcher("test", max_batch_size=max_batch_size, max_delay_s=max_delay_s,
                      metrics=Metrics().for_model("test"))
    batcher.start()
    return batcher


def hold(gate: threading.Event, started: threading.Event | None = None) -> Callable[[Any, Check], None]:
    """A job that runs alone and keeps the model thread until ``gate`` opens."""

    def wait(_: object, check: Check) -> None:
        if started is not None:
            started.set()
        assert gate.wait(WAIT_S), "gate never opened"

    return wait


async def occupy(batcher: Batcher, gate: threading.Event) -> asyncio.Future[Any]:
    """Start a gate job and return once it runs on the model thread (the queue is then free)."""
    started = threading.Event()
    blocker = asyncio.ensure_future(batcher.run_alone(hold(gate, started), None, Ticket(LONG_S)))
    assert await asyncio.to_thread(started.wait, WAIT_S)
    return blocker


class Counted:
    """The model, recording the rows of every call it gets."""

    def __init__(self, model: Denoise) -> None:
        self.model = model
        self.sizes: list[int] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        return self.model(x)


async def until(condition: Callable[[], bool]) -> None:
    """Give the event loop turns until ``condition`` holds (a hang fails after WAIT_S)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the condition never held"
        await asyncio.sleep(0)


async def drained(batcher: Batcher) -> None:
    """Return once everything queued before this call has been run or dropped (queue order)."""
    await batcher.run_alone(lambda arg, check: None, None, Ticket(LONG_S))


@pytest.fixture(scope="module")
def denoise(tiny_checkpoints: Path) -> Denoise:
    model = load_checkpoint(tiny_checkpoints / "mnist-dae").model

    def run(x: torch.Tensor) -> torch.Tensor:
        return to_uint8(model.denoise(to_unit(x)))

    return run


def digits(n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen)


# ---- merging -----------------------------------------------------------------------------------
async def _queued_then_merged(denoise: Denoise) -> tuple[list[int], list[torch.Tensor], torch.Tensor]:
    batcher = make_batcher()
    counted = Counted(denoise)

    gate = threading.Event()
    blocker = await occupy(batcher, gate)
    x = digits(5)
    calls = [
        asyncio.ensure_future(batcher.run(counted, x[i : i + 1], ("denoise", 1, 28, 28), Ticket(LONG_S)))
        for i in range(5)
    ]
    await asyncio.sleep(0)  # all five are queued behind the gate
    gate.set()
    await blocker
    outs = [await c for c in calls]
    await batcher.stop(shutting_down())
    with torch.inference_mode():
        alone = denoise(x)
    return counted.sizes, outs, alone


def test_queued_requests_share_one_forward_and_get_their_own_rows(denoise: Denoise) -> None:
    sizes, outs, alone = asyncio.run(_queued_then_merged(denoise))
    assert sizes == [5]
    for i, out in enumerate(outs):
        assert out.dtype == torch.uint8
        assert (out.int() - alone[i : i + 1].int()).abs().max() <= 1  # rounding at the edge only


async def _different_keys(denoise: Denoise) -> list[int]:
    batcher = make_batcher(max_batch_size=3)
    counted = Counted(denoise)

    gate = threading.Event()
    blocker = await occupy(batcher, gate)
    x = digits(1)
    calls = [
        asyncio.ensure_future(batcher.run(counted, x, "a" if i % 2 else "b", Ticket(LONG_S)))
        for i in range(8)
    ]
    await asyncio.sleep(0)
    gate.set()
    await blocker
    await asyncio.gather(*calls)
    await batcher.stop(shutting_down())
    return counted.sizes


def test_only_same_key_requests_merge_up_to_the_max_batch(denoise: Denoise) -> None:
    assert sorted(asyncio.run(_different_keys(denoise))) == [1, 1, 3, 3]


async def _failing(denoise: Denoise) -> None:
    batcher = make_batcher()

    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await batcher.run(broken, digits(1), "k", Ticket(LONG_S))
    assert batcher.alive  # a failing batch fails its requests, not the worker
    out = await batcher.run(denoise, digits(1), "k", Ticket(LONG_S))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1, 28, 28)
    await batcher.stop(shutting_down())


async def _typed() -> tuple[list[tuple[torch.Tensor, ...]], int]:
    batcher = make_batcher()

    def halves(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return x // 2, x - x // 2

    gate = threading.Event()
    blocker = await occupy(batcher, gate)
    pending = [asyncio.ensure_future(batcher.run(halves, digits(n), "k", Ticket(LONG_S)))
               for n in (1, 2)]
    await until(lambda: len(batcher._queue) == 2)
    gate.set()
    await blocker
    answers = [await p for p in pending]
    alone = await batcher.run_alone(lambda arg, check: arg + 1, 41, Ticket(LONG_S))
    await batcher.stop(shutting_down())
    return answers, alone


def test_answers_have_their_functions_types_a_merged_tuple_split_per_request() -> None:
    """``run`` answers what its function returns (a tuple stays a tuple, split by rows among the
    requests that shared the batch) and ``run_alone`` what its job returns: mypy checks the types
    (``assert_type``), the run checks the values."""
    answers, alone = asyncio.run(_typed())
    for answer, n in zip(answers, (1, 2), strict=True):
        assert_type(answer, tuple[torch.Tensor, ...])
        low, high = answer
        assert torch.equal(low + high, digits(n)) and low.shape[0] == n
    assert_type(alone, int)
    assert alone == 42


def test_a_failing_batch_fails_its_requests_and_the_worker_lives_on(denoise: Denoise) -> None:
    asyncio.run(_failing(denoise))


# ---- a lone request's one row runs on the event loop --------------------------------------------
def budgeted(budget: WorkBudget) -> Ticket:
    ticket = Ticket(LONG_S)
    budget.open(ticket)
    return ticket


async def _threads_used(denoise: Denoise) -> dict[str, str]:
    """Which thread ran each case's forward: the event loop's or the model's."""
    batcher = make_batcher()
    budget = WorkBudget("test", 10**9, 10**9, Metrics().for_model("test"))
    ran: dict[str, str] = {}

    def on(case: str) -> Denoise:
        def run(x: torch.Tensor) -> torch.Tensor:
            ran[case] = threading.current_thread().name
            return denoise(x)
        return run

    with budgeted(budget) as ticket:  # the only request of its model, one row, the model idle
        out = await batcher.run(on("lone row"), digits(1), "k", ticket)
        assert isinstance(out, torch.Tensor) and out.shape == (1, 1, 28, 28)
    with budgeted(budget) as ticket:  # alone, but several rows: the model thread
        await batcher.run(on("lone rows"), digits(2), "k", ticket)
    with budgeted(budget) as ticket, budgeted(budget):  # another request of the model is open
        await batcher.run(on("with company"), digits(1), "k", ticket)
    await batcher.run(on("no budget"), digits(1), "k", Ticket(LONG_S))  # not admitted: thread
    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    # a failure inline fails the request, as on the model thread
    with budgeted(budget) as ticket, pytest.raises(RuntimeError, match="boom"):
        await batcher.run(broken, digits(1), "k", ticket)
    await batcher.stop(shutting_down())
    return ran


def test_only_a_lone_requests_single_row_runs_on_the_event_loop(denoise: Denoise) -> None:
    ran = asyncio.run(_threads_used(denoise))
    assert ran["lone row"] == threading.main_thread().name  # asyncio.run: the loop is this thread
    assert all(ran[case].startswith("model-test") for case in ("lone rows", "with company",
                                                                "no budget"))


async def _arrival_during_the_turns(denoise: Denoise) -> str:
    """A second request that reaches its ticket during the first one's two loop turns."""
    batcher = make_batcher()
    budget = WorkBudget("test", 10**9, 10**9, Metrics().for_model("test"))
    ran: list[str] = []

    def first(x: torch.Tensor) -> torch.Tensor:
        ran.append(threading.current_thread().name)
        return denoise(x)

    first_done = asyncio.Event()

    async def second() -> None:
        with budgeted(budget):  # opened while the first request takes its turns; open till it ends
            await first_done.wait()

    with budgeted(budget) as ticket:
        other = asyncio.ensure_future(second())
        await batcher.run(first, digits(1), "k", ticket)
        first_done.set()
        await other
    await batcher.stop(shutting_down())
    return ran[0]


def test_a_request_that_arrives_during_the_loop_turns_sends_the_first_to_the_model_thread(
    denoise: Denoise,
) -> None:
    assert asyncio.run(_arrival_during_the_turns(denoise)).startswith("model-test")


async def _after_a_batch_of(denoise: Denoise, first: int) -> tuple[list[int], bool]:
    """Run a batch of ``first`` rows (max 4), then send one request: does it wait for company?"""
    batcher = make_batcher(max_batch_size=4, max_delay_s=30.0)
    counted = Counted(denoise)

    key = ("denoise", 1, 28, 28)
    x = digits(1)
    gate = threading.Event()
    blocker = await occupy(batcher, gate)
    calls = [asyncio.ensure_future(batcher.run(counted, x, key, Ticket(LONG_S))) for _ in range(first)]
    await asyncio.sleep(0)
    gate.set()
    await blocker
    await asyncio.gather(*calls)
    lone = asyncio.ensure_future(batcher.run(counted, x, key, Ticket(LONG_S)))
    await until(lambda: lone.done() or batcher.lingering)
    waited = not lone.done()
    if waited:  # lingering: three more fill the batch and release it at once
        await asyncio.gather(*(batcher.run(counted, x, key, Ticket(LONG_S)) for _ in range(3)))
    await asyncio.wait_for(lone, 10)
    if waited:  # that batch filled only by lingering: the next lone request runs at once
        await asyncio.wait_for(batcher.run(counted, x, key, Ticket(LONG_S)), 10)
    await batcher.stop(shutting_down())
    return counted.sizes, waited


def test_the_batcher_lingers_only_after_a_full_batch(denoise: Denoise) -> None:
    # fewer waiting clients than the batch size: nothing would arrive, so no linger
    assert asyncio.run(_after_a_batch_of(denoise, 3)) == ([3, 1], False)
    # arrivals outpaced the model: the next batch waits (here up to 30 s) to fill up; the one
    # after it does not, as that batch filled only by waiting (no collapse into lockstep)
    assert asyncio.run(_after_a_batch_of(denoise, 4)) == ([4, 4, 1], True)


async def _other_work_while_lingering(denoise: Denoise) -> tuple[list[int], bool]:
    """After a full batch a lone request lingers for company; work of another key (another shape
    or operation) arrives: it is no company, and the batch stays open until its own kind fills it."""
    batcher = make_batcher(max_batch_size=4, max_delay_s=30.0)
    counted = Counted(denoise)
    key, x = ("denoise", 1, 28, 28), digits(1)
    gate = threading.Event()
    blocker = await occupy(batcher, gate)
    calls = [asyncio.ensure_future(batcher.run(counted, x, key, Ticket(LONG_S))) for _ in range(4)]
    await asyncio.sleep(0)
    gate.set()
    await blocker
    await asyncio.gather(*calls)
    lone = asyncio.ensure_future(batcher.run(counted, x, key, Ticket(LONG_S)))
    await until(lambda: batcher.lingering)
    other = asyncio.ensure_future(batcher.run(counted, digits(3), ("denoise", 3, 28, 28), Ticket(LONG_S)))
    for _ in range(10):  # turns enough for the worker to leave the linger, were it told to
        await asyncio.sleep(0)
    still = batcher.lingering and not lone.done()
    await asyncio.gather(*(batcher.run(counted, x, key, Ticket(LONG_S)) for _ in range(3)))
    await asyncio.wait_for(asyncio.gather(lone, other), WAIT_S)
    await batcher.stop(shutting_down())
    return counted.sizes, still


def test_work_of_another_key_does_not_end_a_linger(denoise: Denoise) -> None:
    sizes, still_lingering = asyncio.run(_other_work_while_lingering(denoise))
    assert still_lingering
    assert sizes == [4, 4, 3]  # the full batch, the lingered one filled by its own key, the other
