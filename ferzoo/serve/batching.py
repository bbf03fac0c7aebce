"""Dynamic batching: requests that arrive within a short wait of each other share one call of the model.

A :class:`DynamicBatcher` owns one worker thread and a queue. :meth:`DynamicBatcher.submit` puts a job (any
object and its number of rows) on the queue and returns a :class:`concurrent.futures.Future`. The worker takes
the first waiting job, then keeps taking jobs until ``max_batch`` rows are gathered or ``max_wait_s`` has
passed since the first one, and calls ``run(jobs)`` once for all of them; ``run`` returns one result per job
(or raises: every job of that batch gets the exception). A job larger than ``max_batch`` runs on its own.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


@dataclass
class _Job:
    payload: Any
    rows: int
    future: Future = field(default_factory=Future)


class DynamicBatcher:
    """``run(payloads) -> results`` called from one worker thread on batches of up to ``max_batch`` rows."""

    def __init__(self, run: Callable[[Sequence[Any]], Sequence[Any]], *, max_batch: int = 32,
                 max_wait_s: float = 0.005, name: str = "batcher"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.run = run
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._closed = False
        #: counters: calls of ``run``, jobs and rows served, the largest batch (rows)
        self.stats = {"batches": 0, "jobs": 0, "rows": 0, "largest_batch": 0}
        self._thread = threading.Thread(target=self._loop, name=f"ferzoo-{name}", daemon=True)
        self._thread.start()

    def submit(self, payload: Any, rows: int = 1) -> Future:
        if self._closed:
            raise RuntimeError("the batcher is closed")
        job = _Job(payload, max(1, int(rows)))
        self._queue.put(job)
        return job.future

    def close(self, timeout: float | None = 5.0) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)

    def _gather(self, first: _Job) -> tuple[list[_Job], bool, _Job | None]:
        jobs, rows = [first], first.rows
        deadline = time.monotonic() + self.max_wait_s
        while rows < self.max_batch:
            left = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True, None
            if rows + job.rows > self.max_batch:  # would overflow: it starts the next batch (order kept)
                return jobs, False, job
            jobs.append(job)
            rows += job.rows
        return jobs, False, None

    def _loop(self) -> None:
        carry: _Job | None = None
        while True:
            first = carry or self._queue.get()
            carry = None
            if first is None:
                return
            jobs, stop, carry = self._gather(first)
            jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            if jobs:
                self._run(jobs)
            if stop:
                return

    def _run(self, jobs: list[_Job]) -> None:
        try:
            results = list(self.run([j.payload for j in jobs]))
            if len(results) != len(jobs):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(jobs)} jobs")
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
            for j in jobs:
                j.future.set_exception(exc)
            return
        rows = sum(j.rows for j in jobs)
        self.stats["batches"] += 1
        self.stats["jobs"] += len(jobs)
        self.stats["rows"] += rows
        self.stats["largest_batch"] = max(self.stats["largest_batch"], rows)
        for j, r in zip(jobs, results):
            if isinstance(r, BaseException):
                j.future.set_exception(r)
            else:
                j.future.set_result(r)
