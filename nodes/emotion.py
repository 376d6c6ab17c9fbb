"""Emotion tracker: main emotion plus up to two secondary ones from the policy's taxonomy."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, create_model, model_validator

from therasim.context import NodeContext
from therasim.contract import NodeSpec
from therasim.errors import StructuredOutputError
from therasim.nodes._common import TEXT_PATTERN_160, compact, last_turn
from therasim.policies.taxonomies import EmotionTaxonomy, emotion_taxonomy
from therasim.prompts import Prompt, counselor_side_messages
from therasim.state import View

__all__ = ["PROMPT", "SPEC", "EmotionReadingBase", "emotion_model", "emotion_tracker"]

PROMPT = Prompt(
    name="emotion_tracker",
    system="YOUR ROLE: you are an emotion analyst; task: emotion reading ({taxonomy} labels).",
    instruction="Previous reading: {previous}\nThe client's emotion now, after their last message:",
)


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


async def emotion_tracker(view: View, ctx: NodeContext) -> dict[str, Any]:
    tax = ctx.sim.taxonomy
    schema = emotion_model(tax.name)
    prev_turn = last_turn(view["transcript"], "client")
    previous = (prev_turn or {}).get("emotion") or "none yet"
    task = PROMPT.render_task(taxonomy=tax.name, previous=compact(previous) if isinstance(previous, dict) else previous)
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
