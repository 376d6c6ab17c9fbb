"""One retry policy for everything therasim retries: model calls over HTTP
(:mod:`therasim._internal.http`), memory-server calls (:mod:`therasim.memory.chroma`)
and the Postgres checkpointer (:mod:`therasim._internal.checkpoint`).

The policy is a frozen value: a client or store holds one and every call reads it;
nothing about a call's progress is kept on it."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["RetryPolicy"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: attempt ``n`` (0-based) waits ``min(cap_s, base_s * 2**n)``,
    drawn uniformly from ``[0, that]`` with ``jitter`` (full jitter), or the server's
    Retry-After when it gives one (at most ``4 * cap_s``). A call gives up after
    ``max_retries`` retries (``None``: no limit on the count) or once the next wait
    would end past ``budget_s`` of wall-clock time, all attempts included."""

    max_retries: int | None = 2
    base_s: float = 0.25
    cap_s: float = 8.0
    budget_s: float = 600.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError(f"RetryPolicy.max_retries must be >= 0 or None, got {self.max_retries}")
        if self.base_s < 0 or self.cap_s < 0 or self.budget_s < 0:
            raise ValueError("RetryPolicy.base_s, cap_s and budget_s must be >= 0")

    def delay(self, n: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``n + 1``."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap_s * 4)
        top = min(self.cap_s, self.base_s * (2**n))
        return (rng or random).uniform(0, top) if self.jitter else top

    def give_up(self, n: int, elapsed: float) -> str | None:
        """Why retry ``n + 1`` is not made after ``elapsed`` seconds (None: make it)."""
        if self.max_retries is not None and n >= self.max_retries:
            return "retry budget spent"
        if elapsed >= self.budget_s:
            return "time budget spent"
        return None

    def _wait(self, e: BaseException, n: int, t0: float, transient: Callable[[BaseException], bool], on_retry: Callable[[BaseException], None] | None) -> float | None:
        """Seconds to wait before retrying after ``e`` on attempt ``n`` (None: give up)."""
        wait = self.delay(n)
        if not transient(e) or self.give_up(n, time.monotonic() - t0 + wait) is not None:
            return None
        if on_retry is not None:
            on_retry(e)
        return wait

    def call(self, fn: Callable[[], T], *, transient: Callable[[BaseException], bool], on_retry: Callable[[BaseException], None] | None = None, sleep: Callable[[float], None] = time.sleep) -> T:
        """``fn()``, retried (blocking) while it raises a ``transient`` error and the
        policy allows; a retry whose wait would end past the budget is not made."""
        t0, n = time.monotonic(), 0
        while True:
            try:
                return fn()
            except Exception as e:
                if (wait := self._wait(e, n, t0, transient, on_retry)) is None:
                    raise
            sleep(wait)
            n += 1

    async def acall(self, fn: Callable[[], Awaitable[T]], *, transient: Callable[[BaseException], bool], on_retry: Callable[[BaseException], None] | None = None) -> T:
        """:meth:`call` for a coroutine function (waits with ``asyncio.sleep``)."""
        import asyncio

        t0, n = time.monotonic(), 0
        while True:
            try:
                return await fn()
            except Exception as e:
                if (wait := self._wait(e, n, t0, transient, on_retry)) is None:
                    raise
            await asyncio.sleep(wait)
            n += 1
