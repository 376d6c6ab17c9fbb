"""Counselor node: writes the reply from the transcript, its own notes and recalled
memory, the emotion reading, the risk assessment and the plan. It never sees the
client's hidden profile or inner state (its view does not contain them)."""

from __future__ import annotations

from typing import Any

from therasim.context import NodeContext
from therasim.nodes._common import compact, layout, memory_block
from therasim.prompts import Prompt
from therasim.state import View

__all__ = ["PROMPT", "counselor", "counselor_messages", "revise"]

PROMPT = Prompt(
    name="counselor",
    system=(
        "You are a warm, skilled counselor practising {title}. {description}\n"
        "CLIENT INTAKE FORM: {intake}\n"
        "SESSION {session} GOALS: {goals}\n"
        "YOUR NOTES AND MEMORIES FROM EARLIER SESSIONS:\n{memory}\n"
        "{notes}"
        "Reply in 1-3 sentences, speak to the client directly, one question at most."
    ),
    instruction=(
        "Analyst notes for this turn: emotion {emotion}; risk {risk}; plan {plan}.\n{recalled}{directive}\n"
        "Write your next reply to the client."
    ),
)


def counselor_messages(view: View, ctx: NodeContext, extra: str = "") -> list[Any]:
    modality = ctx.sim.modality(view.get("modality"))
    cur = view["current"]
    intake = view.get("intake") or {}
    notes = view.get("counselor_notes") or ""
    risk_notes = view.get("risk_notes") or ""
    system = PROMPT.render_system(
        title=modality.title,
        description=modality.description,
        intake=compact(intake),
        session=view.get("session", 1),
        goals="; ".join(view.get("goals") or []) or "(none set)",
        memory=memory_block(view.get("counselor_memory")),
        notes=(f"PLAN FROM LAST SESSION: {notes}\n" if notes else "") + (f"RISK REGISTER AT SESSION START (your clinical record):\n{risk_notes}\n" if risk_notes else ""),
    )
    emotion = cur.get("emotion") or {}
    plan = cur.get("plan") or {}
    risk = cur.get("risk") or {}
    instruction = PROMPT.render_instruction(
        emotion=compact({k: emotion[k] for k in ("main", "intensity", "cause") if k in emotion}) or "n/a",
        risk=risk.get("level", "n/a"),
        plan=compact({k: plan[k] for k in ("stage", "strategy", "rationale") if k in plan}) or "n/a",
        directive=cur.get("directive") or "",
        recalled=f"Related notes from earlier sessions:\n{memory_block(cur['recalled'])}\n" if cur.get("recalled") else "",
    )
    transcript = [*list(view["transcript"]), {"speaker": "client", "text": cur.get("client_text", "")}]
    msgs = layout(system, transcript, instruction + extra, me="counselor")
    return msgs


async def counselor(view: View, ctx: NodeContext) -> dict[str, Any]:
    draft = await ctx.text("counselor", counselor_messages(view, ctx))
    return {"current": {"draft": draft, "counselor_text": draft, "calls": ctx.calls_update()}}


async def revise(view: View, ctx: NodeContext, draft: str, feedback: str) -> str:
    """Rewrite an unsafe draft with the reviewer's feedback."""
    extra = f"\nYour previous draft was: \"{draft}\"\nA safety reviewer said: {feedback}\nRewrite it to fix this."
    return await ctx.text("counselor", counselor_messages(view, ctx, extra))
