"""Group commit of the Postgres checkpointer: the batching logic on its own (no
server), then the saver against a throw-away PostgreSQL 15 cluster: concurrent
sessions share transactions and each model call starts after its course's steps
are committed, a batch with a bad row fails only that row's writer, and a run on
Postgres checkpoints killed with SIGKILL mid-session resumes from them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from therasim._internal.checkpoint_pg import GroupCommitQueue

sys.path.insert(0, str(Path(__file__).parent))


# --------------------------------------------------------------------------- the queue alone


class _Db:
    """A fake transaction runner: records committed batches; ``gate`` holds a commit
    open; items named ``bad*`` fail the transaction, ``flaky`` fails it transiently once."""

    def __init__(self) -> None:
        self.committed: list[list[str]] = []
        self.gate: asyncio.Event | None = None
        self.flaky = 0

    async def commit(self, batch: list[str]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if self.flaky:
            self.flaky -= 1
            raise ConnectionError("server restarting")
        if any(i.startswith("bad") for i in batch):
            raise ValueError("bad row")
        self.committed.append(list(batch))


def _queue(db: _Db) -> GroupCommitQueue:
    return GroupCommitQueue(db.commit, transient=lambda e: isinstance(e, ConnectionError))


def test_one_iteration_shares_a_commit_and_writes_during_a_commit_share_the_next() -> None:
    async def run() -> None:
        db = _Db()
        q = _queue(db)
        db.gate = asyncio.Event()
        a, b = q.submit("t1", "a"), q.submit("t2", "b")
        await asyncio.sleep(0.01)
        c, d, e = q.submit("t1", "c"), q.submit("t3", "d"), q.submit("t2", "e")
        assert not any(f.done() for f in (a, b, c, d, e))  # nobody returns before its commit
        db.gate.set()
        await a
        assert db.committed == [["a", "b"]] and not c.done()
        await asyncio.gather(c, d, e)
        assert db.committed == [["a", "b"], ["c", "d", "e"]]  # in submission order
        assert (q.commits, q.statements) == (2, 5)

    asyncio.run(run())


def test_a_bad_item_fails_only_its_writer_and_a_transient_failure_fails_the_batch() -> None:
    async def run() -> None:
        db = _Db()
        q = _queue(db)
        outs = await asyncio.gather(q.submit("t1", "x"), q.submit("t2", "bad"), q.submit("t3", "y"), return_exceptions=True)
        assert outs[0] is None and outs[2] is None and isinstance(outs[1], ValueError)
        assert db.committed == [["x"], ["y"]]  # the failed transaction kept nothing; each good item alone
        db.flaky = 1  # the commit's own retries are spent: every writer of the batch hears it
        outs = await asyncio.gather(q.submit("t1", "p"), q.submit("t2", "q"), return_exceptions=True)
        assert all(isinstance(o, ConnectionError) for o in outs) and db.committed == [["x"], ["y"]]
        await q.submit("t1", "r")
        assert db.committed[-1] == ["r"] and q.commits == 3

    asyncio.run(run())


def test_wait_for_a_thread_and_a_cancelled_writer() -> None:
    async def run() -> None:
        db = _Db()
        q = _queue(db)
        db.gate = asyncio.Event()
        f1 = q.submit("t1", "a")
        waiter = asyncio.ensure_future(q.wait_for("t1"))
        await asyncio.sleep(0.01)
        writer = asyncio.ensure_future(asyncio.wait_for(q.submit("t2", "b"), 0.001))
        await asyncio.sleep(0.01)
        assert writer.done() and isinstance(writer.exception(), TimeoutError)  # gave up waiting
        assert not waiter.done()  # a read of t1 waits for t1's queued write
        db.gate.set()
        await waiter
        assert f1.done() and f1.result() is None
        await q.drain()
        assert db.committed == [["a"], ["b"]]  # the abandoned write is still committed
        await q.wait_for("t9")  # nothing queued: returns at once

    asyncio.run(run())


# --------------------------------------------------------------------------- a real Postgres

try:
    from scaleout_services import Postgres, pg_missing  # type: ignore[import-not-found]

    _pg_reason = pg_missing()
    import langgraph.checkpoint.postgres  # noqa: F401
    import psycopg  # noqa: F401
except ImportError as e:  # the postgres extra is not installed
    _pg_reason = f"{e.name} is not installed (pip install 'therasim[postgres]')"

needs_pg = pytest.mark.skipif(_pg_reason is not None, reason=str(_pg_reason))


@pytest.fixture(scope="module")
def pg() -> Iterator[Any]:
    server = Postgres()
    try:
        yield server
    finally:
        server.close()


def _reply(msgs, kw):  # type: ignore[no-untyped-def]
    from therasim.testing import client_turn_json

    if "YOUR TURN" in str(msgs[-1].content):
        return client_turn_json("I have been sleeping badly and worrying about work.")
    return "That sounds hard; tell me more about how the nights have been."


@needs_pg
@pytest.mark.parametrize("fold_calls", [True, False])
def test_sessions_share_transactions_and_each_call_follows_its_commit(pg: Any, fold_calls: bool) -> None:
    """Six sessions on one group-committing saver: when a session's model call
    starts, every call it finished is visible to another connection (as after a
    kill -9: per call, its step's checkpoint; in one superstep per exchange, the
    exchange's checkpoint or a journal row); transactions carried several courses'
    rows; the stock saver reads back the same final states."""
    import psycopg

    from therasim.checkpoint import open_postgres_checkpointer
    from therasim.config import CourseSpec
    from therasim.context import SimContext
    from therasim.graphs import preset
    from therasim.graphs.builder import JOURNAL
    from therasim.graphs.session import initial_session_state
    from therasim.profiles import example_profiles
    from therasim.providers import ModelPool
    from therasim.testing import FunctionChatModel

    n, turns, run = 6, 3, f"gc{time.time_ns()}"
    seen: list[tuple[int, int]] = []  # (calls made before, checkpoints committed)
    made: dict[str, int] = {}
    other = psycopg.connect(pg.dsn, autocommit=True)

    def reply(msgs, kw, info):  # type: ignore[no-untyped-def]
        tid = f"{run}/{info.ids['run_id']}"
        (committed,) = other.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (tid,)).fetchone()  # type: ignore[misc]
        (journal,) = other.execute("SELECT count(DISTINCT task_id) FROM checkpoint_writes WHERE thread_id = %s AND channel = %s", (tid, JOURNAL)).fetchone()  # type: ignore[misc]
        seen.append((made.get(tid, 0), committed + journal))
        made[tid] = made.get(tid, 0) + 1
        return _reply(msgs, kw)

    async def go(group_commit: bool) -> tuple[Any, list[dict[str, Any]]]:
        async with open_postgres_checkpointer(pg.dsn, group_commit=group_commit) as saver:
            b = preset("minimal")
            b.fold_calls = fold_calls
            g = b.compile(checkpointer=saver)
            ctx = SimContext(models=ModelPool({"default": FunctionChatModel(fn=reply)}), course=CourseSpec(max_turns=turns))
            cfgs = [{"recursion_limit": 100, "configurable": {"thread_id": f"{run}/{i}"}} for i in range(n)]
            # durability "sync", as a run's sessions (graphs/course.py)
            outs = await asyncio.gather(*(g.ainvoke(initial_session_state(example_profiles()[0], run_id=str(i)), config=c, context=ctx, durability="sync") for i, c in enumerate(cfgs)))
            return saver, list(outs)

    async def read_back(outs: list[dict[str, Any]]) -> None:
        async with open_postgres_checkpointer(pg.dsn, group_commit=False) as plain:  # LangGraph's own reads, no queue
            g = preset("minimal").compile(checkpointer=plain)
            for i, o in enumerate(outs):
                snap = await g.aget_state({"configurable": {"thread_id": f"{run}/{i}"}})
                assert snap.values["transcript"] == o["transcript"] and snap.values["ended"]

    try:
        saver, outs = asyncio.run(go(True))
        assert hasattr(saver, "group") and saver.group.commits < saver.group.statements
        assert len(seen) == n * 2 * turns and all(len(o["transcript"]) == 2 * turns for o in outs)
        # from a session's second call on: its input checkpoint and one per finished
        # call, a checkpoint or a journal row (LangGraph does not wait for the input
        # checkpoint before the first step)
        assert all(committed >= before + 1 for before, committed in seen if before >= 1), seen
        assert sum(1 for before, _ in seen if before >= 1) == n * (2 * turns - 1)
        asyncio.run(read_back(outs))
        os.environ["THERASIM_GROUP_COMMIT"] = "0"  # the switch: LangGraph's per-write saver
        try:
            run, seen[:] = run + "-off", []
            saver, outs_off = asyncio.run(go(None))  # type: ignore[arg-type]
        finally:
            del os.environ["THERASIM_GROUP_COMMIT"]
        assert not hasattr(saver, "group")
        def said(os_: list[dict[str, Any]]) -> list[list[tuple[str, str]]]:  # timings aside
            return [[(t["speaker"], t["text"]) for t in o["transcript"]] for o in os_]

        assert said(outs_off) == said(outs)
    finally:
        other.close()


@needs_pg
def test_a_bad_row_fails_only_its_writer_and_nothing_of_it_is_stored(pg: Any) -> None:
    """Three writers in one transaction; Postgres rejects one row (a NUL in a
    checkpoint's JSON): that writer gets the error, the other two are committed."""
    import psycopg

    from therasim.checkpoint import open_postgres_checkpointer

    run = f"bad{time.time_ns()}"

    def cfg(t: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": f"{run}/{t}", "checkpoint_ns": "", "checkpoint_id": "c1"}}

    ckpt = {"v": 4, "id": "c2", "ts": "2026-01-01T00:00:00+00:00", "channel_values": {"n": 1}, "channel_versions": {"n": "1"}, "versions_seen": {}, "updated_channels": ["n"]}

    sizes: list[int] = []  # items per transaction tried

    async def go() -> tuple[list[Any], int]:
        async with open_postgres_checkpointer(pg.dsn, group_commit=True) as saver:
            inner = saver.group._commit

            async def commit(items: list[Any]) -> None:
                sizes.append(len(items))
                await inner(items)

            saver.group._commit = commit
            outs = await asyncio.gather(
                saver.aput_writes(cfg("a"), [("x", 1)], "task"),
                saver.aput(cfg("b"), {**ckpt, "channel_values": {"n": "nul \x00 here"}}, {}, {"n": "1"}),  # inline in the JSON
                saver.aput(cfg("c"), ckpt, {}, {"n": "1"}),
                return_exceptions=True,
            )
            return outs, saver.group.commits

    outs, commits = asyncio.run(go())
    assert outs[0] is None and isinstance(outs[2], dict), outs
    assert isinstance(outs[1], psycopg.Error), outs[1]
    assert sizes == [3, 1, 1, 1] and commits == 2  # the failed transaction, then each alone: a and c commit
    with psycopg.connect(pg.dsn) as c:
        threads = {r[0] for r in c.execute("SELECT thread_id FROM checkpoints WHERE thread_id LIKE %s UNION SELECT thread_id FROM checkpoint_writes WHERE thread_id LIKE %s", (run + "/%",) * 2)}
    assert threads == {f"{run}/a", f"{run}/c"}


@needs_pg
def test_run_on_postgres_checkpoints_killed_mid_session_resumes(pg: Any, tmp_path: Path) -> None:
    """A run process on group-committed Postgres checkpoints, SIGKILLed while a
    client call of exchange 2 is in flight, then resumed: every session on disk
    once, whole, and the interrupted one continued from its exchange-2 checkpoint."""
    from therasim.config import RunConfig
    from therasim.rundir import read_jsonl
    from therasim.runner import start_run

    env = {**os.environ, "THERASIM_GC_TEST_DSN": pg.dsn, "PYTHONPATH": str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("THERASIM_GROUP_COMMIT", None)
    os.environ["THERASIM_GC_TEST_DSN"] = pg.dsn
    try:
        cfg = RunConfig.model_validate({"course": {"preset": "minimal", "sessions": 2, "max_turns": 3}, "memory": {"embedding": "hash"}, "seed": 3, "checkpointer": {"backend": "postgres", "dsn_env": "THERASIM_GC_TEST_DSN"}})
        rd, _ = start_run(cfg, sample=2, out=tmp_path)
    finally:
        del os.environ["THERASIM_GC_TEST_DSN"]
    from _run_target import kill_at_pause  # type: ignore[import-not-found]

    target = str(Path(__file__).parent / "_run_target.py")
    pause = tmp_path / "paused"
    kill_at_pause(rd.root, 2, env, pause, "the run never reached exchange 2")
    done = subprocess.run([sys.executable, target, str(rd.root), "2"], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    recs = rd.records()
    keys = [(r["client_id"], r["session"]) for r in recs]
    assert len(keys) == len(set(keys)) == 4, sorted(keys)
    for r in recs:
        ex = [t["exchange"] for t in r["turns"] if t["speaker"] == "client"]
        assert ex == list(range(len(ex))) and len(ex) == 3
    resumed = [e for e in read_jsonl(rd.events) if e.get("event") == "session_resumed"]
    assert any(int(e.get("exchange") or 0) >= 2 for e in resumed), resumed
    assert not (rd.root / "checkpoints.sqlite").exists()  # the checkpoints were Postgres's
    assert {s["status"] for s in rd.course_status().values()} == {"completed"}


@needs_pg
@pytest.mark.parametrize("group_commit", [True, False])
def test_one_superstep_per_exchange_on_postgres(pg: Any, group_commit: bool) -> None:
    """``fold_calls`` on Postgres, group commit on and off: when the counselor's call
    starts, the client's journal entry of that exchange is committed (another
    connection sees it); the model failing at the counselor's call of exchange 1 and
    the session resumed on a fresh saver: the client's call is not made again and the
    transcript equals an uninterrupted run's."""
    import psycopg

    from therasim.checkpoint import open_postgres_checkpointer
    from therasim.config import CourseSpec
    from therasim.context import SimContext
    from therasim.graphs import executor, preset
    from therasim.graphs.builder import JOURNAL
    from therasim.graphs.session import initial_session_state
    from therasim.profiles import example_profiles
    from therasim.providers import ModelPool
    from therasim.testing import FunctionChatModel

    tid = f"fc{time.time_ns()}-{group_commit}"
    other = psycopg.connect(pg.dsn, autocommit=True)
    calls: list[tuple[str, int]] = []
    journalled: list[int] = []
    crash = {"at": ("counselor", 1)}

    def reply(msgs, kw, info):  # type: ignore[no-untyped-def]
        key = (info.node, int(info.ids.get("exchange") or 0))
        if info.node == "counselor":
            (n,) = other.execute("SELECT count(*) FROM checkpoint_writes WHERE thread_id = %s AND channel = %s", (tid, JOURNAL)).fetchone()  # type: ignore[misc]
            journalled.append(n)
        if key == crash["at"]:
            crash["at"] = ("", -1)
            raise RuntimeError("simulated crash")
        calls.append(key)
        return _reply(msgs, kw)

    async def go(inp: Any) -> dict[str, Any]:
        async with open_postgres_checkpointer(pg.dsn, group_commit=group_commit) as saver:
            b = preset("minimal")
            b.fold_calls = True
            g = b.compile(checkpointer=saver)
            ctx = SimContext(models=ModelPool({"default": FunctionChatModel(fn=reply)}), course=CourseSpec(max_turns=3))
            return dict(await executor.ainvoke(g, inp, {"recursion_limit": 100, "configurable": {"thread_id": tid}}, context=ctx, durability="sync"))

    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            asyncio.run(go(initial_session_state(example_profiles()[0])))
        out = asyncio.run(go(None))
        assert calls == [("client", 0), ("counselor", 0), ("client", 1), ("counselor", 1), ("client", 2), ("counselor", 2)]
        assert journalled == [1, 2, 2, 3]  # each counselor call after its exchange's client entry was committed (the resumed one: no new entry)
        assert [t["exchange"] for t in out["transcript"]] == [0, 0, 1, 1, 2, 2] and out["ended"]
    finally:
        other.close()


@needs_pg
def test_a_batch_waits_out_a_server_restart(pg: Any) -> None:
    """The server stops while writes are queued: nobody is told they are stored
    until it is back and the batch's transaction, retried, has committed."""
    import psycopg

    from therasim.checkpoint import open_postgres_checkpointer

    run = f"restart{time.time_ns()}"

    def cfg(t: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": f"{run}/{t}", "checkpoint_ns": "", "checkpoint_id": "c1"}}

    async def go() -> None:
        async with open_postgres_checkpointer(pg.dsn, group_commit=True, retry_s=60) as saver:
            await saver.aput_writes(cfg("before"), [("x", 0)], "task")
            await asyncio.to_thread(pg.stop, "fast")
            try:
                writes = [asyncio.ensure_future(saver.aput_writes(cfg(f"w{i}"), [("x", i)], "task")) for i in range(4)]
                await asyncio.sleep(0.5)
                assert not any(w.done() for w in writes)
            finally:
                await asyncio.to_thread(pg.start)
            await asyncio.gather(*writes)  # the pool's reconnects, or the saver's retries, rode it out

    asyncio.run(go())
    with psycopg.connect(pg.dsn) as c:
        (n,) = c.execute("SELECT count(*) FROM checkpoint_writes WHERE thread_id LIKE %s", (run + "/w%",)).fetchone()  # type: ignore[misc]
    assert n == 4
