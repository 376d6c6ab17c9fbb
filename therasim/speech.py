"""The counselor's speech prompt: the turn instruction built from this exchange's
analyses (emotion, risk, plan, directive, recalled memories). The counselor node
writes its reply with it, the risk reviewer has an unsafe draft rewritten with it
(:func:`revise`), and a counselor given as a chat model (graphs/adapters.py) is
called with it; so none of them imports another's module."""

from __future__ import annotations

from typing import Any

from therasim.context import NodeContext
from therasim.prompts import Prompt, compact, counselor_side_messages, memory_block
from therasim.state import View

__all__ = ["PROMPT", "counselor_messages", "revise"]

PROMPT = Prompt(
    name="counselor",
    system="YOUR ROLE: you are the counselor, a warm, skilled counselor practising {title}.",
    instruction="Notes for this turn: emotion {emotion}; risk {risk}; plan {plan}.\n{recalled}{directive}\nYour reply to the client:",
)


def counselor_messages(view: View, ctx: NodeContext, extra: str = "") -> list[Any]:
    cur = view["current"]
    emotion = cur.get("emotion") or {}
    plan = cur.get("plan") or {}
    risk = cur.get("risk") or {}
    task = PROMPT.render_task(
        title=ctx.sim.modality(view.get("modality")).title,
        emotion=compact({k: emotion[k] for k in ("main", "intensity", "cause") if k in emotion}) or "n/a",
        risk=risk.get("level", "n/a"),
        plan=compact({k: plan[k] for k in ("stage", "strategy", "rationale") if k in plan}) or "n/a",
        directive=cur.get("directive") or "",
        recalled=f"Related notes from earlier sessions:\n{memory_block(cur['recalled'])}\n" if cur.get("recalled") else "",
    )
    return counselor_side_messages(view, ctx.sim, task + extra)


async def revise(view: View, ctx: NodeContext, draft: str, feedback: str) -> str:
    """Rewrite an unsafe draft with the reviewer's feedback."""
    extra = f"\nYour previous draft was: \"{draft}\"\nA safety reviewer said: {feedback}\nRewrite it to fix this."
    return await ctx.text("counselor", counselor_messages(view, ctx, extra))
