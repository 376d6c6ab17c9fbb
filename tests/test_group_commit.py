"""The group-committing checkpointer: many sessions on one saver, batched commits,
and what it stored reads back identically through the stock saver."""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from therasim.checkpoint import CompressedSerializer, GroupCommitSaver, open_checkpointer
from therasim.config import CourseSpec
from therasim.context import SimContext
from therasim.graphs import preset
from therasim.graphs.builder import JOURNAL
from therasim.graphs.session import initial_session_state, run_session
from therasim.profiles import example_profiles
from therasim.providers import ModelPool
from therasim.testing import FunctionChatModel, client_turn_json


def _reply(msgs, kw):  # type: ignore[no-untyped-def]
    if "YOUR TURN" in str(msgs[-1].content):
        return json.dumps({"utterance": "I have been sleeping badly and worrying about work.", "distress": 5, "trust": 5, "disclosure": 1, "wants_to_end": False})
    return "That sounds hard; tell me more about how the nights have been."


def test_group_commit_batches_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    n, turns = 8, 3

    async def run() -> list[dict]:
        async with open_checkpointer(str(path), group_commit=True) as saver:
            assert isinstance(saver, GroupCommitSaver)
            g = preset("minimal").compile(checkpointer=saver)
            ctx = SimContext(models=ModelPool({"default": FunctionChatModel(fn=_reply)}), course=CourseSpec(max_turns=turns))
            outs = await asyncio.gather(*(run_session(g, initial_session_state(example_profiles()[0]), ctx, thread_id=f"t{i}") for i in range(n)))
            # sessions ran concurrently: some transactions carried several courses' rows
            assert saver.commits < saver.statements
        return list(outs)

    outs = asyncio.run(run())
    assert all(len(o["transcript"]) == 2 * turns for o in outs)

    async def read() -> None:
        async with AsyncSqliteSaver.from_conn_string(str(path)) as plain:
            plain.serde = CompressedSerializer()
            g = preset("minimal").compile(checkpointer=plain)
            for i, o in enumerate(outs):
                snap = await g.aget_state({"configurable": {"thread_id": f"t{i}"}})
                assert snap.values["transcript"] == o["transcript"] and snap.values["ended"]

    asyncio.run(read())


@pytest.mark.parametrize("fold_calls", [True, False])
def test_each_model_call_starts_after_its_course_previous_step_is_committed(tmp_path: Path, fold_calls: bool) -> None:
    """Durability and order: when a session's model call starts, every call it has
    finished is committed (visible to another connection, as after a kill -9), though
    other sessions share the transactions: per call, as the checkpoint of its step; in
    one superstep per exchange, as the exchange's checkpoint or a journal row."""
    path = tmp_path / "c.sqlite"
    n, turns = 6, 3
    seen: list[tuple[str, int, int]] = []  # (thread, calls made before, checkpoints and journal rows committed)
    made: dict[str, int] = {}

    def reply(msgs, kw, info):  # type: ignore[no-untyped-def]
        tid = f"t{info.ids['run_id']}"
        with sqlite3.connect(path) as other:  # another connection sees committed rows only
            (committed,) = other.execute("SELECT count(*) FROM checkpoints WHERE thread_id = ?", (tid,)).fetchone()
            (journal,) = other.execute("SELECT count(DISTINCT task_id) FROM writes WHERE thread_id = ? AND channel = ?", (tid, JOURNAL)).fetchone()
        seen.append((tid, made.get(tid, 0), committed + journal))
        made[tid] = made.get(tid, 0) + 1
        if info.node == "client":
            return client_turn_json("I have been sleeping badly and worrying about work.")
        return "That sounds hard; tell me more about how the nights have been."

    async def run() -> GroupCommitSaver:
        async with open_checkpointer(str(path), group_commit=True) as saver:
            b = preset("minimal")
            b.fold_calls = fold_calls
            g = b.compile(checkpointer=saver)
            ctx = SimContext(models=ModelPool({"default": FunctionChatModel(fn=reply)}), course=CourseSpec(max_turns=turns))
            await asyncio.gather(*(run_session(g, initial_session_state(example_profiles()[0], run_id=str(i)), ctx, thread_id=f"t{i}") for i in range(n)))
            return saver

    saver = asyncio.run(run())
    assert len(seen) == n * 2 * turns and saver.commits < saver.statements
    for _tid, before, committed in seen:
        # the input checkpoint, then one per finished call: per call, the checkpoint of its
        # step; folded, an exchange's client call is journalled before its counselor call
        # starts and the exchange's checkpoint holds the counselor's (exchange e: the
        # client's call after 1 + e checkpoints and e journal rows, the counselor's after
        # those and the client's journal row)
        assert committed >= before + 1, (before, committed)


class _FailingCommit:
    """A connection whose next ``commit`` fails (a full disk), everything else as is."""

    def __init__(self, conn: Any) -> None:
        self._conn, self.fail = conn, 1

    def commit(self) -> None:
        if self.fail:
            self.fail -= 1
            raise sqlite3.OperationalError("database or disk is full")
        self._conn.commit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_a_failed_group_commit_reaches_every_writer_and_keeps_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.sqlite"

    def cfg(t: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": t, "checkpoint_ns": "", "checkpoint_id": "c1"}}

    async def run() -> tuple[list[Any], int, int]:
        async with open_checkpointer(str(path), group_commit=True) as saver:
            saver.setup()
            saver.conn = _FailingCommit(saver.conn)
            # three writers in one loop iteration: one transaction, and it fails
            outs = await asyncio.gather(*(saver.aput_writes(cfg(f"t{i}"), [("x", i)], "task") for i in range(3)), return_exceptions=True)
            fails = saver.commits
            await saver.aput_writes(cfg("t9"), [("x", 9)], "task")  # the next batch commits
            return outs, fails, saver.commits

    with caplog.at_level("ERROR", logger="asyncio"):
        outs, fails, commits = asyncio.run(run())
        assert all(isinstance(o, sqlite3.OperationalError) and "disk is full" in str(o) for o in outs) and fails == 0 and commits == 1
        del outs  # the error's traceback holds the batch's shared future: let it go now
        gc.collect()
    # the error reached its writers; the batch's shared future is not reported as never retrieved
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    with sqlite3.connect(path) as other:
        assert [r[0] for r in other.execute("SELECT thread_id FROM writes ORDER BY thread_id")] == ["t9"]  # the failed batch was rolled back


def test_writes_of_one_loop_iteration_share_one_commit(tmp_path: Path) -> None:
    async def run() -> None:
        async with open_checkpointer(str(tmp_path / "c.sqlite"), group_commit=True) as saver:
            saver.setup()
            sql = "INSERT INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) VALUES (?, '', 'c', 't', '', 0, 'x', 'json', x'00')"
            a, b = saver._write(sql, [("a",)]), saver._write(sql, [("b",)])
            assert a is b and not a.done()  # one batch, not committed before the loop turns
            await a
            c = saver._write(sql, [("c",)])
            assert c is not a
            await c
            assert (saver.commits, saver.statements) == (2, 3)

    asyncio.run(run())


def test_a_cancelled_writer_does_not_cancel_the_others_of_its_batch(tmp_path: Path) -> None:
    """Writers of one transaction share one commit (each awaits a future of its own,
    settled by it): cancelling one (its course was cancelled) must leave the others to
    return once the batch is committed, and the batch's shared future alone."""
    path = tmp_path / "c.sqlite"

    def cfg(t: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": t, "checkpoint_ns": "", "checkpoint_id": "c1"}}

    async def run() -> list[Any]:
        async with open_checkpointer(str(path), group_commit=True) as saver:
            saver.setup()
            tasks = [asyncio.ensure_future(saver.aput_writes(cfg(f"t{i}"), [("x", i)], "task")) for i in range(3)]
            await asyncio.sleep(0)  # all three wrote and wait for the same commit
            batch = saver._batch  # what the lean executor's saves wait on (put_rows / put_write_rows)
            assert batch is not None and not batch.done()
            tasks[1].cancel()
            outs = await asyncio.gather(*tasks, return_exceptions=True)
            assert batch.done() and not batch.cancelled() and batch.result() is None
            return outs

    outs = asyncio.run(run())
    assert outs[0] is None and outs[2] is None and isinstance(outs[1], asyncio.CancelledError)
    with sqlite3.connect(path) as other:
        assert [r[0] for r in other.execute("SELECT thread_id FROM writes ORDER BY thread_id")] == ["t0", "t1", "t2"]  # its rows were in the batch
