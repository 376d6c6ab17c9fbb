"""Termination: ends on max turns, the client's wish to end, a closing exchange, or a
risk hand-off, recording the reason."""

from __future__ import annotations

from typing import Any

from therasim.context import NodeContext
from therasim.nodes._common import last_turn
from therasim.state import View

__all__ = ["termination"]


async def termination(view: View, ctx: NodeContext) -> dict[str, Any]:
    transcript = view["transcript"]
    exchange = int(view.get("exchange", 0))
    inner = view.get("inner") or {}
    last_client = last_turn(transcript, "client") or {}
    last_counselor = last_turn(transcript, "counselor") or {}
    rules = ctx.sim.termination
    reason = None
    if (last_client.get("risk") or {}).get("handoff"):
        reason = "risk_handoff"
    elif inner.get("wants_to_end"):
        reason = "client_wish"
    elif exchange >= rules.min_turns_before_closing and rules.is_closing(last_client.get("text", "")) and rules.is_closing(last_counselor.get("text", "")):
        reason = "closing_exchange"
    elif exchange >= ctx.course.max_turns:
        reason = "max_turns"
    if reason:
        return {"ended": True, "end_reason": reason}
    return {"ended": False}
