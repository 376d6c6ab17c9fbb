"""Strategy planner: stage and one strategy from the active modality, with a rationale;
never repeats the previous turn's strategy without a stated reason."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, create_model, model_validator

from therasim.context import NodeContext
from therasim.contract import NodeSpec
from therasim.errors import StructuredOutputError
from therasim.nodes._common import TEXT_PATTERN_160, compact, last_turn
from therasim.policies.modalities import get_modality
from therasim.prompts import Prompt, counselor_side_messages
from therasim.state import View

__all__ = ["PROMPT", "SPEC", "StrategyPlanBase", "check_not_sticky", "plan_model", "strategy_planner"]

PROMPT = Prompt(
    name="strategy_planner",
    system="YOUR ROLE: you plan the counselor's next move; task: planning ({title}, toward the session goals).",
    instruction="Client emotion: {emotion}\nRisk: {risk}\nPrevious strategy: {previous}\nYour plan:",
)


def check_not_sticky(plan: BaseModel, info: ValidationInfo, label: str = "strategy") -> None:
    """Reject a plan that repeats the previous turn's strategy (``info.context``'s
    ``previous_strategy``) without a ``repeat_reason``."""
    prev = (info.context or {}).get("previous_strategy")
    if prev and plan.strategy == prev and not (plan.repeat_reason or "").strip():  # type: ignore[attr-defined]
        raise ValueError(f"{label} {prev!r} repeats the previous turn's strategy; choose another or give repeat_reason")


class StrategyPlanBase(BaseModel):
    @model_validator(mode="after")
    def _no_sticky(self, info: ValidationInfo) -> StrategyPlanBase:
        check_not_sticky(self, info)
        return self


@lru_cache(maxsize=32)
def plan_model(modality_name: str) -> type[StrategyPlanBase]:
    m = get_modality(modality_name)
    return create_model(  # type: ignore[call-overload]
        "StrategyPlan",
        __base__=StrategyPlanBase,
        stage=(Literal[tuple(m.stage_names)], ...),  # type: ignore[valid-type,arg-type]
        strategy=(Literal[tuple(m.strategies)], ...),  # type: ignore[valid-type,arg-type]
        rationale=(str, Field(max_length=160, json_schema_extra={"pattern": TEXT_PATTERN_160})),
        repeat_reason=(str | None, Field(None, max_length=200)),
    )


async def strategy_planner(view: View, ctx: NodeContext) -> dict[str, Any]:
    modality = ctx.sim.modality(view.get("modality"))
    prev_plan = (last_turn(view["transcript"], "counselor") or {}).get("strategy") or {}
    previous = prev_plan.get("strategy")
    cur = view["current"]
    emotion = cur.get("emotion") or {}
    task = PROMPT.render_task(
        title=modality.title,
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
