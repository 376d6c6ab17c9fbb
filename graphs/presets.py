"""Presets, built with the same public builder users call."""

from __future__ import annotations

from collections.abc import Callable

from therasim._internal.registry import Registry
from therasim.graphs.builder import SessionGraphBuilder
from therasim.nodes.client import SPEC as CLIENT
from therasim.nodes.counselor import SPEC as COUNSELOR
from therasim.nodes.emotion import SPEC as EMOTION_TRACKER
from therasim.nodes.recall import SPEC as MEMORY_RECALL
from therasim.nodes.risk import REVIEW_SPEC as RISK_REVIEW
from therasim.nodes.risk import SPEC as RISK_CONTROL
from therasim.nodes.strategy import SPEC as STRATEGY_PLANNER
from therasim.nodes.unified import SPEC as UNIFIED_ANALYST
from therasim.policies.risk import level_rank
from therasim.state import View

__all__ = ["PRESETS", "full", "lean", "minimal", "preset", "register_preset", "unified"]


def crisis_route(view: View) -> str:
    """At high or imminent risk the risk protocol, not the planner, directs the counselor."""
    level = (view["current"].get("risk") or {}).get("level", "none")
    return "crisis" if level_rank(level) >= level_rank("high") else "plan"


def full() -> SessionGraphBuilder:
    """All five roles, with draft review and a crisis route past the planner."""
    b = SessionGraphBuilder("full")
    b.add(CLIENT)
    b.add(MEMORY_RECALL)
    b.add(EMOTION_TRACKER)
    b.add(RISK_CONTROL)
    b.add(STRATEGY_PLANNER)
    b.add(COUNSELOR)
    b.add(RISK_REVIEW)
    b.add_conditional_edges("risk_control", crisis_route, {"crisis": "counselor", "plan": "strategy_planner"})
    return b


def unified() -> SessionGraphBuilder:
    """The three analysts folded into one structured call per turn."""
    b = SessionGraphBuilder("unified")
    b.add(CLIENT)
    b.add(MEMORY_RECALL)
    b.add(UNIFIED_ANALYST)
    b.add(COUNSELOR)
    b.add(RISK_REVIEW)
    return b


def lean() -> SessionGraphBuilder:
    """Unified analysis without the draft review: three calls per turn (the demo's preset)."""
    b = unified()
    b.name = "lean"
    return b.remove_node("risk_review")


def minimal() -> SessionGraphBuilder:
    """Client and counselor only."""
    b = SessionGraphBuilder("minimal")
    b.add(CLIENT)
    b.add(COUNSELOR)
    return b


PRESETS: Registry[Callable[[], SessionGraphBuilder]] = Registry("preset", {"full": full, "unified": unified, "lean": lean, "minimal": minimal}, hint="or register_preset")


def register_preset(name: str, factory: Callable[[], SessionGraphBuilder]) -> None:
    PRESETS.register(name, factory)


def preset(name: str) -> SessionGraphBuilder:
    """A fresh builder for a named preset (change it freely)."""
    return PRESETS.lookup(name)()
