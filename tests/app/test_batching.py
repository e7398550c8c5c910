"""The micro-batcher on a real model: merging, ordering, the bounded queue and the timeout.

A gate job (a callable that waits on a ``threading.Event`` on the model thread) holds the worker so
that requests queue up deterministically; no sleeps, no timing assertions.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import torch

from app.batching import Batcher
from app.errors import ApiError
from app.inference import ModelOps
from app.metrics import Metrics
from model.checkpoint import load_checkpoint


def make_batcher(queue_size: int = 64, max_batch_size: int = 32) -> Batcher:
    return Batcher(
        "test",
        max_batch_size=max_batch_size,
        max_delay_s=0.002,
        queue_size=queue_size,
        inline_max_rows=0,
        metrics=Metrics().for_model("test"),
    )


def hold(gate: threading.Event) -> object:
    def wait(_: object) -> None:
        assert gate.wait(30), "gate never opened"

    return wait


@pytest.fixture(scope="module")
def ops(tiny_checkpoints: Path) -> ModelOps:
    ckpt = load_checkpoint(tiny_checkpoints / "mnist-dae")
    return ModelOps(ckpt.model, "dae", "cpu")


async def _queued_then_merged(ops: ModelOps) -> tuple[list[int], list[torch.Tensor], torch.Tensor]:
    batcher = make_batcher()
    batcher.start()
    sizes: list[int] = []

    def denoise(x: torch.Tensor) -> torch.Tensor:
        sizes.append(x.shape[0])
        return ops.denoise(x)

    gate = threading.Event()
    blocker = asyncio.ensure_future(batcher.run_alone(hold(gate), None, 30))
    await asyncio.sleep(0)  # the worker takes the gate job
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    calls = [
        asyncio.ensure_future(batcher.run(denoise, x[i : i + 1], ("denoise", 1, 28, 28), 30))
        for i in range(5)
    ]
    await asyncio.sleep(0)
    gate.set()
    await blocker
    outs = [await c for c in calls]
    await batcher.stop()
    with torch.inference_mode():
        alone = ops.denoise(x)
    return sizes, outs, alone


def test_queued_requests_share_one_forward_and_get_their_own_rows(ops: ModelOps) -> None:
    sizes, outs, alone = asyncio.run(_queued_then_merged(ops))
    assert sizes == [5]
    for i, out in enumerate(outs):
        assert out.dtype == torch.uint8
        assert (out.int() - alone[i : i + 1].int()).abs().max() <= 1  # rounding at the edge only


async def _full_queue(ops: ModelOps) -> tuple[ApiError, float]:
    batcher = make_batcher(queue_size=2)
    batcher.start()
    gate = threading.Event()
    blocker = asyncio.ensure_future(batcher.run_alone(hold(gate), None, 30))
    await asyncio.sleep(0)
    x = torch.rand(1, 1, 28, 28)
    queued = [
        asyncio.ensure_future(batcher.run(ops.denoise, x, "k", 30)) for _ in range(2)
    ]
    await asyncio.sleep(0)
    with pytest.raises(ApiError) as refused:
        await batcher.run(ops.denoise, x, "k", 30)
    rejected = batcher.metrics.rejected._value.get()
    gate.set()
    await blocker
    for q in queued:
        assert (await q).shape == (1, 1, 28, 28)
    await batcher.stop()
    return refused.value, rejected


def test_a_full_queue_answers_503_with_retry_after(ops: ModelOps) -> None:
    error, rejected = asyncio.run(_full_queue(ops))
    assert error.status == 503 and error.code == "overloaded"
    assert int(error.headers["Retry-After"]) >= 1
    assert rejected == 1


async def _timeout(ops: ModelOps) -> ApiError:
    batcher = make_batcher()
    batcher.start()
    gate = threading.Event()
    blocker = asyncio.ensure_future(batcher.run_alone(hold(gate), None, 30))
    await asyncio.sleep(0)
    try:
        with pytest.raises(ApiError) as timed_out:
            await batcher.run(ops.denoise, torch.rand(1, 1, 28, 28), "k", 0.05)
    finally:
        gate.set()
    await blocker
    await batcher.stop()
    return timed_out.value


def test_a_request_waiting_past_the_timeout_gets_503(ops: ModelOps) -> None:
    error = asyncio.run(_timeout(ops))
    assert (error.status, error.code) == (503, "timeout")
    assert "Retry-After" in error.headers


async def _different_keys(ops: ModelOps) -> list[int]:
    batcher = make_batcher(max_batch_size=3)
    batcher.start()
    sizes: list[int] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        sizes.append(x.shape[0])
        return ops.denoise(x)

    gate = threading.Event()
    blocker = asyncio.ensure_future(batcher.run_alone(hold(gate), None, 30))
    await asyncio.sleep(0)
    x = torch.rand(1, 1, 28, 28)
    calls = [
        asyncio.ensure_future(batcher.run(run, x, "a" if i % 2 else "b", 30)) for i in range(8)
    ]
    await asyncio.sleep(0)
    gate.set()
    await blocker
    await asyncio.gather(*calls)
    await batcher.stop()
    return sizes


def test_only_same_key_requests_merge_up_to_the_max_batch(ops: ModelOps) -> None:
    assert sorted(asyncio.run(_different_keys(ops))) == [1, 1, 3, 3]


async def _failing(ops: ModelOps) -> None:
    batcher = make_batcher()
    batcher.start()

    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await batcher.run(broken, torch.rand(1, 1, 28, 28), "k", 30)
    assert batcher.alive  # a failing batch fails its requests, not the worker
    out = await batcher.run(ops.denoise, torch.rand(1, 1, 28, 28), "k", 30)
    assert out.shape == (1, 1, 28, 28)
    await batcher.stop()


def test_a_failing_batch_fails_its_requests_and_the_worker_lives_on(ops: ModelOps) -> None:
    asyncio.run(_failing(ops))


async def _after_a_batch_of(ops: ModelOps, first: int) -> tuple[list[int], bool]:
    """Run a batch of ``first`` rows (max 4), then send one request: does it wait for company?"""
    batcher = Batcher("test", max_batch_size=4, max_delay_s=30.0, queue_size=64, inline_max_rows=0,
                      metrics=Metrics().for_model("test"))
    batcher.start()
    sizes: list[int] = []

    def denoise(x: torch.Tensor) -> torch.Tensor:
        sizes.append(x.shape[0])
        return ops.denoise(x)

    key = ("denoise", 1, 28, 28)
    x = torch.randint(0, 256, (1, 1, 28, 28), dtype=torch.uint8)
    gate = threading.Event()
    blocker = asyncio.ensure_future(batcher.run_alone(hold(gate), None, 30))
    await asyncio.sleep(0)
    calls = [asyncio.ensure_future(batcher.run(denoise, x, key, 60)) for _ in range(first)]
    await asyncio.sleep(0)
    gate.set()
    await blocker
    await asyncio.gather(*calls)
    lone = asyncio.ensure_future(batcher.run(denoise, x, key, 60))
    await asyncio.sleep(0.2)
    waited = not lone.done()
    if waited:  # lingering: three more fill the batch and release it at once
        await asyncio.gather(*(batcher.run(denoise, x, key, 60) for _ in range(3)))
    await asyncio.wait_for(lone, 10)
    if waited:  # that batch filled only by lingering: the next lone request runs at once
        await asyncio.wait_for(batcher.run(denoise, x, key, 60), 10)
    await batcher.stop()
    return sizes, waited


def test_the_batcher_lingers_only_after_a_full_batch(ops: ModelOps) -> None:
    # fewer waiting clients than the batch size: nothing would arrive, so no linger
    assert asyncio.run(_after_a_batch_of(ops, 3)) == ([3, 1], False)
    # arrivals outpaced the model: the next batch waits (here up to 30 s) to fill up; the one
    # after it does not, as that batch filled only by waiting (no collapse into lockstep)
    assert asyncio.run(_after_a_batch_of(ops, 4)) == ([4, 4, 1], True)
