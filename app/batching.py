"""Per-model micro-batching: concurrent requests with the same operation and shape share a forward.

Policy (see docs/serving.md, "Batching"): a request that finds the model idle runs at once, so a
lone client never waits out a window. Requests that arrive while a batch runs queue up and form the next
batch (up to ``max_batch_size`` rows). Only when arrivals outpace the model (the last batch filled up
while it waited its turn) does the batcher also linger up to ``max_batch_delay`` for the batch to fill:
with fewer clients than ``max_batch_size`` that each wait for their answer, nothing arrives during a
linger, and waiting only idles the model (measured: -10 % throughput at 32 connections,
docs/serving.md).

Model work runs on one dedicated thread per model (torch releases the GIL inside its kernels, so
the event loop keeps parsing and encoding meanwhile); batches of at most ``inline_max_rows`` rows
may run inline on the loop instead. The queue is bounded: when it is full, ``submit`` raises a 503.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Coroutine, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from app.errors import ApiError, overloaded
from app.metrics import ModelMetrics

log = logging.getLogger("aeserve.batching")

Output = torch.Tensor | tuple[torch.Tensor, ...]
BatchFn = Callable[[torch.Tensor], Output]


@dataclass(slots=True)
class _Job:
    key: Hashable | None  # None: runs alone, never merged
    fn: Callable[..., Any]
    payload: Any  # a (rows, ...) tensor for mergeable jobs
    rows: int
    future: asyncio.Future[Any]
    enqueued: float


def _run_inference(fn: Callable[..., Any], arg: Any) -> Any:
    with torch.inference_mode():
        return fn(arg)


def _split(out: Output, sizes: list[int]) -> list[Output]:
    if isinstance(out, torch.Tensor):
        return list(out.split(sizes))
    parts = [t.split(sizes) for t in out]
    return [tuple(p[i] for p in parts) for i in range(len(sizes))]


class Batcher:
    """The queue and the worker of one model. Create inside a running event loop."""

    def __init__(
        self,
        name: str,
        *,
        max_batch_size: int,
        max_delay_s: float,
        queue_size: int,
        inline_max_rows: int,
        metrics: ModelMetrics,
    ) -> None:
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.queue_size = queue_size
        self.inline_max_rows = inline_max_rows
        self.metrics = metrics
        self._queue: collections.deque[_Job] = collections.deque()
        self._wakeup = asyncio.Event()
        self._filled = asyncio.Event()
        self._linger_need = 0
        self._under_load = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")
        self._task: asyncio.Task[None] | None = None
        metrics.queue_depth.set_function(lambda: len(self._queue))  # read when scraped

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._worker(), name=f"batch-{self.name}"
        )

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for job in self._queue:
            if not job.future.done():
                job.future.set_exception(overloaded(f"model {self.name} is shutting down"))
        self._queue.clear()
        self._executor.shutdown(wait=True)

    async def call_on_thread(self, fn: Callable[..., Any], arg: Any) -> Any:
        """Run ``fn(arg)`` on the model thread outside the queue (startup warm-up)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _run_inference, fn, arg)

    # ---- submitting ------------------------------------------------------------------------
    def run(
        self, fn: BatchFn, rows: torch.Tensor, key: Hashable, timeout_s: float
    ) -> Coroutine[Any, Any, Output]:
        """``fn`` over ``rows`` (first dim), possibly merged with other requests with ``key``."""
        return self._submit(key, fn, rows, rows.shape[0], timeout_s)

    def run_alone(
        self, fn: Callable[[Any], Any], arg: Any, timeout_s: float
    ) -> Coroutine[Any, Any, Any]:
        """``fn(arg)`` on the model thread, in queue order, never merged."""
        return self._submit(None, fn, arg, 1, timeout_s)

    async def _submit(
        self,
        key: Hashable | None,
        fn: Callable[..., Any],
        payload: Any,
        rows: int,
        timeout_s: float,
    ) -> Any:
        if len(self._queue) >= self.queue_size:
            self.metrics.rejected.inc()
            raise overloaded(
                f"model {self.name} has {len(self._queue)} requests queued (the limit); "
                "retry after the Retry-After delay"
            )
        if not self.alive:
            raise ApiError(
                503, "unavailable", f"model {self.name} is not serving", {"Retry-After": "5"}
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Job(key, fn, payload, rows, future, time.perf_counter()))
        if self._linger_need > 0:
            self._linger_need -= rows
            if self._linger_need <= 0:
                self._filled.set()
        self._wakeup.set()
        # one timer per request (cheaper than an asyncio.timeout scope on this hot path); a job that
        # expires in the queue is skipped by the worker, one that expires in a batch drops its rows
        timer = loop.call_later(timeout_s, self._expire, future, timeout_s)
        try:
            return await future
        finally:
            timer.cancel()

    def _expire(self, future: asyncio.Future[Any], timeout_s: float) -> None:
        if not future.done():
            future.set_exception(ApiError(
                503,
                "timeout",
                f"model {self.name} did not answer within {timeout_s:g} s; retry later",
                {"Retry-After": "1"},
            ))

    # ---- the worker ------------------------------------------------------------------------
    def _take(self, key: Hashable, batch: list[_Job], rows: int) -> int:
        """Move queued jobs with ``key`` into ``batch`` while they fit; keep the others in order."""
        kept: collections.deque[_Job] = collections.deque()
        while self._queue:
            job = self._queue.popleft()
            if job.future.done():
                continue
            if job.key == key and rows + job.rows <= self.max_batch_size:
                batch.append(job)
                rows += job.rows
            else:
                kept.append(job)
        self._queue = kept
        return rows

    async def _worker(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            job = self._queue.popleft()
            if job.future.done():  # timed out or cancelled while queued
                continue
            if job.key is None:
                await self._execute(job.fn, job.payload, [job], merged=False)
                continue
            batch = [job]
            rows = self._take(job.key, batch, job.rows)
            lingered = self._under_load and rows < self.max_batch_size and self.max_delay_s > 0
            if lingered:
                rows = await self._linger(job.key, batch, rows)
            # a batch that only filled by lingering is no sign of load: with a fixed set of
            # clients, lingering again would wait for all of them every time, and the model and
            # the event loop would take turns instead of overlapping (measured: 1150 -> 700 req/s)
            self._under_load = rows >= self.max_batch_size and not lingered
            payload = batch[0].payload if len(batch) == 1 else torch.cat([j.payload for j in batch])
            await self._execute(job.fn, payload, batch, merged=True)

    async def _linger(self, key: Hashable, batch: list[_Job], rows: int) -> int:
        self._filled.clear()
        self._linger_need = self.max_batch_size - rows
        try:
            async with asyncio.timeout(self.max_delay_s):
                await self._filled.wait()
        except TimeoutError:
            pass  # the window closed: run what has arrived
        finally:
            self._linger_need = 0
        return self._take(key, batch, rows)

    async def _execute(
        self, fn: Callable[..., Any], payload: Any, batch: list[_Job], merged: bool
    ) -> None:
        start = time.perf_counter()
        rows = sum(j.rows for j in batch)
        for job in batch:
            self.metrics.queue_wait.observe(start - job.enqueued)
        try:
            if merged and rows <= self.inline_max_rows:
                out = _run_inference(fn, payload)
            else:
                loop = asyncio.get_running_loop()
                out = await loop.run_in_executor(self._executor, _run_inference, fn, payload)
        except Exception as exc:  # delivered to every waiting request, which answers 500
            log.exception("model %s failed on a batch of %d rows", self.name, rows)
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self.metrics.compute.observe(time.perf_counter() - start)
        self.metrics.batch_size.observe(rows)
        pieces = _split(out, [j.rows for j in batch]) if merged and len(batch) > 1 else [out]
        for job, piece in zip(batch, pieces, strict=True):
            if not job.future.done():
                job.future.set_result(piece)
