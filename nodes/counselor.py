"""Counselor node: writes the reply from the transcript, its own notes and recalled
memory, the emotion reading, the risk assessment and the plan. It never sees the
client's hidden profile or inner state (its view does not contain them)."""

from __future__ import annotations

from typing import Any

from therasim.context import NodeContext
from therasim.contract import NodeSpec, Slot
from therasim.policies.appraisal import move_labels
from therasim.speech import PROMPT, counselor_messages, revise
from therasim.state import View

__all__ = ["PROMPT", "SPEC", "counselor", "counselor_messages", "revise"]


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
