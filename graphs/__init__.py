"""therasim.graphs: the session graph builder, presets, and the course graph."""

from therasim.graphs.builder import NodeSpec, SessionGraphBuilder, http_node, record_exchange
from therasim.graphs.presets import PRESETS, full, minimal, preset, register_preset, unified

__all__ = ["PRESETS", "NodeSpec", "SessionGraphBuilder", "full", "http_node", "minimal", "preset", "record_exchange", "register_preset", "unified"]
