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
the result read from the channels at the end. Each step's tasks, when no ``Send`` is
pending, are prepared by :func:`_lean_tasks` (LangGraph's ``prepare_next_tasks`` for
PULL tasks, with the run config merged once per node): the same ids, paths, inputs
and task configs.

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
import binascii
import os
from collections import deque
from functools import partial
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
    async with _lean_loop_class()(
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


_LOOP: list[type] = []


def _lean_loop_class() -> type:
    """LangGraph's ``AsyncPregelLoop`` with each step's task preparation done by
    :func:`_lean_tasks` when it applies (built once, on first use)."""
    if _LOOP:
        return _LOOP[0]
    from langgraph._internal._constants import TASKS
    from langgraph.pregel._loop import AsyncPregelLoop

    class LeanPregelLoop(AsyncPregelLoop):
        _lean_run: tuple[Any, ...] | None = None
        _lean_submit: Any = None

        @property  # type: ignore[override]
        def submit(self) -> Any:
            return self._lean_submit

        @submit.setter
        def submit(self, submit: Any) -> None:  # LangGraph sets it on entering the loop
            self._lean_submit = _saves_submit(submit, self.checkpointer)

        def _prepare_tasks_and_emit_checkpoint(self) -> None:
            tasks = self.channels.get(TASKS)
            if self.stream is not None or self.manager is not None or (tasks is not None and tasks.is_available()):
                return super()._prepare_tasks_and_emit_checkpoint()  # type: ignore[no-any-return]
            self.tasks = _lean_tasks(self)

    global _SAVE_FUNCS
    _SAVE_FUNCS = _save_funcs()
    _LOOP.append(LeanPregelLoop)
    return LeanPregelLoop


def _saves_submit(submit: Any, saver: Any) -> Any:
    """The loop's ``submit`` (its background executor's), with the checkpoint and
    write saves on therasim's SQLite group-commit saver run as :class:`_Saves` runs
    them; ``submit`` itself for any other saver (a subclass or a patched
    ``aput``/``aput_writes`` keeps its own)."""
    from therasim._internal.checkpoint import GroupCommitSaver

    executor: Any = getattr(submit, "__self__", None)
    if (
        type(saver) is not GroupCommitSaver
        or "aput" in vars(saver)
        or "aput_writes" in vars(saver)
        or getattr(executor, "semaphore", True) is not None
        or not isinstance(getattr(executor, "tasks", None), dict)
    ):
        return submit
    return _Saves(submit, executor.tasks, saver)


class _Saves:
    """A lean loop's ``submit``: LangGraph's background executor's, except for the
    two saves a step makes on the group-commit saver, which it runs without a task.

    LangGraph submits each task's writes (``aput_writes``) and each checkpoint
    (``_checkpointer_put_after_previous``: wait for the step's delta-channel writes and
    the previous checkpoint's save, then ``aput``) as an asyncio task, whose first
    step runs on the next loop iteration, in submission order; each ``aput`` /
    ``aput_writes`` executes its statement at once and then waits, shielded, for the
    group commit. Here the same statement runs from a callback scheduled the same way
    (``call_soon``: the same iteration, the same order among the loop's saves and any
    task LangGraph schedules), and the future handed back is settled by the commit:
    the same rows, in the same order and transactions, without the task, its context
    switch, the shield and the executor's done callback. A checkpoint whose previous
    save or delta writes are not done, or failed, is submitted as LangGraph would (it
    waits, or fails, in LangGraph's own code). The futures are the executor's like its
    tasks: waited for on exit, a failure re-raised. Holds no reference to the loop (a
    cycle through it kept finished loops alive: session 13)."""

    __slots__ = ("aloop", "saver", "submit", "tasks")

    def __init__(self, submit: Any, tasks: dict[Any, Any], saver: Any) -> None:
        self.submit = submit
        self.tasks = tasks
        self.saver = saver
        self.aloop = asyncio.get_running_loop()

    def __call__(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not kwargs:
            func = getattr(fn, "__func__", None)
            if func is _SAVE_FUNCS[0] and len(args) == 6:
                prev, delta = args[0], args[1]
                if (prev is None or not prev.done() or _ok(prev)) and not any(f.done() and not _ok(f) for f in delta):
                    pending = [f for f in delta if not f.done()]
                    if prev is not None and prev.done():
                        prev = None
                    if not pending and prev is None:
                        return self._defer(self.saver.put_rows, (args[2], args[3], args[4]))
                    return self._after(pending, prev, (args[2], args[3], args[4]))
            elif func is _SAVE_FUNCS[1]:
                write = self.saver.put_write_rows
                if getattr(fn, "__self__", None) is self.saver:
                    return self._defer(write, args)
        return self.submit(fn, *args, **kwargs)

    def _defer(self, write: Any, args: tuple[Any, ...]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self.aloop.create_future()
        self.tasks[fut] = (False, True)  # as the executor registers a task: waited for, re-raised
        self.aloop.call_soon(_run_save, self.tasks, fut, write, args)
        return fut

    def _after(self, pending: list[Any], prev: Any, args: tuple[Any, ...]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self.aloop.create_future()
        self.tasks[fut] = (False, True)
        waiter = _AfterWrites(self.tasks, fut, self.saver.put_rows, args, len(pending) + (prev is not None), prev)
        for f in pending:
            f.add_done_callback(waiter)
        if prev is not None:
            prev.add_done_callback(waiter)
        return fut


class _AfterWrites:
    """A checkpoint's save waiting, as LangGraph's ``_checkpointer_put_after_previous``
    waits, for its step's delta-channel writes to commit (a ``gather``: the first
    that fails fails it with that error, one cancelled cancels it) and then for the
    previous checkpoint's save (its error, or its cancellation, is this one's); when
    all of them have succeeded its statement runs."""

    __slots__ = ("args", "fut", "left", "prev", "tasks", "write")

    def __init__(self, tasks: dict[Any, Any], fut: asyncio.Future[None], write: Any, args: tuple[Any, ...], left: int, prev: Any) -> None:
        self.tasks, self.fut, self.write, self.args, self.left, self.prev = tasks, fut, write, args, left, prev

    def __call__(self, child: asyncio.Future[Any]) -> None:
        fut = self.fut
        if fut.done():  # failed by an earlier write, or its waiter was cancelled
            if fut.cancelled():
                self.tasks.pop(fut, None)
            return
        if child is not self.prev:
            if child.cancelled():
                self.tasks.pop(fut, None)
                fut.cancel()
                return
            exc = child.exception()
            if exc is not None:
                fut.set_exception(exc)
                return
        self.left -= 1
        if self.left:
            return
        prev = self.prev
        if prev is not None and prev.cancelled():
            self.tasks.pop(fut, None)
            fut.cancel()
        elif prev is not None and (exc := prev.exception()) is not None:
            fut.set_exception(exc)
        else:
            _run_save(self.tasks, fut, self.write, self.args)


def _ok(fut: Any) -> bool:
    return bool(fut.done() and not fut.cancelled() and fut.exception() is None)


def _run_save(tasks: dict[Any, Any], fut: asyncio.Future[None], write: Any, args: tuple[Any, ...]) -> None:
    if fut.done():  # cancelled before it ran: a task cancelled before its first step runs nothing
        tasks.pop(fut, None)
        return
    try:
        batch = write(*args)
    except BaseException as exc:  # as the task would fail (kept in ``tasks``: re-raised on exit)
        fut.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
        return
    batch.add_done_callback(partial(_settle, tasks, fut))


def _settle(tasks: dict[Any, Any], fut: asyncio.Future[None], batch: asyncio.Future[None]) -> None:
    if fut.done():  # its waiter was cancelled; the commit went on for the others
        tasks.pop(fut, None)
    elif batch.cancelled():
        tasks.pop(fut, None)
        fut.cancel()
    elif (exc := batch.exception()) is not None:
        fut.set_exception(exc)
    else:
        tasks.pop(fut, None)
        fut.set_result(None)


def _save_funcs() -> tuple[Any, Any]:
    from langgraph.pregel._loop import AsyncPregelLoop

    from therasim._internal.checkpoint import GroupCommitSaver

    return (AsyncPregelLoop._checkpointer_put_after_previous, GroupCommitSaver.aput_writes)


_SAVE_FUNCS: tuple[Any, Any] = (None, None)


def _lean_tasks(loop: Any) -> dict[str, Any]:
    """The next step's tasks, as LangGraph's ``prepare_next_tasks`` prepares them for a
    step with no ``Send`` (PULL tasks only; the caller checks): the same candidates
    (nodes triggered by the channels the last step updated), trigger test, task ids,
    paths, inputs, scratchpads and task configs (metadata, tags, run name, the
    configurable keys a task reads, a runtime with the task's execution info). What
    it leaves out is per-task work whose result is the same for a whole run: the run
    config merged once per node (``merge_configs``/``patch_config``), and the per-call
    ``typing`` cast. ``tests/test_lean_executor.py`` compares every task it prepares
    with LangGraph's, field by field."""
    if not _PREPARE:
        _PREPARE.append(_lean_preparation())
    return _PREPARE[0](loop)


_PREPARE: list[Any] = []


def _local_read(scratchpad: Any, channels: Any, managed: Any, task: Any, select: Any, fresh: bool = False) -> Any:
    """A lean task's ``CONFIG_KEY_READ``: LangGraph's ``local_read`` (what a router
    reads: the state with its own task's writes applied when ``fresh``). With
    ``fresh`` LangGraph copies every channel of the graph and applies the task's
    writes to each, then reads the selected ones; here only the selected channels are
    handed to it, so only they are copied: the same values (the other copies were
    never read), the same errors. ``tests/test_lean_executor.py`` compares the two."""
    if fresh:
        keys = (select,) if isinstance(select, str) else select
        channels = {k: channels[k] for k in keys if k in channels}
    return _LG_LOCAL_READ(scratchpad, channels, managed, task, select, fresh)


_LG_LOCAL_READ: Any = None  # LangGraph's local_read, bound by _lean_preparation


def _lean_preparation() -> Any:
    """:func:`_lean_tasks`'s body, with LangGraph's names bound once (a function-level
    import per step cost more than the preparation saved)."""
    from collections.abc import Mapping
    from dataclasses import fields as runtime_fields
    from functools import partial

    from langgraph._internal._config import _merge_metadata, merge_configs, patch_config
    from langgraph._internal._constants import (
        CONF,
        CONFIG_KEY_CHECKPOINT_ID,
        CONFIG_KEY_CHECKPOINT_MAP,
        CONFIG_KEY_CHECKPOINT_NS,
        CONFIG_KEY_CHECKPOINTER,
        CONFIG_KEY_READ,
        CONFIG_KEY_READ_STATE,
        CONFIG_KEY_RESUME_MAP,
        CONFIG_KEY_RUNTIME,
        CONFIG_KEY_SCRATCHPAD,
        CONFIG_KEY_SEND,
        CONFIG_KEY_TASK_ID,
        CONFIG_KEY_THREAD_ID,
        NS_END,
        NS_SEP,
        PREVIOUS,
        PULL,
    )
    from langgraph._internal._typing import MISSING
    from langgraph.pregel._algo import (
        PregelTaskWrites,
        _proc_input,
        _scratchpad,
        _triggers,
        _uuid5_str,
        _xxhash_str,
        local_read,
    )
    from langgraph.runtime import DEFAULT_RUNTIME, ExecutionInfo
    from langgraph.types import PregelExecutableTask

    global _LG_LOCAL_READ
    _LG_LOCAL_READ = local_read

    def prepare(loop: Any) -> dict[str, Any]:
        checkpoint = loop.checkpoint
        versions = checkpoint["channel_versions"]
        nodes = loop.nodes
        if loop.updated_channels and loop.trigger_to_nodes:
            triggered: set[str] = set()
            for channel in loop.updated_channels:
                if ids := loop.trigger_to_nodes.get(channel):
                    triggered.update(ids)
            candidates: Any = sorted(triggered)
        elif not versions:
            return {}
        else:
            candidates = nodes.keys()
        null_version = None
        for v in versions.values():
            null_version = type(v)()
            break
        if null_version is None:
            return {}
        config = loop.config
        conf = config[CONF]
        base_runtime = conf.get(CONFIG_KEY_RUNTIME, DEFAULT_RUNTIME)
        # what a task's config takes from the run's: built once per run (again if the
        # loop swaps its config or runtime), per node on first use
        run = loop._lean_run
        if run is None or run[0] is not config or run[1] is not base_runtime:
            meta = config.get("metadata") or None
            plain = meta is None or not any(isinstance(v, Mapping) for v in meta.values())
            run = loop._lean_run = (config, base_runtime, {}, dict(meta or {}) if plain else None, {f.name: getattr(base_runtime, f.name) for f in runtime_fields(base_runtime) if f.init})
        statics, base_meta, runtime_kw = run[2], run[3], run[4]
        channels, managed, step, stop = loop.channels, loop.managed, loop.step, loop.stop
        pending = loop.checkpoint_pending_writes
        parent_ns = conf.get(CONFIG_KEY_CHECKPOINT_NS, "")
        id_fn = _xxhash_str if checkpoint["v"] > 1 else _uuid5_str
        cp_id = checkpoint["id"]
        cp_id_bytes = binascii.unhexlify(cp_id.replace("-", ""))
        step_str = str(step)
        seen_all = checkpoint["versions_seen"]
        parent_pad = conf.get(CONFIG_KEY_SCRATCHPAD)
        resume_map = conf.get(CONFIG_KEY_RESUME_MAP)
        previous = checkpoint["channel_values"].get(PREVIOUS, None)
        thread_id = conf.get(CONFIG_KEY_THREAD_ID)
        run_id = str(rid) if (rid := config.get("run_id")) else None
        saver = loop.checkpointer or conf.get(CONFIG_KEY_CHECKPOINTER)
        cp_map = {**conf.get(CONFIG_KEY_CHECKPOINT_MAP, {}), parent_ns: cp_id}
        store = loop.store
        input_cache: dict[Any, Any] = {}
        out: dict[str, Any] = {}
        for name in candidates:
            proc = nodes.get(name)
            if proc is None or not _triggers(channels, versions, seen_all.get(name), null_version, proc):
                continue
            st = statics.get(name)
            if st is None:
                tpl = patch_config(merge_configs(config, {"tags": proc.tags}), run_name=name)  # type: ignore[typeddict-item]
                tpl.pop(CONF, None)
                tpl.pop("metadata", None)
                ns = f"{parent_ns}{NS_SEP}{name}" if parent_ns else name
                st = statics[name] = (tuple(sorted(proc.triggers)), ns, (PULL, name), tpl, base_meta is not None and not proc.metadata)
            triggers, ns, path, tpl, plain_meta = st
            task_id = id_fn(cp_id_bytes, ns, step_str, name, PULL, *triggers)
            task_ns = f"{ns}{NS_END}{task_id}"
            scratchpad = _scratchpad(parent_pad, pending, task_id, task_ns, resume_map, step, stop)
            try:
                val = _proc_input(proc, managed, channels, for_execution=True, input_cache=input_cache, scratchpad=scratchpad)
            except Exception as exc:
                exc.add_note(f"Before task with name '{name}' and path '{path}'")
                raise
            if val is MISSING or not (node := proc.node):
                continue
            if plain_meta:  # no mapping values to copy: LangGraph's merge is a plain update
                metadata = {**base_meta, "langgraph_step": step, "langgraph_node": name, "langgraph_triggers": triggers, "langgraph_path": path, "langgraph_checkpoint_ns": task_ns}  # type: ignore[dict-item]
            else:
                metadata = {"langgraph_step": step, "langgraph_node": name, "langgraph_triggers": triggers, "langgraph_path": path, "langgraph_checkpoint_ns": task_ns}
                if proc.metadata:
                    metadata.update(proc.metadata)
                metadata = _merge_metadata(config.get("metadata") or None, metadata)
            writes: deque[tuple[str, Any]] = deque()
            runtime = type(base_runtime)(  # base_runtime.override(...) without dataclasses.replace's per-call field walk
                **{
                    **runtime_kw,
                    "previous": previous,
                    "store": store,
                    "execution_info": ExecutionInfo(checkpoint_id=cp_id, checkpoint_ns=task_ns, task_id=task_id, thread_id=thread_id, run_id=run_id),
                }
            )
            task_config = {
                **tpl,
                "metadata": metadata,
                CONF: {
                    **conf,
                    CONFIG_KEY_TASK_ID: task_id,
                    CONFIG_KEY_SEND: writes.extend,
                    CONFIG_KEY_READ: partial(_local_read, scratchpad, channels, managed, PregelTaskWrites(path, name, writes, triggers)),
                    CONFIG_KEY_READ_STATE: None,
                    CONFIG_KEY_CHECKPOINTER: saver,
                    CONFIG_KEY_CHECKPOINT_MAP: dict(cp_map),
                    CONFIG_KEY_CHECKPOINT_ID: None,
                    CONFIG_KEY_CHECKPOINT_NS: task_ns,
                    CONFIG_KEY_SCRATCHPAD: scratchpad,
                    CONFIG_KEY_RUNTIME: runtime,
                },
            }
            out[task_id] = PregelExecutableTask(
                name,
                val,
                node,
                writes,
                task_config,  # type: ignore[arg-type]
                triggers,
                proc.retry_policy or loop.retry_policy,
                None,
                task_id,
                path,
                writers=proc.flat_writers,
                subgraphs=proc.subgraphs,
                timeout=proc.timeout,
            )
        return out

    return prepare
