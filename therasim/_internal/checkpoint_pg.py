"""Group commit for the Postgres checkpointer.

LangGraph's AsyncPostgresSaver runs one transaction per checkpoint and per batch
of task writes (autocommit, a pipeline each), after a hop to a worker thread to
serialise; with 64 courses in flight that is hundreds of commits a second, each
a round trip and a WAL flush on the server. :class:`GroupCommitQueue` queues
every write the courses make and one flusher task commits whatever is queued
when it gets to it in one transaction (one pipelined round trip: the blobs, the
checkpoints, the writes, each one ``executemany``); while that transaction is in
flight the next batch gathers. Each writer's ``await`` returns only after the
transaction holding its rows has committed, so a course's next model call starts
only after its previous step is durable, as with the SQLite saver: a kill -9
loses nothing that was acknowledged.

Failures: a transient error (the server restarting) retries the whole
transaction under the saver's retry policy (every statement is an upsert, so a
retry after a lost acknowledgement is harmless). Any other error rolls the
transaction back and each writer of the batch is retried in a transaction of its
own, so a bad row fails only its own course; no writer is ever told that rows of
a failed transaction are stored. Reads of a thread first wait for that thread's
queued writes, so they see what its writers were told is stored.

``THERASIM_GROUP_COMMIT=0`` (or ``group_commit=False``) gives the plain
per-write saver.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from langgraph.checkpoint.base import WRITES_IDX_MAP, get_serializable_checkpoint_metadata

__all__ = ["GroupCommitQueue", "group_commit_postgres_saver_class"]

# One statement for both kinds of task writes, so that the rows of a batch keep
# their order: special channels (errors, interrupts) replace, others keep the
# first write (LangGraph's UPSERT_ / INSERT_CHECKPOINT_WRITES_SQL), chosen per row.
WRITES_SQL = """
    INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE SET
        channel = EXCLUDED.channel,
        type = EXCLUDED.type,
        blob = EXCLUDED.blob
    WHERE %s
"""

# (blob rows, checkpoint rows, write rows) of one put / put_writes
Rows = tuple[Sequence[tuple[Any, ...]], Sequence[tuple[Any, ...]], Sequence[tuple[Any, ...]]]


class GroupCommitQueue:
    """Writes queued by many callers, committed in batches by one flusher task.

    ``commit(batch)`` runs one transaction holding every item of ``batch`` (and
    does its own retrying); ``transient(e)`` says whether ``e`` was a transient
    failure (then the batch has failed as a whole, for every writer; otherwise
    each item is tried again alone, so only the bad ones fail). Items are
    committed in the order they were submitted. At most ``max_batch`` items go
    into one transaction."""

    def __init__(self, commit: Callable[[list[Any]], Awaitable[None]], *, transient: Callable[[BaseException], bool], max_batch: int = 1024) -> None:
        self._commit = commit
        self._transient = transient
        self.max_batch = max_batch
        self._queue: list[tuple[Any, Any, asyncio.Future[None]]] = []  # (key, item, future)
        self._last: dict[Any, asyncio.Future[None]] = {}  # key -> its latest queued item's future
        self._task: asyncio.Task[None] | None = None
        self.commits = 0  # transactions committed (statistics)
        self.statements = 0  # items they carried

    def submit(self, key: Any, item: Any) -> asyncio.Future[None]:
        """Queue ``item`` (of thread ``key``); the future is done once it is
        committed, or carries the error that kept it from being committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._queue.append((key, item, fut))
        self._last[key] = fut
        self.statements += 1
        if self._task is None:  # starts on the next loop iteration: this one's writes join
            self._task = loop.create_task(self._run())
        return fut

    async def wait_for(self, key: Any) -> None:
        """Wait until every item of ``key`` queued so far is committed or failed
        (without raising their errors: those reached their writers)."""
        fut = self._last.get(key)
        if fut is not None and not fut.done():
            await asyncio.wait([fut])

    async def drain(self) -> None:
        """Wait until everything queued so far is committed or failed."""
        while self._task is not None:
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        batch: list[tuple[Any, Any, asyncio.Future[None]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                await self._flush(batch)
                batch = []
        except BaseException as e:  # cancelled (the loop is closing): nobody is told a write is stored
            for _, _, fut in batch + self._queue:
                if not fut.done():
                    fut.set_exception(RuntimeError(f"checkpoint writer stopped before this write was committed ({type(e).__name__})"))
            self._queue = []
            raise
        finally:
            self._task = None

    async def _flush(self, batch: list[tuple[Any, Any, asyncio.Future[None]]]) -> None:
        try:
            await self._commit([item for _, item, _ in batch])
        except Exception as e:
            if len(batch) > 1 and not self._transient(e):
                for entry in batch:  # find the bad item: each alone, in order
                    await self._flush([entry])
                return
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
        else:
            self.commits += 1
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
        finally:
            for key, _, fut in batch:
                if self._last.get(key) is fut:
                    del self._last[key]


@functools.cache
def group_commit_postgres_saver_class() -> Any:
    """RetryingPostgresSaver with group commit (module docstring); made on first
    use so that psycopg is imported only for a Postgres run."""
    from langgraph.checkpoint.serde.types import _DeltaSnapshot
    from psycopg.types.json import Jsonb

    from therasim._internal.checkpoint import _meta_json, _retrying_saver_class

    base = _retrying_saver_class()

    def _raw(b: Any) -> Any:  # JSON already serialised (orjson, on the loop's thread)
        return b

    class GroupCommitPostgresSaver(base):  # type: ignore[misc, valid-type]
        """RetryingPostgresSaver whose writes are group-committed (module docstring)."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.group = GroupCommitQueue(self._transaction, transient=self.is_transient)

        async def _transaction(self, items: list[Rows]) -> None:
            blobs = [r for it in items for r in it[0]]
            ckpts = [r for it in items for r in it[1]]
            writes = [r for it in items for r in it[2]]

            async def once() -> None:
                async with self.conn.connection() as conn:  # type: ignore[union-attr]
                    async with conn.pipeline(), conn.transaction(), conn.cursor() as cur:
                        if blobs:
                            await cur.executemany(self.UPSERT_CHECKPOINT_BLOBS_SQL, blobs)
                        if ckpts:
                            await cur.executemany(self.UPSERT_CHECKPOINTS_SQL, ckpts)
                        if writes:
                            await cur.executemany(WRITES_SQL, writes)

            await self._retry(once)

        async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
            cfg = config["configurable"]
            thread_id, ns = cfg["thread_id"], cfg["checkpoint_ns"]
            copy = checkpoint.copy()
            values = copy["channel_values"] = dict(copy["channel_values"])
            blob_values = {}
            for k, v in checkpoint["channel_values"].items():  # as AsyncPostgresSaver.aput
                if isinstance(v, _DeltaSnapshot):
                    blob_values[k] = values.pop(k)
                    values[k] = True
                elif not (v is None or isinstance(v, (str, int, float, bool))):
                    blob_values[k] = values.pop(k)
            blob_versions = {k: v for k, v in new_versions.items() if k in blob_values}
            blobs = self._dump_blobs(thread_id, ns, blob_values, blob_versions) if blob_versions else []
            row = (thread_id, ns, checkpoint["id"], cfg.get("checkpoint_id"), Jsonb(_meta_json(copy), _raw), Jsonb(_meta_json(get_serializable_checkpoint_metadata(config, metadata)), _raw))
            await self.group.submit(thread_id, (blobs, (row,), ()))
            return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

        async def aput_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
            cfg = config["configurable"]
            replace = all(w[0] in WRITES_IDX_MAP for w in writes)
            rows = [(*r, replace) for r in self._dump_writes(cfg["thread_id"], cfg["checkpoint_ns"], cfg["checkpoint_id"], task_id, task_path, writes)]
            await self.group.submit(cfg["thread_id"], ((), (), rows))

        async def aget_tuple(self, config: Any) -> Any:
            await self.group.wait_for(config["configurable"]["thread_id"])
            return await super().aget_tuple(config)

        async def aget_delta_channel_history(self, *, config: Any, channels: Any) -> Any:
            await self.group.wait_for(config["configurable"]["thread_id"])
            return await super().aget_delta_channel_history(config=config, channels=channels)

        async def alist(self, config: Any, *, filter: Any = None, before: Any = None, limit: int | None = None) -> AsyncIterator[Any]:  # type: ignore[override]
            if config:
                await self.group.wait_for(config["configurable"]["thread_id"])
            else:
                await self.group.drain()
            async for t in super().alist(config, filter=filter, before=before, limit=limit):
                yield t

        async def adelete_thread(self, thread_id: str) -> None:
            await self.group.wait_for(thread_id)
            await self._retry(super().adelete_thread, thread_id)

    return GroupCommitPostgresSaver
