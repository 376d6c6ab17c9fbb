"""A run directory opened for plain LangGraph use.

``therasim.open_run(run_dir)`` rebuilds what the run compiled (the session graph
of its preset and the course graph around it) on a checkpointer that reads the
run's ``checkpoints.sqlite`` with the serializer the run wrote it with, so the
usual LangGraph calls work on it: ``get_state``/``aget_state``,
``get_state_history``, ``update_state`` and ``stream``/``astream`` (give the
``context`` it builds when you continue a thread).

The checkpointer is LangGraph's own ``SqliteSaver``; its async methods run the
sync ones in a worker thread (SQLite calls are short), so one object serves both
sync and async code, in a script or in Jupyter.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver

from therasim._internal.checkpoint import CompressedSerializer, run_codec
from therasim._internal.rundir import RunDir
from therasim.errors import RunDirError

__all__ = ["CHECKPOINT_FORMAT", "OpenRun", "RunSaver", "checkpoint_format", "open_run", "run_serde"]

# What the manifest records under "checkpoint" (and docs/langgraph.md explains).
CHECKPOINT_FORMAT = {
    "file": "checkpoints.sqlite",
    "saver": "langgraph.checkpoint.sqlite tables (written by therasim.checkpoint.GroupCommitSaver, a SqliteSaver run on the event loop; SqliteSaver reads them)",
    "serde": "therasim.checkpoint.CompressedSerializer",
    "type_tags": "zs:<type> = zstd-compressed (the default since session 16 of #17), z:<type> = zlib-compressed (the default before; THERASIM_CHECKPOINT_CODEC=zlib) payload of the JsonPlusSerializer type <type>",
    "threads": {"course": "RUN/CLIENT/course", "session": "RUN/CLIENT/sN", "branch": "RUN/CLIENT/sN@BRANCH"},
}


def checkpoint_format() -> dict[str, Any]:
    """What a new run's manifest records under ``checkpoint``: :data:`CHECKPOINT_FORMAT`
    and ``codec``, the codec its blobs are written with (``zstd`` or ``zlib``:
    ``THERASIM_CHECKPOINT_CODEC``, default zstd), kept on resume, fork and replay. A
    manifest without ``codec`` is a run from before it was recorded (zlib)."""
    from therasim._internal.checkpoint import checkpoint_codec

    return {**CHECKPOINT_FORMAT, "codec": checkpoint_codec()}


def run_serde() -> CompressedSerializer:
    """A serializer that reads every run's checkpoints (zstd, zlib or plain blobs, in any
    mix); pass it as ``serde=`` to any LangGraph saver that should read them
    (``SqliteSaver(conn, serde=run_serde())``). It writes the default codec
    (``THERASIM_CHECKPOINT_CODEC``, zstd); ``CompressedSerializer(codec=...)`` with the
    manifest's ``checkpoint.codec`` writes what the run writes."""
    return CompressedSerializer()


class RunSaver(SqliteSaver):
    """``SqliteSaver`` with therasim's serializer whose async methods also work
    (each runs the sync method in a worker thread)."""

    def __init__(self, conn: sqlite3.Connection, codec: str | None = None) -> None:
        super().__init__(conn, serde=CompressedSerializer(codec=codec))

    async def aget_tuple(self, config: Any) -> Any:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config: Any, *, filter: dict[str, Any] | None = None, before: Any = None, limit: int | None = None) -> AsyncIterator[Any]:
        items = await asyncio.to_thread(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
        for it in items:
            yield it

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def aget_delta_channel_history(self, *, config: Any, channels: Sequence[str]) -> Any:
        return await asyncio.to_thread(lambda: self.get_delta_channel_history(config=config, channels=channels))


class OpenRun:
    """A run opened for LangGraph: ``session`` and ``course`` compiled graphs on
    ``checkpointer``, the ``context`` to continue threads with, and thread configs.

    Use it as a context manager (or call :meth:`close`)."""

    def __init__(self, run_dir: str | Path | RunDir, *, models: Any = None, session_builder: Any = None) -> None:
        from therasim.config import RunConfig
        from therasim.graphs.course import course_builder

        self.run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.manifest = self.run_dir.manifest()
        if not self.run_dir.checkpoints.exists():
            raise RunDirError(f"{self.run_dir.root}: no checkpoints.sqlite; the run has not started any session (run `therasim run --resume {self.run_dir.root}`)")
        self.config = RunConfig.model_validate(self.manifest["config"])
        self.run_id: str = self.manifest["run_id"]
        self._models = models
        self._context: Any = None
        self._conn = sqlite3.connect(str(self.run_dir.checkpoints), check_same_thread=False)
        self.checkpointer = RunSaver(self._conn, codec=run_codec(self.run_dir.root))  # what the run writes (its manifest's codec)
        self.course_builder = course_builder(self.config.course, session_builder)
        self.session_builder = self.course_builder.session
        recorded = ((self.manifest.get("graph") or {}).get("course") or {}).get("session") or {}
        if session_builder is None and recorded.get("order") and recorded["order"] != self.session_builder.order:
            raise RunDirError(
                f"{self.run_dir.root} was run with a custom session graph (nodes {recorded['order']}); "
                "pass the same builder: open_run(run_dir, session_builder=...)"
            )
        self.course = self.course_builder.compile(checkpointer=self.checkpointer)
        self.session = self.session_builder.compile(checkpointer=self.checkpointer)

    # thread configs ----------------------------------------------------------
    def session_config(self, client_id: str, session: int, branch: str | None = None) -> dict[str, Any]:
        """``{"configurable": {"thread_id": "RUN/CLIENT/sN[@BRANCH]"}}``."""
        from therasim.graphs.course import session_thread_id
        from therasim.graphs.session import session_recursion_limit

        return {"configurable": {"thread_id": session_thread_id(f"{self.run_id}/{client_id}", session, branch)}, "recursion_limit": session_recursion_limit(self.config.course.max_turns)}

    def course_config(self, client_id: str) -> dict[str, Any]:
        """``{"configurable": {"thread_id": "RUN/CLIENT/course"}}``."""
        from therasim.graphs.session import course_recursion_limit

        return {"configurable": {"thread_id": f"{self.run_id}/{client_id}/course"}, "recursion_limit": course_recursion_limit(self.config.course.sessions)}

    def threads(self) -> list[str]:
        """Every checkpoint thread in the run."""
        return [r[0] for r in self._conn.execute("SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id")]

    # the runtime context -----------------------------------------------------
    @property
    def context(self) -> Any:
        """The :class:`~therasim.context.SimContext` the run used (models from the run's
        config unless ``models=`` was given; memory from the run's store)."""
        if self._context is None:
            from therasim.context import SimContext
            from therasim.memory import open_run_store
            from therasim.providers import ModelPool

            cfg = self.config
            base = self._models if self._models is not None else cfg.models
            pool = base if isinstance(base, ModelPool) else ModelPool(base)
            store = open_run_store(cfg.memory, str(self.run_dir.memory), self.manifest) if cfg.course.memory else None
            self._context = SimContext.from_config(cfg, models=pool, memory=store)
        return self._context

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> OpenRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> OpenRun:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._context is not None:
            await self._context.models.aclose()
        self.close()

    def __iter__(self) -> Iterator[Any]:  # graphs = open_run(...); session, course = graphs
        return iter((self.session, self.course))


def open_run(run_dir: str | Path | RunDir, *, models: Any = None, session_builder: Any = None) -> OpenRun:
    """Open a run directory for LangGraph: compiled ``session`` and ``course`` graphs on a
    checkpointer that reads (and writes) the run's checkpoints. ``models`` overrides the
    run's models in :attr:`OpenRun.context` (a ModelPool or role -> chat model mapping);
    ``session_builder`` is needed for runs made with a custom session graph.

    >>> with therasim.open_run("runs/RUN") as r:  # doctest: +SKIP
    ...     for snap in r.session.get_state_history(r.session_config("maria", 1)):
    ...         print(snap.values.get("exchange"), snap.next)
    """
    return OpenRun(run_dir, models=models, session_builder=session_builder)
