"""Between-session events: seeded draws (gap in days, a beat, homework adherence)
applied to the client's inner state and written to client-side memory.

The draws depend only on (run seed, client, session), so the same seed gives the
same events whatever the models said; how an event lands (adherence, deltas) is
then a fixed function of the client's state.
"""

from __future__ import annotations

import random
from typing import Any

from therasim.context import NodeContext, derive_seed
from therasim.state import View

__all__ = ["BEATS", "EXTERNAL_EVENTS", "NEW_PROBLEMS", "apply_event", "between_session_events", "draw_event"]

# beat -> (weight, inner-state deltas)
BEATS: dict[str, tuple[float, dict[str, int]]] = {
    "plateau": (0.30, {}),
    "breakthrough": (0.15, {"distress": -2, "hopelessness": -1, "self_efficacy": 2}),
    "setback": (0.20, {"distress": 2, "hopelessness": 1, "self_efficacy": -1}),
    "rupture": (0.10, {"trust": -2, "wish_to_continue": -2}),
    "external_event": (0.15, {"distress": 1, "anxiety": 1}),
    "new_problem": (0.10, {"anxiety": 2, "distress": 1}),
}
EXTERNAL_EVENTS = [
    "an argument with a family member", "a good day out with a friend", "an unexpected bill", "being praised at work",
    "a sleepless week", "a health scare", "a friend moving away", "a small win on a personal project",
]
NEW_PROBLEMS = ["trouble at work", "money worries", "a conflict with a neighbour", "a relative falling ill", "poor sleep"]
_RANGES = {"distress": 10, "hopelessness": 10, "anxiety": 10, "self_efficacy": 10, "trust": 10, "wish_to_continue": 10}


def draw_event(seed: int, client_id: str, session: int) -> dict[str, Any]:
    """The seeded draws for the gap before ``session`` (no model involved)."""
    rng = random.Random(derive_seed(seed, client_id, session, "between_session_events"))
    gap = rng.choices([7, 14, 3, 21, 10], weights=[0.55, 0.2, 0.1, 0.05, 0.1])[0]
    beat = rng.choices(list(BEATS), weights=[w for w, _ in BEATS.values()])[0]
    detail = None
    if beat == "external_event":
        detail = rng.choice(EXTERNAL_EVENTS)
    elif beat == "new_problem":
        detail = rng.choice(NEW_PROBLEMS)
    return {"session": session, "gap_days": gap, "beat": beat, "detail": detail, "u_homework": round(rng.random(), 6)}


def apply_event(inner: dict[str, Any], ev: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """New inner state and the event record completed with adherence and deltas."""
    inner = dict(inner)
    deltas: dict[str, int] = dict(BEATS[ev["beat"]][1])
    adherence = None
    if inner.get("homework"):
        # Higher self-efficacy, higher chance of doing the homework.
        p_full = 0.15 + 0.06 * int(inner.get("self_efficacy", 4))
        u = ev["u_homework"]
        adherence = "full" if u < p_full else ("partial" if u < p_full + 0.25 else "none")
        for k, d in {"full": {"self_efficacy": 1, "distress": -1}, "partial": {}, "none": {"self_efficacy": -1}}[adherence].items():
            deltas[k] = deltas.get(k, 0) + d
    for k, d in deltas.items():
        inner[k] = max(0, min(_RANGES[k], int(inner.get(k, 5)) + d))
    what = ev["beat"].replace("_", " ") + (f": {ev['detail']}" if ev.get("detail") else "")
    recent = [f"in the {ev['gap_days']} days since the last session: {what}"]
    if adherence:
        recent.append(f"homework ({inner['homework']}): {adherence} adherence")
    inner["recent_events"] = recent
    inner["wants_to_end"] = False
    return inner, {**ev, "adherence": adherence, "deltas": deltas, "text": "; ".join(recent)}


async def between_session_events(view: View, ctx: NodeContext) -> dict[str, Any]:
    """Client side: draw and apply the events of the gap before this session."""
    session = int(view["session"])
    if session <= 1:
        return {}
    ev = draw_event(ctx.sim.seed, view["client_id"], session)
    inner, rec = apply_event(view["inner"], ev)
    memory = {"text": f"Between sessions {session - 1} and {session}: {rec['text']}", "kind": "event", "session": session - 1}
    return {"inner": inner, "events": [rec], "pending": {"client_memory_writes": [memory]}}
