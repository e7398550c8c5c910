"""Per-model micro-batching: concurrent requests with the same operation and shape share a forward.

Policy (docs/serving.md, "Batching"): a request that finds the model idle runs at once, so a lone
client never waits out a window. Requests that arrive while a batch runs queue up and form the next
batch (up to ``max_batch_size`` rows). Only when arrivals outpace the model (the last batch filled
up while it waited its turn) does the batcher also linger up to ``max_batch_delay`` for the batch
to fill: with a fixed set of clients that each wait for their answer, lingering otherwise only
idles the model.

Model work runs on one dedicated thread per model (torch and ONNX Runtime release the GIL inside
their kernels, so the event loop keeps parsing and encoding meanwhile). One exception: a one-row
job of the only request its model holds, with the model idle, runs right away on the event loop.
No other request of that model is waiting for the loop then, and the two thread hand-offs (and a
model thread woken from sleep) took longer than the small forward itself (docs/serving.md).

Every job carries its request's ``Ticket``: a job whose ticket failed (deadline, disconnect,
shutdown) is taken out of the queue at once (its payload with it), never run, and a job that runs
alone (a photo, a score) gets ``ticket.check`` to call between its tiles or chunks, so its work
stops too. Admission (how much may queue) is the ticket's ``WorkBudget``'s business, not the
batcher's.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from app.admission import Ticket
from app.errors import ApiError, ClientDisconnected
from app.metrics import ModelMetrics
from app.tracing import record_stage

log = logging.getLogger("aeserve.batching")

# what a batch function returns, split by rows among the requests that shared the batch
Output = TypeVar("Output", torch.Tensor, tuple[torch.Tensor, ...])
T = TypeVar("T")  # what a job returns
A = TypeVar("A")  # what a job that runs alone is given
Check = Callable[[], None]
EARLY_END = (ApiError, ClientDisconnected)  # a ticket's failure raised by ``check``: not a fault
INLINE_ROWS = 1  # a lone request's batch of at most this many rows runs on the event loop


@dataclass(slots=True, eq=False)  # compared by identity: the queue finds a job by itself
class _Job:
    key: Hashable | None  # None: runs alone, never merged
    fn: Callable[..., Any]
    payload: Any  # a (rows, ...) tensor for mergeable jobs
    rows: int
    future: asyncio.Future[Any]
    ticket: Ticket
    enqueued: float
    queued: bool = True  # in the queue (False once the worker or a failure took it out)
    started: float = 0.0  # when its batch began on the model thread
    ended: float = 0.0  # when its batch ended


def _run_inference(fn: Callable[..., T], *args: Any) -> T:
    with torch.inference_mode():
        return fn(*args)


def _split(out: Output, sizes: list[int]) -> list[Output]:
    if isinstance(out, torch.Tensor):
        return list(out.split(sizes))
    parts = [t.split(sizes) for t in out]
    return [tuple(p[i] for p in parts) for i in range(len(sizes))]


class Batcher:
    """The queue and the worker of one model. Create inside a running event loop."""

    def __init__(
        self, name: str, *, max_batch_size: int, max_delay_s: float, metrics: ModelMetrics
    ) -> None:
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.metrics = metrics
        self._queue: collections.deque[_Job] = collections.deque()
        self._wakeup = asyncio.Event()
        self._filled = asyncio.Event()
        self._linger_need = 0
        self._linger_key: Hashable | None = None  # the key of the batch held open
        self._under_load = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")
        self._task: asyncio.Task[None] | None = None
        self._running = False  # a batch or job is on the model thread
        self._held: list[_Job] = []  # taken from the queue by the worker and not yet run
        self._on_dead: Callable[[], None] | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, on_dead: Callable[[], None] | None = None) -> None:
        """Start the worker; ``on_dead()`` runs if it ever ends other than by ``stop`` (a bug)."""
        self._on_dead = on_dead
        self._task = asyncio.get_running_loop().create_task(
            self._worker(), name=f"batch-{self.name}"
        )
        self._task.add_done_callback(self._ended)

    def _not_serving(self) -> ApiError:
        return ApiError(503, "unavailable", f"model {self.name} is not serving", {"Retry-After": "5"})

    def _fail_queued(self, error: BaseException) -> None:
        queued, self._queue = self._queue, collections.deque()
        for job in queued:
            job.queued = False
            job.ticket.fail(error)
        self._dequeued(len(queued))

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A worker that ends other than by ``stop`` is a bug: it is logged with its traceback at
        once, ``on_dead()`` runs (its requests not yet failed, so that it can tell whether any is
        lost), and the requests it held or queued get a 503 instead of waiting for their deadline
        (the model serves nothing from then on, and ``/healthz`` says so)."""
        if task.cancelled() or (exc := task.exception()) is None:
            return
        log.error("the batch worker of %s stopped: %s: %s", self.name, type(exc).__name__, exc,
                  exc_info=exc)
        if self._on_dead is not None:
            self._on_dead()
        gone = ApiError(503, "unavailable",
                        f"model {self.name} stopped serving: the service needs a restart")
        for job in self._held:
            job.ticket.fail(gone)
        self._fail_queued(gone)

    @property
    def lingering(self) -> bool:
        """Whether the worker holds a batch open for company (only after a batch that came full)."""
        return self._linger_need > 0

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self, error: BaseException) -> None:
        """Fail what is queued with ``error``, stop the worker, let the model thread finish."""
        self._fail_queued(error)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def call_on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the model thread outside the queue (startup warm-up)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _run_inference, fn, *args)

    # ---- submitting ------------------------------------------------------------------------
    async def run(self, fn: Callable[[torch.Tensor], Output], rows: torch.Tensor, key: Hashable,
                  ticket: Ticket) -> Output:
        """``fn`` over ``rows`` (first dim), possibly merged with other requests with ``key``."""
        return await self._submit(key, fn, rows, rows.shape[0], ticket)

    async def run_alone(self, fn: Callable[[A, Check], T], arg: A, ticket: Ticket) -> T:
        """``fn(arg, ticket.check)`` on the model thread, in queue order, never merged."""
        return await self._submit(None, fn, arg, 1, ticket)

    async def _submit(
        self, key: Hashable | None, fn: Callable[..., T], payload: Any, rows: int, ticket: Ticket
    ) -> T:
        ticket.check()
        if not self.alive:
            raise self._not_serving()
        if key is not None and rows <= INLINE_ROWS and ticket.alone:
            # two turns of the loop: it polls the sockets once, and a request that had arrived
            # meanwhile reaches its ticket; only a request still alone then runs inline
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            ticket.check()  # failed meanwhile (deadline, disconnect): nothing runs
            if not self._busy and ticket.alone:
                return self._run_inline(fn, payload, rows)
            if not self.alive:  # the worker died meanwhile: nothing would take the job
                raise self._not_serving()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        job = _Job(key, fn, payload, rows, future, ticket, time.perf_counter())
        self._queue.append(job)
        future.add_done_callback(lambda _: self._unqueue(job))
        self.metrics.queued_requests.inc()
        if self._linger_need > 0 and key == self._linger_key:  # company for the open batch
            self._linger_need -= rows
            if self._linger_need <= 0:
                self._filled.set()
        self._wakeup.set()
        ticket.future = future
        ticket.watch()
        try:
            out = await future
        finally:
            ticket.future = None
        record_stage("queue", job.enqueued, job.started)
        record_stage("batch", job.started, job.ended)
        return out

    @property
    def _busy(self) -> bool:
        return self._running or bool(self._queue)

    def _run_inline(self, fn: Callable[[torch.Tensor], T], payload: torch.Tensor, rows: int) -> T:
        """A lone request's small batch, run on the event loop (see the module's docstring)."""
        start = time.perf_counter()
        self.metrics.queue_wait.observe(0.0)
        try:
            out = _run_inference(fn, payload)
        except Exception:
            log.exception("model %s failed on a batch of %d rows", self.name, rows)
            raise
        self._observe_compute(start, rows)
        record_stage("batch", start, time.perf_counter())
        return out

    def _observe_compute(self, start: float, rows: int) -> None:
        """One finished model call: its time since ``start`` and its rows."""
        self.metrics.compute.observe(time.perf_counter() - start)
        self.metrics.batch_size.observe(rows)

    def _unqueue(self, job: _Job) -> None:
        """A job answered: out of the queue, if it is still there (its ticket failed while it
        waited). Its work is already given back to the budget; its payload, the decoded images,
        must not wait in the queue behind a long job until the worker reaches it."""
        if job.queued:  # the worker's jobs are out already: only a failed one is looked for
            job.queued = False
            self._queue.remove(job)
            self._dequeued(1)

    def _dequeued(self, count: int) -> None:
        if count:
            self.metrics.queued_requests.dec(count)

    # ---- the worker ------------------------------------------------------------------------
    def _take(self, key: Hashable, batch: list[_Job], rows: int) -> int:
        """Move queued jobs with ``key`` into ``batch`` while they fit; keep the others in order."""
        kept: collections.deque[_Job] = collections.deque()
        left = len(self._queue)
        while self._queue:
            job = self._queue.popleft()
            if job.future.done():
                job.queued = False
                continue
            if job.key == key and rows + job.rows <= self.max_batch_size:
                job.queued = False
                batch.append(job)
                rows += job.rows
            else:
                kept.append(job)
        self._dequeued(left - len(kept))
        self._queue = kept
        return rows

    async def _worker(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            job = self._queue.popleft()
            job.queued = False
            self._dequeued(1)
            if job.future.done():  # its ticket failed while it waited
                continue
            if job.key is None:
                self._held = [job]
                await self._execute_alone(job)
                self._held = []
                continue
            batch = self._held = [job]
            rows = self._take(job.key, batch, job.rows)
            lingered = self._under_load and rows < self.max_batch_size and self.max_delay_s > 0
            if lingered:
                rows = await self._linger(job.key, batch, rows)
            # a batch that only filled by lingering is no sign of load: with a fixed set of
            # clients, lingering again would wait for all of them every time, and the model and
            # the event loop would take turns instead of overlapping (docs/serving.md)
            self._under_load = rows >= self.max_batch_size and not lingered
            await self._execute_batch(job.fn, batch)
            self._held = []

    async def _linger(self, key: Hashable, batch: list[_Job], rows: int) -> int:
        self._filled.clear()
        self._linger_need, self._linger_key = self.max_batch_size - rows, key
        try:
            async with asyncio.timeout(self.max_delay_s):
                await self._filled.wait()
        except TimeoutError:
            pass  # the window closed: run what has arrived
        finally:
            self._linger_need, self._linger_key = 0, None
        return self._take(key, batch, rows)

    async def _execute_batch(self, fn: Callable[..., Any], batch: list[_Job]) -> None:
        batch = [j for j in batch if not j.future.done()]  # failed while lingering
        if not batch:
            return
        payload = batch[0].payload if len(batch) == 1 else torch.cat([j.payload for j in batch])
        rows = sum(j.rows for j in batch)
        start = time.perf_counter()
        for job in batch:
            self.metrics.queue_wait.observe(start - job.enqueued)
            job.started = start
        loop = asyncio.get_running_loop()
        self._running = True
        try:
            out = await loop.run_in_executor(self._executor, _run_inference, fn, payload)
        except Exception as exc:  # delivered to every waiting request, which answers 500
            log.exception("model %s failed on a batch of %d rows", self.name, rows)
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        finally:
            self._running = False
        self._observe_compute(start, rows)
        pieces = _split(out, [j.rows for j in batch]) if len(batch) > 1 else [out]
        ended = time.perf_counter()
        for job, piece in zip(batch, pieces, strict=True):
            job.ended = ended
            if not job.future.done():
                job.future.set_result(piece)

    async def _execute_alone(self, job: _Job) -> None:
        start = job.started = time.perf_counter()
        self.metrics.queue_wait.observe(start - job.enqueued)
        loop = asyncio.get_running_loop()
        self._running = True
        try:
            out = await loop.run_in_executor(
                self._executor, _run_inference, job.fn, job.payload, job.ticket.check
            )
        except EARLY_END as exc:  # the ticket failed between tiles or chunks: the work stopped
            log.debug("model %s stopped a job early: %s", self.name, type(exc).__name__)
            if not job.future.done():
                job.future.set_exception(exc)
            return
        except Exception as exc:
            log.exception("model %s failed on a job", self.name)
            if not job.future.done():
                job.future.set_exception(exc)
            return
        finally:
            self._running = False
        self._observe_compute(start, 1)
        job.ended = time.perf_counter()
        if not job.future.done():
            job.future.set_result(out)
