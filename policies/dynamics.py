"""Inner-state dynamics, as data: how each appraised counselor move moves the
client's inner state within a session, the limits on those moves, and how the
session shapes the between-session events.

Per turn, for every variable ``v``:

1. expected change ``e_v`` = sum over the appraised moves of strength x
   :data:`EFFECTS` [move][v]; symptom improvements are scaled by the alliance
   (``0.5 + alliance/10``: the alliance-outcome link), alliance and
   wish-to-continue gains by the archetype's ``alliance_gain`` and losses by its
   ``rupture_sensitivity``;
2. the client model proposes a change (``-2..2`` steps of :data:`STEP`) naming
   the counselor move behind it; the applied change is the proposal kept inside
   ``[e_v - TOLERANCE, e_v + TOLERANCE]`` and never against the sign of ``e_v``
   (the appraisal bounds and steers the proposal);
3. the result is capped per turn (:data:`TURN_CAP`) and per session
   (:data:`SESSION_CAP`: no instant cures; only an event may move more), and
   kept in 0..10.

Every update is returned with its reason (the moves behind it, the proposal and
every bound that applied) for the trace. Sources: docs/simulation.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from therasim.policies.archetypes import archetype

__all__ = [
    "BEATS",
    "EFFECTS",
    "SESSION_CAP",
    "STEP",
    "TOLERANCE",
    "TURN_CAP",
    "VARIABLES",
    "beat_weights",
    "expected_changes",
    "update_inner",
]

VARIABLES = ("distress", "hopelessness", "anxiety", "self_efficacy", "alliance", "wish_to_continue")
SYMPTOMS = ("distress", "hopelessness", "anxiety")

# move -> per-turn expected change of each variable at full strength (0..10 scales)
EFFECTS: dict[str, dict[str, float]] = {
    "validation": {"distress": -0.15, "hopelessness": -0.05, "anxiety": -0.05, "alliance": 0.35, "wish_to_continue": 0.15},
    "reflection": {"distress": -0.10, "anxiety": -0.05, "alliance": 0.30, "wish_to_continue": 0.10},
    "exploration": {"hopelessness": -0.05, "self_efficacy": 0.05, "alliance": 0.15, "wish_to_continue": 0.05},
    "safety_check": {"distress": -0.05, "hopelessness": -0.15, "alliance": 0.20, "wish_to_continue": 0.10},
    "advice": {"self_efficacy": 0.10, "hopelessness": -0.05},
    "premature_advice": {"distress": 0.10, "self_efficacy": -0.10, "alliance": -0.30, "wish_to_continue": -0.20},
    "dismissal": {"distress": 0.25, "hopelessness": 0.20, "anxiety": 0.10, "self_efficacy": -0.10, "alliance": -0.45, "wish_to_continue": -0.35},
    "missed_risk_cue": {"distress": 0.15, "hopelessness": 0.30, "alliance": -0.30, "wish_to_continue": -0.20},
}
STEP = 0.1  # one step of the client's proposal
TOLERANCE = 0.15  # how far the applied change may sit from the expected one
TURN_CAP: dict[str, float] = {"distress": 0.6, "hopelessness": 0.5, "anxiety": 0.6, "self_efficacy": 0.5, "alliance": 0.8, "wish_to_continue": 0.8}
SESSION_CAP: dict[str, float] = {"distress": 1.5, "hopelessness": 1.2, "anxiety": 1.5, "self_efficacy": 1.2, "alliance": 2.5, "wish_to_continue": 2.5}
WANTS_TO_END_BELOW = 3.0  # a wish to end the session is honoured only when wish_to_continue is below this
LEAVES_AT = 1.0  # at or below this the client ends the session whatever it proposed


def expected_changes(moves: Mapping[str, float], inner: Mapping[str, Any], archetype_name: str | None = None) -> dict[str, tuple[float, list[tuple[str, float]]]]:
    """``{variable: (expected change, [(move, contribution), ...])}`` for one appraisal."""
    arch = archetype(archetype_name)
    alliance_scale = 0.5 + float(inner.get("alliance", 4)) / 10.0
    # each move's effects once (the variables in VARIABLES' order, moves in the
    # appraisal's order within each: what a loop over variables, then moves, gives)
    found: dict[str, list[tuple[str, float]]] = {v: [] for v in VARIABLES}
    for move, strength in moves.items():
        s = float(strength)
        effects = EFFECTS.get(move)
        if not effects:
            continue
        for v, w in effects.items():
            parts = found.get(v)
            if parts is None:
                continue
            c = w * s
            if not c:
                continue
            if (v in SYMPTOMS and c < 0) or (v == "self_efficacy" and c > 0):
                c *= alliance_scale
            if v in _RELATIONAL:
                c *= arch.alliance_gain if c > 0 else arch.rupture_sensitivity
            parts.append((move, round(c, 4)))
    out: dict[str, tuple[float, list[tuple[str, float]]]] = {}
    for v, parts in found.items():
        if len(parts) > 1:
            parts.sort(key=_by_size)
        out[v] = (round(sum(c for _, c in parts), 4), parts)
    return out


_RELATIONAL = frozenset(("alliance", "wish_to_continue"))


def _by_size(p: tuple[str, float]) -> float:
    return -abs(p[1])


def update_inner(
    inner: Mapping[str, Any],
    appraisal: Mapping[str, Any],
    proposals: Mapping[str, Mapping[str, Any]] | None,
    *,
    archetype_name: str | None = None,
    session: int = 1,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Apply one appraised counselor move to the inner state.

    ``proposals`` maps variable -> ``{"delta": int -2..2, "because": move}`` (the
    client model's structured output), or ``None`` when that output failed (then
    the change is the expected one, recorded as such). Returns the new inner state
    and one trace entry per variable.
    """
    new = dict(inner)
    if int(new.get("change_session", -1)) != session:
        new["change_session"] = session
        new["session_change"] = dict.fromkeys(VARIABLES, 0.0)
    spent = dict(new.get("session_change") or dict.fromkeys(VARIABLES, 0.0))
    moves = appraisal.get("moves") or {}
    expected = expected_changes(moves, inner, archetype_name)
    trace: list[dict[str, Any]] = []
    for v in VARIABLES:
        e, parts = expected[v]
        prop = (proposals or {}).get(v)
        proposed = STEP * int(prop["delta"]) if prop else None
        bounds = []
        d = e if proposed is None else e + max(-TOLERANCE, min(TOLERANCE, proposed - e))
        if proposed is not None and abs(d - proposed) > 1e-9:
            bounds.append(f"proposal {proposed:+.2f} kept within {TOLERANCE} of the appraisal's {e:+.2f}")
        if (e < 0 and d > 0) or (e > 0 and d < 0):
            bounds.append("a change against the appraisal's direction is not allowed")
            d = 0.0
        if not moves and proposed is not None:
            d = max(-TOLERANCE, min(TOLERANCE, proposed))  # nothing appraised: small own drift
        cap = TURN_CAP[v]
        if abs(d) > cap:
            bounds.append(f"turn cap {cap}")
            d = max(-cap, min(cap, d))
        scap = SESSION_CAP[v]
        room_up, room_down = scap - spent.get(v, 0.0), -scap - spent.get(v, 0.0)
        if d > room_up or d < room_down:
            bounds.append(f"session cap {scap}")
            d = max(room_down, min(room_up, d))
        old = float(inner.get(v, 5))
        val = max(0.0, min(10.0, old + d))
        d = val - old
        spent[v] = round(spent.get(v, 0.0) + d, 4)
        new[v] = round(val, 3)
        named = (prop or {}).get("because")
        behind = [m for m, _ in parts]
        if named and named not in moves and behind:
            attribution = f"client named {named!r}, not seen in the reply; attributed to {behind[0]!r}"
        elif named:
            attribution = f"client named {named!r}"
        else:
            attribution = "client proposal missing" if prop is None else "no cause named"
        reason = (
            f"{attribution}; moves: " + (", ".join(f"{m} {c:+.2f}" for m, c in parts) if parts else "none appraised")
            + f"; expected {e:+.2f}" + (f", proposed {proposed:+.2f}" if proposed is not None else "") + (f"; {'; '.join(bounds)}" if bounds else "")
        )
        trace.append({"variable": v, "from": round(old, 3), "to": new[v], "delta": round(d, 3), "expected": e, "proposed": proposed, "because": named, "moves": behind, "reason": reason})
    new["session_change"] = spent
    return new, trace


# Between-session beats: base weight and inner-state deltas (MindEval's beats).
BEATS: dict[str, tuple[float, dict[str, float]]] = {
    "plateau": (0.30, {}),
    "breakthrough": (0.12, {"distress": -1.0, "hopelessness": -0.8, "self_efficacy": 1.0}),
    "setback": (0.18, {"distress": 1.0, "hopelessness": 0.6, "self_efficacy": -0.6}),
    "rupture": (0.08, {"alliance": -1.2, "wish_to_continue": -1.5}),
    "external_event": (0.15, {"distress": 0.5, "anxiety": 0.6}),
    "new_problem": (0.10, {"anxiety": 1.0, "distress": 0.5}),
}
# How the last session shapes the weights: weight x (1 + gain x signal), signals 0..1.
RUPTURE_GAIN = 3.0  # signal: poor alliance, (5 - alliance) / 5
BREAKTHROUGH_GAIN = 3.0  # signal: good work, the session's fall in distress and rise in alliance
SETBACK_GAIN = 1.0  # signal: the session's rise in distress
NO_SHOW = (0.03, 0.45)  # probability: base + slope x (5 - wish_to_continue) / 5 when wish < 5
DROPOUT = (0.0, 0.6)  # probability: base + slope x (3.5 - wish_to_continue) / 3.5 when wish < 3.5
DROPOUT_BELOW = 3.5


def _clip01(x: float) -> float:
    return max(0.0, min(1.0, x))


def beat_weights(inner: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """Beat weights given the state the last session left, and the signals behind them."""
    change = inner.get("session_change") or {}
    alliance = float(inner.get("alliance", 4))
    poor = _clip01((5.0 - alliance) / 5.0)
    good = _clip01((-float(change.get("distress", 0.0)) + float(change.get("alliance", 0.0))) / 2.5)
    worse = _clip01(float(change.get("distress", 0.0)) / 1.5)
    w = {b: base for b, (base, _) in BEATS.items()}
    w["rupture"] *= 1 + RUPTURE_GAIN * poor
    w["breakthrough"] *= 1 + BREAKTHROUGH_GAIN * good
    w["setback"] *= 1 + SETBACK_GAIN * worse
    return w, {"poor_alliance": round(poor, 3), "good_work": round(good, 3), "worse": round(worse, 3)}


def attendance(inner: Mapping[str, Any], u: float) -> tuple[str, float, float]:
    """``attended`` | ``no_show`` | ``dropout`` for a uniform draw ``u``, with both probabilities."""
    wish = float(inner.get("wish_to_continue", 7))
    p_drop = 0.0 if wish >= DROPOUT_BELOW else _clip01(DROPOUT[0] + DROPOUT[1] * (DROPOUT_BELOW - wish) / DROPOUT_BELOW)
    p_no = 0.0 if wish >= 5 else _clip01(NO_SHOW[0] + NO_SHOW[1] * (5.0 - wish) / 5.0)
    if u < p_drop:
        return "dropout", p_drop, p_no
    if u < p_drop + p_no:
        return "no_show", p_drop, p_no
    return "attended", p_drop, p_no
