"""Presets, built with the same public builder users call."""

from __future__ import annotations

from collections.abc import Callable

from therasim.errors import TherasimError
from therasim.graphs.builder import SessionGraphBuilder
from therasim.nodes.client import client
from therasim.nodes.counselor import counselor
from therasim.nodes.emotion import emotion_tracker
from therasim.nodes.recall import memory_recall
from therasim.nodes.risk import review_draft, risk_control
from therasim.nodes.strategy import strategy_planner
from therasim.nodes.unified import unified_analyst
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
    b.add_node("client", client, side="client", role="client", description="client role-play from a hidden profile")
    b.add_node("memory_recall", memory_recall, side="counselor", description="counselor memories relevant to the client's words")
    b.add_node("emotion_tracker", emotion_tracker, side="counselor", role="analysts")
    b.add_node("risk_control", risk_control, side="counselor", role="analysts")
    b.add_node("strategy_planner", strategy_planner, side="counselor", role="analysts")
    b.add_node("counselor", counselor, side="counselor", role="counselor")
    b.add_node("risk_review", review_draft, side="counselor", role="analysts", description="reviews the counselor's draft")
    b.add_conditional_edges("risk_control", crisis_route, {"crisis": "counselor", "plan": "strategy_planner"})
    return b


def unified() -> SessionGraphBuilder:
    """The three analysts folded into one structured call per turn."""
    b = SessionGraphBuilder("unified")
    b.add_node("client", client, side="client", role="client")
    b.add_node("memory_recall", memory_recall, side="counselor")
    b.add_node("analyst", unified_analyst, side="counselor", role="analysts")
    b.add_node("counselor", counselor, side="counselor", role="counselor")
    b.add_node("risk_review", review_draft, side="counselor", role="analysts")
    return b


def lean() -> SessionGraphBuilder:
    """Unified analysis without the draft review: three calls per turn (the demo's preset)."""
    b = unified()
    b.name = "lean"
    return b.remove_node("risk_review")


def minimal() -> SessionGraphBuilder:
    """Client and counselor only."""
    b = SessionGraphBuilder("minimal")
    b.add_node("client", client, side="client", role="client")
    b.add_node("counselor", counselor, side="counselor", role="counselor")
    return b


PRESETS: dict[str, Callable[[], SessionGraphBuilder]] = {"full": full, "unified": unified, "lean": lean, "minimal": minimal}


def register_preset(name: str, factory: Callable[[], SessionGraphBuilder]) -> None:
    PRESETS[name] = factory


def preset(name: str) -> SessionGraphBuilder:
    """A fresh builder for a named preset (change it freely)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise TherasimError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)} (or register_preset)") from None
