"""Label sets from published counseling-simulation work, as data (see docs/taxonomies).

Users register their own with :func:`register_emotion_taxonomy`; nodes read the
taxonomy the run's policy selects and never hard-code one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from therasim._internal.registry import Registry

__all__ = [
    "EMOTION_TAXONOMIES",
    "STRATEGY_SETS",
    "EmotionTaxonomy",
    "emotion_taxonomy",
    "register_emotion_taxonomy",
]


@dataclass(frozen=True, slots=True)
class EmotionTaxonomy:
    """Emotion groups, each with labels from low to high intensity."""

    name: str
    groups: dict[str, tuple[str, ...]]
    description: str = ""
    max_secondary: int = 2

    @property
    def labels(self) -> list[str]:
        return [label for levels in self.groups.values() for label in levels]

    def group_of(self, label: str) -> str | None:
        for g, levels in self.groups.items():
            if label in levels:
                return g
        return None

    def intensity_of(self, label: str) -> int:
        """1..len(levels) position of a label inside its group (0 if unknown)."""
        for levels in self.groups.values():
            if label in levels:
                return levels.index(label) + 1
        return 0


EMOTION_TAXONOMIES: Registry[EmotionTaxonomy] = Registry("emotion taxonomy", items={
    "plutchik": EmotionTaxonomy(
        name="plutchik",
        description="Plutchik, 8 groups x 3 intensities (PsychēChat)",
        groups={
            "joy": ("calm", "happy", "ecstatic"),
            "trust": ("acceptance", "trust", "admiration"),
            "fear": ("worry", "fear", "terror"),
            "surprise": ("puzzled", "surprised", "amazed"),
            "sadness": ("pensive", "sad", "grief"),
            "disgust": ("bored", "disgust", "hate"),
            "anger": ("annoyed", "angry", "rage"),
            "anticipation": ("care", "anticipation", "vigilance"),
        },
    ),
    "basic8": EmotionTaxonomy(
        name="basic8",
        description="Basic 8 emotions (TheraMind); intensity carried separately",
        groups={k: (k,) for k in ("joy", "sadness", "anger", "fear", "disgust", "surprise", "trust", "anticipation")},
    ),
})


def register_emotion_taxonomy(tax: EmotionTaxonomy) -> None:
    """Add or replace an emotion taxonomy by name."""
    if not tax.groups or any(not v for v in tax.groups.values()):
        raise ValueError(f"emotion taxonomy {tax.name!r}: every group needs at least one label")
    EMOTION_TAXONOMIES.register(tax.name, tax)


def emotion_taxonomy(name: str) -> EmotionTaxonomy:
    return EMOTION_TAXONOMIES.lookup(name)


@dataclass(frozen=True, slots=True)
class StrategySet:
    name: str
    strategies: tuple[str, ...]
    source: str = ""
    notes: dict[str, str] = field(default_factory=dict)


STRATEGY_SETS: dict[str, StrategySet] = {
    "esconv": StrategySet(
        "esconv",
        (
            "question",
            "restatement_or_paraphrasing",
            "reflection_of_feelings",
            "self_disclosure",
            "affirmation_and_reassurance",
            "providing_suggestions",
            "information",
            "others",
        ),
        "ESConv",
    ),
    "helping_skills": StrategySet(
        "helping_skills",
        (
            "interpretation",
            "confrontation",
            "invite_new_perspectives",
            "invite_new_actions",
            "restatement",
            "reflection_of_feelings",
            "self_disclosure",
            "inquiring_subjective_information",
            "inquiring_objective_information",
            "affirmation_and_reassurance",
            "minimal_encouragement",
            "answer",
        ),
        "TheraMind",
    ),
}
