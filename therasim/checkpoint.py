"""The run's checkpointer: LangGraph's AsyncSqliteSaver with zlib-compressed blobs
and group commit.

LangGraph writes one checkpoint per superstep (about nine per turn in the
``full`` preset), each carrying channel versions and per-node ``versions_seen``;
those repetitive blobs compress about 5x. Everything else (DeltaChannels for the
transcript and for fields that rarely change) keeps growth linear in turns.

Group commit (:class:`GroupCommitSaver`): every checkpoint and every batch of
task writes waiting at one moment, from every course in flight, goes to SQLite in
one transaction and one hop to the database thread, instead of one locked
execute-and-commit round trip each. Each caller still waits for the commit that
holds its rows before it returns, so the next model call of a course starts only
after its previous step is durable: a kill -9 loses nothing that was acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import os
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langgraph.checkpoint.base import WRITES_IDX_MAP, get_checkpoint_metadata
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

__all__ = ["CompressedSerializer", "GroupCommitSaver", "open_checkpointer"]

_TAG = "z:"


class CompressedSerializer(JsonPlusSerializer):
    """JsonPlusSerializer whose payloads are zlib-compressed (type tag ``z:<type>``).
    Reads uncompressed blobs too."""

    def __init__(self, level: int = 3, min_size: int = 256, **kw: Any) -> None:
        super().__init__(**kw)
        self.level = level
        self.min_size = min_size

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        typ, data = super().dumps_typed(obj)
        if len(data) < self.min_size or typ.startswith(_TAG):
            return typ, data
        return _TAG + typ, zlib.compress(data, self.level)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        typ, payload = data
        if typ.startswith(_TAG):
            return super().loads_typed((typ[len(_TAG) :], zlib.decompress(payload)))
        return super().loads_typed(data)


_PUT = "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)"
_WRITES = "INSERT OR {verb} INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _write_batch(conn: Any, batch: list[tuple[str, list[tuple[Any, ...]], Any]]) -> None:
    """In the database thread: every statement of the batch, one commit."""
    try:
        for sql, rows, _ in batch:
            conn.executemany(sql, rows)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


class GroupCommitSaver(AsyncSqliteSaver):  # type: ignore[misc,valid-type]
    """AsyncSqliteSaver whose writes are group-committed (module docstring).
    Reads are the upstream ones; they share the upstream lock, so a read never
    sees half a batch."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._pending: list[tuple[str, list[tuple[Any, ...]], Any]] = []
        self._flushing = False
        self.commits = 0  # transactions committed (statistics)
        self.statements = 0  # checkpoint and write batches they carried

    async def _submit(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((sql, rows, fut))
        if not self._flushing:
            # Leader: commit everything pending now (this course's rows and every other
            # course's that arrived meanwhile) without waiting for another task to start.
            self._flushing = True
            try:
                await self._commit(self._take())
            finally:
                if self._pending:  # arrived during the commit: the next batch, in its own task
                    asyncio.get_running_loop().create_task(self._flush())
                else:
                    self._flushing = False
        await fut

    def _take(self) -> list[tuple[str, list[tuple[Any, ...]], Any]]:
        batch, self._pending = self._pending, []
        return batch

    async def _commit(self, batch: list[tuple[str, list[tuple[Any, ...]], Any]]) -> None:
        try:
            async with self.lock:
                await self.conn._execute(_write_batch, self.conn._conn, batch)
        except BaseException as e:  # every caller of the failed transaction sees the error
            for *_, f in batch:
                if not f.done():
                    f.set_exception(e)
            if not isinstance(e, Exception):
                raise
        else:
            self.commits += 1
            self.statements += len(batch)
            for *_, f in batch:
                if not f.done():
                    f.set_result(None)

    async def _flush(self) -> None:
        try:
            while self._pending:
                await self._commit(self._take())
        finally:
            self._flushing = False

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        await self.setup()
        cfg = config["configurable"]
        type_, blob = self.serde.dumps_typed(checkpoint)
        meta = json.dumps(get_checkpoint_metadata(config, metadata), ensure_ascii=False).encode("utf-8", "ignore")
        await self._submit(_PUT, [(str(cfg["thread_id"]), cfg["checkpoint_ns"], checkpoint["id"], cfg.get("checkpoint_id"), type_, blob, meta)])
        return {"configurable": {"thread_id": cfg["thread_id"], "checkpoint_ns": cfg["checkpoint_ns"], "checkpoint_id": checkpoint["id"]}}

    async def aput_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        await self.setup()
        cfg = config["configurable"]
        verb = "REPLACE" if all(w[0] in WRITES_IDX_MAP for w in writes) else "IGNORE"
        rows = [
            (str(cfg["thread_id"]), str(cfg["checkpoint_ns"]), str(cfg["checkpoint_id"]), task_id, task_path, WRITES_IDX_MAP.get(ch, i), ch, *self.serde.dumps_typed(v))
            for i, (ch, v) in enumerate(writes)
        ]
        await self._submit(_WRITES.format(verb=verb), rows)


@asynccontextmanager
async def open_checkpointer(path: str, *, group_commit: bool | None = None) -> AsyncIterator[Any]:
    """A checkpointer on ``path`` with :class:`CompressedSerializer`: the plain
    AsyncSqliteSaver, or a :class:`GroupCommitSaver` with ``group_commit=True`` (or
    ``THERASIM_GROUP_COMMIT=1``). Off by default: on a 2-core machine it saved 10-15%
    of the orchestrator's CPU but doubled the wall time of a 64-course run on the
    ``h100-8b`` stub (docs/benchmarks.md), so it is opt-in until that is understood."""
    if group_commit is None:
        group_commit = os.environ.get("THERASIM_GROUP_COMMIT", "0").strip().lower() in ("1", "true", "yes", "on")
    import aiosqlite

    async with aiosqlite.connect(path) as conn:
        # WAL with synchronous=NORMAL: a committed checkpoint survives the process being
        # killed (the OS has it); only an OS crash could lose the last few commits.
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        cls = GroupCommitSaver if group_commit else AsyncSqliteSaver
        yield cls(conn, serde=CompressedSerializer())
