"""The memory layer's own threads: memory calls (Chroma reads and writes, embedding
batches) run off the event loop on a pool of their own, sized to the courses in
flight, instead of ``asyncio.to_thread``'s default executor.

Why: the default executor has ``min(32, cpus + 4)`` threads (6 on a 2-core machine)
and is shared with everything else that uses ``to_thread``. A course's memory write
holds its thread until its upsert is stored (a write gathered into another writer's
group commit waits for it there), so with 64 courses ending a session within seconds
of each other at most 6 writes were in flight at once, the rest queued, and each
course's next model call waited for the queue. A course has at most one memory call
in flight, so a pool as large as the courses in flight never queues one; its threads
are started only when needed (``ThreadPoolExecutor`` starts one per call while none is
idle), so a large bound costs nothing while unused. Every call still returns only
once the store has done it: nothing about durability changes.

The runner sizes the pool (:func:`size_memory_pool`) before its courses start; it
grows to the largest concurrency run in the process and never shrinks (a smaller
pool while calls are queued would only add waits).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["MAX_WORKERS", "MIN_WORKERS", "MemoryPool", "memory_pool", "run_memory", "size_memory_pool"]

T = TypeVar("T")

#: the pool's size before a runner sizes it (graphs used on their own, notebooks)
MIN_WORKERS = 32
#: the most threads the pool may have, whatever the concurrency
MAX_WORKERS = 1024


class MemoryPool:
    """A thread pool for memory calls whose size can grow (:meth:`ensure`)."""

    def __init__(self, workers: int = MIN_WORKERS) -> None:
        if workers < 1:
            raise ValueError(f"MemoryPool: workers must be at least 1, got {workers}")
        self._lock = threading.Lock()
        self._workers = min(workers, MAX_WORKERS)
        self._ex: ThreadPoolExecutor | None = None

    @property
    def workers(self) -> int:
        """The most memory calls run at once."""
        return self._workers

    @property
    def threads(self) -> int:
        """Threads started so far (at most :attr:`workers`)."""
        ex = self._ex
        return len(ex._threads) if ex is not None else 0

    def ensure(self, n: int) -> int:
        """Make room for ``n`` memory calls at once (capped at :data:`MAX_WORKERS`);
        never shrinks. Returns the size. Calls already submitted finish where they are."""
        n = min(max(int(n), 1), MAX_WORKERS)
        with self._lock:
            if n > self._workers:
                self._workers = n
                old, self._ex = self._ex, None
                if old is not None:
                    old.shutdown(wait=False)  # its queued and running calls still run
        return self._workers

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Any:
        """``fn(*args)`` on the pool (a ``concurrent.futures.Future``)."""
        with self._lock:  # not between another thread's shutdown of the old pool and our submit
            if self._ex is None:
                self._ex = ThreadPoolExecutor(self._workers, thread_name_prefix="therasim-memory")
            return self._ex.submit(fn, *args)

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        """``await``-able ``fn(*args)`` on the pool, with the caller's context variables
        (as ``asyncio.to_thread``); its exception, if any, is raised here."""
        ctx = contextvars.copy_context()
        return await asyncio.wrap_future(self.submit(functools.partial(ctx.run, fn, *args)))

    def shutdown(self) -> None:
        """Stop the pool's threads once their calls are done (a later call starts new ones)."""
        with self._lock:
            old, self._ex = self._ex, None
        if old is not None:
            old.shutdown(wait=True)


_POOL = MemoryPool()


def memory_pool() -> MemoryPool:
    """The process's memory pool (what the memory nodes run their calls on)."""
    return _POOL


def size_memory_pool(courses_in_flight: int) -> int:
    """Room for one memory call per course in flight (the runner calls this before
    its courses start); returns the pool's size."""
    return _POOL.ensure(courses_in_flight)


async def run_memory(fn: Callable[..., T], /, *args: Any) -> T:
    """Run a memory call (``store.search``, ``store.add``, ``store.embed`` ...) off the
    event loop on the memory pool and return its result."""
    return await _POOL.run(fn, *args)
