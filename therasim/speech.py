"""The counselor's speech prompt: the turn instruction built from this exchange's
analyses (emotion, risk, plan, directive; the recalled memories are in the record). The counselor node
writes its reply with it, the risk reviewer has an unsafe draft rewritten with it
(:func:`revise`), and a counselor given as a chat model (graphs/adapters.py) is
called with it; so none of them imports another's module."""

from __future__ import annotations

from typing import Any

from therasim.context import NodeContext
from therasim.prompts import Prompt, counselor_side_messages, risk_note
from therasim.state import View

__all__ = ["PROMPT", "counselor_messages", "revise"]

PROMPT = Prompt(
    name="counselor",
    system="TASK: REPLY.",
    instruction="Notes for this turn: emotion {emotion}; plan {plan}; {risk}{extra}\nYour reply to the client:",
)


def _emotion_note(emotion: dict[str, Any]) -> str:
    if "main" not in emotion:
        return "n/a"
    return f"{emotion['main']} {emotion.get('intensity', '?')}/10" + (f" ({emotion['cause']})" if emotion.get("cause") else "")


def _plan_note(plan: dict[str, Any]) -> str:
    if "strategy" not in plan:
        return "n/a"
    return f"{plan.get('stage', '?')} stage, {plan['strategy']}" + (f" ({plan['rationale']})" if plan.get("rationale") else "")


def counselor_messages(view: View, ctx: NodeContext, extra: str = "") -> list[Any]:
    cur = view["current"]
    emotion = cur.get("emotion") or {}
    plan = cur.get("plan") or {}
    risk = cur.get("risk") or {}
    # the notes recalled for this turn are in the record (prompts.with_recalled_notes), the
    # risk protocol's steps in the header: the task names the level and its steps
    task = PROMPT.render_task(
        emotion=_emotion_note(emotion),
        plan=_plan_note(plan),
        risk=risk_note(cur.get("directive") or "", risk.get("level", "n/a"), ctx.sim.risk_protocol),
        extra=extra,
    )
    return counselor_side_messages(view, ctx.sim, task)


async def revise(view: View, ctx: NodeContext, draft: str, feedback: str) -> str:
    """Rewrite an unsafe draft with the reviewer's feedback."""
    extra = f"\nYour previous draft was: \"{draft}\"\nA safety reviewer said: {feedback}\nRewrite it to fix this."
    return await ctx.text("counselor", counselor_messages(view, ctx, extra))
