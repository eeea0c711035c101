"""A micro-batcher: requests that arrive together are scored as one batch.

Scoring one history at a time reads every weight of the decoder for a single row; at the ML-20M
shape (20,108 items) that is a 48 MB matrix per request, which bounds throughput by memory
bandwidth. Stacking the requests that are waiting into one batch reads the weights once for all of
them. A request never waits long for company: the batch is sent as soon as ``max_batch`` requests
are queued or ``max_wait`` seconds have passed since the first one arrived, and while one batch is
being scored the next one fills up by itself.

The scoring runs on one worker thread, so the event loop keeps accepting and parsing requests
(PyTorch releases the GIL while it computes).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp


@dataclass
class Job:
    """One request: a one-row history, how many items it wants, and the items it may not get."""

    history: sp.csr_matrix
    n: int
    future: asyncio.Future = field(repr=False)
    blocked: np.ndarray | None = field(default=None, repr=False)


#: Scores a batch: (stacked histories, largest n[, blocked]) -> (ids, scores), each ``(batch, n)``.
#: ``blocked``, passed only when some request of the batch has one, is a ``(batch, n_items)``
#: boolean mask of the items each row may not be recommended.
BatchScorer = Callable[..., tuple[np.ndarray, np.ndarray]]


class MicroBatcher:
    """Collects concurrent requests into batches for ``score``.

    Parameters
    ----------
    score : callable
        ``score(histories, n) -> (ids, scores)``, both ``(batch, n)`` arrays sorted by
        descending score; typically ``model.recommend``. When a request is submitted with a
        ``blocked`` mask, its batch is scored as ``score(histories, n, blocked)`` instead, with
        one mask row per request (all False for a request without one).
    max_batch : int
        Most requests scored together.
    max_wait : float
        Most seconds the first request of a batch waits for others (0 sends at once whatever is
        queued).
    """

    def __init__(self, score: BatchScorer, *, max_batch: int = 64, max_wait: float = 0.002) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait < 0:
            raise ValueError("max_wait must not be negative")
        self.score = score
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait)
        self.batches = 0
        self.jobs = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aerec-score")
        self._queue: asyncio.Queue[Job] | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, history: sp.csr_matrix, n: int,
                     blocked: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Queue one history; returns its ``(ids, scores)`` (1-D, length ``n`` at most).

        ``blocked``, an optional ``(n_items,)`` boolean mask, names items this request may not
        be recommended (its business filters); the request still shares its batch.
        """
        self._ensure_worker()
        job = Job(history, int(n), asyncio.get_running_loop().create_future(), blocked)
        self._queue.put_nowait(job)
        return await job.future

    def _ensure_worker(self) -> None:
        # Started lazily in the running loop: the app may be driven by several loops in turn
        # (a test client opens one per request when not used as a context manager).
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._worker is not None and not self._worker.done():
            return
        self._loop = loop
        self._queue = asyncio.Queue()
        self._worker = loop.create_task(self._run(self._queue))

    async def close(self) -> None:
        """Stop the worker; requests still queued get a ``RuntimeError``."""
        if self._worker is not None and self._loop is asyncio.get_running_loop():
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            while self._queue is not None and not self._queue.empty():
                job = self._queue.get_nowait()
                if not job.future.done():
                    job.future.set_exception(RuntimeError("the service is shutting down"))
        self._worker = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, queue: asyncio.Queue[Job]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(queue, loop)
            batch = [job for job in batch if not job.future.done()]  # callers that went away
            if not batch:
                continue
            try:
                ids, scores = await loop.run_in_executor(self._executor, self._score_jobs, batch)
            except Exception as exc:  # every waiting request learns of it, none hangs
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.batches += 1
            self.jobs += len(batch)
            for k, job in enumerate(batch):
                if not job.future.done():
                    job.future.set_result((ids[k, :job.n], scores[k, :job.n]))

    async def _collect(self, queue: asyncio.Queue[Job], loop: asyncio.AbstractEventLoop) -> list[Job]:
        batch = [await queue.get()]
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    def _score_jobs(self, batch: Sequence[Job]) -> tuple[Any, Any]:
        histories = sp.vstack([job.history for job in batch], format="csr")
        n = max(job.n for job in batch)
        if all(job.blocked is None for job in batch):
            return self.score(histories, n)
        blocked = np.zeros(histories.shape, dtype=bool)
        for k, job in enumerate(batch):
            if job.blocked is not None:
                blocked[k] = job.blocked
        return self.score(histories, n, blocked)
