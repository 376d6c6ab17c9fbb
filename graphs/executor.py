"""The lean executor: a compiled session or course graph's supersteps without
Pregel's per-run and per-step stream and runner machinery.

``Pregel.ainvoke`` runs a graph through ``astream``: a callback run for the graph,
a stream queue with ``updates``/``values`` chunks mapped per step, a
``PregelRunner`` (futures, retry wrappers, a waiter per step), and LangGraph's
``AsyncPregelLoop``, which holds the channels and writes the checkpoints. The lean
executor keeps that loop, so every checkpoint (channel values and versions,
``versions_seen``, task ids and paths, pending writes, metadata with source, step,
parents and the delta channels' counters) is written by LangGraph's own code, in the
same order, through the same checkpointer (group commit and durability unchanged:
with ``durability="sync"`` each step waits for its checkpoint's commit before the
next one starts). What it drops is the rest: the loop's tasks are run directly (the
same node sequence, the same writers and routers), their writes handed to the loop
as the runner would hand them (errors and cancellations recorded the same way), and
the result read from the channels at the end.

It runs only what it recognises and falls back to ``graph.ainvoke`` otherwise
(:func:`lean_reason` says why): a graph not compiled by therasim's builders, a
callback handler or tracer, a parent stream (``subgraphs=True`` streaming), a nested
call, a ``Command`` input, breakpoints, retry or cache policies, step timeouts,
managed values or channel types it does not know. A node that interrupts
(``interrupt()``) or bubbles up hands the run to Pregel from the last checkpoint,
which runs that task again and records the interrupt as Pregel does.
``THERASIM_EXECUTOR=pregel`` always uses Pregel.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

__all__ = ["EXECUTOR_ENV", "ainvoke", "executor_name", "lean_reason", "mark_lean"]

EXECUTOR_ENV = "THERASIM_EXECUTOR"
_MARK = "_therasim_lean"


def executor_name() -> str:
    """``lean`` (the default) or ``pregel`` (``THERASIM_EXECUTOR``)."""
    v = os.environ.get(EXECUTOR_ENV, "").strip().lower()
    if v in ("", "lean"):
        return "lean"
    if v == "pregel":
        return "pregel"
    from therasim.errors import TherasimError

    raise TherasimError(f"{EXECUTOR_ENV}={v!r}: expected 'lean' or 'pregel'")


def _known_channels() -> tuple[type, ...]:
    from langgraph.channels.binop import BinaryOperatorAggregate
    from langgraph.channels.ephemeral_value import EphemeralValue
    from langgraph.channels.last_value import LastValue, LastValueAfterFinish
    from langgraph.channels.named_barrier_value import (
        NamedBarrierValue,
        NamedBarrierValueAfterFinish,
    )
    from langgraph.channels.topic import Topic
    from langgraph.channels.untracked_value import UntrackedValue

    known: list[type] = [BinaryOperatorAggregate, EphemeralValue, LastValue, LastValueAfterFinish, NamedBarrierValue, NamedBarrierValueAfterFinish, Topic, UntrackedValue]
    try:
        from langgraph.channels.delta import DeltaChannel

        known.append(DeltaChannel)
    except ImportError:  # a LangGraph without delta channels
        pass
    return tuple(known)


def _static_reason(graph: Any, detached: frozenset[str] = frozenset()) -> str | None:
    """Why this compiled graph as a whole must run on Pregel (None: it need not).
    ``detached``: nodes whose graph LangGraph counts as a subgraph but which run it
    on a thread of its own (an explicit ``thread_id``, so nothing of it lives in this
    graph's checkpoint namespace): the course's session step."""
    if not getattr(graph, _MARK, False):
        return "not compiled by a therasim builder"
    if graph.interrupt_before_nodes or graph.interrupt_after_nodes:
        return "breakpoints (interrupt_before/after)"
    if graph.retry_policy or graph.cache_policy or graph.cache is not None or graph.step_timeout:
        return "retry/cache policy or step timeout"
    if getattr(graph, "node_error_handler_map", None):
        return "node error handlers"
    known = _known_channels()
    for name, spec in graph.channels.items():
        if type(spec) not in known:
            return f"channel {name!r} of type {type(spec).__name__}"
    for name, pn in graph.nodes.items():
        if pn.retry_policy or pn.cache_policy or (pn.subgraphs and name not in detached) or getattr(pn, "timeout", None):
            return f"node {name!r} has a retry/cache policy, a subgraph or a timeout"
    return None


def mark_lean(compiled: Any, detached: tuple[str, ...] = ()) -> Any:
    """Mark ``compiled`` (from a therasim builder) as one the lean executor may run.
    ``detached`` names nodes that run another graph on a thread of its own (LangGraph
    finds that graph in the node's closure and calls it a subgraph)."""
    setattr(compiled, _MARK, True)
    compiled.__dict__["_therasim_lean_static"] = _static_reason(compiled, frozenset(detached))
    return compiled


def lean_reason(graph: Any, input: Any, config: dict[str, Any] | None, kwargs: dict[str, Any]) -> str | None:
    """Why this call must run on Pregel, or None when the lean executor runs it."""
    if executor_name() == "pregel":
        return f"{EXECUTOR_ENV}=pregel"
    static = graph.__dict__.get("_therasim_lean_static", "not compiled by a therasim builder")
    if static is not None:
        return str(static)
    from langgraph._internal._constants import CONFIG_KEY_STREAM, CONFIG_KEY_TASK_ID
    from langgraph.types import Command

    if isinstance(input, Command):
        return "a Command input"
    extra = set(kwargs) - {"context", "durability"}
    if extra:
        return f"arguments {sorted(extra)}"
    cfg = config or {}
    if cfg.get("callbacks"):
        return "callbacks passed in"
    conf = cfg.get("configurable") or {}
    if CONFIG_KEY_TASK_ID in conf or CONFIG_KEY_STREAM in conf:
        return "a nested call"
    if kwargs.get("durability") == "exit" or conf.get("__pregel_durability") == "exit":
        return "durability 'exit'"
    from langchain_core.callbacks.manager import AsyncCallbackManager

    if AsyncCallbackManager.configure(None).handlers:  # a tracer or handler set up globally
        return "a callback handler or tracer"
    return None


class _HandOver(Exception):
    """A task interrupted or bubbled up: Pregel continues from the last checkpoint."""


async def ainvoke(graph: Any, input: Any, config: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """``graph.ainvoke(input, config, **kwargs)``, on the lean executor when it
    recognises the call (:func:`lean_reason`), else on Pregel."""
    if lean_reason(graph, input, config, kwargs) is not None:
        return await graph.ainvoke(input, config, **kwargs)
    try:
        return await _run(graph, input, config, kwargs.get("context"), kwargs.get("durability"))
    except _HandOver:
        return await graph.ainvoke(None, config, **kwargs)


async def _run(graph: Any, input: Any, config: dict[str, Any] | None, context: Any, durability: Any) -> Any:
    from langgraph._internal._config import ensure_config, patch_configurable
    from langgraph._internal._constants import (
        CONF,
        CONFIG_KEY_DURABILITY,
        CONFIG_KEY_RUNTIME,
        ERROR,
        INTERRUPT,
        NO_WRITES,
        RESUME,
    )
    from langgraph.errors import GraphBubbleUp, GraphInterrupt, GraphRecursionError
    from langgraph.pregel._io import read_channels
    from langgraph.pregel._loop import AsyncPregelLoop
    from langgraph.pregel.main import _coerce_context
    from langgraph.runtime import DEFAULT_RUNTIME, Runtime

    cfg = ensure_config(graph.config, config)  # type: ignore[arg-type]
    if cfg["recursion_limit"] < 1:
        raise ValueError("recursion_limit must be at least 1")
    checkpointer = graph._resolve_checkpointer(cfg)
    if checkpointer and not cfg.get(CONF):
        raise ValueError("Checkpointer requires one or more of the following 'configurable' keys: thread_id, checkpoint_ns, checkpoint_id")
    store = graph.store
    if durability is None:
        durability = cfg.get(CONF, {}).get(CONFIG_KEY_DURABILITY, "async")
    cfg = patch_configurable(cfg, {CONFIG_KEY_DURABILITY: durability})
    parent = cfg[CONF].get(CONFIG_KEY_RUNTIME, DEFAULT_RUNTIME)
    runtime = Runtime(context=_coerce_context(graph.context_schema, context), store=store, stream_writer=_no_stream, previous=None)
    cfg[CONF][CONFIG_KEY_RUNTIME] = parent.merge(runtime) if hasattr(parent, "merge") else runtime
    control_writes = {RESUME, INTERRUPT, ERROR, NO_WRITES}
    async with AsyncPregelLoop(
        input,
        stream=None,
        config=cfg,
        store=store,
        cache=None,
        checkpointer=checkpointer,
        nodes=graph.nodes,
        specs=graph.channels,
        output_keys=graph.output_channels,
        input_keys=graph.input_channels,
        stream_keys=graph.stream_channels_asis,
        durability=durability,
        trigger_to_nodes=graph.trigger_to_nodes,
        migrate_checkpoint=graph._migrate_checkpoint,
    ) as loop:
        while loop.tick():
            tasks = [t for t in loop.tasks.values() if not t.writes]
            if len(tasks) == 1:
                errors = [await _task(tasks[0])]
            else:
                errors = list(await asyncio.gather(*(_task(t) for t in tasks)))
            first: BaseException | None = None
            for t, exc in zip(tasks, errors, strict=True):
                if exc is None:
                    if all(c in control_writes for c, _ in t.writes):
                        t.writes.append((NO_WRITES, None))  # finished without output
                    loop.put_writes(t.id, t.writes)
                elif isinstance(exc, (GraphInterrupt, GraphBubbleUp)):
                    first = first or _HandOver()
                else:
                    t.writes.append((ERROR, exc))
                    loop.put_writes(t.id, t.writes)
                    first = first or exc
            if first is not None:
                raise first
            loop.after_tick()
            if durability == "sync":
                await loop._put_checkpoint_fut  # type: ignore[misc]
    if loop.status == "out_of_steps":
        raise GraphRecursionError(
            f"Recursion limit of {cfg['recursion_limit']} reached without hitting a stop condition. You can increase the limit by setting the `recursion_limit` config key."
        )
    return read_channels(loop.channels, graph.output_channels)


async def _task(task: Any) -> BaseException | None:
    """Run one task (its node, then its writers and routers); its exception, if any."""
    try:
        await task.proc.ainvoke(task.input, task.config)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # recorded as the runner records it
        return exc
    return None


def _no_stream(_: Any) -> None:
    return None
