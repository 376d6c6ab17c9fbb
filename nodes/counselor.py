"""Counselor node: writes the reply from the transcript, its own notes and recalled
memory, the emotion reading, the risk assessment and the plan. It never sees the
client's hidden profile or inner state (its view does not contain them)."""

from __future__ import annotations

from typing import Any

from therasim.context import NodeContext
from therasim.contract import NodeSpec, Slot
from therasim.nodes._common import compact, memory_block
from therasim.policies.appraisal import move_labels
from therasim.prompts import Prompt, counselor_side_messages
from therasim.state import View

__all__ = ["PROMPT", "SPEC", "counselor", "counselor_messages", "revise"]

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


async def counselor(view: View, ctx: NodeContext) -> dict[str, Any]:
    draft = await ctx.text("counselor", counselor_messages(view, ctx))
    out: dict[str, Any] = {"draft": draft, "counselor_text": draft, "calls": ctx.calls_update()}
    labels = move_labels(view["current"])
    if labels:
        out["move_labels"] = labels
    return {"current": out}


# The analyst labels of this exchange that the client's appraisal of the reply may read
# (the planned strategy, the risk reading of the client's words): policies/appraisal.py.
MOVE_LABELS = Slot("move_labels", frozenset({"client", "counselor"}), "counselor", none_if_empty=True)


SPEC = NodeSpec(
    "counselor",
    counselor,
    "counselor",
    role="counselor",
    reads=("client_text", "emotion", "risk", "plan", "directive", "recalled"),
    writes=("draft", "counselor_text", MOVE_LABELS),
    speech=True,
    max_tokens=120,
)


async def revise(view: View, ctx: NodeContext, draft: str, feedback: str) -> str:
    """Rewrite an unsafe draft with the reviewer's feedback."""
    extra = f"\nYour previous draft was: \"{draft}\"\nA safety reviewer said: {feedback}\nRewrite it to fix this."
    return await ctx.text("counselor", counselor_messages(view, ctx, extra))
