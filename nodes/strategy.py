"""Strategy planner: stage and one strategy from the active modality, with a rationale;
never repeats the previous turn's strategy without a stated reason."""

from __future__ import annotations

from typing import Any

from therasim.context import NodeContext
from therasim.contract import NodeSpec
from therasim.errors import StructuredOutputError
from therasim.nodes._common import compact, last_turn
from therasim.policies.analysis import StrategyPlanBase, check_not_sticky, plan_model
from therasim.prompts import Prompt, counselor_side_messages
from therasim.state import View

__all__ = ["PROMPT", "SPEC", "StrategyPlanBase", "check_not_sticky", "plan_model", "strategy_planner"]

PROMPT = Prompt(
    name="strategy_planner",
    system="TASK: PLANNING.",
    instruction="Client emotion: {emotion}. Risk: {risk}. Previous strategy: {previous}.",
)


async def strategy_planner(view: View, ctx: NodeContext) -> dict[str, Any]:
    modality = ctx.sim.modality(view.get("modality"))
    prev_plan = (last_turn(view["transcript"], "counselor") or {}).get("strategy") or {}
    previous = prev_plan.get("strategy")
    cur = view["current"]
    emotion = cur.get("emotion") or {}
    task = PROMPT.render_task(
        emotion=compact({k: emotion.get(k) for k in ("main", "intensity", "trend") if k in emotion}) or "unknown",
        risk=(cur.get("risk") or {}).get("level", "unknown"),
        previous=previous or "none",
    )
    try:
        plan = await ctx.structured("analysts", plan_model(modality.name), counselor_side_messages(view, ctx.sim, task), context={"previous_strategy": previous})
        out: dict[str, Any] = plan.model_dump()
        out["repeated"] = out["strategy"] == previous
    except StructuredOutputError as e:
        out = {"error": str(e)[:300]}
    return {"current": {"plan": out, "calls": ctx.calls_update()}}


SPEC = NodeSpec("strategy_planner", strategy_planner, "counselor", role="analysts", reads=("emotion", "risk"), writes=("plan",), max_tokens=200)
