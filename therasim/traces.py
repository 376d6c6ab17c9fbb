"""Inspect, replay and fork the state traces of a run.

Every session runs on its own checkpoint thread ``RUN/CLIENT/sN``; a turn is
one exchange (client utterance and counselor reply), numbered from 1. A replay
or fork starts from the checkpoint taken just before turn T, copies it to a new
thread ``RUN/CLIENT/sN@BRANCH`` (the original is never touched), applies the
changes, runs the session to its end and files the branch in branches.jsonl.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from therasim._internal.rundir import JsonlWriter, RunDir, check_session_graph
from therasim.config import ModelSpec, RunConfig
from therasim.errors import ConfigError, RunDirError, TherasimError
from therasim.policies.risk import level_rank
from therasim.state import SessionState

__all__ = ["afork", "fork", "overview", "parse_model_spec", "parse_sets", "replay", "timeline", "turn_state"]


def _rd(run_dir: str | Path | RunDir) -> tuple[RunDir, dict[str, Any]]:
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    return rd, rd.manifest()


def _risk_peak(turns: list[dict[str, Any]]) -> str:
    levels = [(t.get("risk") or {}).get("level") or "none" for t in turns if t.get("speaker") == "client"]
    return max(levels, key=level_rank) if levels else "none"


def _total(m: Any, key: str) -> int | None:
    return ((m or {}).get(key) or {}).get("total")


def overview(run_dir: str | Path | RunDir) -> dict[str, Any]:
    """Course overview: per client, per session modality, PHQ-9/GAD-7, risk peak,
    end reason and turns; course status; branches; bad profiles."""
    rd, man = _rd(run_dir)
    status = rd.course_status()
    by_client: dict[str, list[dict[str, Any]]] = {}
    for r in rd.records():
        by_client.setdefault(r["client_id"], []).append(r)
    branches: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for b in rd.branch_records():
        branches.setdefault((b["client_id"], b["session"]), []).append(b)
    ids = man["cohort"]["ids"]
    courses = []
    for cid in ids:
        sessions = []
        for r in sorted(by_client.get(cid, []), key=lambda r: r["session"]):
            sessions.append({
                "session": r["session"],
                "modality": r.get("modality"),
                "phq9": _total(r.get("measures"), "phq9"),
                "gad7": _total(r.get("measures"), "gad7"),
                "phq9_after": _total(r.get("measures_after"), "phq9"),
                "gad7_after": _total(r.get("measures_after"), "gad7"),
                "risk_peak": _risk_peak(r.get("turns") or []),
                "end_reason": r.get("end_reason"),
                "turns": sum(1 for t in r.get("turns") or [] if t.get("speaker") == "client"),
                "plan": {k: (r.get("plan") or {}).get(k) for k in ("decision", "modality", "reason")} if r.get("plan") else None,
                "branches": [{"branch": b["branch"], "from_turn": b["from_turn"], "changes": b.get("changes"), "turns": sum(1 for t in b.get("turns") or [] if t.get("speaker") == "client")} for b in branches.get((cid, r["session"]), [])],
            })
        st = status.get(cid, {})
        courses.append({"client_id": cid, "status": st.get("status", "pending"), "error": st.get("error"), "sessions": sessions})
    return {
        "run_id": man["run_id"],
        "created": man.get("created"),
        "preset": man["config"]["course"]["preset"],
        "models": {r: (m.get("model") or m.get("provider") or m.get("custom")) for r, m in man.get("models", {}).items()},
        "courses": courses,
        "bad_profiles": [p["error"] for p in rd.problems_list()],
    }


def _record(rd: RunDir, client_id: str, session: int, branch: str | None = None) -> dict[str, Any]:
    pool = rd.branch_records() if branch else rd.records()
    for r in pool:
        if r["client_id"] == client_id and r["session"] == session and (branch is None or r.get("branch") == branch):
            return r
    known = sorted({(r["client_id"], r["session"]) for r in rd.records()})
    clients = sorted({c for c, _ in known})
    if client_id not in clients:
        raise RunDirError(f"no client {client_id!r} in this run; clients with sessions: {clients}")
    raise RunDirError(f"client {client_id!r} has no finished session {session}" + (f" on branch {branch!r}" if branch else "") + f"; sessions: {[s for c, s in known if c == client_id]}")


def timeline(run_dir: str | Path | RunDir, client_id: str, session: int, branch: str | None = None) -> list[dict[str, Any]]:
    """Per-turn timeline of one session: speaker, text, emotion, risk, strategy, recalled memories."""
    rd, _ = _rd(run_dir)
    rec = _record(rd, client_id, session, branch)
    out = []
    for t in rec.get("turns") or []:
        out.append({
            "turn": int(t.get("exchange", 0)) + 1,
            "speaker": t["speaker"],
            "text": t["text"],
            "emotion": t.get("emotion"),
            "risk": t.get("risk"),
            "strategy": t.get("strategy"),
            "recalled": t.get("recalled") or [],
        })
    return out


# --------------------------------------------------------------------------- checkpoints


def _session_builder(man: dict[str, Any], session_builder: Any = None) -> Any:
    from therasim.graphs import preset
    from therasim.graphs.course import with_fold_calls

    b = session_builder if session_builder is not None else preset(man["config"]["course"]["preset"])
    return with_fold_calls(b, (man["config"].get("course") or {}).get("fold_calls"))


async def _with_graph(rd: RunDir, man: dict[str, Any], fn: Any, session_builder: Any = None, action: str = "inspect the checkpoints", *, readonly: bool = False) -> Any:
    from therasim._internal.checkpoint import open_run_checkpointer
    from therasim.config import CheckpointerSpec

    spec = CheckpointerSpec.model_validate(man["config"].get("checkpointer") or {})
    if spec.backend == "sqlite" and not rd.checkpoints.exists():
        raise RunDirError(f"{rd.root}: no checkpoints.sqlite; the run has not started any session")
    builder = _session_builder(man, session_builder)
    check_session_graph(man, builder, action)
    async with open_run_checkpointer(spec, str(rd.checkpoints), readonly=readonly) as saver:
        return await fn(builder.compile(checkpointer=saver), builder)


def _thread(man: dict[str, Any], client_id: str, session: int) -> str:
    return f"{man['run_id']}/{client_id}/s{session}"


async def _before_turn(graph: Any, builder: Any, thread_id: str, turn: int) -> Any:
    """The snapshot just before exchange ``turn`` (1-based) starts."""
    if turn < 1:
        raise ConfigError(f"--turn must be 1 or more (turns are numbered from 1), got {turn}")
    first = builder.order[0]
    found = None
    last_exchange = -1
    async for snap in graph.aget_state_history({"configurable": {"thread_id": thread_id}}):
        ex = int(snap.values.get("exchange", -1)) if snap.values else -1
        last_exchange = max(last_exchange, ex)
        if ex == turn - 1 and tuple(snap.next) == (first,):
            found = snap  # history is newest first: keep going to the earliest match
    if found is None:
        if last_exchange < 0:
            raise RunDirError(f"no checkpoints on thread {thread_id!r}; is the client id and session right?")
        raise RunDirError(f"thread {thread_id!r} has {last_exchange} finished turn(s); --turn must be between 1 and {max(1, last_exchange)}")
    return found


async def _after_turn(graph: Any, thread_id: str, turn: int) -> Any:
    """The snapshot right after exchange ``turn`` was recorded: the earliest one whose
    exchange count is ``turn`` (before ``termination`` where that is its own step; the
    step that records it where record and termination are folded into the exchange's
    last node)."""
    best = None
    async for snap in graph.aget_state_history({"configurable": {"thread_id": thread_id}}):  # newest first
        if snap.values and int(snap.values.get("exchange", -1)) == turn:
            best = snap
    return best


def turn_state(run_dir: str | Path | RunDir, client_id: str, session: int, turn: int, *, branch: str | None = None, session_builder: Any = None) -> dict[str, Any]:
    """Full node-level state at one turn: both turns of the exchange with every node's
    output and calls, and the session state (hidden parts included: this is the
    researcher's view) from the checkpoint after the exchange was recorded."""
    rd, man = _rd(run_dir)
    tid = _thread(man, client_id, session) + (f"@{branch}" if branch else "")

    async def go(graph: Any, builder: Any) -> dict[str, Any]:
        snap = await _after_turn(graph, tid, turn)
        if snap is None:
            await _before_turn(graph, builder, tid, turn)  # raises a clear error on bad input
            raise RunDirError(f"turn {turn} of {tid} has no recorded checkpoint")
        values = dict(snap.values)
        turns = [t for t in values.get("transcript") or [] if int(t.get("exchange", -1)) == turn - 1]
        state = {k: v for k, v in values.items() if k not in ("transcript", "current")}
        return {
            "thread_id": tid,
            "checkpoint_id": snap.config["configurable"].get("checkpoint_id"),
            "turn": turn,
            "nodes": builder.order,
            "exchange": turns,
            "state": state,
            "transcript_length": len(values.get("transcript") or []),
        }

    coro = _with_graph(rd, man, go, session_builder, readonly=True)  # reading only: works on a read-only disk
    return asyncio.run(coro) if not _in_loop() else _run_in_thread(coro)


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _run_in_thread(coro: Any) -> Any:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()


# --------------------------------------------------------------------------- replay / fork

_SETTABLE = frozenset(SessionState.__annotations__) - {"transcript", "current", "exchange", "ended", "end_reason", "run_id", "client_id", "session", "course_key"}


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``PATH=VALUE`` pairs; VALUE is JSON when it parses (numbers, lists, objects),
    else a string. PATH is dotted, rooted at a session-state field."""
    out: dict[str, Any] = {}
    for it in items or []:
        if "=" not in it:
            raise ConfigError(f"--set {it!r}: expected PATH=VALUE, e.g. inner.distress=9 or modality=mi")
        path, raw = it.split("=", 1)
        path = path.strip()
        root = path.split(".")[0]
        if root not in _SETTABLE:
            raise ConfigError(f"--set {path}: {root!r} is not a field you can change; choose one of {sorted(_SETTABLE)}")
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = raw
        out[path] = val
    return out


def _non_finite(val: Any, path: str) -> None:
    """NaN and infinities are not data (and not JSON): refuse them anywhere in a value."""
    import math

    if isinstance(val, float) and not math.isfinite(val):
        raise ConfigError(f"--set {path}: {val} is not a finite number")
    if isinstance(val, dict):
        for k, v in val.items():
            _non_finite(v, f"{path}.{k}")
    elif isinstance(val, list):
        for i, v in enumerate(val):
            _non_finite(v, f"{path}[{i}]")


def _validate_state(values: dict[str, Any], sets: dict[str, Any]) -> dict[str, Any]:
    """The edited fields, checked with the models profiles and inner state are made
    with (ranges, types, unknown fields); returns the state with normalised values."""
    from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

    from therasim.profiles import HiddenProfile, InnerState, IntakeForm

    class _Profile(BaseModel):
        model_config = ConfigDict(extra="forbid")
        intake: IntakeForm
        hidden: HiddenProfile

    adapters: dict[str, Any] = {
        "goals": TypeAdapter(Annotated[list[Annotated[str, Field(max_length=300)]], Field(max_length=10)]),
        "counselor_notes": TypeAdapter(str),
        "modality": TypeAdapter(str),
        "counselor_memory": TypeAdapter(list[dict[str, Any]]),
        "client_memory": TypeAdapter(list[dict[str, Any]]),
    }
    for path in sets:
        parts = path.split(".")
        if parts[0] == "inner" and len(parts) == 2 and parts[1] not in InnerState.model_fields:
            raise ConfigError(f"--set {path}: {parts[1]!r} is not a field of the inner state; fields: {sorted(InnerState.model_fields)}")
    for root in sorted({p.split(".")[0] for p in sets}):
        val = values.get(root)
        try:
            if root == "inner":
                if not isinstance(val, dict):
                    raise ConfigError(f"--set inner: the inner state must be a mapping, got {type(val).__name__}")
                known = {k: v for k, v in val.items() if k in InnerState.model_fields}
                values[root] = {**val, **InnerState.model_validate(known, strict=True).model_dump(include=set(known))}
            elif root == "intake":
                values[root] = IntakeForm.model_validate(val).model_dump()
            elif root == "profile":
                values[root] = _Profile.model_validate(val).model_dump()
            elif root in adapters:
                values[root] = adapters[root].validate_python(val, strict=True)
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join([root, *(str(p) for p in first["loc"])])
            found = repr(first.get("input"))
            found = found if len(found) <= 60 else found[:57] + "..."
            raise ConfigError(f"--set {loc}: {first['msg']} (found {found})") from None
    if "modality" in sets or any(p.startswith("modality.") for p in sets):
        from therasim.errors import UnknownNameError
        from therasim.policies.modalities import get_modality

        try:
            get_modality(str(values["modality"]))  # unknown modality: clear error now, not mid-run
        except UnknownNameError as e:
            raise ConfigError(f"--set modality: {e}") from None
    return values


def _apply(values: dict[str, Any], sets: dict[str, Any]) -> dict[str, Any]:
    import copy

    values = copy.deepcopy(values)
    for path, val in sets.items():
        _non_finite(val, path)
        parts = path.split(".")
        node: Any = values
        for i, p in enumerate(parts[:-1]):
            if not isinstance(node, dict) or p not in node:
                raise ConfigError(f"--set {path}: {'.'.join(parts[: i + 1])} does not exist in the state at that turn")
            node = node[p]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {path}: {'.'.join(parts[:-1])} is not a mapping")
        node[parts[-1]] = val
    return _validate_state(values, sets)


def parse_model_spec(spec: str | ModelSpec | dict[str, Any]) -> ModelSpec:
    """``embedded``, ``embedded:PATH.gguf``, ``openai:MODEL@URL``, ``vllm:MODEL@URL``,
    a JSON/YAML mapping, or a ModelSpec."""
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, dict):
        return ModelSpec.model_validate(spec)
    s = spec.strip()
    if s == "embedded":
        return ModelSpec()
    if s.startswith("embedded:"):
        return ModelSpec(provider="embedded", model=s.split(":", 1)[1])
    for prov in ("openai", "vllm"):
        if s.startswith(prov + ":") and "@" in s:
            model, url = s[len(prov) + 1 :].split("@", 1)
            return ModelSpec(provider=prov, model=model, base_url=url)  # type: ignore[arg-type]
    if s.startswith("{"):
        import yaml

        return ModelSpec.model_validate(yaml.safe_load(s))
    raise ConfigError(f"model spec {spec!r} is not understood; use embedded, embedded:PATH.gguf, openai:MODEL@URL or vllm:MODEL@URL")


async def afork(
    run_dir: str | Path | RunDir,
    client_id: str,
    session: int,
    turn: int,
    *,
    sets: dict[str, Any] | list[str] | None = None,
    counselor_model: str | ModelSpec | Any = None,
    models: Any = None,
    branch: str | None = None,
    session_builder: Any = None,
) -> dict[str, Any]:
    """Run session ``session`` of ``client_id`` again from just before ``turn`` on a new
    branch, with state changes (``sets``) and/or another counselor model. With no
    changes this is a replay. Returns the branch record (also in branches.jsonl).
    The run directory is locked meanwhile; a branch thread left by a failed fork
    of the same name is cleared first."""
    rd, man = _rd(run_dir)
    with rd.lock("fork"):  # one writer per run directory (a run, resume or another fork)
        return await _afork_locked(rd, man, client_id, session, turn, sets=sets, counselor_model=counselor_model, models=models, branch=branch, session_builder=session_builder)


async def _afork_locked(
    rd: RunDir,
    man: dict[str, Any],
    client_id: str,
    session: int,
    turn: int,
    *,
    sets: dict[str, Any] | list[str] | None,
    counselor_model: str | ModelSpec | Any,
    models: Any,
    branch: str | None,
    session_builder: Any,
) -> dict[str, Any]:
    from langchain_core.language_models import BaseChatModel

    from therasim.context import SimContext
    from therasim.graphs.session import session_recursion_limit
    from therasim.memory import open_run_store
    from therasim.providers import ModelPool
    from therasim.records import dataset_record

    cfg = RunConfig.model_validate(man["config"])
    if models is None:
        from therasim.runner import check_stored_urls

        check_stored_urls(cfg)
    changes = parse_sets(sets) if isinstance(sets, list) else dict(sets or {})
    for path in changes:
        if path.split(".")[0] not in _SETTABLE:
            raise ConfigError(f"--set {path}: {path.split('.')[0]!r} is not a field you can change; choose one of {sorted(_SETTABLE)}")
    kind = "fork" if (changes or counselor_model is not None) else "replay"
    name = branch or f"{kind}-{uuid.uuid4().hex[:6]}"
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"--branch {name!r}: use letters, digits, '-' and '_' only")
    if any(b.get("branch") == name and b["client_id"] == client_id and b["session"] == session for b in rd.branch_records()):
        raise ConfigError(f"branch {name!r} already exists for client {client_id} session {session}; pick another name")
    role_models: dict[str, Any] = {}
    base = models if models is not None else cfg.models
    pool0 = base if isinstance(base, ModelPool) else ModelPool(base)
    for r in ("client", "counselor", "analysts", "judge"):
        role_models[r] = pool0.spec(r)  # type: ignore[arg-type]
    cm_desc: Any = None
    if counselor_model is not None:
        if isinstance(counselor_model, BaseChatModel):
            role_models["counselor"] = counselor_model
            cm_desc = type(counselor_model).__name__
        else:
            spec = parse_model_spec(counselor_model)
            role_models["counselor"] = spec
            cm_desc = spec.describe()
    pool = ModelPool(role_models)
    store = open_run_store(cfg.memory, str(rd.memory), man) if cfg.course.memory else None
    parent = _thread(man, client_id, session)
    tid = f"{parent}@{name}"

    async def go(graph: Any, builder: Any) -> dict[str, Any]:
        snap = await _before_turn(graph, builder, parent, turn)
        values = _apply(dict(snap.values), changes)  # every check before anything is written
        values["current"] = {}
        cfg_new: dict[str, Any] = {"configurable": {"thread_id": tid}, "recursion_limit": session_recursion_limit(cfg.course.max_turns)}
        saver = graph.checkpointer
        # A thread under this name with no branch record is what a failed or killed
        # fork left behind: clear it (one transaction), or its turns would be doubled.
        await saver.adelete_thread(tid)
        pw = JsonlWriter(rd.prompts, fsync=False)
        ctx = SimContext.from_config(cfg, models=pool, memory=store, on_messages=lambda r: pw.write({**r, "branch": name}))
        try:
            await graph.aupdate_state(cfg_new, values, as_node="termination")
            final = await graph.ainvoke(None, config=cfg_new, context=ctx, durability="sync")
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(saver.adelete_thread(tid))  # no orphan thread
            raise
        finally:
            pw.close()
            await pool.aclose()
        return {"final": final, "from_checkpoint": snap.config["configurable"].get("checkpoint_id")}

    out = await _with_graph(rd, man, go, session_builder, f"{kind} session {session} of {client_id}")
    final = out["final"]
    original = _record(rd, client_id, session)
    rec = dataset_record(
        {
            "run_id": man["run_id"],
            "client_id": client_id,
            "session": session,
            "thread_id": tid,
            "modality": final.get("modality"),
            "goals": final.get("goals"),
            "end_reason": final.get("end_reason"),
            "turns": final.get("transcript") or [],
        },
        branch=name,
    )
    rec.update(
        kind=kind,
        parent_thread=parent,
        from_turn=turn,
        from_checkpoint=out["from_checkpoint"],
        changes={"set": changes, "counselor_model": cm_desc},
        original_end_reason=original.get("end_reason"),
        created=time.time(),
    )
    w = JsonlWriter(rd.branches)
    w.write(rec)
    w.close()
    return rec


def fork(run_dir: str | Path | RunDir, client_id: str, session: int, turn: int, **kw: Any) -> dict[str, Any]:
    """Synchronous :func:`afork` (works inside Jupyter too)."""
    coro = afork(run_dir, client_id, session, turn, **kw)
    return _run_in_thread(coro) if _in_loop() else asyncio.run(coro)  # type: ignore[no-any-return]


def replay(run_dir: str | Path | RunDir, client_id: str, session: int, turn: int, **kw: Any) -> dict[str, Any]:
    """Re-run a session from the checkpoint before ``turn`` with the run's own models
    and seeds, on a new branch beside the original."""
    if kw.get("sets") or kw.get("counselor_model") is not None:
        raise TherasimError("replay takes no changes; use fork for a counterfactual")
    return fork(run_dir, client_id, session, turn, **kw)

