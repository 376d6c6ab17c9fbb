"""Therapy modalities as data: stages, each with goals and the strategies allowed there.

Extend without touching node code: :func:`register_modality` or
:func:`load_modalities` from a YAML file with the same shape.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from therasim._internal.registry import Registry
from therasim.errors import UnknownNameError

__all__ = ["MODALITIES", "Modality", "Stage", "get_modality", "load_modalities", "register_modality"]


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    goals: tuple[str, ...]
    strategies: tuple[str, ...] = Field(min_length=1)


class Modality(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    title: str
    description: str
    stages: tuple[Stage, ...] = Field(min_length=1)
    homework: bool = False

    @property
    def strategies(self) -> list[str]:
        seen: list[str] = []
        for st in self.stages:
            for s in st.strategies:
                if s not in seen:
                    seen.append(s)
        return seen

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise UnknownNameError(f"modality {self.name!r} has no stage {name!r}; stages: {self.stage_names}")


def _m(name: str, title: str, description: str, stages: list[tuple[str, list[str], list[str]]], homework: bool = False) -> Modality:
    return Modality(
        name=name,
        title=title,
        description=description,
        homework=homework,
        stages=tuple(Stage(name=n, goals=tuple(g), strategies=tuple(s)) for n, g, s in stages),
    )


MODALITIES: Registry[Modality] = Registry("modality", hint="register your own with register_modality", items={
    "cbt": _m(
        "cbt",
        "Cognitive behavioural therapy",
        "Links situations, automatic thoughts, feelings and behaviour; tests unhelpful thoughts; sets homework.",
        [
            ("exploration", ["build alliance", "gather the presenting problem", "identify situations and automatic thoughts"],
             ["open_question", "reflection_of_feelings", "restatement", "psychoeducation"]),
            ("insight", ["identify cognitive distortions", "link thoughts, feelings and behaviour", "case formulation"],
             ["socratic_question", "identify_distortion", "reflection_of_feelings", "summarise"]),
            ("action", ["cognitive restructuring", "behavioural experiments", "homework and relapse prevention"],
             ["cognitive_restructuring", "behavioural_activation", "set_homework", "affirmation_and_reassurance"]),
        ],
        homework=True,
    ),
    "mi": _m(
        "mi",
        "Motivational interviewing",
        "Collaborative, evokes the client's own reasons for change; resolves ambivalence (MITI 4.2 skills).",
        [
            ("engaging", ["build partnership", "understand the client's view"], ["open_question", "simple_reflection", "affirmation"]),
            ("focusing", ["agree a direction", "clarify the target behaviour"], ["open_question", "complex_reflection", "summarise"]),
            ("evoking", ["elicit change talk", "explore ambivalence"], ["evoke_change_talk", "complex_reflection", "develop_discrepancy", "affirmation"]),
            ("planning", ["commitment", "concrete change plan"], ["ask_permission_and_inform", "summarise", "support_self_efficacy"]),
        ],
    ),
    "person_centred": _m(
        "person_centred",
        "Person-centred therapy",
        "Non-directive; empathy, unconditional positive regard and congruence; the client leads.",
        [
            ("exploration", ["safety and trust", "client-led exploration"], ["minimal_encouragement", "reflection_of_feelings", "restatement"]),
            ("insight", ["deepen experiencing", "self-acceptance"], ["empathic_reflection", "clarification", "immediacy"]),
            ("action", ["client-chosen directions", "consolidate self-trust"], ["affirmation_and_reassurance", "invite_new_perspectives", "summarise"]),
        ],
    ),
    "solution_focused": _m(
        "solution_focused",
        "Solution-focused brief therapy",
        "Looks for exceptions and preferred futures rather than problems.",
        [
            ("exploration", ["preferred future"], ["miracle_question", "open_question", "affirmation"]),
            ("action", ["small next steps"], ["scaling_question", "exception_finding", "invite_new_actions"]),
        ],
        homework=True,
    ),
})


def register_modality(modality: Modality) -> None:
    """Add or replace a modality by name."""
    MODALITIES.register(modality.name, modality)


def get_modality(name: str) -> Modality:
    return MODALITIES.lookup(name)


def load_modalities(path: str | Path) -> list[Modality]:
    """Load and register modalities from a YAML list; errors name the record and field."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of modalities")
    out = []
    for i, rec in enumerate(data):
        try:
            m = Modality.model_validate(rec)
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{path}: modality #{i} field {loc}: {first['msg']}") from None
        register_modality(m)
        out.append(m)
    return out
