"""Helpers shared by the graph tests (the lean executor, untraced nodes, one superstep
per exchange): a trace without wall-clock fields, and a session graph of the user's own
with a conditional edge."""

from __future__ import annotations

from typing import Any

from therasim.contract import Slot
from therasim.graphs import SessionGraphBuilder, preset


def strip_latency(x: Any) -> Any:
    """``x`` without wall-clock fields (``latency_s``), tuples as lists."""
    if isinstance(x, dict):
        return {k: strip_latency(v) for k, v in x.items() if k != "latency_s"}
    if isinstance(x, (list, tuple)):
        return [strip_latency(v) for v in x]
    return x


def custom_minimal() -> SessionGraphBuilder:
    """Minimal plus a counselor-side node of the user's own, reached by a conditional
    edge on odd exchanges only."""

    async def noter(view: Any, ctx: Any) -> dict[str, Any]:
        return {"current": {"noted": {"turns": len(view["transcript"])}}}

    b = preset("minimal").copy()
    b.add_node("noter", noter, side="counselor", writes=(Slot("noted", turn="counselor"),), after="client")
    b.add_conditional_edges("client", lambda v: "note" if int(v.get("exchange") or 0) % 2 else "skip", {"note": "noter", "skip": "counselor"})
    return b
