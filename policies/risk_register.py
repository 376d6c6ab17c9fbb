"""The per-course risk register: what the client has disclosed, rung by rung, with
its evidence, carried across turns and sessions (docs/risk.md).

The register is plain JSON-able data held in the course state, handed to each
session and handed back. Four tracks are kept apart: the C-SSRS-style suicide
ladder (:data:`~therasim.policies.risk.LADDER`), non-suicidal self-injury, harm
to others and abuse. Every change is appended to ``trace`` with its reason.

Rules (all deterministic; docs/risk.md gives the rationale):

* **Raise.** An active cue from :func:`~therasim.policies.risk.scan` raises its
  track to the cue's rung (never lowers); a PHQ-9 item 9 score above 0 raises the
  suicide track to at least ``wish_dead``. A track raised only by classifier
  (``model``; formerly exemplar-bank ``knn``) cues is *unconfirmed*: its carried level is capped at ``moderate``
  (assess directly) until a pattern cue or PHQ-9 confirms it.
* **Direct assessment.** A counselor turn *asks directly* when it is a question
  (contains ``?``) and names suicide, killing/hurting/harming oneself, ending
  one's life, wanting to die, a plan or means, or the client's safety
  (:func:`is_direct_assessment`).
* **Retraction.** "I was only joking", "I didn't mean it", "forget I said it"
  and the like (:func:`is_retraction`), or a negated cue of the track ("I'm not
  suicidal"), is a retraction. It is recorded but lowers nothing by itself.
* **Lower.** A track (not abuse: victims often minimise) is lowered to ``none``
  only when (1) the counselor's turn just before the client's reply asked
  directly, (2) the risk node's LLM assessment of that reply succeeded and put
  the level below the track's carried level, (3) the reply has no active
  pattern cue of that track (a classifier cue alone does not block a walk-back:
  it reads the topic), and (4) the client retracted or denied, in that reply
  or since the track's latest evidence. The peak rung and all evidence are kept.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

from therasim.policies.risk import LADDER, RiskCue, level_rank

__all__ = [
    "RUNG_LEVEL",
    "TRACKS",
    "fold_phq9",
    "is_direct_assessment",
    "is_retraction",
    "new_register",
    "observe_turn",
    "register_floor",
    "register_notes",
    "register_summary",
    "track_of",
]

REGISTER_VERSION = 1
TRACKS: tuple[str, ...] = ("suicide", "nssi", "harm_others", "abuse")
# Carried level of each rung, after the Columbia screener triage (items 1-2 low,
# item 3 moderate, items 4-5 and recent behaviour high).
RUNG_LEVEL: dict[str, str] = {
    "none": "none",
    "wish_dead": "low",
    "active_nonspecific": "low",
    "ideation_method": "moderate",
    "intent": "high",
    "plan": "high",
    "preparatory": "high",
    "attempt": "high",
    "nssi": "moderate",
    "harm_others": "high",
    "abuse": "moderate",
}
_RETRACTABLE = ("suicide", "nssi", "harm_others")
# Detectors whose cue alone leaves a track unconfirmed (capped at moderate).
UNCONFIRMED_SOURCES: tuple[str, ...] = ("model", "knn")
_MAX_EVIDENCE = 6

_ASSESS = re.compile(
    r"\b(?:suicid\w*|kill(?:ing)? yourself|end(?:ing)? (?:your|it) (?:own )?(?:life|all)|tak(?:e|ing) your (?:own )?life|"
    r"(?:hurt|harm|cut)(?:ing)? yourself|self[- ]?harm\w*|want(?:ing)? to die|(?:better off|wish(?:ing)? you were) dead|"
    r"thoughts? (?:of|about) (?:dying|death|ending)|(?:a|any) plans?\b|how (?:you would|you'd)|(?:the )?means to|"
    r"(?:are|feel|feeling|be|stay|keep yourself) safe|your safety|safe (?:right now|tonight|at home))",
    re.IGNORECASE,
)
_RETRACT = re.compile(
    r"\b(?:(?:i'?m|i am|i was|was|just|only) (?:only |just )?(?:joking|kidding|messing(?: around)?|venting|exaggerating|"
    r"being (?:dramatic|morbid|silly|stupid|an idiot)|testing you|blowing off steam)|j/?k|(?:it was |just )?a joke|"
    r"(?:don'?t|didn'?t|do not|did not) (?:really )?mean (?:it|that|any of (?:it|that))|(?:wasn'?t|not) (?:being )?serious|"
    r"forget (?:i said|what i said|it|that|the \w+ thing)|ignore (?:that|what i said|me)|take (?:it|that) back|"
    r"shouldn'?t have said (?:that|it)|came out wrong|(?:it|that) wasn'?t (?:like that|what i meant)|(?:just )?a figure of speech|"
    r"(?:i'?m|i am) not (?:actually |really )?going to do (?:anything|it)|(?:i'?d|i would) never (?:do|actually do) (?:it|that|anything))\b",
    re.IGNORECASE,
)


def track_of(rung: str) -> str:
    return "suicide" if rung in LADDER else rung


def _rank(track: str, rung: str) -> int:
    if rung == "none":
        return 0
    return LADDER.index(rung) + 1 if track == "suicide" else 1


def is_direct_assessment(counselor_text: str) -> bool:
    """The documented rule for "the counselor asked directly" (module docstring)."""
    return "?" in counselor_text and bool(_ASSESS.search(counselor_text))


def is_retraction(client_text: str) -> bool:
    return bool(_RETRACT.search(client_text))


def new_register() -> dict[str, Any]:
    return {
        "version": REGISTER_VERSION,
        "tracks": {t: {"rung": "none", "peak": "none", "confirmed": False, "evidence": []} for t in TRACKS},
        "retraction": None,
        "assessments": [],
        "phq9_item9": [],
        "trace": [],
    }


def _copy(reg: Mapping[str, Any] | None) -> dict[str, Any]:
    """A register to fold a turn into, leaving ``reg`` as it was: a fresh top level,
    ``tracks`` dict, track dicts and ``trace`` list (what the folds change in place:
    rungs, peaks, flags, the trace); the other lists are fresh copies too. Entries
    (evidence, trace changes, assessments, PHQ-9 answers, the retraction) are
    shared: no fold changes one once written, it writes a new one (``{**old, ...}``,
    ``[*old, new]``). ``copy.deepcopy`` of the whole register cost several times
    more per turn (tests/test_node_cpu.py compares the two over folds)."""
    if not reg:
        return new_register()
    out = dict(reg)
    tracks = out.get("tracks")
    if isinstance(tracks, Mapping):
        out["tracks"] = {k: _copy_track(t) for k, t in tracks.items()}
    for key in ("trace", "assessments", "phq9_item9"):
        v = out.get(key)
        if isinstance(v, list):
            out[key] = list(v)
    return out


def _copy_track(t: Any) -> Any:
    if not isinstance(t, Mapping):
        return copy.deepcopy(t)
    d = dict(t)
    ev = d.get("evidence")
    if isinstance(ev, list):
        d["evidence"] = list(ev)
    return d


def _where(session: int, exchange: int | None) -> str:
    return f"session {session}" + (f", exchange {exchange}" if exchange is not None else "")


def _set(reg: dict[str, Any], track: str, to: str, *, session: int, exchange: int | None, reason: str) -> dict[str, Any]:
    t = reg["tracks"][track]
    change = {"session": session, "exchange": exchange, "track": track, "from": t["rung"], "to": to, "reason": reason}
    t["rung"] = to
    if to == "none":
        t["confirmed"] = False
    if _rank(track, to) > _rank(track, t["peak"]):
        t["peak"] = to
    reg["trace"].append(change)
    return change


def _raise(reg: dict[str, Any], rung: str, evidence: dict[str, Any], reason: str) -> dict[str, Any] | None:
    track = track_of(rung)
    t = reg["tracks"][track]
    t["evidence"] = [*t["evidence"], evidence][-_MAX_EVIDENCE:]
    if evidence.get("source") not in UNCONFIRMED_SOURCES:
        t["confirmed"] = True
    if reg.get("retraction") and track in reg["retraction"].get("tracks", []):
        left = [x for x in reg["retraction"]["tracks"] if x != track]  # new evidence supersedes it
        reg["retraction"] = {**reg["retraction"], "tracks": left} if left else None
    if _rank(track, rung) > _rank(track, t["rung"]):
        return _set(reg, track, rung, session=evidence["session"], exchange=evidence.get("exchange"), reason=reason)
    return None


def register_floor(reg: Mapping[str, Any] | None) -> str:
    """Lowest risk level the carried rungs allow (``none`` for an empty register)."""
    floor = "none"
    for t in ((reg or {}).get("tracks") or {}).values():
        lvl = RUNG_LEVEL.get(t.get("rung", "none"), "none")
        if not t.get("confirmed", True) and level_rank(lvl) > level_rank("moderate"):
            lvl = "moderate"  # classifier evidence alone: assess directly, no crisis protocol
        if level_rank(lvl) > level_rank(floor):
            floor = lvl
    return floor


def observe_turn(
    reg: Mapping[str, Any] | None,
    *,
    session: int,
    exchange: int,
    text: str,
    cues: Iterable[RiskCue | Mapping[str, Any]],
    previous_counselor: str = "",
    llm_level: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fold one client turn into the register: returns the new register and the
    changes (trace entries) this turn made. ``llm_level`` is the risk node's LLM
    level for this turn, ``None`` when the LLM call failed (nothing is then
    lowered)."""
    out = _copy(reg)
    changes: list[dict[str, Any]] = []
    where = {"session": session, "exchange": exchange}
    cue_dicts = [c.as_dict() if isinstance(c, RiskCue) else dict(c) for c in cues]
    active_tracks: set[str] = set()
    denied: set[str] = set()
    for c in cue_dicts:
        rung = c.get("rung") or ""
        if not rung:
            continue
        track = track_of(rung)
        if c.get("active"):
            if c.get("source") not in UNCONFIRMED_SOURCES:  # a classifier reading alone does not block a walk-back
                active_tracks.add(track)
            ch = _raise(out, rung, {**where, "text": text[:300], "span": c.get("span", ""), "rung": rung, "source": c.get("source", "pattern")}, f"{c.get('source', 'pattern')} cue {c.get('span', '')!r} shows {rung}")
            if ch:
                changes.append(ch)
        elif c.get("negated") and not c.get("past") and not c.get("third_person") and not c.get("quoted"):
            denied.add(track)
    retracting = is_retraction(text)
    carried = [tr for tr in _RETRACTABLE if out["tracks"][tr]["rung"] != "none" and tr not in active_tracks]
    if (retracting or denied) and carried:
        tracks = sorted(set(carried) if retracting else set(carried) & denied)
        if tracks:
            prev = out.get("retraction") or {}
            out["retraction"] = {**where, "text": text[:300], "tracks": sorted(set(tracks) | set(prev.get("tracks", [])))}
            out["trace"].append({**where, "track": ",".join(tracks), "from": None, "to": None, "reason": "retraction or denial noted; rungs kept until the counselor has assessed directly"})
            changes.append(out["trace"][-1])
    asked = is_direct_assessment(previous_counselor)
    if asked:
        outcome = "llm_failed" if llm_level is None else "assessed"
        out["assessments"] = [*out["assessments"], {**where, "question": previous_counselor[:200], "llm_level": llm_level, "outcome": outcome}][-_MAX_EVIDENCE:]
    pending = set((out.get("retraction") or {}).get("tracks", []))
    if asked and llm_level is not None and pending:
        for track in sorted(pending):
            rung = out["tracks"][track]["rung"]
            if rung == "none" or track in active_tracks:
                continue
            if level_rank(llm_level) < level_rank(RUNG_LEVEL[rung]):
                changes.append(
                    _set(out, track, "none", session=session, exchange=exchange,
                         reason=f"retraction accepted after direct assessment (counselor asked: {previous_counselor[:120]!r}; LLM level {llm_level}; no active cue)")
                )
                pending.discard(track)
        out["retraction"] = {**out["retraction"], "tracks": sorted(pending)} if pending else None
    return out, changes


def fold_phq9(reg: Mapping[str, Any] | None, *, session: int, score: int | None, when: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Record PHQ-9 item 9 (thoughts of being better off dead or of self-harm, 0-3);
    a score above 0 raises the suicide track to at least ``wish_dead``."""
    out = _copy(reg)
    if score is None:
        return out, []
    out["phq9_item9"] = [*out["phq9_item9"], {"session": session, "score": int(score), "when": when}]
    changes = []
    if score > 0:
        ch = _raise(out, "wish_dead", {"session": session, "exchange": None, "text": f"PHQ-9 item 9 = {score} ({when or 'questionnaire'})", "span": "", "rung": "wish_dead", "source": "phq9"}, f"PHQ-9 item 9 = {score}")
        if ch:
            changes.append(ch)
    return out, changes


def register_summary(reg: Mapping[str, Any] | None) -> dict[str, str]:
    """Current rung per track that is not ``none``."""
    return {k: t["rung"] for k, t in ((reg or {}).get("tracks") or {}).items() if t.get("rung", "none") != "none"}


def _ev(e: Mapping[str, Any]) -> str:
    where = f"s{e['session']}" + (f" ex{e['exchange']}" if e.get("exchange") is not None else "")
    return f"{where}: \"{e.get('text', '')[:120]}\""


def register_notes(reg: Mapping[str, Any] | None, session: int | None = None) -> str:
    """The register as a few lines for the counselor's notes (empty when there is
    nothing to note). ``session`` picks the PHQ-9 answer given before that session."""
    if not reg:
        return ""
    lines = []
    for name, t in reg["tracks"].items():
        if t["rung"] != "none":
            last = t["evidence"][-1] if t["evidence"] else None
            lines.append(f"- {name}: {t['rung']} (carried level {RUNG_LEVEL[t['rung']]})" + (f"; latest evidence {_ev(last)}" if last else ""))
        elif t["peak"] != "none":
            lines.append(f"- {name}: lowered to none after direct assessment (peak {t['peak']})")
    item9 = [p for p in reg.get("phq9_item9", []) if session is None or p["session"] == session]
    for p in item9[-1:]:
        if p["score"] > 0:
            lines.append(f"- PHQ-9 item 9 = {p['score']} before session {p['session']} (thoughts of being better off dead or of self-harm); ask about it directly")
    if reg.get("retraction"):
        r = reg["retraction"]
        lines.append(f"- the client retracted or denied ({_ev(r)}); not yet assessed directly")
    return "\n".join(lines)

