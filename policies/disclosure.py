"""Staged disclosure, as data: the hidden profile in layers, and what unlocks them.

The client's prompts (role-play, measures, recollection) hold only the layers its
disclosure level has unlocked (:func:`background`), so what the client has not
yet disclosed is not in the model's context at all. Level ``d`` shows layers
``0..d``. The level rises one step at a time when the alliance has reached the
layer's threshold and the counselor has explored enough (counted over the
course), and falls one step after a rupture (the events policy). Sources:
MindEval's disclosure levels 0..4; the Adaptive Virtual Patient (2026) finding
that disclosure rises with empathy and exploration; docs/simulation.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from therasim.policies.archetypes import archetype

__all__ = ["LAYERS", "UNLOCK", "Layer", "background", "next_level", "unlocked_fields"]


@dataclass(frozen=True, slots=True)
class Layer:
    level: int
    name: str
    fields: tuple[str, ...]


LAYERS: tuple[Layer, ...] = (
    Layer(0, "surface", ("personality", "conversation_style", "archetype")),
    Layer(1, "feelings and context", ("feelings", "triggers", "situations")),
    Layer(2, "history", ("backstory", "history")),
    Layer(3, "beliefs", ("core_beliefs", "intermediate_beliefs", "coping_strategies", "formulation")),
    Layer(4, "secret and risk history", ("undisclosed", "risk_factors", "risk_history")),
)

# level -> (alliance needed 0..10, exploring counselor moves needed over the course)
UNLOCK: dict[int, tuple[float, int]] = {1: (3.5, 1), 2: (5.0, 2), 3: (6.0, 4), 4: (7.0, 6)}


def unlocked_fields(level: int) -> list[str]:
    return [f for layer in LAYERS if layer.level <= level for f in layer.fields]


def next_level(level: int, alliance: float, explored: int, *, shift: float = 0.0) -> tuple[int, str]:
    """The disclosure level after one turn (rises at most one step) and why."""
    if level >= max(UNLOCK):
        return level, "all layers already disclosed"
    need_a, need_x = UNLOCK[level + 1]
    need_a += shift
    if alliance >= need_a and explored >= need_x:
        return level + 1, f"alliance {alliance:.1f} >= {need_a:.1f} and {explored} exploring moves >= {need_x}: layer {level + 1} ({LAYERS[level + 1].name}) unlocked"
    return level, f"layer {level + 1} needs alliance >= {need_a:.1f} (now {alliance:.1f}) and {need_x} exploring moves (now {explored})"


def background(profile: Mapping[str, Any], inner: Mapping[str, Any]) -> str:
    """The hidden profile as the client's prompt may show it now: only unlocked layers."""
    hidden = profile.get("hidden") or {}
    level = int(inner.get("disclosure", 0))
    out: dict[str, Any] = {}
    for layer in LAYERS:
        if layer.level > level:
            break
        part = {f: hidden[f] for f in layer.fields if hidden.get(f) not in (None, "", [], {})}
        if "archetype" in part:
            part["archetype"] = f"{part['archetype']}: {archetype(part['archetype']).behaviour}"
        if part:
            out[layer.name] = part
    hint = "" if level >= max(UNLOCK) else " (there is more you have not told anyone yet; you do not bring it up)"
    return json.dumps(out, ensure_ascii=False, separators=(", ", ": ")) + hint
