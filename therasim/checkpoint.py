"""The run's checkpointer: LangGraph's AsyncSqliteSaver with zlib-compressed blobs.

LangGraph writes one checkpoint per superstep (about nine per turn in the
``full`` preset), each carrying channel versions and per-node ``versions_seen``;
those repetitive blobs compress about 5x. Everything else (DeltaChannels for the
transcript and for fields that rarely change) keeps growth linear in turns.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

__all__ = ["CompressedSerializer", "open_checkpointer"]

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


@asynccontextmanager
async def open_checkpointer(path: str, *, readonly: bool = False) -> AsyncIterator[Any]:
    """An AsyncSqliteSaver on ``path`` with :class:`CompressedSerializer`.

    ``readonly`` opens it for reading only (inspecting a run on a read-only disk).
    A file that is not a database raises :class:`therasim.errors.RunDirError`."""
    import sqlite3
    from pathlib import Path
    from urllib.parse import quote

    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from therasim.errors import RunDirError

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
            if not readonly:
                # WAL with synchronous=NORMAL: a committed checkpoint survives the process being
                # killed (the OS has it); only an OS crash could lose the last few commits.
                await conn.execute("PRAGMA journal_mode=WAL")
                await conn.execute("PRAGMA synchronous=NORMAL")
            else:
                await conn.execute("SELECT count(*) FROM sqlite_master")
        except sqlite3.DatabaseError as e:
            raise RunDirError(f"{path}: the checkpoint database is damaged or unreadable ({e}); the finished sessions in transcripts.jsonl are still there") from None
        saver = AsyncSqliteSaver(conn, serde=CompressedSerializer())
        if readonly:
            saver.is_setup = True  # no CREATE TABLE on a read-only file
        yield saver
    finally:
        await conn_cm.__aexit__(None, None, None)
