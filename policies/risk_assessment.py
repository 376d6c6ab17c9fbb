"""How a turn's risk assessment is put together, shared by the risk-control node
(nodes/risk.py) and the unified analyst (nodes/unified.py): the scan's floor, the
LLM's level combined with it and with the risk register's carried level
(docs/risk.md), and the turn folded into the register. Deterministic; no model calls."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from therasim.policies.risk import level_rank, scan
from therasim.policies.risk_register import (
    UNCONFIRMED_SOURCES,
    observe_turn,
    register_floor,
    register_summary,
)
from therasim.state import View

if TYPE_CHECKING:  # the node's context is a layer up; only its sim.risk_protocol is read
    from therasim.context import NodeContext

__all__ = ["combine", "scan_cues", "scan_floor", "with_register"]


def scan_floor(cues: list[dict[str, Any]]) -> str:
    """Lowest level the deterministic layer allows given its cues: an active pattern
    cue of harm to self or others is high (an attempt statement imminent), abuse
    moderate; a cue from the classifier alone is moderate; inactive cues low."""
    floor = "none"
    for c in cues:
        if c["active"] and c.get("source") in UNCONFIRMED_SOURCES:
            lvl = "moderate"  # a classifier hit alone asks for direct assessment
        elif c["active"] and c.get("rung") == "attempt":
            lvl = "imminent"
        elif c["active"] and c["category"] in ("self_harm", "harm_to_others"):
            lvl = "high"
        elif c["active"]:
            lvl = "moderate"
        else:
            lvl = "low"
        if level_rank(lvl) > level_rank(floor):
            floor = lvl
    return floor


_NON_WORD = re.compile(r"\W+")


def _norm(s: str) -> str:
    return _NON_WORD.sub(" ", s.lower()).strip()


def combine(llm: dict[str, Any] | None, cues: list[dict[str, Any]], ctx: NodeContext, client_text: str = "", carried: str = "none") -> dict[str, Any]:
    """Final assessment: the LLM's level, never below the scan's floor nor the risk
    register's carried level (``carried``); protocol directive attached. LLM cues whose
    quote is not in the client's words are dropped as ungrounded, and a high/imminent
    LLM level with no grounded cue at all is capped at moderate."""
    floor = scan_floor(cues)
    raised_by = "scan"
    if level_rank(carried) > level_rank(floor):
        floor, raised_by = carried, "register"
    out: dict[str, Any] = dict(llm) if llm and "error" not in llm else {"level": "none", "crisis_class": "none", "cues": [], "actions": []}
    if llm and "error" not in llm and client_text:
        said = _norm(client_text)
        grounded = [c for c in out.get("cues", []) if _norm(c.get("quote", "")) and _norm(c["quote"]) in said]
        if len(grounded) != len(out.get("cues", [])):
            out["dropped_ungrounded_cues"] = [c for c in out["cues"] if c not in grounded]
            out["cues"] = grounded
        if level_rank(out["level"]) > level_rank("moderate") and not grounded and not any(c["active"] for c in cues) and level_rank(carried) < level_rank("high"):
            out["capped_ungrounded"] = out["level"]
            out["level"] = "moderate"
    if llm and "error" in llm:
        out["llm_error"] = llm["error"]
        out["source"] = "scan_only"
    else:
        out["source"] = "llm+scan"
    out["llm_level"] = (llm or {}).get("level")
    if level_rank(floor) > level_rank(out["level"]):
        out["level"] = floor
        out[f"raised_by_{raised_by}"] = True
        active = [c["category"] for c in cues if c["active"] and c["category"] != "abuse"]
        if out["crisis_class"] == "none" and level_rank(floor) >= level_rank("high") and active:
            out["crisis_class"] = "imminent_harm_to_self" if active[0] == "self_harm" else "imminent_harm_to_others"
    protocol = ctx.sim.risk_protocol
    for step in protocol.steps_for(out["level"]):
        if step.action not in out["actions"]:
            out["actions"].append(step.action)
    out["scan"] = cues
    out["directive"] = protocol.directive(out["level"])
    out["handoff"] = protocol.requires_handoff(out["level"])
    return out


def with_register(view: View, ctx: NodeContext, llm: dict[str, Any] | None, cues: list[dict[str, Any]], client_text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fold this turn into the course's risk register (policies.risk_register) and
    combine the LLM's and the scan's assessment with the register's carried level.
    Returns the assessment and the state update (``risk_register`` when it changed)."""
    register = view.get("risk_register")
    previous = next((t.get("text") or "" for t in reversed(view["transcript"]) if t.get("speaker") == "counselor"), "")
    ok = bool(llm) and "error" not in (llm or {})
    new, changes = observe_turn(
        register,
        session=int(view.get("session") or 1),
        exchange=int(view.get("exchange") or 0),
        text=client_text,
        cues=cues,
        previous_counselor=previous,
        llm_level=(llm or {}).get("level") if ok else None,
    )
    carried = register_floor(new)
    risk = combine(llm, cues, ctx, client_text, carried=carried)
    risk["register"] = register_summary(new)
    risk["carried_level"] = carried
    if changes:
        risk["register_changes"] = changes
    return risk, ({"risk_register": new} if new != register else {})


#: whether the risk classifier's packages are installed (checked once: ``find_spec`` over
#: four packages costs more than a patterns-only scan)
_INSTALLED: dict[str, bool] = {}


def scan_uses_classifier() -> bool:
    """Whether ``scan(text)`` runs the classifier: its packages are installed (cached)
    and ``THERASIM_RISK_KNN`` does not switch it off (read on each call)."""
    from therasim.policies import risk_model

    if "model" not in _INSTALLED:
        _INSTALLED["model"] = risk_model.model_available()
    return _INSTALLED["model"] and risk_model.model_default()


async def scan_cues(text: str) -> list[dict[str, Any]]:
    """``scan`` off the event loop when it runs the classifier (MiniLM over the text:
    milliseconds of CPU that would otherwise stall every other course in flight); a
    patterns-only scan runs inline: its regexes hold the GIL in a worker thread too, so
    the thread saved the loop nothing, and the hop queued it behind other threads' work
    (``to_thread``'s shared pool) and cost a loop wake-up besides."""
    if not text.strip() or not scan_uses_classifier():
        return [c.as_dict() for c in scan(text, model=False)]
    return [c.as_dict() for c in await asyncio.to_thread(scan, text)]
