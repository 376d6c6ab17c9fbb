"""The public builder for session graphs. The library's own presets are built with it.

A session is a loop of exchanges. Each exchange runs the ``order`` of nodes
(client, analysts, counselor, ...), then ``record`` appends the exchange to the
transcript and ``termination`` decides whether to loop. Users add, replace or
remove nodes (their own function, a LangChain runnable or chat model, an HTTP
endpoint) and add conditional edges, all through this builder.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import inspect
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph._internal._constants import (
    CONFIG_KEY_CHECKPOINT_MAP,
    CONFIG_KEY_CHECKPOINT_NS,
    CONFIG_KEY_CHECKPOINTER,
    CONFIG_KEY_DURABILITY,
    CONFIG_KEY_REPLAY_STATE,
    CONFIG_KEY_RESUMING,
    CONFIG_KEY_SCRATCHPAD,
    CONFIG_KEY_TASK_ID,
    NS_END,
    NS_SEP,
)
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from therasim.context import NodeContext, SimContext, as_sim_context
from therasim.contract import ExchangeContract, NodeFn, NodeSpec, Slot, builtin_contract
from therasim.errors import ConfigError, TherasimError
from therasim.graphs.adapters import (
    _coerce,
    _speech_keys,
    describe_impl,
    http_node,
    normalise,
)
from therasim.graphs.base import StepsBuilder
from therasim.nodes import SPECS
from therasim.state import SessionState, Side, View, make_view

__all__ = ["NodeFn", "NodeSpec", "SessionGraphBuilder", "Slot", "http_node", "record_exchange", "wrap_node"]

Router = Callable[[dict[str, Any]], str]

@dataclass(slots=True)
class _Conditional:
    source: str
    router: Callable[[View], str]
    destinations: dict[str, str]


def record_exchange(view: View, ctx: NodeContext) -> dict[str, Any]:
    """Append the finished exchange (client turn with analyst outputs, counselor turn
    with the plan) to the transcript and clear the per-exchange scratch. Which slot
    goes on which turn, under which name, is the graph's contract (node specs)."""
    cur = view["current"]
    exchange = int(view.get("exchange", 0))
    turns = (ctx.contract or builtin_contract()).record(cur, exchange, len(view["transcript"]))
    ctx.sim.emit({"event": "exchange", **{k: ctx.ids.get(k) for k in ("run_id", "client_id", "session")}, "exchange": exchange})
    return {"transcript": turns, "exchange": exchange + 1, "current": {"__reset__": True}}


class _Ended(TypedDict, total=False):
    """What the loop's router reads: LangGraph reads a conditional edge's input by
    its function's annotation, so the router gets this one channel instead of a copy
    of the whole state (every channel copied and the node's writes applied to them)."""

    ended: bool


def _loop_or_end(state: _Ended) -> str:
    return END if state.get("ended") else "__loop__"


def router(fn: Callable[[Any], Any]) -> Any:
    """A conditional edge's routing function as LangGraph should call it from an async
    run: directly, untraced. Given a plain function, LangGraph runs it in the default
    thread pool (``run_in_executor``: a thread hop and a GIL hand-off per exchange)
    inside a callback-manager span; routers here are pure functions of the state."""
    from langgraph._internal._runnable import RunnableCallable

    async def afn(state: dict[str, Any]) -> Any:
        return fn(state)

    return RunnableCallable(fn, afn, name=getattr(fn, "__name__", "router"), trace=False)


def _untraced_seq_class() -> Any:
    from langchain_core.callbacks.base import BaseCallbackManager
    from langchain_core.runnables.config import var_child_runnable_config
    from langgraph._internal._runnable import RunnableSeq

    class UntracedSeq(RunnableSeq):
        """LangGraph's node sequence (the node, then its channel writers and routers)
        without the callback run it opens per node when nothing listens: no handler on
        the task's callback manager (no tracer, no streamed messages, no callbacks
        passed in). With a listener it is LangGraph's own sequence, unchanged. The node
        still runs in a task of its own whose context holds the task's config, as in
        LangGraph (what it sets in its context stays there)."""

        async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            cb = None if config is None else config.get("callbacks")
            if config is None or (cb is not None and not (isinstance(cb, BaseCallbackManager) and not cb.handlers)):
                return await super().ainvoke(input, config, **kwargs)
            ctx = contextvars.copy_context()
            ctx.run(var_child_runnable_config.set, config)
            steps = self.steps
            out = await asyncio.get_running_loop().create_task(steps[0].ainvoke(input, config, **kwargs), context=ctx)
            for step in steps[1:]:
                out = await step.ainvoke(out, config)
            return out

    return UntracedSeq


def untraced(compiled: Any) -> Any:
    """``compiled`` (a compiled StateGraph) with each node's sequence an untraced one
    (:func:`_untraced_seq_class`): the callback manager LangGraph builds per node and
    per step of the sequence was a few percent of the orchestrator's CPU per model
    call. Returns ``compiled``. ``THERASIM_TRACED_NODES=1`` leaves it as it is."""
    if os.environ.get("THERASIM_TRACED_NODES", "").strip().lower() in ("1", "true", "yes", "on"):
        return compiled
    from langgraph._internal._runnable import RunnableSeq

    cls = _untraced_seq_class()
    for pn in compiled.nodes.values():
        seq = pn.node
        if type(seq) is RunnableSeq:
            quiet = cls(*seq.steps, name=seq.name, trace_inputs=seq.trace_inputs, trace_policy=seq.trace_policy)
            pn.__dict__["node"] = quiet  # PregelNode.node is a cached_property
    return compiled


#: the channel of a folded node's journal rows (its members' updates) in the checkpointer's writes
JOURNAL = "__therasim_journal__"
#: a journal row's task id: the folded task's own id, this, and the member index it was written before
JOURNAL_SEP = "~j"


class _Counter:
    """A task's interrupt counter the folded node can set: a member replayed from the
    journal moves it on by the interrupts that member asked, so the next member's
    ``interrupt()`` reads its own resume value."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        n = self.n
        self.n = n + 1
        return n


def fold_nodes(
    name: str,
    runs: list[Callable[..., Awaitable[dict[str, Any]]]],
    channels: dict[str, Any],
    journal: tuple[int, ...] = (),
    names: tuple[str, ...] = (),
) -> Callable[..., Awaitable[dict[str, Any] | list[Any]]]:
    """One LangGraph node that runs several wrapped nodes in turn (one superstep, one
    checkpoint). Each sees the state as it would after the ones before it had run
    alone (their updates applied with the state's own reducers), and the node
    returns every member's update, in order, as LangGraph would have applied them
    one step at a time; a key without a reducer keeps its last write only.

    ``journal`` (member indices, each a member that calls a model): before such a
    member starts, the updates of the members run since the last journal entry are
    made durable without a checkpoint: written with the run's checkpointer as
    pending writes of the step's checkpoint under derived task ids
    (``<task id>~j<index>``, channel :data:`JOURNAL`; LangGraph matches no task to
    them) and awaited (group commit: the shared transaction's commit). When the
    task runs again on a resume from that checkpoint (the same task id), the
    journalled members are replayed from it instead of running, so no finished
    model call is repeated. ``names``: the members' names (checked on replay)."""

    def apply(state: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        st = dict(state)
        for k, v in update.items():
            ch = channels.get(k)
            reducer, op = getattr(ch, "reducer", None), getattr(ch, "operator", None)
            if reducer is None and op is None:
                st[k] = v
                continue
            base = st[k] if k in st else ch.typ()  # type: ignore[union-attr]  # an empty channel starts from its type's empty value
            st[k] = reducer(base, [v]) if reducer is not None else op(base, v)  # type: ignore[misc]
        return st

    from langgraph.types import Command

    plain_keys: list[frozenset[str]] = []  # the channels without a reducer, once the graph has them all

    def commands(updates: list[dict[str, Any]]) -> list[Any]:
        if not plain_keys:
            plain_keys.append(frozenset(k for k, ch in channels.items() if getattr(ch, "reducer", None) is None and getattr(ch, "operator", None) is None))
        plain = plain_keys[0]
        seen: set[str] = set()
        kept: list[dict[str, Any]] = []
        for u in reversed(updates):  # a plain channel takes one write per step: the last one
            kept.append({k: v for k, v in u.items() if k not in plain or k not in seen})
            seen.update(k for k in u if k in plain)
        return [Command(update=u) for u in reversed(kept) if u]

    member_names = names or tuple(getattr(fn, "__name__", str(i)) for i, fn in enumerate(runs))

    if not journal:

        async def run(state: dict[str, Any], runtime: Runtime[SimContext], config: RunnableConfig) -> dict[str, Any] | list[Any]:
            updates: list[dict[str, Any]] = []
            heard = _listening(config)
            for i, fn in enumerate(runs):
                out = await (_member_run(fn, state, runtime, config, member_names[i]) if heard and i else fn(state, runtime))
                updates.append(out)
                if out:
                    state = apply(state, out)
            return commands(updates)

        run.__name__ = name
        return run

    points = frozenset(journal)

    async def journalled(state: dict[str, Any], runtime: Runtime[SimContext], config: RunnableConfig) -> dict[str, Any] | list[Any]:
        conf = config.get("configurable") or {}
        where = _journal_target(conf)
        done: dict[int, dict[str, Any]] = {}
        counter: _Counter | None = None
        if where is not None:
            saver, cp_config, task_id = where
            pad = conf.get(CONFIG_KEY_SCRATCHPAD)
            if pad is not None:
                counter = _Counter()
                object.__setattr__(pad, "interrupt_counter", counter)  # the task's own scratchpad (frozen dataclass)
            if conf.get(CONFIG_KEY_RESUMING) and conf.get(CONFIG_KEY_REPLAY_STATE) is None:
                done = await _read_journal(saver, cp_config, task_id, member_names)
        updates: list[dict[str, Any]] = []
        batch: list[dict[str, Any]] = []
        heard = _listening(config)
        for i, fn in enumerate(runs):
            if batch and i in points and where is not None:
                saver, cp_config, task_id = where
                await saver.aput_writes(cp_config, [(JOURNAL, e) for e in batch], f"{task_id}{JOURNAL_SEP}{i}")
                batch = []
            rec = done.get(i)
            if rec is not None:
                out = rec["update"]
                if counter is not None:
                    counter.n = int(rec.get("interrupts", counter.n))
            else:
                out = await (_member_run(fn, state, runtime, config, member_names[i]) if heard and i else fn(state, runtime))
                if where is not None:
                    batch.append({"member": i, "node": member_names[i], "update": out, "interrupts": counter.n if counter is not None else 0})
            updates.append(out)
            if out:
                state = apply(state, out)
        return commands(updates)

    journalled.__name__ = name
    return journalled


def _listening(config: RunnableConfig | None) -> bool:
    """Whether a callback handler listens to this task (a tracer, ``stream_mode="messages"``,
    callbacks passed in); the lean executor's tasks have none."""
    cb = None if config is None else config.get("callbacks")
    if cb is None:
        return False
    from langchain_core.callbacks.base import BaseCallbackManager

    return bool(cb.handlers) if isinstance(cb, BaseCallbackManager) else bool(cb)


async def _member_run(fn: Callable[..., Awaitable[dict[str, Any]]], state: dict[str, Any], runtime: Runtime[SimContext], config: RunnableConfig, name: str) -> dict[str, Any]:
    """Run a folded node's member ``name`` (not its first) as a callback run of its own,
    named after it, with ``langgraph_node`` set to it in the metadata its model calls
    inherit: a tracer, a callback handler and ``stream_mode="messages"`` see it as the
    node it is when it runs alone (the counselor's tokens under ``counselor``, not
    under the exchange's first node). Only when something listens (:func:`_listening`)."""
    from langchain_core.runnables.config import (
        get_async_callback_manager_for_config,
        patch_config,
        var_child_runnable_config,
    )

    mine = patch_config(config, run_name=name)
    mine["metadata"] = {**(config.get("metadata") or {}), "langgraph_node": name}
    rm = await get_async_callback_manager_for_config(mine).on_chain_start(None, state, name=name)
    token = var_child_runnable_config.set(patch_config(mine, callbacks=rm.get_child()))
    try:
        out = await fn(state, runtime)
    except BaseException as e:
        await rm.on_chain_error(e)
        raise
    finally:
        var_child_runnable_config.reset(token)
    await rm.on_chain_end(out)
    return out


def _journal_target(conf: dict[str, Any]) -> tuple[Any, dict[str, Any], str] | None:
    """Where a folded task's journal goes: (checkpointer, the step's checkpoint
    config, task id), or None when nothing is durable (no checkpointer, durability
    ``exit``, no task)."""
    saver = conf.get(CONFIG_KEY_CHECKPOINTER)
    task_id = conf.get(CONFIG_KEY_TASK_ID)
    if saver is None or not task_id or conf.get(CONFIG_KEY_DURABILITY) == "exit":
        return None
    task_ns = str(conf.get(CONFIG_KEY_CHECKPOINT_NS) or "")
    parent_ns = task_ns.rpartition(NS_END)[0].rpartition(NS_SEP)[0]  # "<parent>|<node>:<task id>" -> "<parent>"
    cp_id = (conf.get(CONFIG_KEY_CHECKPOINT_MAP) or {}).get(parent_ns)
    if cp_id is None:
        return None
    return saver, {"configurable": {"thread_id": conf.get("thread_id"), "checkpoint_ns": parent_ns, "checkpoint_id": cp_id}}, str(task_id)


async def _read_journal(saver: Any, cp_config: dict[str, Any], task_id: str, names: tuple[str, ...]) -> dict[int, dict[str, Any]]:
    """The journalled members of task ``task_id`` at the checkpoint ``cp_config``
    names, by member index (read once, when a run resumes from that checkpoint)."""
    saved = await saver.aget_tuple(cp_config)
    prefix = task_id + JOURNAL_SEP
    out: dict[int, dict[str, Any]] = {}
    for tid, ch, val in (saved.pending_writes if saved is not None else None) or ():
        if ch != JOURNAL or not str(tid).startswith(prefix) or not isinstance(val, dict):
            continue
        i = int(val.get("member", -1))
        if not 0 <= i < len(names) or val.get("node") != names[i]:
            raise TherasimError(f"the journal of task {task_id} names member {i} {val.get('node')!r}, but this graph's folded node runs {list(names)}; resume with the graph the run was made with")
        out[i] = val
    return out


def fold_groups(chain: list[str], foldable: set[str], conditional: set[str], fold: bool = True) -> list[list[str]]:
    """``chain`` (steps in order) cut into supersteps: a ``foldable`` step joins the
    step before it unless that one routes conditionally (or ``fold`` is off)."""
    out: list[list[str]] = []
    for i, name in enumerate(chain):
        if fold and i and name in foldable and chain[i - 1] not in conditional:
            out[-1].append(name)
        else:
            out.append([name])
    return out


def add_grouped_nodes(
    g: StateGraph,
    names: list[str],
    runs: dict[str, Any],
    groups: list[list[str]],
    calls: bool,
    makes_calls: Callable[[str], bool],
) -> dict[str, list[str]]:
    """Add ``names`` to ``g``, a group of several steps as one node (:func:`fold_nodes`);
    returns each node's group. With ``calls`` (``fold_calls``) every step is also the
    rest of its group from there on (a conditional edge into the middle of a group, or
    a checkpoint that waits there, runs the rest as one step), and the results before
    each step that ``makes_calls`` are journalled. Shared by the session and course
    builders."""
    heads = {grp[0]: grp for grp in groups}
    if calls:
        heads = {grp[i]: grp[i:] for grp in groups for i in range(len(grp))}
    for name in names:  # folded steps stay on their own too
        grp = heads.get(name)
        if grp is None or len(grp) == 1:
            g.add_node(name, runs[name])
            continue
        points = tuple(i for i, n in enumerate(grp) if i and calls and makes_calls(n))
        g.add_node(name, fold_nodes(name, [runs[n] for n in grp], g.channels, points, tuple(grp)))
    return heads


def describe_specs(specs: dict[str, NodeSpec]) -> dict[str, dict[str, Any]]:
    """Side, model role, function name and contract of each node (for manifests and describe())."""
    return {n: s.describe() for n, s in specs.items()}


def wrap_node(spec: NodeSpec, view_fn: Callable[[dict[str, Any], Side, str], View], contract: ExchangeContract | None = None) -> Callable[..., Awaitable[dict[str, Any]]]:
    """A LangGraph node that hands ``spec.fn`` its side's view and a NodeContext.
    With a ``contract`` (session graphs), writes to undeclared scratch slots fail."""
    if spec.fn is None:
        raise TherasimError(f"node {spec.name!r} has no function")
    fn = spec.fn
    speech = _speech_keys(spec.name, spec, contract)

    async def run(state: dict[str, Any], runtime: Runtime[SimContext]) -> dict[str, Any]:
        sim = as_sim_context(runtime.context)
        ids = {k: state.get(k) for k in ("run_id", "client_id", "session", "course_key", "exchange")}
        ctx = NodeContext(sim, spec.name, spec.side, ids, spec=spec, contract=contract)
        view = view_fn(state, spec.side, spec.name)
        out = fn(view, ctx)
        if inspect.isawaitable(out):
            out = await out
        out = _coerce(spec.name, out, speech)
        if spec.name == "client" and sim.course.probes:  # planted risk probes (evaluation)
            from therasim.eval.probes import plant_probe

            out = plant_probe(sim, ids, out)
        if ctx.calls and "current" in out and "calls" not in out["current"]:
            out["current"]["calls"] = ctx.calls_update()
        if contract is not None and isinstance(out.get("current"), dict):
            contract.check_writes(spec.name, out["current"])
        return out

    run.__name__ = spec.name
    return run


FOLD_CALLS_ENV = "THERASIM_FOLD_CALLS"


def fold_calls_default() -> bool:
    """Whether new builders fold model calls (:attr:`SessionGraphBuilder.fold_calls`):
    ``THERASIM_FOLD_CALLS`` (``1``/``0``), on when unset (one superstep and one
    checkpoint per exchange; ``0`` for one per model call)."""
    v = os.environ.get(FOLD_CALLS_ENV, "").strip().lower()
    if v in ("0", "false", "no", "off"):
        return False
    if v in ("", "1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{FOLD_CALLS_ENV}={v!r}: expected 1 (one superstep per exchange, each model call journalled) or 0; or unset it and set course.fold_calls in the run's config")


class SessionGraphBuilder(StepsBuilder):
    """Compose a session graph.

    >>> b = SessionGraphBuilder()
    >>> b.add_node("client", client, side="client", role="client")  # doctest: +SKIP
    >>> b.add_node("counselor", counselor, side="counselor", role="counselor")  # doctest: +SKIP
    >>> graph = b.compile()  # doctest: +SKIP
    """

    def __init__(self, name: str = "custom") -> None:
        super().__init__(name)
        self.conditionals: dict[str, _Conditional] = {}
        self.fold = True  # run fold nodes in the superstep of the node before them (groups())
        # fold model calls too: one superstep (one checkpoint) per exchange, each call journalled
        self.fold_calls = fold_calls_default()

    # composition -------------------------------------------------------------
    def add_node(
        self,
        name: str,
        node: NodeFn | BaseChatModel | Runnable,
        *,
        side: Side,
        role: str | None = None,
        before: str | None = None,
        after: str | None = None,
        description: str = "",
        reads: tuple[str, ...] | None = None,
        writes: tuple[str | Slot, ...] | None = None,
        speech: bool | None = None,
        max_tokens: int | None = None,
    ) -> SessionGraphBuilder:
        """Add a node to each exchange (at the end, or ``before``/``after`` another).

        ``reads``/``writes``/``speech``/``max_tokens`` declare its contract (see
        :class:`~therasim.contract.NodeSpec`); a node named like a built-in one
        (``client``, ``counselor``, ...) keeps the built-in contract for what is not given."""
        self._check_side(side)
        base = SPECS.get(name) or NodeSpec(name)
        spec = NodeSpec(
            name,
            self._normalise(name, node, side),
            side,
            role,
            description,
            describe_impl(node),
            reads=base.reads if reads is None else tuple(reads),
            writes=base.writes if writes is None else tuple(writes),
            speech=base.speech if speech is None else speech,
            max_tokens=base.max_tokens if max_tokens is None else max_tokens,
        )
        return self.add(spec, before=before, after=after)

    def add(self, spec: NodeSpec, *, before: str | None = None, after: str | None = None) -> SessionGraphBuilder:
        """Add a node from its spec (a node module's ``SPEC``): one line per role.

        >>> b.add(my_nodes.SUPERVISOR, before="counselor")  # doctest: +SKIP
        """
        name = spec.name
        if name in self.nodes:
            raise TherasimError(f"node {name!r} already exists; use replace_node to swap it")
        if name in ("record", "termination", START, END):
            raise TherasimError(f"{name!r} is reserved; the builder adds record and termination itself")
        if spec.fn is None:
            raise TherasimError(f"node {name!r}: its NodeSpec has no function")
        self._place(spec if spec.impl is not None else spec.replace(impl=describe_impl(spec.fn)), before, after)
        return self

    def replace_node(self, name: str, node: NodeFn | BaseChatModel | Runnable, *, side: Side | None = None) -> SessionGraphBuilder:
        """Swap the implementation of an existing node, keeping its place and edges."""
        old = self.nodes.get(name)
        side = side or (old.side if old is not None else None)
        fn = self._normalise(name, node, side or "counselor")
        self._replace(name, side, fold=False, fn=fn, impl={**describe_impl(node), "replaced": ((old and old.impl) or {}).get("fn") or ((old and old.impl) or {}).get("class") or "?"})
        return self

    def remove_node(self, name: str) -> SessionGraphBuilder:
        """Drop a node; its neighbours are joined and conditional edges to it are dropped."""
        if name not in self.nodes:
            raise TherasimError(f"no node {name!r} to remove; nodes are {self.order}")
        i = self.order.index(name)
        successor = self.order[i + 1] if i + 1 < len(self.order) else "record"
        del self.nodes[name]
        self.order.remove(name)
        self.conditionals.pop(name, None)
        for c in list(self.conditionals.values()):
            # Routes into the removed node go to its successor instead.
            c.destinations = {k: (successor if v == name else v) for k, v in c.destinations.items()}
            j = self.order.index(c.source)
            natural = self.order[j + 1] if j + 1 < len(self.order) else "record"
            if set(c.destinations.values()) == {natural}:
                del self.conditionals[c.source]
        return self

    def add_conditional_edges(self, source: str, router: Callable[[View], str], destinations: dict[str, str]) -> SessionGraphBuilder:
        """After ``source``, go where ``router(view)`` says (a key of ``destinations``).
        Destinations must be later nodes of the exchange (or 'record')."""
        self._index(source)
        for d in destinations.values():
            if d != "record" and self._index(d) <= self._index(source):
                raise TherasimError(f"conditional edge {source!r} -> {d!r} must point forward in the exchange {self.order}")
        self.conditionals[source] = _Conditional(source, router, dict(destinations))
        return self

    def _normalise(self, name: str, node: Any, side: Side) -> NodeFn:
        return normalise(name, node, side)

    # compile -----------------------------------------------------------------
    def contract(self) -> ExchangeContract:
        """The graph's node contract: its nodes' specs and the scratch slots they declare
        (views, transcript record, export and token caps derive from it)."""
        return ExchangeContract(self.nodes[n] for n in self.order)

    def groups(self, fold: bool | None = None) -> list[list[str]]:
        """The exchange's nodes as the compiled graph runs them: one list per LangGraph
        node (superstep), named after its first member. A node whose spec says
        ``fold`` (no model call, deterministic), and the builder's own ``record`` and
        ``termination``, run in the same superstep as the node before them when that
        node's edge to them is unconditional; with :attr:`fold_calls` every node does
        (one superstep per exchange where no edge is conditional). Each member still
        gets its own view and context, and its output is the same as when it runs alone."""
        chain = [*self.order, "record", "termination"]
        foldable = set(chain) if self.fold_calls else {n for n in self.order if self.nodes[n].fold} | {"record", "termination"}
        return fold_groups(chain, foldable, set(self.conditionals), self.fold if fold is None else fold)

    def _calls(self, name: str) -> bool:
        """Whether node ``name`` may call a model (what the journal is written before)."""
        return name not in ("record", "termination") and not self.nodes[name].fold

    def build(self, *, fold: bool | None = None) -> StateGraph:
        """The uncompiled LangGraph StateGraph. With folding (``self.fold``, default on;
        ``fold=False`` draws every node as its own step) each group of :meth:`groups`
        is one LangGraph node; the folded nodes stay in the graph on their own too, so
        a conditional edge into one, a checkpoint that waits at one (a run made before
        folding) and ``update_state(as_node=...)`` still find it."""
        if not self.order:
            raise TherasimError("the session graph has no nodes; add at least a client and a counselor")
        contract = self.contract()

        def view_fn(state: dict[str, Any], side: Side, node: str) -> View:
            return make_view(state, side, node, contract)

        from therasim.nodes.termination import termination

        specs = {**self.nodes, "record": NodeSpec("record", record_exchange, "system"), "termination": NodeSpec("termination", termination, "system")}
        groups = self.groups(fold)
        g: StateGraph = StateGraph(SessionState, context_schema=SimContext)  # type: ignore[arg-type]
        runs = {name: wrap_node(spec, view_fn, contract) for name, spec in specs.items()}
        heads = add_grouped_nodes(g, list(specs), runs, groups, self.fold_calls and (self.fold if fold is None else fold), self._calls)
        chain = [*self.order, "record", "termination"]

        def wire(src: str, like: str) -> None:
            """The edges out of ``src``: those of ``like`` (itself, or the last node of its group)."""
            cond = self.conditionals.get(like)
            if like == "termination":
                g.add_conditional_edges(src, router(_loop_or_end), {END: END, "__loop__": self.order[0]})
            elif cond is not None:
                spec_side = self.nodes[like].side

                def route(state: dict[str, Any], _c: _Conditional = cond, _s: Side = spec_side) -> str:
                    return _c.destinations[_c.router(make_view(state, _s, _c.source, contract))]

                g.add_conditional_edges(src, router(route), sorted(set(cond.destinations.values())))
            else:
                g.add_edge(src, chain[chain.index(like) + 1])

        g.add_edge(START, self.order[0])
        for name in chain:
            grp = heads.get(name)
            wire(name, grp[-1] if grp is not None else name)
        return g

    def mermaid(self) -> str:
        """Mermaid text of the graph, every node its own step (folding does not change
        what runs, only how many checkpoints it takes), drawn offline."""
        return str(self.build(fold=False).compile().get_graph().draw_mermaid())

    def compile(self, checkpointer: Any = None) -> Any:
        """Compile with any LangGraph checkpointer (or none). Marked for the lean
        executor (:mod:`therasim.graphs.executor`), which the session and course
        runners use when nothing needs Pregel."""
        from therasim.graphs.executor import mark_lean

        return mark_lean(untraced(self.build().compile(checkpointer=checkpointer, name=f"session:{self.name}")))

    def describe(self) -> dict[str, Any]:
        """The graph's shape and contract as JSON-able data (recorded in run manifests)."""
        return {
            "name": self.name,
            "order": list(self.order),
            "nodes": describe_specs(self.nodes),
            "conditionals": {k: v.destinations for k, v in self.conditionals.items()},
        }

    def fingerprint(self) -> str:
        """A hash of :meth:`describe` plus the routers' names: two builders with the same
        fingerprint run the same nodes, in the same order, with the same contracts."""
        d = self.describe()
        d["routers"] = {k: getattr(v.router, "__qualname__", type(v.router).__name__) for k, v in self.conditionals.items()}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def copy(self) -> SessionGraphBuilder:
        b = SessionGraphBuilder(self.name)
        b.nodes = dict(self.nodes)
        b.order = list(self.order)
        b.conditionals = {k: _Conditional(v.source, v.router, dict(v.destinations)) for k, v in self.conditionals.items()}
        b.fold = self.fold
        b.fold_calls = self.fold_calls
        return b

