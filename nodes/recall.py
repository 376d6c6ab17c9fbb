"""Memory nodes: recall at session start (both sides, each from its own store),
per-turn recall for the counselor, and the memory writer after a session.

The last session's notes reach the counselor verbatim (``counselor_notes``);
session-start recall ranks older sessions' memories by relevance to the goals,
the presenting problem and that plan. Retrieved items and their scores are kept
in the trace. Memory calls run off the event loop on the memory pool
(``therasim.memory.pool``), sized to the courses in flight.
"""

from __future__ import annotations

import hashlib
from typing import Any

from therasim.context import NodeContext
from therasim.contract import NodeSpec
from therasim.state import View

__all__ = ["SPEC", "client_note", "counselor_note", "memory_recall", "recall", "remember", "salient_quotes"]

_KEEP = ("id", "text", "session", "kind", "score")


def _slim(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: it[k] for k in _KEEP if k in it} for it in items]


async def recall(view: View, ctx: NodeContext) -> dict[str, Any]:
    """System step before a session: counselor recall from counselor memories only,
    client recall from client memories only (separate collections)."""
    store = ctx.sim.memory
    session = int(view["session"])
    if store is None or session <= 1:
        return {"counselor_memory": [], "client_memory": [], "pending": {"recall": None}}
    # imported here: importing therasim.memory loads Chroma, not needed without a store
    from therasim.memory.base import MemoryFilter
    from therasim.memory.pool import run_memory

    client_id = view["client_id"]
    intake = view.get("intake") or {}
    k = ctx.sim.recall_k
    c_query = " ".join([*(view.get("goals") or []), str(intake.get("presenting_problem", "")), view.get("counselor_notes") or ""]).strip()
    c_where = MemoryFilter(session_before=session - 1) if session > 2 else None
    counselor_items: list[dict[str, Any]] = []
    if c_where is not None:
        counselor_items = await run_memory(store.search, client_id, "counselor", c_query, k, c_where)
    inner = view.get("inner") or {}
    cl_query = " ".join([str(intake.get("presenting_problem", "")), *(inner.get("recent_events") or [])]).strip()
    client_items = await run_memory(store.search, client_id, "client", cl_query, k, None)
    trace = {
        "counselor": {"query": c_query, "where": c_where.describe() if c_where else None, "items": _slim(counselor_items)},
        "client": {"query": cl_query, "where": None, "items": _slim(client_items)},
    }
    return {"counselor_memory": _slim(counselor_items), "client_memory": _slim(client_items), "pending": {"recall": trace}}


async def memory_recall(view: View, ctx: NodeContext) -> dict[str, Any]:
    """Session node (counselor side): memories from earlier sessions relevant to what
    the client just said, with scores, for the counselor's instruction."""
    store = ctx.sim.memory
    session = int(view.get("session", 1))
    text = (view["current"].get("client_text") or "").strip()
    if store is None or session <= 1 or not text:
        return {}
    from therasim.memory.base import MemoryFilter
    from therasim.memory.pool import run_memory

    shown = {m.get("id") for m in view.get("counselor_memory") or []}
    items = await run_memory(store.search, view["client_id"], "counselor", text, ctx.sim.recall_k, MemoryFilter(session_before=session))
    fresh = [it for it in _slim(items) if it.get("id") not in shown]
    return {"current": {"recalled": fresh}}


SPEC = NodeSpec("memory_recall", memory_recall, "counselor", description="counselor memories relevant to the client's words", reads=("client_text",), writes=("recalled",), fold=True)


def salient_quotes(turns: list[dict[str, Any]], n: int = 3) -> list[str]:
    """Up to ``n`` client utterances of five words or more: the most intense emotion
    first, then the longest; returned in the order they were said."""
    cands = [(i, t) for i, t in enumerate(turns) if t.get("speaker") == "client" and len(str(t.get("text", "")).split()) >= 5]
    ranked = sorted(cands, key=lambda it: (-int((it[1].get("emotion") or {}).get("intensity") or 0), -len(it[1]["text"])))[:n]
    return [t["text"].strip()[:300] for _, t in sorted(ranked, key=lambda it: it[0])]


def _sentence(text: str) -> str:
    t = str(text).strip()
    return t if not t or t[-1] in ".!?\"')" else t + "."


def counselor_note(session: int, s: dict[str, Any]) -> str:
    """The counselor's note of a session as one memory: themes, progress, risk, plan
    and homework, the parts of one summary (a progress note), stored and recalled
    together. Each stored item costs embedded Chroma ~0.5 ms of CPU (its log, full-text
    and vector indexes), so one note instead of four items per session cut the
    memory layer's CPU by about half (docs/benchmarks.md, "Issue #17, session 18
    (integrator)"). Facts and the client's salient quotes stay items of their own,
    found again one by one by relevance."""
    themes = ", ".join(s.get("themes") or [])
    parts = [f"Session {session} note:" + (f" themes {themes}." if themes else ""), _sentence(s.get("progress", ""))]
    parts.append(f"Risk (peak {s.get('risk_peak', 'none')}): {_sentence(s.get('risk', ''))}")
    parts.append(f"Plan: {_sentence(s.get('plan', ''))}")
    if str(s.get("homework") or "").strip():
        parts.append(f"Homework set: {_sentence(s['homework'])}")
    return " ".join(p for p in parts if p)


def client_note(session: int, r: dict[str, Any]) -> str:
    """The client's recollection of a session as one memory, in their words: what
    they remember, how they felt after it, their homework (see :func:`counselor_note`)."""
    parts = [f"Session {session}: {_sentence(r.get('remembers', ''))}", f"How I felt after it: {_sentence(r.get('feels', ''))}"]
    if str(r.get("homework") or "").strip():
        parts.append(f"My homework: {_sentence(r['homework'])}")
    return " ".join(parts)


def _mid(course_key: str, role: str, session: int, kind: str, i: int) -> str:
    # Ids from position, not text: a step re-run after a resume overwrites, never duplicates.
    return hashlib.sha1(f"{course_key}|{role}|{session}|{kind}|{i}".encode()).hexdigest()[:24]


async def remember(view: View, ctx: NodeContext) -> dict[str, Any]:
    """System step after a session: write the counselor's notes to counselor memory and
    the client's recollection (and between-session events) to client memory."""
    store = ctx.sim.memory
    if store is None:
        return {"pending": {"memory_written": None}}
    from therasim.memory.pool import run_memory

    session = int(view["session"])
    ck = view["course_key"]
    client_id = view["client_id"]
    summaries = [s for s in view.get("summaries") or [] if s.get("session") == session]
    recollections = [r for r in view.get("recollections") or [] if r.get("session") == session]
    c_items: list[dict[str, Any]] = []
    for s in summaries:
        if s.get("error"):
            continue
        c_items.append({"text": counselor_note(session, s), "kind": "summary"})
        c_items += [{"text": f, "kind": "fact"} for f in s.get("facts") or [] if f.strip()]
    # What the client said, in their words: kept even when a summary is invalid, and
    # found again by relevance when the client returns to a theme.
    c_items += [{"text": f'Client in session {session}: "{q}"', "kind": "fact"} for q in salient_quotes((view.get("last") or {}).get("transcript") or [])]
    cl_items: list[dict[str, Any]] = []
    for r in recollections:
        if r.get("error"):
            continue
        cl_items.append({"text": client_note(session, r), "kind": "summary"})
    cl_items += list((view.get("pending") or {}).get("client_memory_writes") or [])
    written: dict[str, list[str]] = {}
    # One embedding batch for the session's writes of both roles (then one upsert per role).
    vecs = await run_memory(store.embed, [str(it["text"]) for it in (*c_items, *cl_items)]) if c_items or cl_items else None
    for role, items in (("counselor", c_items), ("client", cl_items)):
        counts: dict[str, int] = {}
        for it in items:
            it.setdefault("session", session)
            it["course"] = ck
            i = counts.get(it["kind"], 0)
            counts[it["kind"]] = i + 1
            it["id"] = _mid(ck, role, int(it["session"]), it["kind"], i)
        if not items:
            written[role] = []
            continue
        part = None
        if vecs is not None:
            part, vecs = vecs[: len(items)], vecs[len(items) :]
        # a store with ``aadd`` waits to share an upsert on the loop, holding no memory thread
        aadd = getattr(store, "aadd", None)
        written[role] = await (aadd(client_id, role, items, part) if aadd is not None else run_memory(store.add, client_id, role, items, part))
    return {"pending": {"memory_written": written}}
