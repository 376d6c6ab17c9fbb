"""Unified analyst: emotion, risk and strategy in one structured call per turn (for speed)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationInfo, create_model, model_validator

from therasim.context import NodeContext
from therasim.contract import NodeSpec
from therasim.errors import StructuredOutputError
from therasim.nodes._common import last_turn
from therasim.policies.analysis import (
    RiskAssessment,
    check_not_sticky,
    emotion_model,
    plan_model,
    repair_secondary,
)
from therasim.policies.risk_assessment import scan_cues, with_register
from therasim.prompts import Prompt, counselor_side_messages, register_line
from therasim.state import View

__all__ = ["PROMPT", "SPEC", "unified_analyst"]

PROMPT = Prompt(
    name="unified_analyst",
    system="TASK: SESSION ANALYSIS.",
    instruction="Keyword screen: {cues}. Risk register: {register}. Previous strategy: {previous}.",
)


class _UnifiedBase(BaseModel):
    @model_validator(mode="after")
    def _no_sticky(self, info: ValidationInfo) -> _UnifiedBase:
        check_not_sticky(self.plan, info, label="plan.strategy")  # type: ignore[attr-defined]
        return self


@lru_cache(maxsize=32)
def unified_model(taxonomy: str, modality: str) -> type[BaseModel]:
    return create_model(
        "TurnAnalysis",
        __base__=_UnifiedBase,
        emotion=(emotion_model(taxonomy), ...),
        risk=(RiskAssessment, ...),
        plan=(plan_model(modality), ...),
    )


async def unified_analyst(view: View, ctx: NodeContext) -> dict[str, Any]:
    tax = ctx.sim.taxonomy
    modality = ctx.sim.modality(view.get("modality"))
    latest = view["current"].get("client_text", "")
    cues = await scan_cues(latest)
    previous = ((last_turn(view["transcript"], "counselor") or {}).get("strategy") or {}).get("strategy")
    task = PROMPT.render_task(
        cues=", ".join(f"{c['category']}: \"{c['span']}\"" for c in cues) or "nothing",
        register=register_line(view),
        previous=previous or "none",
    )
    schema = unified_model(tax.name, modality.name)
    try:
        fix = repair_secondary(tax)

        def repair(obj: Any) -> tuple[Any, list[str]]:
            if isinstance(obj, dict) and isinstance(obj.get("emotion"), dict):
                emo, notes = fix(obj["emotion"])
                return {**obj, "emotion": emo}, notes
            return obj, []

        a = await ctx.structured("analysts", schema, counselor_side_messages(view, ctx.sim, task), context={"previous_strategy": previous}, repair=repair)
        emotion: dict[str, Any] = a.emotion.model_dump()  # type: ignore[attr-defined]
        emotion["group"] = tax.group_of(emotion["main"])
        llm_risk: dict[str, Any] = a.risk.model_dump()  # type: ignore[attr-defined]
        plan: dict[str, Any] = a.plan.model_dump()  # type: ignore[attr-defined]
        plan["repeated"] = plan["strategy"] == previous
    except StructuredOutputError as e:
        err = str(e)[:300]
        emotion, llm_risk, plan = {"error": err}, {"error": err}, {"error": err}
    risk, update = with_register(view, ctx, llm_risk, cues, latest)
    return {**update, "current": {"emotion": emotion, "risk": risk, "plan": plan, "directive": risk["directive"], "calls": ctx.calls_update()}}


SPEC = NodeSpec("analyst", unified_analyst, "counselor", role="analysts", reads=("client_text",), writes=("emotion", "risk", "plan", "directive"), max_tokens=360)
