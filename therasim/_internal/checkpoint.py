"""The run's checkpointer: LangGraph's SqliteSaver run inline on the event loop,
with compressed blobs (zstd; zlib read too) and group commit.

LangGraph writes one checkpoint per superstep (about nine per turn in the
``full`` preset), each carrying channel versions and per-node ``versions_seen``;
those repetitive blobs compress about 5x. Everything else (DeltaChannels for the
transcript and for fields that rarely change) keeps growth linear in turns.

Group commit (:class:`GroupCommitSaver`, the default): statements run inline on
the event loop's thread (no hop to a database thread per statement), and every
checkpoint and batch of task writes made in one loop iteration, by every course
in flight, is committed in one transaction. Each caller still waits for the
commit that holds its rows before it returns, so the next model call of a course
starts only after its previous step is durable: a kill -9 loses nothing that was
acknowledged.

Postgres (``checkpointer: {backend: postgres, dsn_env: ...}``, shared by several
machines: docs/scale-out.md): LangGraph's own AsyncPostgresSaver on a psycopg
connection pool, the same compressed serializer, every read and write retried
while the server restarts, and group commit too: every write queued while a
transaction is in flight goes into the next one, each writer waiting for its own
commit (:mod:`therasim._internal.checkpoint_pg`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sqlite3
import threading
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from langgraph.checkpoint.base import WRITES_IDX_MAP, get_checkpoint_metadata
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from therasim.errors import ConfigError

__all__ = ["CODECS", "CompressedSerializer", "GroupCommitSaver", "check_postgres", "checkpoint_codec", "open_checkpointer", "open_postgres_checkpointer", "open_run_checkpointer", "postgres_dsn", "run_codec"]

_TAG = "z:"  # zlib (every therasim version reads it; the default before session 16 of #17)
_ZTAG = "zs:"  # zstd (read since session 14 of #17, the default since session 16; older therasim versions cannot read it)
CODECS = ("zstd", "zlib")
#: zstd's level and the smallest blob it compresses (session 17 of #17: level 1 from 512 B;
#: level 3 from 256 B before). A zstd frame does not depend on the level for reading.
ZSTD_LEVEL, ZSTD_MIN_SIZE = 1, 512
ZLIB_LEVEL, ZLIB_MIN_SIZE = 3, 256
#: the page size of a new checkpoint file (session 17 of #17: 16 KB, SQLite's default 4 KB
#: before; an existing file keeps its own). Every SQLite reads every page size.
PAGE_SIZE = 16384


class _Zstd:
    """zstd one-shot compression: Python 3.14's ``compression.zstd`` when present, else
    the ``zstandard`` package (a dependency below 3.14; langsmith's too). Compressor
    and decompressor contexts are kept per thread (a context is not thread-safe, and
    making one per blob costs more than compressing a checkpoint blob)."""

    def __init__(self) -> None:
        self._local = threading.local()
        try:
            from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14
        except ImportError:
            zstd = None
        self._std = zstd
        if zstd is None:
            import zstandard  # noqa: F401  (fails here, not at the first blob, when missing)

    def compress(self, data: bytes, level: int) -> bytes:
        if self._std is not None:
            return self._std.compress(data, level)  # type: ignore[no-any-return]
        ctxs = self._local.__dict__
        c = ctxs.get(f"c{level}")
        if c is None:
            import zstandard

            c = ctxs[f"c{level}"] = zstandard.ZstdCompressor(level=level)  # writes the content size in the frame
        return c.compress(data)  # type: ignore[no-any-return]

    def decompress(self, data: bytes) -> bytes:
        if self._std is not None:
            return self._std.decompress(data)  # type: ignore[no-any-return]
        d = self._local.__dict__.get("d")
        if d is None:
            import zstandard

            d = self._local.d = zstandard.ZstdDecompressor()
        try:
            return d.decompress(data)  # type: ignore[no-any-return]
        except Exception:  # a frame without its content size (written by another zstd tool): streamed
            return d.decompressobj().decompress(data)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=1)
def _zstd() -> _Zstd | None:
    try:
        return _Zstd()
    except ImportError:
        return None


def checkpoint_codec() -> str:
    """The codec of the blobs a new run's savers write: ``THERASIM_CHECKPOINT_CODEC``,
    ``zstd`` (the default since session 16 of #17: under half the CPU per blob of zlib,
    the same size; blobs a therasim from before session 14 cannot read) or ``zlib``
    (blobs every therasim reads; the default before). Without the variable and
    without a zstd module (Python below 3.14 without the ``zstandard`` package, a
    declared dependency there), ``zlib``. A bad value, or ``zstd`` asked for without
    a zstd module, is a :class:`ConfigError` naming the variable and the fix
    (``therasim run`` and ``run()`` ask before they make a run directory). A run
    records its codec in its manifest and keeps it on resume: :func:`run_codec`."""
    env = os.environ.get("THERASIM_CHECKPOINT_CODEC", "").strip().lower()
    if not env:
        return "zstd" if _zstd() is not None else "zlib"
    if env not in CODECS:
        raise ConfigError(f"THERASIM_CHECKPOINT_CODEC={env!r}: give zstd (the default; less CPU; only a therasim from session 14 on reads it) or zlib (blobs every therasim reads)")
    if env == "zstd" and _zstd() is None:
        raise ConfigError("THERASIM_CHECKPOINT_CODEC=zstd needs the zstandard package below Python 3.14: pip install zstandard, or set THERASIM_CHECKPOINT_CODEC=zlib")
    return env


def run_codec(run_root: Any) -> str | None:
    """The codec a run's checkpoints are written with, from the run's
    ``manifest.json`` (``checkpoint.codec``), so a resumed, forked or replayed run
    keeps writing the blobs its makers read: ``zlib`` for a run whose manifest names
    no codec (made by a therasim from before session 16, whose default was zlib);
    None when ``run_root`` holds no manifest (the caller's default then,
    :func:`checkpoint_codec`). A codec this therasim does not know is a
    :class:`therasim.errors.RunDirError` naming the field."""
    from pathlib import Path

    from therasim.errors import RunDirError

    path = Path(run_root) / "manifest.json"
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError):
        return None  # an unreadable manifest is reported by RunDir.manifest(), which every caller reads first
    ck = man.get("checkpoint") if isinstance(man, dict) else None
    codec = ck.get("codec") if isinstance(ck, dict) else None
    if codec is None:
        return "zlib"
    if codec not in CODECS:
        raise RunDirError(f"{path}: checkpoint.codec {codec!r} is not one this therasim writes (zstd, zlib); open the run with the therasim that made it")
    if codec == "zstd" and _zstd() is None:
        raise RunDirError(f"{path}: the run's checkpoints are zstd-compressed (checkpoint.codec); install the zstandard package to open it: pip install zstandard")
    return str(codec)


class CompressedSerializer(JsonPlusSerializer):
    """JsonPlusSerializer whose payloads are compressed: zstd (type tag ``zs:<type>``)
    or zlib (``z:<type>``), as ``codec`` says (None: :func:`checkpoint_codec`, the
    variable ``THERASIM_CHECKPOINT_CODEC``, default zstd). Reads both, in any mix,
    and uncompressed blobs. zstd compresses a checkpoint blob about as small as zlib
    at level 3 in under half the CPU (docs/benchmarks.md, sessions 14 and 16); a
    therasim from before session 14 knows ``z:`` only and cannot read ``zs:`` blobs
    (it fails with ``Unknown serialization type: zs:msgpack``).

    ``level`` and ``min_size`` (blobs smaller are stored uncompressed; every reader
    takes them) default per codec: zstd level :data:`ZSTD_LEVEL` from
    :data:`ZSTD_MIN_SIZE` bytes, zlib level 3 from 256 bytes. Neither is recorded in
    a blob (a reader needs neither), so changing them changes no format."""

    def __init__(self, level: int | None = None, min_size: int | None = None, codec: str | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        if codec is None:  # a run's savers are made by therasim: the variable picks the codec for them
            codec = checkpoint_codec()
        if codec not in CODECS:
            raise ValueError(f"CompressedSerializer(codec={codec!r}): give 'zstd' or 'zlib' (or None: THERASIM_CHECKPOINT_CODEC, default zstd)")
        zstd = codec == "zstd"
        # defaults (session 17 of #17): zstd level 1 from 512 B (a third less compression
        # CPU per call than level 3 from 256 B; ~5% more blob bytes), zlib as before
        self.level = (ZSTD_LEVEL if zstd else ZLIB_LEVEL) if level is None else level
        self.min_size = (ZSTD_MIN_SIZE if zstd else ZLIB_MIN_SIZE) if min_size is None else min_size
        self._zs = _zstd() if codec == "zstd" else None
        if codec == "zstd" and self._zs is None:
            raise ImportError("CompressedSerializer(codec='zstd') needs the zstandard package below Python 3.14: pip install zstandard")
        self.codec = "zstd" if self._zs is not None else "zlib"

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        if obj is None:
            return "null", b""
        if _MSGPACK is not None and not isinstance(obj, (bytes, bytearray)):
            # JsonPlusSerializer.dumps_typed's msgpack case called directly (session 18 of
            # #17: its frame and type tests were a fifth of the serializer's Python per
            # blob); what msgpack refuses goes its way (pickle, if configured, or the error)
            try:
                data = _MSGPACK(obj)
            except _MsgpackEncodeError:
                return self._compressed(*super().dumps_typed(obj))
            return self._compressed("msgpack", data)
        return self._compressed(*super().dumps_typed(obj))

    def _compressed(self, typ: str, data: bytes) -> tuple[str, bytes]:
        if len(data) < self.min_size or typ.startswith((_TAG, _ZTAG)):
            return typ, data
        if self._zs is not None:
            return _ZTAG + typ, self._zs.compress(data, self.level)
        return _TAG + typ, zlib.compress(data, self.level)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        typ, payload = data
        if typ.startswith(_ZTAG):
            zs = _zstd()
            if zs is None:
                raise ImportError(f"a checkpoint blob is zstd-compressed (type tag {typ!r}); install the zstandard package to read it: pip install zstandard")
            return super().loads_typed((typ[len(_ZTAG) :], zs.decompress(payload)))
        if typ.startswith(_TAG):
            return super().loads_typed((typ[len(_TAG) :], zlib.decompress(payload)))
        return super().loads_typed(data)


def _lg_msgpack_enc() -> Any:
    """LangGraph's msgpack encoder of a checkpoint value (``jsonplus._msgpack_enc``, what
    ``JsonPlusSerializer.dumps_typed`` calls for anything but None and bytes), or None
    when this langgraph has none or its ``dumps_typed`` does not write what it writes
    for a probe (then :meth:`CompressedSerializer.dumps_typed` calls ``dumps_typed``)."""
    from langgraph.checkpoint.serde import jsonplus

    enc = getattr(jsonplus, "_msgpack_enc", None)
    if enc is None or _MsgpackEncodeError is None:
        return None
    probe = {"v": 4, "ts": "2026-01-01T00:00:00+00:00", "channel_values": {"a": [1, 2.5, None, True, "é"], "b": {"c": b"x"}}}
    try:
        if JsonPlusSerializer().dumps_typed(probe) != ("msgpack", enc(probe)):
            return None
    except Exception:
        return None
    return enc


try:
    from ormsgpack import MsgpackEncodeError as _MsgpackEncodeError
except ImportError:  # pragma: no cover - ormsgpack is langgraph-checkpoint's dependency
    _MsgpackEncodeError = None  # type: ignore[assignment,misc]
_MSGPACK = _lg_msgpack_enc()


def _meta_json(meta: Any) -> bytes:
    """Checkpoint metadata as SqliteSaver stores it (JSON text), with orjson (the
    stock ``json.dumps`` was a tenth of the saver's time); ``json`` for what orjson
    refuses (a lone surrogate, a non-string key)."""
    try:
        return orjson.dumps(meta)
    except TypeError:
        return json.dumps(meta, ensure_ascii=False).encode("utf-8", "ignore")


_PUT = "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)"
_WRITES = "INSERT OR {verb} INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


class GroupCommitSaver(SqliteSaver):
    """LangGraph's SqliteSaver run inline on the event loop, with group commit
    (module docstring).

    Each write executes at once on the loop's thread inside the open transaction;
    the first write of a loop iteration schedules one commit (``call_soon``) for
    every write made in that iteration, by any course, and every writer awaits the
    commit holding its rows before it returns. No thread hop per statement (the
    stock AsyncSqliteSaver pays three or four each, and the GIL handoffs that come
    with them); a commit in WAL mode with ``synchronous=NORMAL`` is a write to the
    WAL file, tens of microseconds. Reads run inline too (the same connection sees
    its own uncommitted rows)."""

    def __init__(self, conn: sqlite3.Connection, *, serde: Any = None) -> None:
        super().__init__(conn, serde=serde)
        self._batch: asyncio.Future[None] | None = None  # the open transaction's commit (shared)
        # the open transaction's awaiting writers (aput, aput_writes), a future each: a
        # cancelled writer cancels only its own wait, the commit settles them all
        self._waiters: list[asyncio.Future[None]] = []
        self.commits = 0  # transactions committed (statistics)
        self.statements = 0  # checkpoint and write batches they carried

    def _commit(self) -> None:
        fut, self._batch = self._batch, None
        waiters, self._waiters = self._waiters, []
        if fut is None:
            return
        try:
            with self.lock:
                self.conn.commit()
        except BaseException as e:  # every writer of the failed transaction sees the error
            with contextlib.suppress(Exception):
                self.conn.rollback()
            for f in (fut, *waiters):
                if not f.done():
                    f.set_exception(e)
            # the shared future may have no awaiter (aput / aput_writes wait on their own):
            # its error is each writer's, so asyncio must not log it as never retrieved
            if not fut.cancelled():
                fut.exception()
            if not isinstance(e, Exception):
                raise
        else:
            self.commits += 1
            for f in (fut, *waiters):
                if not f.done():
                    f.set_result(None)

    def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> asyncio.Future[None]:
        self.setup()
        with self.lock:
            self.conn.executemany(sql, rows)
        self.statements += 1
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._batch = loop.create_future()
            loop.call_soon(self._commit)
        return self._batch

    def _wait(self) -> asyncio.Future[None]:
        """A future of the calling writer's own, settled by the commit of the open batch
        (the one its rows just went into): awaited instead of ``asyncio.shield`` around
        the batch's future, which costs an outer future and two done callbacks per
        writer (session 17 of #17). Cancelling it leaves the batch and its other
        writers alone."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut

    def put_rows(self, config: Any, checkpoint: Any, metadata: Any) -> asyncio.Future[None]:
        """:meth:`aput`'s statement, executed now; the future of the commit that holds
        it (shared by the whole batch: a waiter must not cancel it). The lean
        executor's checkpoint saves call this (``graphs/executor.py``)."""
        cfg = config["configurable"]
        type_, blob = self.serde.dumps_typed(checkpoint)
        meta = _meta_json(get_checkpoint_metadata(config, metadata))
        return self._write(_PUT, [(str(cfg["thread_id"]), cfg["checkpoint_ns"], checkpoint["id"], cfg.get("checkpoint_id"), type_, blob, meta)])

    def put_write_rows(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> asyncio.Future[None]:
        """:meth:`aput_writes`'s statement, executed now; the commit's future, as
        :meth:`put_rows`."""
        cfg = config["configurable"]
        verb = "REPLACE" if all(w[0] in WRITES_IDX_MAP for w in writes) else "IGNORE"
        key = (str(cfg["thread_id"]), str(cfg["checkpoint_ns"]), str(cfg["checkpoint_id"]), task_id, task_path)
        dumps, idx = self.serde.dumps_typed, WRITES_IDX_MAP.get
        return self._write(_WRITES.format(verb=verb), [(*key, idx(ch, i), ch, *dumps(v)) for i, (ch, v) in enumerate(writes)])

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        cfg = config["configurable"]
        self.put_rows(config, checkpoint, metadata)
        await self._wait()
        return {"configurable": {"thread_id": cfg["thread_id"], "checkpoint_ns": cfg["checkpoint_ns"], "checkpoint_id": checkpoint["id"]}}

    async def aput_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        self.put_write_rows(config, writes, task_id, task_path)
        await self._wait()

    async def aget_tuple(self, config: Any) -> Any:
        return self.get_tuple(config)

    async def alist(self, config: Any, *, filter: dict[str, Any] | None = None, before: Any = None, limit: int | None = None) -> AsyncIterator[Any]:  # type: ignore[override]
        for t in list(self.list(config, filter=filter, before=before, limit=limit)):
            yield t

    async def aget_delta_channel_history(self, *, config: Any, channels: Any) -> Any:
        return self.get_delta_channel_history(config=config, channels=channels)

    async def adelete_thread(self, thread_id: str) -> None:
        self._commit()
        self.delete_thread(thread_id)


def _group_commit_default() -> bool:
    return os.environ.get("THERASIM_GROUP_COMMIT", "1").strip().lower() not in ("0", "false", "no", "off")


@asynccontextmanager
async def open_checkpointer(path: str, *, group_commit: bool | None = None, readonly: bool = False, codec: str | None = None) -> AsyncIterator[Any]:
    """A checkpointer on ``path`` with :class:`CompressedSerializer` (writing
    ``codec``; None: :func:`checkpoint_codec`; it reads every codec): a
    :class:`GroupCommitSaver` (default), or LangGraph's stock AsyncSqliteSaver with
    ``group_commit=False`` (or ``THERASIM_GROUP_COMMIT=0``).

    ``readonly`` opens it for reading only (inspecting a run on a read-only disk).
    A file that is not a database raises :class:`therasim.errors.RunDirError`."""
    from pathlib import Path
    from urllib.parse import quote

    if group_commit is None:
        group_commit = _group_commit_default()
    import aiosqlite

    from therasim.errors import RunDirError

    def damaged(e: Exception) -> RunDirError:
        return RunDirError(f"{path}: the checkpoint database is damaged or unreadable ({e}); the finished sessions in transcripts.jsonl are still there")

    # WAL with synchronous=NORMAL: a committed checkpoint survives the process being
    # killed (the OS has it); only an OS crash could lose the last few commits.
    # page_size first: it takes effect on a new file only (before WAL and the tables)
    pragmas = (f"PRAGMA page_size={PAGE_SIZE}", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")
    if group_commit and not readonly:
        try:
            sconn = sqlite3.connect(path, check_same_thread=False)
        except sqlite3.Error as e:
            raise RunDirError(f"{path}: cannot open the checkpoints ({e})") from None
        try:
            try:
                for pragma in pragmas:
                    sconn.execute(pragma)
            except sqlite3.DatabaseError as e:
                raise damaged(e) from None
            gsaver = GroupCommitSaver(sconn, serde=CompressedSerializer(codec=codec))
            try:
                yield gsaver
            finally:
                gsaver._commit()
        finally:
            sconn.close()
        return

    target, uri = path, False
    if readonly:
        # immutable=1 when even the -shm file cannot be made (a read-only folder)
        p = Path(path).resolve()
        target, uri = f"file:{quote(str(p))}?mode=ro" + ("" if os.access(p.parent, os.W_OK) else "&immutable=1"), True
    try:
        conn_cm = aiosqlite.connect(target, uri=uri)
        conn = await conn_cm.__aenter__()
    except sqlite3.Error as e:
        raise RunDirError(f"{path}: cannot open the checkpoints ({e})") from None
    try:
        try:
            for pragma in pragmas if not readonly else ("SELECT count(*) FROM sqlite_master",):
                await conn.execute(pragma)
        except sqlite3.DatabaseError as e:
            raise damaged(e) from None
        saver = AsyncSqliteSaver(conn, serde=CompressedSerializer(codec=codec))
        if readonly:
            saver.is_setup = True  # no CREATE TABLE on a read-only file
        yield saver
    finally:
        await conn_cm.__aexit__(None, None, None)


# --------------------------------------------------------------------------- Postgres

_PG_HINT = "pip install 'therasim[postgres]' (langgraph-checkpoint-postgres, psycopg[binary], psycopg-pool)"


def postgres_dsn(spec: Any) -> str:
    """The DSN a postgres :class:`therasim.config.CheckpointerSpec` names (read from
    its environment variable; never stored in the config or the run directory)."""
    import os

    from therasim.errors import ConfigError

    dsn = os.environ.get(spec.dsn_env or "")
    if not dsn:
        raise ConfigError(f"checkpointer.dsn_env: environment variable {spec.dsn_env!r} is not set; export {spec.dsn_env}=postgresql://USER@HOST:PORT/DB on every machine of the run")
    return dsn


@functools.cache
def _retrying_saver_class() -> Any:
    import psycopg
    import psycopg_pool
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    transient = (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout)

    class RetryingPostgresSaver(AsyncPostgresSaver):
        """LangGraph's AsyncPostgresSaver over a connection pool whose reads and
        writes are retried (backoff up to ``retry_s``) while the server restarts.
        Every write is an upsert, so a retry after a lost acknowledgement is safe."""

        retry_s: float = 60.0
        retried: int = 0

        @staticmethod
        def is_transient(e: BaseException) -> bool:
            return isinstance(e, transient)

        async def _retry(self, fn: Any, *a: Any, **kw: Any) -> Any:
            from therasim._internal.retry import RetryPolicy

            def count(e: BaseException) -> None:
                self.retried += 1

            policy = RetryPolicy(max_retries=None, base_s=0.1, cap_s=2.0, budget_s=self.retry_s, jitter=False)
            return await policy.acall(lambda: fn(*a, **kw), transient=lambda e: isinstance(e, transient), on_retry=count)

        async def aget_tuple(self, config: Any) -> Any:
            return await self._retry(super().aget_tuple, config)

        async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
            return await self._retry(super().aput, config, checkpoint, metadata, new_versions)

        async def aput_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
            await self._retry(super().aput_writes, config, writes, task_id, task_path)

        async def aget_delta_channel_history(self, *, config: Any, channels: Any) -> Any:
            return await self._retry(super().aget_delta_channel_history, config=config, channels=channels)

        async def alist(self, config: Any, *, filter: Any = None, before: Any = None, limit: int | None = None) -> Any:  # type: ignore[override]
            async def collect() -> list[Any]:
                return [t async for t in AsyncPostgresSaver.alist(self, config, filter=filter, before=before, limit=limit)]

            for t in await self._retry(collect):
                yield t

    return RetryingPostgresSaver


@asynccontextmanager
async def open_postgres_checkpointer(dsn: str, *, pool_size: int = 8, retry_s: float = 60.0, setup: bool = True, group_commit: bool | None = None, codec: str | None = None) -> AsyncIterator[Any]:
    """LangGraph's Postgres saver (pooled, retrying, :class:`CompressedSerializer`),
    group-committing (:mod:`therasim._internal.checkpoint_pg`) unless ``group_commit``
    is False or ``THERASIM_GROUP_COMMIT=0``. ``setup`` creates or migrates its
    tables (do it once, before workers start)."""
    if group_commit is None:
        group_commit = _group_commit_default()
    try:
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        if group_commit:
            from therasim._internal.checkpoint_pg import group_commit_postgres_saver_class

            cls = group_commit_postgres_saver_class()
        else:
            cls = _retrying_saver_class()
    except ImportError as e:
        from therasim.errors import ConfigError

        raise ConfigError(f"checkpointer.backend postgres needs {e.name}: {_PG_HINT}") from None
    pool = AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=pool_size,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        check=AsyncConnectionPool.check_connection,  # a connection broken by a server restart is replaced
        open=False,
    )
    await pool.open(wait=False)
    try:
        saver = cls(pool, serde=CompressedSerializer(codec=codec))  # type: ignore[arg-type]
        saver.retry_s = retry_s
        if setup:
            await saver._retry(saver.setup)
        try:
            yield saver
        finally:
            if group_commit:
                await saver.group.drain()  # what is queued is committed (or fails its writers) before the pool closes
    finally:
        await pool.close()


@asynccontextmanager
async def open_run_checkpointer(spec: Any, sqlite_path: str, *, setup: bool = True, readonly: bool = False) -> AsyncIterator[Any]:
    """The checkpointer a run's ``checkpointer`` config names: SQLite at ``sqlite_path``
    (default; ``readonly`` opens it for reading only) or the shared Postgres database.
    It writes the codec the run's manifest (beside ``sqlite_path``) records
    (:func:`run_codec`: a run keeps its blobs' codec on resume, fork and replay) and
    reads every codec."""
    from pathlib import Path

    codec = run_codec(Path(sqlite_path).parent) if sqlite_path and sqlite_path != ":memory:" else None
    if spec is None or spec.backend == "sqlite":
        async with open_checkpointer(sqlite_path, readonly=readonly, codec=codec) as saver:
            yield saver
        return
    async with open_postgres_checkpointer(postgres_dsn(spec), pool_size=spec.pool_size, retry_s=spec.retry_s, setup=setup, codec=codec) as saver:
        yield saver


def check_postgres(spec: Any) -> tuple[bool, str, str]:
    """`therasim doctor`: connect, check the server version and that the checkpoint
    tables can be created. Returns (ok, detail, fix)."""
    import asyncio

    try:
        dsn = postgres_dsn(spec)
    except Exception as e:
        return False, str(e), f"export {spec.dsn_env}=postgresql://USER@HOST:PORT/DB"

    async def go() -> str:
        async with open_postgres_checkpointer(dsn, pool_size=1, retry_s=0.0) as saver:
            async with saver.conn.connection() as conn:
                cur = await conn.execute("select current_setting('server_version') as v, count(*) as n from checkpoints")
                row = await cur.fetchone()
        return f"server {row['v']}, {row['n']} checkpoint(s) stored, tables ready"

    try:
        return True, asyncio.run(asyncio.wait_for(go(), 20)), ""
    except Exception as e:
        return False, f"{type(e).__name__}: {str(e)[:200]}", "start Postgres, check the DSN (user, host, port, database) and that the user may create tables"
