"""The course graph with ``fold_calls`` (the run's layout, shared with its sessions):
every step of a course iteration after ``events`` runs in one LangGraph node, one
checkpoint per iteration instead of one per step, each model call's result (the
session's too) journalled before the next call starts. A course stopped between two
calls of an iteration resumes without repeating the finished ones, under either
executor; a course made in the per-step layout continues in the folded one and back;
records, memories and calls are the per-step layout's."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from graph_helpers import strip_latency as _strip
from langgraph.checkpoint.memory import InMemorySaver

from therasim._internal.checkpoint import open_checkpointer
from therasim.config import CourseSpec
from therasim.context import SimContext
from therasim.graphs import executor
from therasim.graphs.builder import JOURNAL
from therasim.graphs.course import course_builder, initial_course_state, run_course
from therasim.profiles import example_profiles
from therasim.providers import ModelPool
from therasim.testing import FunctionChatModel, SchemaFakeChatModel

SESSIONS, TURNS = 2, 2


class _Calls:
    """Answers as SchemaFakeChatModel, counting calls by (node, session, exchange);
    ``crash_at`` (node, session) raises there once (a process stopping mid-iteration)."""

    def __init__(self, crash_at: tuple[str, int] | None = None) -> None:
        self.fake = SchemaFakeChatModel()
        self.calls: list[tuple[str, int, int]] = []
        self.crash_at = crash_at

    def __call__(self, messages: list[Any], kw: dict[str, Any], info: Any) -> str:
        key = (info.node, int(info.ids.get("session") or 0), int(info.ids.get("exchange") or 0))
        if key[:2] == self.crash_at:
            self.crash_at = None
            raise RuntimeError("simulated crash")
        out = str(self.fake.invoke(messages, **{k: v for k, v in kw.items() if k != "stop"}).content)
        self.calls.append(key)
        return out


def _spec(fold_calls: bool) -> CourseSpec:
    return CourseSpec(preset="lean", sessions=SESSIONS, max_turns=TURNS, fold_calls=fold_calls, memory=False)


async def _course(fold_calls: bool, saver: Any, model: _Calls, *, new: bool = True) -> dict[str, Any]:
    spec = _spec(fold_calls)
    g = course_builder(spec).compile(checkpointer=saver)
    ctx = SimContext(models=ModelPool({"default": FunctionChatModel(fn=model)}), course=spec, seed=3)
    state = initial_course_state(example_profiles()[0], run_id="r", sessions=SESSIONS) if new else None
    return dict(await run_course(g, state, ctx, thread_id="r/c/course"))


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert json.dumps(_strip(a), sort_keys=True, default=str) == json.dumps(_strip(b), sort_keys=True, default=str)


def test_a_folded_course_makes_the_per_step_courses_calls_and_records(tmp_path: Path) -> None:
    async def go() -> None:
        ma, mb = _Calls(), _Calls()
        a = await _course(False, InMemorySaver(), ma)
        path = tmp_path / "cp.sqlite"
        async with open_checkpointer(str(path)) as saver:
            b = await _course(True, saver, mb)
        _same(a, b)
        assert ma.calls == mb.calls and any(n == "planner" for n, _, _ in mb.calls)
        with sqlite3.connect(path) as c:
            course = c.execute("SELECT COUNT(*) FROM checkpoints WHERE thread_id = 'r/c/course'").fetchone()[0]
            journal = c.execute("SELECT COUNT(DISTINCT task_id) FROM writes WHERE thread_id = 'r/c/course' AND channel = ?", (JOURNAL,)).fetchone()[0]
        assert course == 2 + 2 * SESSIONS  # input, start, then events and the rest of each iteration
        assert journal >= 4 * SESSIONS  # before the session and each model-calling step after it

    asyncio.run(go())


@pytest.mark.parametrize(("crash", "first", "second"), [(("planner", 1), "lean", "lean"), (("summarise_client", 2), "lean", "pregel"), (("session_measures", 1), "pregel", "lean")])
def test_a_course_stopped_between_two_calls_resumes_without_repeating_them(crash: tuple[str, int], first: str, second: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model fails at a step in the middle of an iteration (the session and the steps
    before it finished and were journalled); the course resumed (a fresh saver on the same
    file) calls the model for that step and the ones after it only, and files the
    uninterrupted course's records."""

    async def go() -> None:
        ref = _Calls()
        a = await _course(True, InMemorySaver(), ref)
        m = _Calls(crash_at=crash)
        path = str(tmp_path / "cp.sqlite")
        monkeypatch.setenv(executor.EXECUTOR_ENV, first)
        async with open_checkpointer(path) as saver:
            with pytest.raises(RuntimeError, match="simulated crash"):
                await _course(True, saver, m)
        monkeypatch.setenv(executor.EXECUTOR_ENV, second)
        async with open_checkpointer(path) as saver:
            b = await _course(True, saver, m, new=False)
        assert m.calls == ref.calls  # every call once: none of the finished ones again
        _same(a, b)

    asyncio.run(go())


@pytest.mark.parametrize(("made", "resumed"), [(False, True), (True, False)])
def test_a_course_made_in_one_layout_continues_in_the_other(made: bool, resumed: bool, tmp_path: Path) -> None:
    """A course stopped mid-iteration in the per-step layout continues folded (the rest of
    the iteration as one step, nothing repeated), and one stopped folded continues per step
    (the journal is not read there: the iteration's finished steps run again); both file
    the uninterrupted course's records."""

    async def go() -> None:
        ref = _Calls()
        a = await _course(False, InMemorySaver(), ref)
        m = _Calls(crash_at=("planner", 1))
        path = str(tmp_path / "cp.sqlite")
        async with open_checkpointer(path) as saver:
            with pytest.raises(RuntimeError, match="simulated crash"):
                await _course(made, saver, m)
        async with open_checkpointer(path) as saver:
            b = await _course(resumed, saver, m, new=False)
        _same(a, b)
        if not made:  # the per-step layout had checkpointed every finished step: nothing repeats
            assert m.calls == ref.calls

    asyncio.run(go())


@pytest.mark.parametrize("fold_calls", [False, True])
def test_the_course_routers_read_one_channel_and_skip_a_no_show(fold_calls: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The course's two routers read one channel each (``done``, ``pending``: the routers'
    annotations), not a copy of the whole course state, and still route: a no-show drawn
    before session 2 files a skipped record and the course goes on to session 3."""
    from therasim.graphs import CourseGraphBuilder

    selects: list[Any] = []
    real = executor._local_read

    def spy(scratchpad: Any, channels: Any, managed: Any, task: Any, select: Any, fresh: bool = False) -> Any:
        if fresh:
            selects.append(select)
        return real(scratchpad, channels, managed, task, select, fresh)

    monkeypatch.setattr(executor, "_local_read", spy)

    async def no_show(view: Any, ctx: Any) -> dict[str, Any]:
        return {"pending": {"skipped": "no_show"}} if int(view["session"]) == 2 else {}

    c = CourseGraphBuilder("lean").without("memory").replace_step("events", no_show, side="client")
    c.session.fold_calls = fold_calls
    spec = CourseSpec(preset="lean", sessions=3, max_turns=TURNS, fold_calls=fold_calls, memory=False)
    ctx = SimContext(models=ModelPool({"default": SchemaFakeChatModel()}), course=spec)
    final = asyncio.run(run_course(c.compile(checkpointer=InMemorySaver()), initial_course_state(example_profiles()[0], run_id="r", sessions=3), ctx, thread_id="r/c/course"))
    assert [(r["session"], r["end_reason"] == "no_show") for r in final["records"]] == [(1, False), (2, True), (3, False)]
    assert ["done"] in selects and ["pending"] in selects
    assert all(s in (["done"], ["pending"], ["ended"]) for s in selects), selects  # the session's loop router reads `ended`
