"""The record format: what a finished session looks like in ``transcripts.jsonl``
and ``branches.jsonl`` (the dataset export), in one place. The runner writes it,
traces (replays and forks) and the benchmark harness reuse it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from therasim._internal.rundir import dumps_loose
from therasim.contract import BUILTIN_SLOTS, TURN_CORE, ExchangeContract

__all__ = ["dataset_record", "export_turn"]


#: the built-in slots' exported fields, in declaration order (name, projection), and the
#: fields a turn's ``extra`` leaves out: fixed when the contract module is imported
#: (its slots are frozen), so made once, not per turn (session 18 of #17)
_EXPORTS = tuple((s.name, s.export) for s in BUILTIN_SLOTS.values() if callable(s.export))
_BUILTIN = frozenset({s.name for s in BUILTIN_SLOTS.values()} | set(TURN_CORE))


def export_turn(t: Mapping[str, Any], contract: ExchangeContract | None = None) -> dict[str, Any]:
    """A transcript turn in the export's fixed shape: core fields, every exported
    built-in slot (``None`` when absent), call counts; fields of slots declared by
    nodes go in ``extra`` as JSON strings (so the columns stay fixed)."""
    calls = t.get("calls") or {}
    out: dict[str, Any] = {k: t.get(k) for k in ("index", "exchange", "speaker", "text")}
    for name, export in _EXPORTS:
        out[name] = export(t.get(name))  # type: ignore[operator]
    out["n_calls"] = sum(len(v) for v in calls.values())
    out["call_errors"] = sum(1 for v in calls.values() for c in v if c.get("error"))
    builtin: frozenset[str] | set[str] = _BUILTIN
    if contract is not None:
        builtin = _BUILTIN | {s.name for s in contract.slots.values() if s.export is None}
    extra = {k: dumps_loose(v) for k, v in t.items() if k not in builtin}
    if extra:
        out["extra"] = extra
    return out


def _eval_fields(t: dict[str, Any]) -> dict[str, Any]:
    """Client-turn fields kept for evaluation only (therasim.eval; the judge never sees them):
    the hidden state after the turn, the plain-text fallback flag, a planted probe's ground truth."""
    if t.get("speaker") != "client":
        return {"inner": None, "degraded": None, "probe": None}
    note = t.get("note") or {}
    inner = t.get("client_inner")
    return {"inner": {k: inner.get(k) for k in ("distress", "hopelessness", "anxiety", "self_efficacy", "alliance", "wish_to_continue", "disclosure")} if isinstance(inner, dict) else None, "degraded": bool(note.get("degraded")), "probe": note.get("probe")}


def _nocalls(d: Any) -> Any:
    if not isinstance(d, dict):
        return d
    return {k: v for k, v in d.items() if k != "calls"}


_INSTRUMENT_KEYS = ("items", "total", "band", "mean", "subscales", "flag", "missing")


def _measures(d: Any) -> Any:
    """A measures record in a fixed shape per instrument (the anchoring moves as a JSON string)."""
    if not isinstance(d, dict):
        return d
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k == "calls":
            continue
        if isinstance(v, dict) and "items" in v:
            v = {**{x: v.get(x) for x in _INSTRUMENT_KEYS}, "anchored": json.dumps(v.get("anchored") or {})}
        out[k] = v
    out.setdefault("error", None)
    return out


def dataset_record(rec: dict[str, Any], branch: str | None = None) -> dict[str, Any]:
    """A session record in a fixed shape (so ``datasets.load_dataset("json", ...)``
    reads transcripts.jsonl): variable parts (filters, deltas) as JSON strings,
    per-call details left to events.jsonl and the checkpoints."""
    recall = rec.get("recall")
    if recall:
        recall = {side: {"query": r.get("query"), "where": json.dumps(r.get("where")), "items": r.get("items") or []} for side, r in recall.items() if r}
    ev = rec.get("event_before")
    if ev:
        ev = {**ev, "deltas": json.dumps(ev.get("deltas") or {})}
    plan = _nocalls(rec.get("plan"))
    return {
        "run_id": rec["run_id"],
        "client_id": rec["client_id"],
        "profile_id": rec["client_id"],
        "session": rec["session"],
        "branch": branch,
        "thread_id": rec.get("thread_id"),
        "modality": rec.get("modality"),
        "goals": rec.get("goals") or [],
        "end_reason": rec.get("end_reason"),
        "turns": [{**export_turn(t), **_eval_fields(t)} for t in rec.get("turns") or []],
        "measures": _measures(rec.get("measures")),
        "measures_after": _measures(rec.get("measures_after")),
        "session_measures": _measures(rec.get("session_measures")),
        "event_before": ev,
        "summary": _nocalls(rec.get("summary")),
        "recollection": _nocalls(rec.get("recollection")),
        "plan": plan,
        "recall": recall,
        "memory_written": rec.get("memory_written"),
    }
