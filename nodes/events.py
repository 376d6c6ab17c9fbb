"""Between-session events: seeded draws (gap in days, a beat, attendance, homework
adherence) applied to the client's inner state and written to client-side memory.

The draws depend only on (run seed, client, session), so the same seed gives the
same draws whatever the models said. How they land depends on the session just
run (:mod:`therasim.policies.dynamics`): ruptures are likelier after a poor
alliance, breakthroughs after good work, and a falling wish to continue brings
no-shows and dropout. A rupture also lowers the disclosure level one step.
"""

from __future__ import annotations

import random
from typing import Any

from therasim.context import NodeContext, derive_seed
from therasim.policies.dynamics import BEATS, attendance, beat_weights
from therasim.state import View

__all__ = ["BEATS", "EXTERNAL_EVENTS", "NEW_PROBLEMS", "apply_event", "between_session_events", "draw_event"]

EXTERNAL_EVENTS = [
    "an argument with a family member", "a good day out with a friend", "an unexpected bill", "being praised at work",
    "a sleepless week", "a health scare", "a friend moving away", "a small win on a personal project",
]
NEW_PROBLEMS = ["trouble at work", "money worries", "a conflict with a neighbour", "a relative falling ill", "poor sleep"]
_VARS = ("distress", "hopelessness", "anxiety", "self_efficacy", "alliance", "wish_to_continue")


def draw_event(seed: int, client_id: str, session: int) -> dict[str, Any]:
    """The seeded draws for the gap before ``session`` (no model, no state involved)."""
    rng = random.Random(derive_seed(seed, client_id, session, "between_session_events"))
    gap = rng.choices([7, 14, 3, 21, 10], weights=[0.55, 0.2, 0.1, 0.05, 0.1])[0]
    return {
        "session": session,
        "gap_days": gap,
        "u_beat": round(rng.random(), 6),
        "u_attend": round(rng.random(), 6),
        "external": rng.choice(EXTERNAL_EVENTS),
        "new_problem": rng.choice(NEW_PROBLEMS),
        "u_homework": round(rng.random(), 6),
    }


def _pick_beat(weights: dict[str, float], u: float) -> str:
    total = sum(weights.values())
    acc = 0.0
    for b, w in weights.items():
        acc += w / total
        if u < acc:
            return b
    return list(weights)[-1]


def apply_event(inner: dict[str, Any], ev: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """New inner state and the event record completed with the beat, attendance,
    adherence, deltas and the signals that weighted them."""
    inner = dict(inner)
    weights, signals = beat_weights(inner)
    beat = _pick_beat(weights, ev["u_beat"])
    detail = ev["external"] if beat == "external_event" else (ev["new_problem"] if beat == "new_problem" else None)
    deltas: dict[str, float] = dict(BEATS[beat][1])
    adherence = None
    if inner.get("homework"):
        # Higher self-efficacy, higher chance of doing the homework.
        p_full = 0.15 + 0.06 * float(inner.get("self_efficacy", 4))
        u = ev["u_homework"]
        adherence = "full" if u < p_full else ("partial" if u < p_full + 0.25 else "none")
        for k, d in {"full": {"self_efficacy": 0.6, "distress": -0.5}, "partial": {}, "none": {"self_efficacy": -0.4}}[adherence].items():
            deltas[k] = deltas.get(k, 0.0) + d
    for k, d in deltas.items():
        inner[k] = round(max(0.0, min(10.0, float(inner.get(k, 5)) + d)), 3)
    if beat == "rupture" and int(inner.get("disclosure", 0)) > 0:
        inner["disclosure"] = int(inner["disclosure"]) - 1
        deltas["disclosure"] = -1
    attend, p_drop, p_no = attendance(inner, ev["u_attend"])
    what = beat.replace("_", " ") + (f": {detail}" if detail else "")
    recent = [f"in the {ev['gap_days']} days since the last session: {what}"]
    if adherence:
        recent.append(f"homework ({inner['homework']}): {adherence} adherence")
    if attend != "attended":
        recent.append({"no_show": "did not come to the next session", "dropout": "decided to stop coming to counselling"}[attend])
    inner["recent_events"] = recent
    inner["wants_to_end"] = False
    rec = {
        **ev, "beat": beat, "detail": detail, "weights": {k: round(v, 4) for k, v in weights.items()}, "signals": signals,
        "attendance": attend, "p_dropout": round(p_drop, 4), "p_no_show": round(p_no, 4),
        "adherence": adherence, "deltas": deltas, "text": "; ".join(recent),
    }
    return inner, rec


async def between_session_events(view: View, ctx: NodeContext) -> dict[str, Any]:
    """Client side: draw and apply the events of the gap before this session."""
    session = int(view["session"])
    if session <= 1:
        return {}
    ev = draw_event(ctx.sim.seed, view["client_id"], session)
    inner, rec = apply_event(view["inner"], ev)
    memory = {"text": f"Between sessions {session - 1} and {session}: {rec['text']}", "kind": "event", "session": session - 1}
    pending: dict[str, Any] = {"client_memory_writes": [memory]}
    if rec["attendance"] != "attended":
        pending["skipped"] = rec["attendance"]
    return {"inner": inner, "events": [rec], "pending": pending}
