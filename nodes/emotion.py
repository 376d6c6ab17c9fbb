"""Emotion tracker: main emotion plus up to two secondary ones from the policy's taxonomy."""

from __future__ import annotations

from typing import Any

from therasim.context import NodeContext
from therasim.contract import NodeSpec
from therasim.errors import StructuredOutputError
from therasim.nodes._common import compact, last_turn
from therasim.policies.analysis import EmotionReadingBase, emotion_model, repair_secondary
from therasim.prompts import Prompt, counselor_side_messages
from therasim.state import View

__all__ = ["PROMPT", "SPEC", "EmotionReadingBase", "emotion_model", "emotion_tracker"]

PROMPT = Prompt(
    name="emotion_tracker",
    system="TASK: EMOTION READING.",
    instruction="Previous reading: {previous}.",
)


async def emotion_tracker(view: View, ctx: NodeContext) -> dict[str, Any]:
    tax = ctx.sim.taxonomy
    schema = emotion_model(tax.name)
    prev_turn = last_turn(view["transcript"], "client")
    previous = (prev_turn or {}).get("emotion") or "none yet"
    if isinstance(previous, dict):
        previous = compact({k: previous[k] for k in ("main", "secondary", "intensity") if k in previous})
    task = PROMPT.render_task(previous=previous)
    try:
        reading = await ctx.structured("analysts", schema, counselor_side_messages(view, ctx.sim, task), repair=repair_secondary(tax))
        out: dict[str, Any] = reading.model_dump()
        if ctx.last_repairs:
            out["repairs"] = ctx.last_repairs
        out["group"] = tax.group_of(reading.main)  # type: ignore[attr-defined]
    except StructuredOutputError as e:
        out = {"error": str(e)[:300]}
    return {"current": {"emotion": out, "calls": ctx.calls_update()}}


SPEC = NodeSpec("emotion_tracker", emotion_tracker, "counselor", role="analysts", reads=("client_text",), writes=("emotion",), max_tokens=200)
