"""A batch worker that dies is a failure (``serve`` exits 1) unless the service was already
stopping and the model held no request that had not been answered: its death then loses nothing."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest
import uvicorn

from app import server
from app.admission import Ticket
from app.drain import Drain, shutting_down
from app.errors import ApiError
from app.metrics import Metrics
from app.registry import Registry
from app.settings import Settings

LONG_S = 600.0  # a deadline no test reaches
WAIT_S = 60.0  # the longest any event is waited for: a hang fails the test, it never times it


async def death(root: Path, stopping: bool, answered: bool) -> tuple[list[tuple[str, bool]], str]:
    """mnist-dae's batch worker dies of a bug right after a job, once the service was told to
    stop (``stopping``) and the drain timeout had answered the job's request (``answered``), or
    not: what the registry reports (model, failure), and the error the request was answered."""
    dead: list[tuple[str, bool]] = []
    died = asyncio.Event()

    def on_dead(name: str, failure: bool) -> None:
        dead.append((name, failure))
        died.set()

    drain = Drain(LONG_S)
    settings = Settings(checkpoint_dir=root, runtime="torch", torch_threads=1)
    registry = Registry(settings, Metrics(), drain, on_dead=on_dead)
    await registry.load_all()
    served = registry.models["mnist-dae"]
    running, release = threading.Event(), threading.Event()

    def job(arg: int, check: object) -> int:
        running.set()
        release.wait(WAIT_S)
        return arg

    def broken(start: float, rows: int) -> None:
        raise RuntimeError("a bug in the batch worker")

    served.batcher._observe_compute = broken  # type: ignore[method-assign]
    ticket = Ticket(LONG_S)
    served.budget.open(ticket)
    request = asyncio.ensure_future(served.batcher.run_alone(job, 0, ticket))
    assert await asyncio.to_thread(running.wait, WAIT_S)
    if stopping:
        drain.begin()
    if answered:
        drain.expire()  # the drain timeout answers every request still held
    release.set()
    with pytest.raises(ApiError) as error:
        await request
    ticket.close(failed=True)
    await asyncio.wait_for(died.wait(), WAIT_S)
    await registry.stop_all(shutting_down())
    drain.cancel()
    return dead, error.value.code


@pytest.mark.parametrize(("stopping", "answered", "failure", "code"), [
    (False, False, True, "unavailable"),  # a model that will never answer again
    (True, False, True, "unavailable"),  # stopping, but a request is lost with it
    (True, True, False, "shutting_down"),  # stopping, and the drain had answered every request
])
def test_a_dead_worker_is_a_failure_unless_stopping_with_nothing_left_to_answer(
    tiny_checkpoints: Path, tmp_path: Path, stopping: bool, answered: bool, failure: bool,
    code: str,
) -> None:
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints / "mnist-dae", root / "mnist-dae")
    assert asyncio.run(death(root, stopping, answered)) == ([("mnist-dae", failure)], code)


@pytest.mark.parametrize(("failures", "status"), [
    ([False], 0), ([True], 1), ([True, False], 1), ([False, True], 1),
])
def test_serves_exit_status_is_1_only_for_a_death_that_is_a_failure(
    monkeypatch: pytest.MonkeyPatch, failures: list[bool], status: int
) -> None:
    raised: list[int] = []
    alone = server.Server(uvicorn.Config("app.factory:build", factory=True), alone=True)
    alone.started = True  # it serves
    monkeypatch.setattr(server, "_running", alone)  # as its ``serve`` sets it
    monkeypatch.setattr(server.signal, "raise_signal", raised.append)  # the drain it starts
    for failure in failures:
        server.exit_for_a_fresh_process("mnist-dae", failure)
    assert alone.exit_status() == status
