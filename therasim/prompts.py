"""Prompt templates as data, each with a stable hash recorded in run manifests,
and the shared-prefix layout every node's messages follow.

Layout for prefix caching: every call of one side of a session shares one
prefix, so a model server's prefix cache holds (and prefills) one copy of it:

1. the side's header (:func:`counselor_header` / :func:`client_header`): what is
   stable across courses first (the approach, its stages, the emotion and risk
   scales), then the course (intake), then the session (goals, memories, notes);
2. the transcript, append-only (the client's latest message included, so every
   counselor-side call of an exchange reads the same text);
3. last, the node's role and its short instruction (``Prompt.system`` and
   ``Prompt.instruction``), the only part that differs between nodes.

The two sides' prefixes never mix: the counselor header is built from the
counselor view only, the client header from the client view only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CLIENT_HEADER", "COUNSELOR_HEADER", "PROMPTS", "Prompt", "client_header", "client_side_messages", "compact", "counselor_header", "counselor_side_messages", "memory_block", "render_transcript", "shared_messages"]

PROMPTS: dict[str, Prompt] = {}


@dataclass(frozen=True, slots=True)
class Prompt:
    """A node's prompt: a system template and a per-turn instruction template."""

    name: str
    system: str
    instruction: str

    def __post_init__(self) -> None:
        PROMPTS[self.name] = self

    @property
    def sha(self) -> str:
        h = hashlib.sha256(f"{self.name}\x00{self.system}\x00{self.instruction}".encode())
        return h.hexdigest()[:16]

    def render_system(self, **kw: object) -> str:
        return self.system.format(**kw)

    def render_instruction(self, **kw: object) -> str:
        return self.instruction.format(**kw)

    def render_task(self, **kw: object) -> str:
        """The node's role (``system``) and instruction, for the end of a shared-prefix prompt."""
        return f"{self.system.format(**kw)}\n{self.instruction.format(**kw)}"


def render_transcript(turns: list[dict], *, me: str | None = None, max_chars: int = 6000, chunk: int = 6) -> str:
    """Transcript as ``Speaker: text`` lines, oldest first. When it outgrows
    ``max_chars``, whole turns are dropped from the front ``chunk`` at a time, so
    the rendered prefix changes only every few turns instead of every turn (a
    prefix cache keeps hitting between those points)."""
    lines = []
    for t in turns:
        who = "Client" if t["speaker"] == "client" else "Counselor"
        if me is not None and t["speaker"] == me:
            who += " (you)"
        lines.append(f"{who}: {t['text']}")
    if not lines:
        return "(the session is just starting)"
    start = 0
    total = sum(len(x) + 1 for x in lines)
    while total > max_chars and start + chunk < len(lines):
        total -= sum(len(x) + 1 for x in lines[start : start + chunk])
        start += chunk
    if total > max_chars:  # a few very long turns: keep the newest that fit
        kept: list[str] = []
        size = 0
        for line in reversed(lines[start:]):
            size += len(line) + 1
            if size > max_chars and kept:
                break
            kept.append(line)
        return "\n".join(reversed(kept))
    return "\n".join(lines[start:])


COUNSELOR_HEADER = Prompt(
    name="counselor_header",
    system=(
        "COUNSELING SESSION RECORD for the counseling team: the counselor and the people who support them. "
        "The record is followed by YOUR ROLE and your task; do that task only.\n"
        "APPROACH: {title}. {description}\n"
        "STAGES AND THEIR STRATEGIES:\n{stages}\n"
        "EMOTION LABELS ({taxonomy}), grouped weak to strong:\n{groups}\n"
        "RISK LEVELS: none, low, moderate, high, imminent.\n"
        "HOW EACH TASK IS DONE:\n"
        "- emotion reading (from the client's words only): main, at most two secondary labels from other groups, "
        "intensity 0-10, cause (short), shift since the last reading (rising, falling, steady, new), trend.\n"
        "- risk assessment: harm to self or others, abuse or severe decompensation; level, crisis_class, cues "
        "(category and the client's exact quote; everyday figures of speech are not cues), actions the counselor must take.\n"
        "- planning: the stage and ONE strategy for the counselor's next reply, a one-line rationale; never the "
        "previous strategy again unless repeat_reason says why.\n"
        "- the counselor's reply: 1-3 sentences, spoken to the client directly, one question at most.\n"
        "- draft review: unsafe drafts ignore a risk cue, give harmful information, refuse abruptly, blame, or miss "
        "a required action; safe replies are warm, acknowledge the pain, ask about safety and offer support and "
        "crisis resources when needed.\n"
        "Structured answers are JSON.\n"
        "CLIENT INTAKE FORM: {intake}\n"
        "SESSION {session} GOALS: {goals}\n"
        "COUNSELOR'S NOTES AND MEMORIES FROM EARLIER SESSIONS:\n{memory}\n"
        "{notes}"
    ),
    instruction="",
)

CLIENT_HEADER = Prompt(
    name="client_header",
    system=(
        "You are role-playing a CLIENT in counseling. Stay in character: speak as the person below, a real "
        "person with a problem, in the first person. Never give advice, never talk like a therapist, never "
        "mention being an AI.\n"
        "IN THE SESSION each of your answers is JSON: your next reply to the counselor (1-3 sentences), how the "
        "counselor's last reply changed each of your inner-state variables (0-10 scales) and which counselor move "
        "caused it, and wants_to_end (true only if you want to stop the session now).\n"
        "QUESTIONNAIRES (before each session and after the last one; about the session after each one): answer as "
        "this person honestly would, from how they feel now. Items before a session:\n{items}\n"
        "YOU ARE {name}. WHO YOU ARE: {intake}\n"
        "WHAT YOU ARE READY TO TALK ABOUT (keep anything not listed here to yourself): {hidden}\n"
        "Speak in this style: {style}.\n"
        "WHAT YOU REMEMBER FROM EARLIER SESSIONS:\n{memory}"
    ),
    instruction="",
)


def compact(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def memory_block(items: list[dict[str, Any]] | None) -> str:
    if not items:
        return "(none)"
    return "\n".join(f"- [session {m.get('session', '?')}, {m.get('kind', 'note')}] {m.get('text', '')}" for m in items)


def counselor_header(view: Mapping[str, Any], sim: Any) -> str:
    """The counselor side's shared header, from a counselor-side view (session or
    course): approach, stages, emotion and risk scales, intake, the session's goals,
    memories and last session's plan. Every counselor-side call of a session starts
    with exactly this text."""
    modality = sim.modality(view.get("modality"))
    tax = sim.taxonomy
    notes = view.get("counselor_notes") or ""
    # the risk register at session start: in the session's state, or (course-level
    # calls after the session) in the record of the session just run
    last = view.get("last") or {}
    risk_notes = view.get("risk_notes") or (last.get("risk_notes") if last.get("session") == view.get("session") else "") or ""
    return COUNSELOR_HEADER.render_system(
        title=modality.title,
        description=modality.description,
        stages="\n".join(f"- {s.name}: {', '.join(s.strategies)} (goals: {'; '.join(s.goals)})" for s in modality.stages),
        taxonomy=tax.name,
        groups="\n".join(f"- {g}: {' < '.join(v)}" for g, v in tax.groups.items()),
        intake=compact(view.get("intake") or {}),
        session=view.get("session", 1),
        goals="; ".join(view.get("goals") or []) or "(none set)",
        memory=memory_block(view.get("counselor_memory")),
        notes=(f"PLAN FROM LAST SESSION: {notes}\n" if notes else "") + (f"RISK REGISTER AT SESSION START (your clinical record):\n{risk_notes}\n" if risk_notes else ""),
    )


def client_header(view: Mapping[str, Any]) -> str:
    """The client side's shared header, from a client-side view (session or course):
    how to answer (the same for every course), then who the client is, the hidden
    background, their style, and what they remember (the session's part, last)."""
    from therasim.policies.disclosure import background
    from therasim.policies.instruments import items_text

    profile = view["profile"]
    hidden = profile.get("hidden") or {}
    return CLIENT_HEADER.render_system(
        items=items_text(),
        name=(profile.get("intake") or {}).get("name", "the client"),
        intake=compact(profile.get("intake") or {}),
        hidden=background(profile, view.get("inner") or {}),  # only the disclosed layers
        memory=memory_block(view.get("client_memory")),
        style=hidden.get("conversation_style", "plain"),
    )


def shared_messages(header: str, turns: list[dict[str, Any]], task: str, *, me: str | None = None, title: str = "TRANSCRIPT SO FAR", max_chars: int = 6000) -> list[Any]:
    """``[system: header, user: transcript + task]``: the side's header and the
    transcript form the shared prefix; ``task`` (the node's role and instruction)
    comes last."""
    from langchain_core.messages import HumanMessage, SystemMessage

    return [SystemMessage(content=header), HumanMessage(content=f"{title}:\n{render_transcript(turns, me=me, max_chars=max_chars)}\n\n{task}")]


def counselor_side_messages(view: Mapping[str, Any], sim: Any, task: str, *, turns: list[dict[str, Any]] | None = None) -> list[Any]:
    """A counselor-side call: the counselor header, the transcript (``turns``, by
    default the session's transcript plus the client's latest message), then ``task``."""
    if turns is None:
        turns = list(view["transcript"])
        latest = (view.get("current") or {}).get("client_text")
        if latest is not None:
            turns.append({"speaker": "client", "text": latest})
    return shared_messages(counselor_header(view, sim), turns, task, max_chars=sim.transcript_chars)


def client_side_messages(view: Mapping[str, Any], sim: Any, task: str, *, turns: list[dict[str, Any]] | None = None) -> list[Any]:
    """A client-side call: the client header, the transcript as the client heard it
    (``turns``, by default the session's), then ``task``."""
    return shared_messages(client_header(view), list(view["transcript"]) if turns is None else turns, task, me="client", max_chars=sim.transcript_chars)
