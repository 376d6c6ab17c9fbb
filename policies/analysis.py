"""The structured outputs the analyst nodes share, and the rules that check them:
the emotion reading (per taxonomy), the strategy plan (per modality), the risk
assessment, and the risk register as a prompt line. The single-purpose analysts
(nodes/emotion.py, strategy.py, risk.py) and the unified analyst (nodes/unified.py)
build their calls from these, so no node imports another."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationInfo, create_model, model_validator

from therasim.policies.modalities import get_modality
from therasim.policies.risk import CRISIS_CLASSES, RESPONSE_ACTIONS, RISK_LEVELS
from therasim.policies.risk_register import register_notes
from therasim.policies.taxonomies import EmotionTaxonomy, emotion_taxonomy

__all__ = [
    "TEXT_PATTERN_160",
    "CueQuote",
    "EmotionReadingBase",
    "RiskAssessment",
    "StrategyPlanBase",
    "check_not_sticky",
    "emotion_model",
    "plan_model",
    "register_context",
    "repair_secondary",
]

# A free-text field of up to 160 characters as a grammar pattern (nodes/_common.text_field
# explains the character classes).
TEXT_PATTERN_160 = r'^([^ \t\n{}\[\]"\\<>][^{}\[\]"\\<>\n]{0,159})?$'


class EmotionReadingBase(BaseModel):
    taxonomy: ClassVar[EmotionTaxonomy]

    @model_validator(mode="after")
    def _groups(self) -> EmotionReadingBase:
        tax = type(self).taxonomy
        main_g = tax.group_of(self.main)  # type: ignore[attr-defined]
        groups = [tax.group_of(s) for s in self.secondary]  # type: ignore[attr-defined]
        if main_g in groups or len(set(groups)) != len(groups):
            raise ValueError("secondary emotions must come from groups different from the main one and from each other")
        return self


@lru_cache(maxsize=32)
def emotion_model(taxonomy_name: str) -> type[EmotionReadingBase]:
    """The EmotionReading schema for one taxonomy (labels as enums)."""
    tax = emotion_taxonomy(taxonomy_name)
    Label = Literal[tuple(tax.labels)]  # type: ignore[valid-type]
    model = create_model(  # type: ignore[call-overload]
        "EmotionReading",
        __base__=EmotionReadingBase,
        main=(Label, ...),  # type: ignore[arg-type]
        secondary=(list[Label], Field(default_factory=list, max_length=tax.max_secondary)),
        intensity=(int, Field(ge=0, le=10)),
        cause=(str, Field(max_length=160, json_schema_extra={"pattern": TEXT_PATTERN_160})),
        shift=(Literal["rising", "falling", "steady", "new"], ...),  # type: ignore[arg-type]
        trend=(Literal["improving", "worsening", "stable", "mixed"], ...),  # type: ignore[arg-type]
    )
    model.taxonomy = tax
    return model


def repair_secondary(tax: EmotionTaxonomy):
    """Drop secondary labels that share a group with the main one or with each other
    (a rule grammars cannot express); each drop is recorded."""

    def fix(obj: Any) -> tuple[Any, list[str]]:
        if not isinstance(obj, dict) or not isinstance(obj.get("secondary"), list):
            return obj, []
        seen = {tax.group_of(str(obj.get("main")))}
        kept, notes = [], []
        for s in obj["secondary"]:
            g = tax.group_of(str(s))
            if g in seen:
                notes.append(f"dropped secondary {s!r}: group {g!r} already used")
                continue
            seen.add(g)
            kept.append(s)
        return {**obj, "secondary": kept}, notes

    return fix


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


class CueQuote(BaseModel):
    category: Literal["self_harm", "harm_to_others", "abuse", "decompensation"]
    quote: str = Field(max_length=120)


class RiskAssessment(BaseModel):
    level: Literal[RISK_LEVELS]  # type: ignore[valid-type]
    crisis_class: Literal[CRISIS_CLASSES]  # type: ignore[valid-type]
    cues: list[CueQuote] = Field(default_factory=list, max_length=2)
    actions: list[Literal[RESPONSE_ACTIONS]] = Field(default_factory=list, max_length=5)  # type: ignore[valid-type]


def register_context(register: dict[str, Any] | None) -> str:
    """The register as one line for an analyst prompt."""
    notes = register_notes(register)
    return "; ".join(line.lstrip("- ") for line in notes.splitlines()) if notes else "nothing recorded"
