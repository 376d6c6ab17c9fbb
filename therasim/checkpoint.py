"""The run's checkpointer: LangGraph's AsyncSqliteSaver with zlib-compressed blobs.

LangGraph writes one checkpoint per superstep (about nine per turn in the
``full`` preset), each carrying channel versions and per-node ``versions_seen``;
those repetitive blobs compress about 5x. Everything else (DeltaChannels for the
transcript and for fields that rarely change) keeps growth linear in turns.
"""

from __future__ import annotations

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
async def open_checkpointer(path: str) -> AsyncIterator[Any]:
    """An AsyncSqliteSaver on ``path`` with :class:`CompressedSerializer`."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with aiosqlite.connect(path) as conn:
        # WAL with synchronous=NORMAL: a committed checkpoint survives the process being
        # killed (the OS has it); only an OS crash could lose the last few commits.
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        yield AsyncSqliteSaver(conn, serde=CompressedSerializer())
