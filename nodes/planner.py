"""Course planner: between sessions, reviews efficacy from the outcome measures,
the session summaries and risk; keeps or switches modality with a reason; sets
goals for the next session."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from therasim.context import NodeContext
from therasim.errors import StructuredOutputError
from therasim.nodes._common import compact, text_field, wordy
from therasim.policies.modalities import MODALITIES
from therasim.prompts import Prompt, counselor_side_messages
from therasim.state import View

__all__ = ["CoursePlan", "course_planner", "measured_trend", "plan_model"]


class CoursePlan(BaseModel):
    """The planner's decision. :func:`plan_model` narrows ``modality`` to the
    registered modalities, so grammar backends can only pick a known one."""

    efficacy: Literal["improving", "no_change", "worsening", "unclear"]
    decision: Literal["keep", "switch"]
    modality: str = Field(description="modality for the next session")
    reason: Annotated[str, AfterValidator(wordy)] = text_field(200, min_len=3)
    goals: list[Annotated[str, AfterValidator(wordy), text_field(80, min_len=3)]] = Field(min_length=1, max_length=3, description="goals for the next session")

    @field_validator("modality")
    @classmethod
    def _known(cls, v: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("modalities") or sorted(MODALITIES)
        v = v.strip().lower().replace("-", "_").replace(" ", "_")
        if v not in known:
            raise ValueError(f"modality must be one of {known}")
        return v

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> CoursePlan:
        current = (info.context or {}).get("current")
        if current and self.decision == "keep" and self.modality != current:
            raise ValueError(f"decision 'keep' must keep modality {current!r}; say 'switch' to change it")
        if current and self.decision == "switch" and self.modality == current:
            raise ValueError(f"decision 'switch' needs a modality other than {current!r}")
        return self


_MODELS: dict[tuple[str, ...], type[CoursePlan]] = {}


def plan_model(known: list[str]) -> type[CoursePlan]:
    """CoursePlan with ``modality`` as an enum of ``known`` (cached per set)."""
    key = tuple(sorted(known))
    if key not in _MODELS:
        _MODELS[key] = create_model("CoursePlan", __base__=CoursePlan, modality=(Literal[key], Field(description="modality for the next session")))  # type: ignore[call-overload,arg-type]
    return _MODELS[key]


PROMPT = Prompt(
    name="course_planner",
    system="TASK: COURSE PLAN, as the clinical supervisor: plan session {next_session}.",
    instruction="Current modality: {modality}. Outcome measures so far: {measures}. Measured trend: {trend}. Session notes: {summaries}. Your plan as JSON.",
)


def _repair_decision(current: str) -> Any:
    """A decision that contradicts the modality chosen is made to agree with the
    modality (the explicit choice); the change is recorded as a repair."""

    def repair(obj: Any) -> tuple[Any, list[str]]:
        if not isinstance(obj, dict) or not isinstance(obj.get("modality"), str):
            return obj, []
        same = obj["modality"].strip().lower() == current
        want = "keep" if same else "switch"
        if obj.get("decision") in ("keep", "switch") and obj["decision"] != want:
            return {**obj, "decision": want}, [f"decision {obj['decision']!r} contradicted modality {obj['modality']!r}; set to {want!r}"]
        return obj, []

    return repair


def measured_trend(measures: list[dict[str, Any]]) -> dict[str, Any]:
    """Change in PHQ-9 and GAD-7 totals from the first to the latest scored measure
    (a change of 5+ points counts as reliable, as is usual for PHQ-9)."""
    scored = [m for m in measures if m.get("phq9")]
    if len(scored) < 2:
        return {"label": "unclear", "phq9_change": None, "gad7_change": None}
    d_phq = scored[-1]["phq9"]["total"] - scored[0]["phq9"]["total"]
    d_gad = scored[-1]["gad7"]["total"] - scored[0]["gad7"]["total"]
    worst = max(d_phq, d_gad)
    best = min(d_phq, d_gad)
    label = "worsening" if worst >= 5 else "improving" if best <= -5 else "no_change"
    return {"label": label, "phq9_change": d_phq, "gad7_change": d_gad}


async def course_planner(view: View, ctx: NodeContext) -> dict[str, Any]:
    """Counselor side: plan the next session (skipped after the last one)."""
    session = int(view["session"])
    if session >= int(view.get("sessions_planned") or 0):
        return {}
    modality = view.get("modality") or ctx.course.modality
    measures = [m for m in (view.get("measures") or [])]
    trend = measured_trend(measures)
    short_measures = [{"when": m["when"], "phq9": (m.get("phq9") or {}).get("total"), "gad7": (m.get("gad7") or {}).get("total"), "self_harm_item": m.get("self_harm_item")} for m in measures]
    summaries = [{k: s.get(k) for k in ("session", "themes", "progress", "risk", "plan") if s.get(k) is not None} for s in (view.get("summaries") or [])][-3:]
    known = sorted(MODALITIES)
    task = PROMPT.render_task(modality=modality, measures=compact(short_measures), trend=compact(trend), summaries=compact(summaries), next_session=session + 1)
    # The session's prefix (counselor header + the last session's transcript) comes first: cached.
    msgs = counselor_side_messages(view, ctx.sim, task, turns=list((view.get("last") or {}).get("transcript") or []))
    rec: dict[str, Any] = {"after_session": session, "for_session": session + 1, "measured_trend": trend, "previous_modality": modality}
    out: dict[str, Any] = {}
    try:
        plan = await ctx.structured("analysts", plan_model(known), msgs, max_tokens=220, context={"modalities": known, "current": modality}, repair=_repair_decision(modality))
        rec.update(plan.model_dump())
        out.update(modality=plan.modality, goals=list(plan.goals))
    except StructuredOutputError as e:
        # Keep the course going on the current modality and goals, and say so.
        rec.update(error=f"{e.schema_name} invalid after {e.attempts} attempts", decision="keep", modality=modality, reason="planner output invalid; nothing changed")
    rec["calls"] = ctx.calls
    out["plans"] = [rec]
    return out
