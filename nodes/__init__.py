"""therasim.nodes: one module per node role (prompt, output model, function, and
its :class:`~therasim.contract.NodeSpec` as ``SPEC``)."""

from therasim.contract import NodeSpec
from therasim.nodes import client as _client
from therasim.nodes import counselor as _counselor
from therasim.nodes import emotion as _emotion
from therasim.nodes import recall as _recall
from therasim.nodes import risk as _risk
from therasim.nodes import strategy as _strategy
from therasim.nodes import unified as _unified
from therasim.nodes.client import client
from therasim.nodes.counselor import counselor
from therasim.nodes.emotion import emotion_tracker
from therasim.nodes.risk import review_draft, risk_control
from therasim.nodes.strategy import strategy_planner
from therasim.nodes.termination import termination
from therasim.nodes.unified import unified_analyst

# The session nodes' contracts by node name: a node added to a builder under one of
# these names (without its own declarations) keeps the built-in contract.
SPECS: dict[str, NodeSpec] = {
    s.name: s for s in (_client.SPEC, _recall.SPEC, _emotion.SPEC, _risk.SPEC, _strategy.SPEC, _counselor.SPEC, _risk.REVIEW_SPEC, _unified.SPEC)
}

__all__ = ["SPECS", "client", "counselor", "emotion_tracker", "review_draft", "risk_control", "strategy_planner", "termination", "unified_analyst"]
