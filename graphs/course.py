"""The course graph: N sessions of a session graph (any preset or custom one) with
the cross-session steps between them, carrying the client's state over.

Each course iteration runs the steps in ``order`` (by default: between-session
events, outcome measures, memory recall, the session, the two summarisers, the
memory writer, the course planner, closing measures after the last session),
then ``finish`` files the session record and loops. Steps are added, replaced
or removed like session nodes, so ablations are one line::

    course = CourseGraphBuilder(preset("unified")).without("memory", "events")

The session graph runs detached from the course graph with its own checkpoint
thread ``RUN/CLIENT/sN``, so any turn of any session can be inspected, replayed
or forked by thread id, and an interrupted session resumes from its checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypedDict

from langchain_core.runnables.config import var_child_runnable_config
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from therasim.config import CourseSpec
from therasim.context import NodeContext, SimContext, as_sim_context
from therasim.errors import TherasimError
from therasim.graphs import executor
from therasim.graphs.base import StepsBuilder
from therasim.graphs.builder import (
    NodeFn,
    NodeSpec,
    SessionGraphBuilder,
    add_grouped_nodes,
    describe_specs,
    fold_groups,
    router,
    untraced,
    wrap_node,
)
from therasim.graphs.presets import preset
from therasim.graphs.session import course_recursion_limit, session_recursion_limit
from therasim.nodes.events import between_session_events
from therasim.nodes.measures import measures, session_measures
from therasim.nodes.planner import course_planner
from therasim.nodes.recall import recall, remember
from therasim.nodes.summary import summarise_client, summarise_counselor
from therasim.policies.risk_register import fold_phq9, register_notes
from therasim.profiles import ClientProfile
from therasim.state import CourseState, Side, View, make_course_view

__all__ = ["STEP_GROUPS", "CourseGraphBuilder", "course_builder", "initial_course_state", "run_course", "session_thread_id"]

# Checkpoints are written before the next step starts ("sync"), so a kill at any
# moment loses no finished step: every completed turn is kept, not regenerated.
DURABILITY = "sync"

# One-word ablations: each names the steps it removes.
STEP_GROUPS: dict[str, tuple[str, ...]] = {
    "events": ("events",),
    "measures": ("measures", "session_measures", "closing_measures"),
    "memory": ("recall", "remember"),
    "summaries": ("summarise_counselor", "summarise_client"),
    "planner": ("planner",),
}


def session_thread_id(course_key: str, session: int, branch: str | None = None) -> str:
    """Checkpoint thread of one session: ``RUN/CLIENT/sN`` (``...@BRANCH`` for forks)."""
    return f"{course_key}/s{session}" + (f"@{branch}" if branch else "")


async def _closing_measures(view: View, ctx: NodeContext) -> dict[str, Any]:
    if int(view["session"]) < int(view.get("sessions_planned") or 0):
        return {}
    out = await measures(View({**view.to_dict(), "done": True}, view.side, view.node, frozenset()), ctx)
    return out


def _item9(state: dict[str, Any], n: int) -> tuple[int | None, str]:
    """PHQ-9 item 9 answered before session ``n`` (None when not measured)."""
    for m in reversed(state.get("measures") or []):
        if m.get("session") == n and m.get("when") != "post-course" and m.get("kind", "outcome") == "outcome":
            score = m.get("self_harm_item")
            if score is None:
                score = ((m.get("phq9") or {}).get("items") or {}).get("self_harm")
            return (int(score) if score is not None else None), str(m.get("when") or f"before session {n}")
    return None, ""


def _session_risk(state: dict[str, Any], n: int) -> tuple[dict[str, Any], str]:
    """The course's risk register at the start of session ``n`` (PHQ-9 item 9
    folded in) and the notes it puts in front of the counselor."""
    score, when = _item9(state, n)
    register, _ = fold_phq9(state.get("risk_register"), session=n, score=score, when=when)
    return register, register_notes(register, session=n)


def _session_input(state: dict[str, Any]) -> dict[str, Any]:
    """Initial session state from the course state (both sides; the session graph's
    own views keep them apart)."""
    n = int(state["session"])
    register, risk_notes = _session_risk(state, n)
    return {
        "run_id": state["run_id"],
        "client_id": state["client_id"],
        "session": n,
        "course_key": state["course_key"],
        "modality": state.get("modality"),
        "goals": list(state.get("goals") or []),
        "intake": state.get("intake") or {},
        "counselor_memory": list(state.get("counselor_memory") or []),
        "counselor_notes": state.get("counselor_notes") or "",
        "risk_register": register,
        "risk_notes": risk_notes,
        "profile": state.get("profile") or {},
        "inner": dict(state.get("inner") or {}),
        "client_memory": list(state.get("client_memory") or []),
        "current": {},
        "exchange": 0,
        "ended": False,
        "end_reason": None,
    }


async def _detached(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run outside the course graph's runnable context, so the session graph is a
    top-level run on its own checkpoint thread (not a nested namespace)."""
    ctx = contextvars.copy_context()
    ctx.run(var_child_runnable_config.set, None)
    return await asyncio.get_running_loop().create_task(coro_fn(), context=ctx)


def _parent_stream() -> tuple[Any, tuple[str, ...]] | None:
    """When the course graph is streamed with ``subgraphs=True``: its stream and this
    task's namespace, so the detached session graph's stream parts can be forwarded
    (a session then shows up like a subgraph). None otherwise."""
    try:
        from langgraph._internal._constants import (
            CONFIG_KEY_CHECKPOINT_NS,
            CONFIG_KEY_STREAM,
            NS_END,
            NS_SEP,
        )
        from langgraph.config import get_config

        conf = get_config().get("configurable") or {}
    except Exception:  # outside a run, or a LangGraph without these internals: no forwarding
        return None
    stream = conf.get(CONFIG_KEY_STREAM)
    if stream is None or not getattr(stream, "modes", None):
        return None
    parts = str(conf.get(CONFIG_KEY_CHECKPOINT_NS) or "session").split(NS_SEP)
    node, sep, task_id = parts[-1].partition(NS_END)
    if node != "session":  # the session step folded into an earlier step's task: named as the session still
        parts[-1] = f"session{sep}{task_id}"
    return stream, tuple(parts)


async def _streamed(graph: Any, inp: Any, cfg: dict[str, Any], sim: SimContext, forward: tuple[Any, tuple[str, ...]], **kw: Any) -> dict[str, Any]:
    """Run the session graph streaming the modes the course is streamed with, forward
    every part under the session task's namespace, and return the final state."""
    stream, ns = forward
    modes = [m for m in ("values", "updates", "messages", "custom", "debug", "tasks", "checkpoints") if m in stream.modes or m == "values"]
    final: dict[str, Any] = {}
    async for sub_ns, mode, payload in graph.astream(inp, config=cfg, context=sim, stream_mode=modes, subgraphs=True, **kw):
        if mode == "values" and not sub_ns:
            final = payload
        if mode in stream.modes:
            stream((ns + tuple(sub_ns), mode, payload))
    return dict(final)


async def _has_checkpoint(saver: Any, config: Any) -> bool:
    """Whether the thread of ``config`` has a checkpoint: a new thread (a new session
    or course) needs no state snapshot, which LangGraph builds from the channels even
    when there is none. True for a saver this cannot ask (its snapshot decides)."""
    from langgraph.checkpoint.base import BaseCheckpointSaver

    if not isinstance(saver, BaseCheckpointSaver):
        return True
    return await saver.aget_tuple(config) is not None


def _session_step(session_graph: Any, branch: str | None) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def session(state: dict[str, Any], runtime: Runtime[SimContext]) -> dict[str, Any]:
        sim = as_sim_context(runtime.context)
        n = int(state["session"])
        tid = session_thread_id(state["course_key"], n, branch)
        cfg: dict[str, Any] = {"recursion_limit": session_recursion_limit(sim.course.max_turns), "configurable": {"thread_id": tid}}

        forward = _parent_stream()

        async def run_graph(inp: Any, **kw: Any) -> dict[str, Any]:
            if forward is None:
                return await executor.ainvoke(session_graph, inp, cfg, context=sim, **kw)  # type: ignore[no-any-return]
            return await _streamed(session_graph, inp, cfg, sim, forward, **kw)

        async def go() -> dict[str, Any]:
            if session_graph.checkpointer is not None:
                if not await _has_checkpoint(session_graph.checkpointer, cfg):  # a new session
                    return await run_graph(_session_input(state), durability=DURABILITY)
                snap = await session_graph.aget_state(cfg)
                # Interrupted: continue from the checkpoint. A step whose writes were saved
                # but whose checkpoint was not has tasks but an empty ``next``.
                if snap.values and (snap.next or snap.tasks):
                    sim.emit({"event": "session_resumed", "thread_id": tid, "exchange": snap.values.get("exchange")})
                    return await run_graph(None, durability=DURABILITY)
                if snap.values and snap.values.get("ended"):  # finished before a crash
                    return dict(snap.values)
                return await run_graph(_session_input(state), durability=DURABILITY)
            return await run_graph(_session_input(state))

        final = await _detached(go)
        last = {
            "session": n,
            "thread_id": tid,
            "transcript": list(final.get("transcript") or []),
            "end_reason": final.get("end_reason"),
            "exchanges": final.get("exchange", 0),
            "modality": final.get("modality"),
            "goals": list(final.get("goals") or []),
            "risk_notes": final.get("risk_notes") or "",
        }
        register = final.get("risk_register") or _session_risk(state, n)[0]
        return {"inner": final.get("inner") or state.get("inner"), "last": last, "risk_register": register}

    return session


def _skipped(view: View, ctx: NodeContext, n: int, why: str, event: dict[str, Any] | None) -> dict[str, Any]:
    """File the record of a session the client did not attend (``no_show``) or of the
    course's end by ``dropout``."""
    record = {
        "run_id": view["run_id"], "client_id": view["client_id"], "course_key": view["course_key"], "session": n,
        "thread_id": None, "modality": view.get("modality"), "goals": list(view.get("goals") or []), "end_reason": why,
        "turns": [], "measures": None, "measures_after": None, "session_measures": None, "event_before": event,
        "summary": None, "recollection": None, "plan": None, "recall": None, "memory_written": None,
        "risk_notes": "", "risk_register": view.get("risk_register"),
    }
    ctx.sim.emit({"event": "session_done", "run_id": view["run_id"], "client_id": view["client_id"], "session": n, "end_reason": why})
    if ctx.sim.on_record is not None:
        ctx.sim.on_record(record)
    done = why == "dropout" or n >= int(view.get("sessions_planned") or n)
    out: dict[str, Any] = {"records": [record], "pending": {"__reset__": True}, "done": done}
    if not done:
        out["session"] = n + 1
    return out


def _finish(view: View, ctx: NodeContext) -> dict[str, Any]:
    """File the session record (both sides, for the run's outputs) and advance."""
    n = int(view["session"])
    last = view.get("last") or {}
    pick = lambda key, field="session": [x for x in (view.get(key) or []) if x.get(field) == n]  # noqa: E731
    summary = (pick("summaries") or [None])[-1]
    pre = [m for m in pick("measures") if m.get("kind", "outcome") == "outcome" and m.get("when") != "post-course"]
    post = [m for m in pick("measures") if m.get("when") == "post-course"]
    rated = [m for m in pick("measures") if m.get("kind") == "session"]
    pending = view.get("pending") or {}
    skipped = pending.get("skipped")
    if skipped:
        return _skipped(view, ctx, n, skipped, (pick("events") or [None])[-1])
    record = {
        "run_id": view["run_id"],
        "client_id": view["client_id"],
        "course_key": view["course_key"],
        "session": n,
        "thread_id": last.get("thread_id"),
        "modality": last.get("modality"),
        "goals": list(last.get("goals") or []),
        "end_reason": last.get("end_reason"),
        "turns": last.get("transcript") or [],
        "measures": pre[-1] if pre else None,
        "measures_after": post[-1] if post else None,
        "session_measures": rated[-1] if rated else None,
        "event_before": (pick("events") or [None])[-1],
        "summary": summary,
        "recollection": (pick("recollections") or [None])[-1],
        "plan": (pick("plans", "after_session") or [None])[-1],
        "recall": pending.get("recall"),
        "memory_written": pending.get("memory_written"),
        "risk_notes": last.get("risk_notes") or "",
        "risk_register": view.get("risk_register"),
    }
    ctx.sim.emit({"event": "session_done", "run_id": view["run_id"], "client_id": view["client_id"], "session": n})
    if ctx.sim.on_record is not None:
        ctx.sim.on_record(record)
    done = n >= int(view.get("sessions_planned") or n)
    notes = ""
    if summary and not summary.get("error"):
        notes = f"Session {n}: {summary['progress']} Homework: {summary.get('homework') or 'none'}. Plan: {summary['plan']}"
    out: dict[str, Any] = {"records": [record], "pending": {"__reset__": True}, "counselor_notes": notes, "done": done}
    if not done:
        out["session"] = n + 1
    return out


class _Done(TypedDict, total=False):
    """What the course's loop router reads (LangGraph reads a conditional edge's input
    by its function's annotation: this one channel, not a copy of the whole state)."""

    done: bool


class _Pending(TypedDict, total=False):
    """What the router after ``events`` reads: the iteration's scratch."""

    pending: dict[str, Any]


def _course_done(state: _Done) -> str:
    return END if state.get("done") else "__next__"


def _skip_to_finish(after: str) -> Callable[[_Pending], str]:
    """The router after ``events``: a no-show or dropout goes to ``finish``, else to ``after``."""

    def skip_or_next(state: _Pending) -> str:
        return "finish" if (state.get("pending") or {}).get("skipped") else after

    return skip_or_next


class CourseGraphBuilder(StepsBuilder):
    """Compose a course: a session graph plus the steps around each session."""

    noun = "course step"
    reserved = ("finish", START, END)

    def __init__(self, session: SessionGraphBuilder | str = "full", name: str = "course") -> None:
        super().__init__(name)
        self.session = preset(session) if isinstance(session, str) else session
        self.branch: str | None = None
        for step, fn, side, role in (
            ("events", between_session_events, "client", None),
            ("measures", measures, "client", "client"),
            ("recall", recall, "system", None),
            ("session", None, "system", None),
            ("summarise_counselor", summarise_counselor, "counselor", "analysts"),
            ("summarise_client", summarise_client, "client", "client"),
            ("session_measures", session_measures, "client", "client"),
            ("remember", remember, "system", None),
            ("planner", course_planner, "counselor", "analysts"),
            ("closing_measures", _closing_measures, "client", "client"),
        ):
            self.order.append(step)
            if fn is not None:
                # recall and remember: memory reads and idempotent writes, no model call
                self.nodes[step] = NodeSpec(step, fn, side, role, fold=step in ("recall", "remember"))  # type: ignore[arg-type]
        self.fold = True  # fold steps (and finish) run in the superstep of the step before them

    @property
    def steps(self) -> dict[str, NodeSpec]:
        """The steps' specs by name (the session step runs the session graph and has none)."""
        return self.nodes

    @steps.setter
    def steps(self, value: dict[str, NodeSpec]) -> None:
        self.nodes = value

    def add_step(self, name: str, fn: NodeFn, *, side: Side, role: str | None = None, before: str | None = None, after: str | None = None) -> CourseGraphBuilder:
        """Add a step (a function ``(view, ctx) -> update``) to every course iteration."""
        self._check_new(name, "use replace_step to swap it")
        self._check_side(side)
        if not callable(fn):
            raise TherasimError(f"course step {name!r}: expected a function (view, ctx) -> dict, got {type(fn).__name__}")
        self._place(NodeSpec(name, fn, side, role), before, after, self.order.index("closing_measures") if "closing_measures" in self.order else None)
        return self

    def replace_step(self, name: str, fn: NodeFn, *, side: Side | None = None) -> CourseGraphBuilder:
        if name == "session":
            raise TherasimError("the session step runs the session graph; change it through CourseGraphBuilder(session=...) or .session")
        self._replace(name, side, fn=fn, fold=False)
        return self

    def remove_step(self, name: str) -> CourseGraphBuilder:
        if name == "session":
            raise TherasimError("the session step cannot be removed; a course without sessions is not a course")
        if name not in self.order:
            raise TherasimError(f"no course step {name!r}; steps are {self.order}")
        self.order.remove(name)
        self.steps.pop(name, None)
        return self

    def without(self, *groups: str) -> CourseGraphBuilder:
        """Ablations: drop ``events``, ``measures``, ``memory``, ``summaries`` or
        ``planner`` (or any single step name)."""
        for g in groups:
            names = STEP_GROUPS.get(g, (g,))
            if not any(n in self.order for n in names) and g not in STEP_GROUPS:
                raise TherasimError(f"unknown course step or group {g!r}; groups are {sorted(STEP_GROUPS)}, steps are {self.order}")
            for n in names:
                if n in self.order:
                    self.remove_step(n)
        return self

    @property
    def fold_calls(self) -> bool:
        """Whether model-calling steps fold too: the session builder's
        :attr:`~therasim.graphs.builder.SessionGraphBuilder.fold_calls` (the run's
        ``course.fold_calls``), so a run's course and sessions share one layout."""
        return bool(self.session.fold_calls)

    def groups(self, fold: bool | None = None) -> list[list[str]]:
        """The course steps as the compiled graph runs them, one list per superstep
        (as :meth:`SessionGraphBuilder.groups`): ``recall``, ``remember`` and
        ``finish`` join the step before them unless that step routes conditionally;
        with :attr:`fold_calls` every step does (the session and the model-calling
        steps too), so a course iteration is two supersteps: ``events`` (it routes
        a no-show or dropout to ``finish``) and the rest."""
        chain = [*self.order, "finish"]
        foldable = set(chain) if self.fold_calls else {n for n in self.order if n in self.nodes and self.nodes[n].fold} | {"finish"}
        return fold_groups(chain, foldable, {"events"}, self.fold if fold is None else fold)

    def _calls(self, name: str) -> bool:
        """Whether step ``name`` may call a model (the session step runs the session
        graph): what a folded step's journal is written before."""
        return name != "finish" and not (name in self.nodes and self.nodes[name].fold)

    def build(self, checkpointer: Any = None, *, fold: bool | None = None) -> StateGraph:
        session_graph = self.session.compile(checkpointer=checkpointer)
        g: StateGraph = StateGraph(CourseState, context_schema=SimContext)  # type: ignore[arg-type]
        runs: dict[str, Any] = {"finish": wrap_node(NodeSpec("finish", _finish, "system"), make_course_view)}
        for name in self.order:
            runs[name] = _session_step(session_graph, self.branch) if name == "session" else wrap_node(self.steps[name], make_course_view)
        chain = [*self.order, "finish"]
        # as in the session graph (a checkpoint of a run made in the per-step layout that
        # waits at a step runs the rest of the iteration as one step)
        heads = add_grouped_nodes(g, chain, runs, self.groups(fold), self.fold_calls and (self.fold if fold is None else fold), self._calls)
        g.add_edge(START, chain[0])
        for name in chain:
            grp = heads.get(name)
            like = grp[-1] if grp is not None else name
            if like == "finish":
                g.add_conditional_edges(name, router(_course_done), {END: END, "__next__": chain[0]})
                continue
            b = chain[chain.index(like) + 1]
            if like == "events":
                # A no-show or dropout skips the session and everything around it.
                g.add_conditional_edges(name, router(_skip_to_finish(b)), sorted({b, "finish"}))
            else:
                g.add_edge(name, b)
        return g

    def compile(self, checkpointer: Any = None) -> Any:
        """Compile the course graph and its session graph with one checkpointer."""
        # the session step runs the session graph on its own thread (session_thread_id):
        # LangGraph calls it a subgraph, but nothing of it lives in the course's namespace
        return executor.mark_lean(untraced(self.build(checkpointer).compile(checkpointer=checkpointer, name=f"course:{self.name}")), detached=("session",))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "order": list(self.order),
            "steps": describe_specs(self.steps),
            "session": self.session.describe(),
        }

    def copy(self) -> CourseGraphBuilder:
        c = CourseGraphBuilder(self.session.copy(), self.name)
        c.steps, c.order, c.branch = dict(self.steps), list(self.order), self.branch
        return c


def with_fold_calls(session: SessionGraphBuilder, fold_calls: bool | None) -> SessionGraphBuilder:
    """``session``, or a copy of it whose ``fold_calls`` is the config's (``course.fold_calls``; None keeps the builder's)."""
    if fold_calls is None or session.fold_calls == fold_calls:
        return session
    b = session.copy()
    b.fold_calls = fold_calls
    return b


def course_builder(spec: CourseSpec, session: SessionGraphBuilder | None = None) -> CourseGraphBuilder:
    """The course a :class:`CourseSpec` describes (its preset and on/off switches)."""
    b = CourseGraphBuilder(with_fold_calls(session if session is not None else preset(spec.preset), spec.fold_calls), name=spec.preset)
    off = [g for g, on in (("events", spec.events), ("measures", spec.measures), ("planner", spec.planner), ("memory", spec.memory)) if not on]
    return b.without(*off) if off else b


def initial_course_state(profile: ClientProfile, *, run_id: str = "adhoc", sessions: int = 3, modality: str = "cbt", goals: list[str] | None = None) -> dict[str, Any]:
    """Course state before session 1."""
    return {
        "run_id": run_id,
        "client_id": profile.id,
        "course_key": f"{run_id}/{profile.id}",
        "session": 1,
        "sessions_planned": sessions,
        "done": False,
        "modality": modality,
        "goals": goals if goals is not None else list(profile.intake.goals),
        "intake": profile.intake.model_dump(),
        "counselor_notes": "",
        "counselor_memory": [],
        "profile": {"intake": profile.intake.model_dump(), "hidden": profile.hidden.model_dump()},
        "inner": profile.initial_state.model_dump(),
        "client_memory": [],
        "pending": {},
    }


#: nodes of each compiled course graph: drawing the graph to count them took ~16 ms per
#: course (about 0.5 ms per model call of a lean course)
_NODE_COUNTS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _node_count(graph: Any) -> int:
    try:
        return _NODE_COUNTS[graph]
    except (KeyError, TypeError):  # not counted yet, or a graph that cannot be weakly keyed
        pass
    n = len(graph.get_graph().nodes)
    with contextlib.suppress(TypeError):
        _NODE_COUNTS[graph] = n
    return n


async def run_course(graph: Any, state: dict[str, Any] | None, context: SimContext, *, thread_id: str | None = None) -> dict[str, Any]:
    """Run a compiled course graph to its end. With a checkpointer and a thread that
    already has checkpoints, continue it (``state`` is then ignored); a finished
    course returns its final state without running anything."""
    n = int((state or {}).get("sessions_planned") or context.course.sessions)
    config: dict[str, Any] = {"recursion_limit": course_recursion_limit(n, _node_count(graph) + 2)}
    if thread_id is not None:
        config["configurable"] = {"thread_id": thread_id}
        if graph.checkpointer is not None and await _has_checkpoint(graph.checkpointer, config):
            snap = await graph.aget_state(config)
            if snap.values:
                if not snap.next and not snap.tasks:  # finished
                    return dict(snap.values)
                context.emit({"event": "course_resumed", "thread_id": thread_id, "session": snap.values.get("session")})
                return await executor.ainvoke(graph, None, config, context=context, durability=DURABILITY)  # type: ignore[no-any-return]
    if state is None:
        raise TherasimError("run_course needs an initial state (initial_course_state) for a new course")
    if graph.checkpointer is not None:
        return await executor.ainvoke(graph, state, config, context=context, durability=DURABILITY)  # type: ignore[no-any-return]
    return await executor.ainvoke(graph, state, config, context=context)  # type: ignore[no-any-return]
