"""The lean executor (graphs/executor.py) against Pregel on the same inputs: final
state and the whole checkpoint history, field by field, for the lean, full and
minimal presets, a custom composed graph and a course; what must differ (checkpoint
ids, timestamps, the random suffix of channel versions, task ids, which are hashes of
the checkpoint id) is checked to be what Pregel would compute. Fallbacks: callbacks,
``THERASIM_EXECUTOR=pregel``, a graph not built by therasim, an interrupt."""

from __future__ import annotations

import asyncio
import binascii
from typing import Any

import pytest
from graph_helpers import custom_minimal as _custom
from graph_helpers import strip_latency as _strip
from langchain_core.callbacks import AsyncCallbackHandler
from langgraph.checkpoint.memory import InMemorySaver

from therasim.config import CourseSpec
from therasim.context import SimContext
from therasim.contract import Slot
from therasim.graphs import CourseGraphBuilder, executor, initial_course_state, preset
from therasim.graphs.builder import FOLD_CALLS_ENV, JOURNAL, JOURNAL_SEP, SessionGraphBuilder
from therasim.graphs.session import initial_session_state, session_recursion_limit
from therasim.profiles import example_profiles
from therasim.providers import ModelPool
from therasim.testing import SchemaFakeChatModel


@pytest.fixture(autouse=True, params=[True, False], ids=["per-exchange", "per-call"])
def fold_calls(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every test in both layouts: one superstep per exchange (the default) and one per
    model call (``THERASIM_FOLD_CALLS=0``)."""
    monkeypatch.setenv(FOLD_CALLS_ENV, "1" if request.param else "0")
    return bool(request.param)


def _steps(fold_calls: bool) -> int:
    """The fewest supersteps an exchange of these graphs takes: one in the default layout
    (full: two), two per call (the client's and the counselor's, record and termination folded in)."""
    return 1 if fold_calls else 2


def _ctx(turns: int, sessions: int = 1) -> SimContext:
    return SimContext(models=ModelPool({"default": SchemaFakeChatModel()}), course=CourseSpec(max_turns=turns, sessions=sessions))


def _builder(name: str) -> SessionGraphBuilder:
    return _custom() if name == "custom" else preset(name)


def _v(version: Any) -> Any:
    """A channel version without the random suffix a saver adds (``N.0.<random>``)."""
    return version.split(".")[0] if isinstance(version, str) else version


def _task_id(cp_id: str, name: str, step: int, triggers: tuple[str, ...]) -> str:
    from langgraph.pregel._algo import _xxhash_str

    return _xxhash_str(binascii.unhexlify(cp_id.replace("-", "")), name, str(step), name, "__pregel_pull", *triggers)


def _history(saver: InMemorySaver, graph: Any, thread: str) -> list[dict[str, Any]]:
    """Every checkpoint of ``thread`` (oldest first) as a reader sees it, with what
    must differ between two runs replaced by checks: ids and timestamps dropped,
    versions without their random suffix, each pending write's task id recomputed."""
    cfg = {"configurable": {"thread_id": thread}}
    snaps = list(reversed(asyncio.run(_states(graph, cfg))))
    out = []
    ids = [s.config["configurable"]["checkpoint_id"] for s in snaps]
    for i, s in enumerate(snaps):
        tup = saver.get_tuple(s.config)
        assert tup is not None
        cp = tup.checkpoint
        parent = s.parent_config["configurable"]["checkpoint_id"] if s.parent_config else None
        assert parent == (ids[i - 1] if i else None)  # each checkpoint's parent is the one before it
        writes = []
        for tid, ch, val in tup.pending_writes or []:
            if JOURNAL_SEP in tid:  # a journal row of a folded task (one superstep per exchange): under its task's id
                own, _, member = tid.rpartition(JOURNAL_SEP)
                (task,) = [t for t in s.tasks if t.id == own]
                assert ch == JOURNAL and val["member"] < int(member)  # written before member <n> of the group
                writes.append((task.name, task.path, ch, _strip(val)))
                continue
            (task,) = [t for t in s.tasks if t.id == tid]
            pn = graph.nodes[task.name]
            assert tid == _task_id(cp["id"], task.name, int(s.metadata["step"]) + 1, tuple(sorted(pn.triggers)))
            writes.append((task.name, task.path, ch, _strip(val)))
        out.append(
            {
                "values": _strip(s.values),
                "next": s.next,
                "metadata": s.metadata,
                "tasks": [(t.name, t.path, repr(t.error), t.interrupts) for t in s.tasks],
                "ns": s.config["configurable"].get("checkpoint_ns"),
                "v": cp["v"],
                "channel_versions": {k: _v(v) for k, v in cp["channel_versions"].items()},
                "versions_seen": {n: {k: _v(v) for k, v in seen.items()} for n, seen in cp["versions_seen"].items()},
                "updated_channels": cp.get("updated_channels"),
                "writes": writes,
            }
        )
    return out


async def _states(graph: Any, cfg: dict[str, Any]) -> list[Any]:
    return [s async for s in graph.aget_state_history(cfg)]


def _session(name: str, lean: bool, turns: int = 3) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    saver = InMemorySaver()
    g = _builder(name).compile(checkpointer=saver)
    assert executor.lean_reason(g, {}, {}, {}) is None
    cfg = {"configurable": {"thread_id": "t"}, "recursion_limit": session_recursion_limit(turns)}
    state = initial_session_state(example_profiles()[0])
    run = executor.ainvoke(g, state, cfg, context=_ctx(turns), durability="sync") if lean else g.ainvoke(state, cfg, context=_ctx(turns), durability="sync")
    final = asyncio.run(run)
    return final, _history(saver, g, "t")


@pytest.mark.parametrize("name", ["lean", "full", "minimal", "custom"])
def test_lean_executor_writes_the_checkpoints_pregel_writes(name: str, monkeypatch: pytest.MonkeyPatch, fold_calls: bool) -> None:
    runs: list[Any] = []
    lean_run = executor._run

    async def counted(*a: Any) -> Any:
        runs.append(a[0])
        return await lean_run(*a)

    monkeypatch.setattr(executor, "_run", counted)
    a, ha = _session(name, lean=False)
    assert not runs
    b, hb = _session(name, lean=True)
    assert len(runs) == 1  # the lean executor ran it, not a fallback
    assert _strip(a) == _strip(b) and len(b["transcript"]) == 6
    assert len(ha) == len(hb) >= 2 + 3 * _steps(fold_calls)  # input, start, then the exchanges' steps
    for x, y in zip(ha, hb, strict=True):
        assert x == y
    if name == "custom":  # the conditional edge took both ways
        assert any(t["speaker"] == "counselor" and t.get("noted") for t in b["transcript"])
        assert any(t["speaker"] == "counselor" and not t.get("noted") for t in b["transcript"])


def test_lean_course_writes_the_checkpoints_pregel_writes(monkeypatch: pytest.MonkeyPatch, fold_calls: bool) -> None:
    """A two-session course (course thread and both session threads), lean against Pregel."""

    lean_run = executor._run
    ran: list[Any] = []

    async def counted(*a: Any) -> Any:
        ran.append(a[0])
        return await lean_run(*a)

    monkeypatch.setattr(executor, "_run", counted)

    def run(mode: str) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
        monkeypatch.setenv(executor.EXECUTOR_ENV, mode)
        from therasim.graphs import run_course

        saver = InMemorySaver()
        cb = CourseGraphBuilder("lean").without("memory")
        g = cb.compile(checkpointer=saver)
        ran.clear()
        final = asyncio.run(run_course(g, initial_course_state(example_profiles()[0], sessions=2), _ctx(2, 2), thread_id="r/maria/course"))
        # lean: the course graph itself (its session step is a detached subgraph) and both sessions
        assert [x is g for x in ran] == ([True, False, False] if mode == "lean" else [])
        sg = cb.session.compile(checkpointer=saver)
        return final, [_history(saver, g, "r/maria/course"), _history(saver, sg, "adhoc/maria/s1"), _history(saver, sg, "adhoc/maria/s2")]

    a, ha = run("pregel")
    b, hb = run("lean")
    assert _strip(a) == _strip(b) and len(b["records"]) == 2
    for x, y in zip(ha, hb, strict=True):
        assert len(x) == len(y) >= 2 + 2 * _steps(fold_calls)  # a session: input, start, two exchanges (the course thread: more)
        assert x == y


def test_a_run_resumes_across_executors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session that failed mid-way under one executor resumes under the other (and the
    same one) to the transcript of an uninterrupted run."""
    from therasim.testing import FunctionChatModel

    ref, _ = _session("lean", lean=False, turns=3)
    fake = SchemaFakeChatModel()
    for first, second in (("lean", "pregel"), ("pregel", "lean"), ("lean", "lean")):
        flaky = _failing_at(5, fake)
        saver = InMemorySaver()
        g = preset("lean").compile(checkpointer=saver)
        cfg = {"configurable": {"thread_id": "t"}, "recursion_limit": session_recursion_limit(3)}
        ctx = SimContext(models=ModelPool({"default": FunctionChatModel(fn=flaky)}), course=CourseSpec(max_turns=3))
        monkeypatch.setenv(executor.EXECUTOR_ENV, first)
        with pytest.raises(RuntimeError, match="simulated crash"):
            asyncio.run(executor.ainvoke(g, initial_session_state(example_profiles()[0]), cfg, context=ctx, durability="sync"))
        snap = asyncio.run(g.aget_state(cfg))
        assert snap.next and any(t.error for t in snap.tasks)  # the failed task's error is stored, as Pregel stores it
        monkeypatch.setenv(executor.EXECUTOR_ENV, second)
        out = asyncio.run(executor.ainvoke(g, None, cfg, context=ctx, durability="sync"))
        assert [(t["speaker"], t["text"]) for t in out["transcript"]] == [(t["speaker"], t["text"]) for t in ref["transcript"]], (first, second)


def _failing_at(call: int, fake: SchemaFakeChatModel) -> Any:
    """A model function that raises on its ``call``-th call and answers as ``fake`` otherwise."""
    n = {"calls": 0}

    def flaky(messages: list[Any], kw: dict[str, Any]) -> str:
        n["calls"] += 1
        if n["calls"] == call:
            raise RuntimeError("simulated crash")
        return str(fake.invoke(messages, **{k: v for k, v in kw.items() if k != "stop"}).content)

    return flaky


class _Chains(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.started: list[str] = []

    async def on_chain_start(self, serialized: Any, inputs: Any, *, name: str | None = None, **kw: Any) -> None:
        self.started.append(str(name))


def test_falls_back_to_pregel_when_something_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    g = preset("minimal").compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "t"}}
    assert executor.lean_reason(g, {}, cfg, {"context": None, "durability": "sync"}) is None
    assert executor.lean_reason(g, {}, {**cfg, "callbacks": [_Chains()]}, {}) == "callbacks passed in"
    assert executor.lean_reason(g, {}, cfg, {"durability": "exit"}) == "durability 'exit'"
    assert executor.lean_reason(g, {}, cfg, {"interrupt_before": ["client"]}) is not None
    from langgraph.types import Command

    assert executor.lean_reason(g, Command(resume=1), cfg, {}) == "a Command input"
    assert executor.lean_reason(g.builder.compile(), {}, cfg, {}) == "not compiled by a therasim builder"
    monkeypatch.setenv(executor.EXECUTOR_ENV, "pregel")
    assert executor.lean_reason(g, {}, cfg, {}) == "THERASIM_EXECUTOR=pregel"
    monkeypatch.setenv(executor.EXECUTOR_ENV, "turbo")
    with pytest.raises(Exception, match="THERASIM_EXECUTOR"):
        executor.lean_reason(g, {}, cfg, {})
    # with a handler passed in, the run is Pregel's and the handler sees every node
    monkeypatch.delenv(executor.EXECUTOR_ENV)
    h = _Chains()
    out = asyncio.run(executor.ainvoke(g, initial_session_state(example_profiles()[0]), {**cfg, "callbacks": [h], "recursion_limit": 100}, context=_ctx(1)))
    assert out["ended"] and "client" in h.started and "counselor" in h.started


def test_an_interrupt_hands_the_run_to_pregel() -> None:
    """A node that calls ``interrupt()`` under the lean executor: the run is handed to
    Pregel from the last checkpoint and ends interrupted exactly as under Pregel; the
    resume (a Command) runs on Pregel and finishes the session."""
    from langgraph.types import Command, interrupt

    def build() -> Any:
        async def ask(view: Any, ctx: Any) -> dict[str, Any]:
            answer = interrupt("approve?")
            return {"current": {"approved": {"answer": answer}}}

        b = preset("minimal").copy()
        b.add_node("approve", ask, side="counselor", writes=(Slot("approved", turn="counselor"),), after="client")
        return b

    def run(lean: bool) -> tuple[Any, Any, list[Any]]:
        saver = InMemorySaver()
        g = build().compile(checkpointer=saver)
        cfg = {"configurable": {"thread_id": "t"}, "recursion_limit": 100}
        state = initial_session_state(example_profiles()[0])
        first = asyncio.run(executor.ainvoke(g, state, cfg, context=_ctx(1)) if lean else g.ainvoke(state, cfg, context=_ctx(1)))
        done = asyncio.run(executor.ainvoke(g, Command(resume="yes"), cfg, context=_ctx(1)))
        return first, done, asyncio.run(_states(g, cfg))

    a1, a2, ha = run(False)
    b1, b2, hb = run(True)
    assert [i.value for i in b1["__interrupt__"]] == [i.value for i in a1["__interrupt__"]] == ["approve?"]
    assert _strip(a2) == _strip(b2) and b2["ended"]
    assert [(s.next, s.metadata["step"], s.metadata["source"]) for s in ha] == [(s.next, s.metadata["step"], s.metadata["source"]) for s in hb]


def _same_task(a: Any, b: Any) -> None:
    """A task the lean preparation made (``a``) against LangGraph's (``b``), field by
    field; callables bound to a task's own write queue are checked to be bound to it."""
    from langgraph._internal._constants import (
        CONF,
        CONFIG_KEY_READ,
        CONFIG_KEY_SCRATCHPAD,
        CONFIG_KEY_SEND,
    )

    assert (a.id, a.name, a.path, a.triggers, a.retry_policy, a.cache_key, a.timeout) == (b.id, b.name, b.path, b.triggers, b.retry_policy, b.cache_key, b.timeout)
    assert a.input == b.input and a.proc is b.proc and list(a.writers) == list(b.writers) and list(a.subgraphs) == list(b.subgraphs)
    assert list(a.writes) == list(b.writes) == []
    ca, cb = dict(a.config), dict(b.config)
    ka, kb = ca.pop(CONF), cb.pop(CONF)
    assert ca == cb  # metadata, tags, run name, recursion limit, ...
    assert set(ka) == set(kb)
    for k in ka:
        x, y = ka[k], kb[k]
        if k == CONFIG_KEY_SEND:
            assert x.__self__ is a.writes and y.__self__ is b.writes and x.__name__ == y.__name__ == "extend"
        elif k == CONFIG_KEY_READ:
            from langgraph.pregel._algo import local_read

            # the lean read: LangGraph's, copying only the selected channels (test_lean_reads_are_langgraphs)
            assert x.func is executor._local_read and y.func is local_read and x.args[1] is y.args[1] and x.args[2] is y.args[2]
            wa, wb = x.args[3], y.args[3]
            assert (wa.path, wa.name, wa.triggers) == (wb.path, wb.name, wb.triggers) and wa.writes is a.writes and wb.writes is b.writes
            assert x.args[0] is ka[CONFIG_KEY_SCRATCHPAD]
        elif k == CONFIG_KEY_SCRATCHPAD:
            assert (x.step, x.stop, x.resume, x.get_null_resume()) == (y.step, y.stop, y.resume, y.get_null_resume())
        else:  # ids, namespaces, checkpoint map, checkpointer, runtime (with its execution info), ...
            assert x == y, k


def _checking_preparation(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every step the lean preparation runs is also prepared by LangGraph's
    ``prepare_next_tasks`` on the same loop, and the two compared; the counts of tasks
    compared, per step."""
    from langgraph.pregel._algo import prepare_next_tasks

    lean = executor._lean_tasks
    steps: list[int] = []

    def checked(loop: Any) -> dict[str, Any]:
        mine = lean(loop)
        ref = prepare_next_tasks(
            loop.checkpoint, loop.checkpoint_pending_writes, loop.nodes, loop.channels, loop.managed, loop.config, loop.step, loop.stop,
            for_execution=True, manager=loop.manager, store=loop.store, checkpointer=loop.checkpointer, trigger_to_nodes=loop.trigger_to_nodes,
            updated_channels=loop.updated_channels, retry_policy=loop.retry_policy, cache_policy=loop.cache_policy,
        )
        assert list(mine) == list(ref)
        for tid in ref:
            _same_task(mine[tid], ref[tid])
        steps.append(len(ref))
        return mine

    monkeypatch.setattr(executor, "_lean_tasks", checked)
    return steps


@pytest.mark.parametrize("name", ["lean", "full", "custom"])
def test_lean_task_preparation_is_langgraphs(name: str, monkeypatch: pytest.MonkeyPatch, fold_calls: bool) -> None:
    """Each step's tasks, prepared the lean way, equal LangGraph's (ids, paths, inputs,
    triggers, config, scratchpad, runtime); the final step prepares none."""
    steps = _checking_preparation(monkeypatch)
    _session(name, lean=True)
    assert len(steps) >= 3 * _steps(fold_calls) + 1 and steps[-1] == 0 and all(n == 1 for n in steps[:-1])  # three exchanges, then none


def test_lean_task_preparation_on_a_course_and_a_resume(monkeypatch: pytest.MonkeyPatch, fold_calls: bool) -> None:
    """The same check on a course (its thread and both sessions), and on a session that
    failed mid-way and resumed (pending writes and a task error on the checkpoint)."""
    from therasim.graphs import run_course
    from therasim.testing import FunctionChatModel

    steps = _checking_preparation(monkeypatch)
    saver = InMemorySaver()
    g = CourseGraphBuilder("lean").without("memory").compile(checkpointer=saver)
    asyncio.run(run_course(g, initial_course_state(example_profiles()[0], sessions=2), _ctx(2, 2), thread_id="r/maria/course"))
    assert len(steps) > (12 if fold_calls else 20)  # with fold_calls a course iteration is two steps
    steps.clear()
    saver = InMemorySaver()
    sg = preset("lean").compile(checkpointer=saver)
    cfg = {"configurable": {"thread_id": "t"}, "recursion_limit": session_recursion_limit(3)}
    ctx = SimContext(models=ModelPool({"default": FunctionChatModel(fn=_failing_at(5, SchemaFakeChatModel()))}), course=CourseSpec(max_turns=3))
    with pytest.raises(RuntimeError, match="simulated crash"):
        asyncio.run(executor.ainvoke(sg, initial_session_state(example_profiles()[0]), cfg, context=ctx, durability="sync"))
    n = len(steps)
    asyncio.run(executor.ainvoke(sg, None, cfg, context=ctx, durability="sync"))
    assert len(steps) >= n + 2 * _steps(fold_calls) + 1  # the failed exchange's rest, the last exchange, the final step


def test_a_finished_lean_run_leaves_no_cyclic_garbage(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lean run's loop (its channels, checkpoint and tasks) on the run's checkpointer
    (SQLite, group commit) is freed by reference counting when the run returns: with
    the collector off, nothing of it is left. Under a run's collector settings
    (``therasim.runner._gc_for_run``) cyclic garbage waits for a rare full
    collection: session 12's inline checkpoint saves (``1255cfd``, reverted) kept a
    closure over the loop on the loop, and every finished course's loops piled up
    (peak RSS 328 against 259 MB at 1,000 courses, Python blocks tripled)."""
    import gc
    import sqlite3
    import weakref

    from therasim._internal.checkpoint import CompressedSerializer, GroupCommitSaver

    monkeypatch.setenv(executor.EXECUTOR_ENV, "lean")
    cls = executor._lean_loop_class()
    loops: list[Any] = []
    init = cls.__init__

    def tracked(self: Any, *a: Any, **kw: Any) -> None:
        init(self, *a, **kw)
        loops.append(weakref.ref(self))

    monkeypatch.setattr(cls, "__init__", tracked)
    saver = GroupCommitSaver(sqlite3.connect(str(tmp_path / "x.sqlite"), check_same_thread=False), serde=CompressedSerializer())
    g = preset("lean").compile(checkpointer=saver)
    cfg = {"configurable": {"thread_id": "t"}, "recursion_limit": session_recursion_limit(2)}
    ctx = _ctx(2)

    async def go() -> tuple[bool, int]:
        await executor.ainvoke(g, initial_session_state(example_profiles()[0]), cfg, context=ctx, durability="sync")
        await asyncio.sleep(0)  # the last commit's callbacks
        return bool(saver.commits), sum(r() is not None for r in loops)

    gc.collect()
    gc.disable()
    try:
        committed, alive = asyncio.run(go())
    finally:
        gc.enable()
    assert committed and len(loops) == 1
    assert alive == 0, "the finished run's loop is only reachable through a reference cycle"


def _sqlite_saver(path: Any, fail_at: int = 0) -> Any:
    """The run's SQLite group-commit saver, logging its statements and commits in order
    (``("C",)`` a checkpoint, ``("W", task_path, channels)`` a task's writes, ``"|"`` a
    commit); ``fail_at``: its n-th serialisation fails."""
    import sqlite3

    from therasim._internal.checkpoint import CompressedSerializer, GroupCommitSaver

    class Serde(CompressedSerializer):
        n = 0

        def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
            Serde.n += 1
            if Serde.n == fail_at:
                raise TypeError("unserialisable (test)")
            return super().dumps_typed(obj)

    saver = GroupCommitSaver(sqlite3.connect(str(path), check_same_thread=False), serde=Serde())
    log: list[Any] = []
    write, commit = saver._write, saver._commit

    def logged_write(sql: str, rows: list[tuple[Any, ...]]) -> Any:
        log.append(("C",) if "checkpoints" in sql else ("W", rows[0][4], tuple(r[6] for r in rows)))
        return write(sql, rows)

    def logged_commit() -> None:
        if saver._batch is not None:
            log.append("|")
        commit()

    saver._write, saver._commit = logged_write, logged_commit  # type: ignore[method-assign]
    saver.log = log  # type: ignore[attr-defined]
    return saver


def _sqlite_session(path: Any, tasks: bool, fail_at: int = 0) -> tuple[Any, list[Any], list[str], Any]:
    """A lean session on the group-commit saver; ``tasks``: its saves submitted as
    LangGraph submits them (an asyncio task each) instead of the lean loop's.
    Returns the outcome (final state or error), the statement log, the names of the
    tasks created during the run, and the saver."""
    saver = _sqlite_saver(path, fail_at)
    g = preset("lean").compile(checkpointer=saver)
    cfg = {"configurable": {"thread_id": "t"}, "recursion_limit": session_recursion_limit(3)}
    created: list[str] = []

    async def go() -> Any:
        loop = asyncio.get_running_loop()
        make = loop.create_task

        def counted(coro: Any, **kw: Any) -> Any:
            created.append(getattr(coro, "__qualname__", ""))
            return make(coro, **kw)

        loop.create_task = counted  # type: ignore[method-assign]
        try:
            return await executor.ainvoke(g, initial_session_state(example_profiles()[0]), cfg, context=_ctx(3), durability="sync")
        except Exception as exc:
            return exc
        finally:
            await asyncio.sleep(0)

    if tasks:
        orig = executor._saves_submit
        executor._saves_submit = lambda submit, saver: submit  # type: ignore[assignment]
        try:
            out = asyncio.run(go())
        finally:
            executor._saves_submit = orig  # type: ignore[assignment]
    else:
        out = asyncio.run(go())
    return out, saver.log, created, saver


def test_lean_saves_on_group_commit_are_langgraphs_without_tasks(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the run's SQLite group-commit saver the lean loop's checkpoint and write saves
    (``executor._Saves``) make the statements LangGraph's save tasks make, in the same
    order and the same transactions, and the same stored history, without a task per
    save; the history equals Pregel's."""
    monkeypatch.setenv(executor.EXECUTOR_ENV, "lean")
    a, log_a, made_a, saver_a = _sqlite_session(tmp_path / "a.sqlite", tasks=True)
    b, log_b, made_b, saver_b = _sqlite_session(tmp_path / "b.sqlite", tasks=False)
    assert _strip(a) == _strip(b) and len(b["transcript"]) == 6
    assert log_a == log_b and log_b.count("|") >= 2 and log_b.count(("C",)) >= 5
    saves = ("AsyncPregelLoop._checkpointer_put_after_previous", "GroupCommitSaver.aput_writes")
    assert sum(n in saves for n in made_a) >= log_a.count(("C",))  # LangGraph's way: a task per save
    assert not any(n in saves for n in made_b)
    hb = _history(saver_b, preset("lean").compile(checkpointer=saver_b), "t")
    assert _history(saver_a, preset("lean").compile(checkpointer=saver_a), "t") == hb
    monkeypatch.setenv(executor.EXECUTOR_ENV, "pregel")
    saver_p = _sqlite_saver(tmp_path / "p.sqlite")
    gp = preset("lean").compile(checkpointer=saver_p)
    cfg = {"configurable": {"thread_id": "t"}, "recursion_limit": session_recursion_limit(3)}
    asyncio.run(gp.ainvoke(initial_session_state(example_profiles()[0]), cfg, context=_ctx(3), durability="sync"))
    assert _history(saver_p, gp, "t") == hb


@pytest.mark.parametrize("fail_at", [1, 10, 19, 28, 33])  # checkpoints and task writes, first and later steps
def test_a_failed_save_fails_the_lean_saves_as_langgraphs(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, fail_at: int) -> None:
    """A save that cannot be serialised (a checkpoint's or a task's writes) fails the run
    with the same error, after the same statements and commits, leaving the same stored
    history, whether the saves are LangGraph's tasks or the lean loop's."""
    monkeypatch.setenv(executor.EXECUTOR_ENV, "lean")
    a, log_a, _, saver_a = _sqlite_session(tmp_path / "a.sqlite", tasks=True, fail_at=fail_at)
    b, log_b, _, saver_b = _sqlite_session(tmp_path / "b.sqlite", tasks=False, fail_at=fail_at)
    assert isinstance(a, TypeError) and isinstance(b, TypeError) and str(a) == str(b) == "unserialisable (test)"
    assert log_a == log_b
    assert _history(saver_a, preset("lean").compile(checkpointer=saver_a), "t") == _history(saver_b, preset("lean").compile(checkpointer=saver_b), "t")


def test_lean_reads_are_langgraphs(monkeypatch: pytest.MonkeyPatch, fold_calls: bool) -> None:
    """Every read a lean task makes (a router's, with its node's writes applied) returns
    what LangGraph's ``local_read`` returns on the same channels and writes, and a
    missing channel fails both the same way."""
    from langgraph.pregel._algo import local_read

    lean = executor._local_read
    reads: list[Any] = []

    def checked(scratchpad: Any, channels: Any, managed: Any, task: Any, select: Any, fresh: bool = False) -> Any:
        ref = local_read(scratchpad, channels, managed, task, select, fresh)
        mine = lean(scratchpad, channels, managed, task, select, fresh)
        assert mine == ref
        reads.append((select, fresh))
        if fresh:
            for bad in ("no_such_channel", ["ended", "no_such_channel"]):
                with pytest.raises(KeyError) as a:
                    local_read(scratchpad, channels, managed, task, bad, fresh)
                with pytest.raises(KeyError) as b:
                    lean(scratchpad, channels, managed, task, bad, fresh)
                assert a.value.args == b.value.args
            ended = [c for c, _ in task.writes if c in channels][:1]
            if ended:  # a str select, and every channel
                assert lean(scratchpad, channels, managed, task, ended[0], True) == local_read(scratchpad, channels, managed, task, ended[0], True)
                assert lean(scratchpad, channels, managed, task, list(channels), True) == local_read(scratchpad, channels, managed, task, list(channels), True)
        return mine

    monkeypatch.setattr(executor, "_local_read", checked)
    for name in ("lean", "custom"):
        _session(name, lean=True)
    assert any(fresh for _, fresh in reads)


@pytest.mark.parametrize("cancel_at", [1, 3, 5])
def test_a_cancelled_lean_session_leaves_the_others_and_resumes(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, cancel_at: int) -> None:
    """Two lean sessions share the group-commit saver (and its commits); one is
    cancelled at its ``cancel_at``-th save. The other finishes with the transcript of
    a session run alone, and the cancelled one, resumed, finishes with it too."""
    from therasim._internal.checkpoint import GroupCommitSaver

    monkeypatch.setenv(executor.EXECUTOR_ENV, "lean")
    ref, _, _, _ = _sqlite_session(tmp_path / "ref.sqlite", tasks=False)
    saver = _sqlite_saver(tmp_path / "x.sqlite")
    g = preset("lean").compile(checkpointer=saver)

    def cfg(t: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": t}, "recursion_limit": session_recursion_limit(3)}

    saves = {"n": 0}
    victim: list[asyncio.Task[Any]] = []
    put = GroupCommitSaver.put_rows

    def counting(self: Any, config: Any, *a: Any) -> Any:
        if config["configurable"]["thread_id"] == "a":
            saves["n"] += 1
            if saves["n"] == cancel_at:
                victim[0].cancel()
        return put(self, config, *a)

    monkeypatch.setattr(GroupCommitSaver, "put_rows", counting)

    async def go() -> Any:
        a = asyncio.ensure_future(executor.ainvoke(g, initial_session_state(example_profiles()[0]), cfg("a"), context=_ctx(3), durability="sync"))
        victim.append(a)
        b = await executor.ainvoke(g, initial_session_state(example_profiles()[0]), cfg("b"), context=_ctx(3), durability="sync")
        with pytest.raises(asyncio.CancelledError):
            await a
        await asyncio.sleep(0)
        return b

    b = asyncio.run(go())
    assert saves["n"] >= cancel_at
    assert _strip(b) == _strip(ref)
    resumed = asyncio.run(executor.ainvoke(g, None, cfg("a"), context=_ctx(3), durability="sync"))
    assert [(t["speaker"], t["text"]) for t in resumed["transcript"]] == [(t["speaker"], t["text"]) for t in ref["transcript"]]
