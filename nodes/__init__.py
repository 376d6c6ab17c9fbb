"""therasim.nodes: one module per node role (prompt, output model, function)."""

from therasim.nodes.client import client
from therasim.nodes.counselor import counselor
from therasim.nodes.emotion import emotion_tracker
from therasim.nodes.risk import review_draft, risk_control
from therasim.nodes.strategy import strategy_planner
from therasim.nodes.termination import termination
from therasim.nodes.unified import unified_analyst

__all__ = ["client", "counselor", "emotion_tracker", "review_draft", "risk_control", "strategy_planner", "termination", "unified_analyst"]
