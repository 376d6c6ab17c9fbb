"""How the client appraises the counselor's last reply: a transparent, deterministic
reading of the move, as data.

Two kinds of evidence, combined per move (strength 0..1):

* cheap text features of the counselor's reply: phrase lexicons per move (below),
  so the appraisal works with any client model, even one whose output is noise;
* analyst labels when the graph has them: the planner's strategy for the turn and
  the risk reading of the client's previous utterance (half weight each: a plan is
  not proof that the reply carried it out).

Derived moves: ``premature_advice`` (advice with no validation or reflection in the
same reply, or advice in the first exchanges of a course) and ``missed_risk_cue``
(the client's previous words carried a risk cue, or the analyst read moderate risk
or more, and the reply did not check safety). Sources and the effect each move has
on the inner state: docs/simulation.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["LABEL_EVIDENCE", "MOVES", "MOVE_LEXICON", "RISK_CUES", "appraise", "has_risk_cue", "move_labels"]

MOVES = ("validation", "reflection", "exploration", "safety_check", "advice", "premature_advice", "dismissal", "missed_risk_cue")

MOVE_LEXICON: dict[str, tuple[str, ...]] = {
    "validation": (
        r"\b(?:that|it|this) (?:sounds|must be|must have been|seems|is) (?:really |so |very |incredibly )?(?:hard|difficult|painful|exhausting|tough|heavy|overwhelming|a lot|lonely|frightening|scary)",
        r"\bmakes (?:a lot of |complete |total )?sense\b",
        r"\b(?:understandable|no wonder)\b",
        r"\bthank you for (?:telling|sharing|trusting)",
        r"\bi(?:'m| am) (?:really |so )?(?:glad you|sorry)\b",
        r"\bof course you\b",
        r"\banyone (?:would|in your)\b",
        r"\byou(?:'re| are) not alone\b",
        r"\btook (?:a lot of )?courage\b",
    ),
    "reflection": (
        r"\bit sounds (?:like|as if|as though)\b",
        r"\byou(?:'re| are) feeling\b",
        r"\byou feel\b",
        r"\bwhat i(?:'m| am) hearing\b",
        r"\byou(?:'ve| have) been (?:carrying|feeling|dealing|struggling|going)",
        r"\bso you(?:'re| are)?\b",
        r"\byou(?:'re| are) saying\b",
        r"\bi hear (?:that|how|you)\b",
        r"\bpart of you\b",
    ),
    "exploration": (
        r"\b(?:tell me more|say more|could you describe|can you describe|help me understand|walk me through)\b",
        r"\b(?:what|how|when|which)\b[^.?!]*\?",
        r"\bwhat (?:was|is) (?:that|it) like\b",
    ),
    "safety_check": (
        r"\b(?:are you|do you feel|keep yourself) safe\b",
        r"\b(?:hurt|harm|kill)(?:ing)? yourself\b",
        r"\bsuicid",
        r"\bend(?:ing)? your life\b",
        r"\bthoughts (?:of|about) (?:dying|death|not being here|not wanting to be here)\b",
        r"\b(?:crisis line|safety plan|emergency services)\b",
    ),
    "advice": (
        r"\byou (?:should|need to|have to|must|ought to)\b",
        r"\bjust (?:try|stop|get|go|do|be|relax|think|focus|ignore)\b",
        r"\bwhy don'?t you\b",
        r"\bhave you tried\b",
        r"\btry (?:to|not to)\b",
        r"\bthe (?:best|easiest|only) thing (?:to do|is)\b",
    ),
    "dismissal": (
        r"\beveryone (?:feels|gets|has|goes)\b",
        r"\b(?:not|no) (?:such )?a big deal\b",
        r"\bcould be (?:a lot )?worse\b",
        r"\b(?:others|lots of people|plenty of people|many people) have it (?:much |a lot )?worse\b",
        r"\bget over\b",
        r"\bcalm down\b",
        r"\boverreact",
        r"\bstop (?:worrying|complaining|overthinking|dwelling)\b",
        r"\bcheer up\b",
        r"\b(?:bright|positive) side\b",
        r"\bdon'?t (?:overthink|dwell|worry so much|make (?:it|this) a big)\b",
        r"\bstay positive\b",
        r"\bmove on\b",
        r"\bit'?s (?:nothing|all in your head|not that bad)\b",
        r"\bthat'?s (?:just )?life\b",
    ),
}

RISK_CUES: tuple[str, ...] = (
    r"\b(?:kill|hurt|harm|cut)(?:ing)? myself\b",
    r"\bsuicid",
    r"\bend (?:it all|my life|things)\b",
    r"\bbetter off (?:dead|without me)\b",
    r"\b(?:don'?t|do not) want to (?:be here|live|wake up|go on)\b",
    r"\bno (?:point|reason) (?:in )?(?:living|going on|to live)\b",
    r"\bwish i (?:was|were) dead\b",
    r"\bdisappear forever\b",
    r"\bsleeping pills\b",
)

# Analyst strategy labels (ESConv, helping skills, modality strategies) -> move evidence.
LABEL_EVIDENCE: dict[str, str] = {
    "reflection_of_feelings": "reflection",
    "restatement": "reflection",
    "restatement_or_paraphrasing": "reflection",
    "summarise": "reflection",
    "affirmation_and_reassurance": "validation",
    "minimal_encouragement": "validation",
    "validation": "validation",
    "question": "exploration",
    "inquiring_subjective_information": "exploration",
    "inquiring_objective_information": "exploration",
    "socratic_questioning": "exploration",
    "providing_suggestions": "advice",
    "invite_new_actions": "advice",
    "information": "advice",
    "confrontation": "advice",
}
TEXT_WEIGHT = 1.0
LABEL_WEIGHT = 0.5
EARLY_EXCHANGES = 2  # advice in the first exchanges of a course is premature whatever its framing

_COMPILED = {m: [re.compile(p, re.IGNORECASE) for p in ps] for m, ps in MOVE_LEXICON.items()}
# One alternation per move: a reply that matches none of a move's phrases (most moves,
# most replies) costs one search instead of one per phrase; only a hit goes on to find
# which phrase matched first, in lexicon order, as before.
_ANY = {m: re.compile("|".join(f"(?:{p})" for p in ps), re.IGNORECASE) for m, ps in MOVE_LEXICON.items()}
_RISK_ANY = re.compile("|".join(f"(?:{p})" for p in RISK_CUES), re.IGNORECASE)
# The same patterns without IGNORECASE, for ASCII text lowered first: about twice as
# fast (a case-insensitive search folds every character it tries), and for ASCII
# text the same matches at the same offsets (every pattern is lowercase; the
# non-ASCII characters IGNORECASE also folds, such as the Kelvin sign, cannot occur).
# Other text takes the case-insensitive patterns. tests/test_node_cpu.py compares both
# and checks that every pattern is written in lowercase.
_COMPILED_LOWER = {m: [re.compile(p) for p in ps] for m, ps in MOVE_LEXICON.items()}
_ANY_LOWER = {m: re.compile("|".join(f"(?:{p})" for p in ps)) for m, ps in MOVE_LEXICON.items()}
_RISK_ANY_LOWER = re.compile("|".join(f"(?:{p})" for p in RISK_CUES))


# Whether a pattern ``\bP`` only matches where ``P`` starts with a word character:
# ``\b`` then a letter, or a group of alternatives each starting with a letter, not
# made optional; no lookbehind or anchor inside. Every lexicon pattern is written so
# (tests/test_node_cpu.py checks it); one that is not keeps the plain search.
_LEAD = re.compile(r"\\b(?:[a-z](?![?*{])|\(\?:[a-z](?![?*{])[^()|]*(?:\|[a-z](?![?*{])[^()|]*)*\)(?![?*{]))")
_WORD_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _word_led(pattern: str) -> bool:
    m = _LEAD.match(pattern)
    return m is not None and "(?<" not in pattern and "^" not in pattern.replace("[^", "") and "$" not in pattern


class _AfterBoundary:
    """``re.search("|".join(patterns), hay) is not None`` for a lowered ASCII ``hay``,
    when every pattern is ``\bP`` with ``P`` starting with a word character
    (:func:`_word_led`). Such a match starts at the text's start or right after one
    of the non-word characters the text holds (``seps``), so it is found by
    ``P`` at the start and by ``c(?:P)`` for each such character ``c``: a pattern
    that starts with a literal, which the regex engine looks for by that character
    instead of trying the pattern at every position (about half the CPU of the one
    alternation on replies of a few hundred characters)."""

    __slots__ = ("after", "at0", "body")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.body = "|".join(f"(?:{p[2:]})" for p in patterns)
        self.at0 = re.compile(f"(?:{self.body})")
        self.after: dict[str, re.Pattern[str]] = {}  # per separator character, made on first use

    def __call__(self, hay: str, seps: set[str]) -> bool:
        if self.at0.match(hay) is not None:
            return True
        after = self.after
        for c in seps:
            r = after.get(c)
            if r is None:
                r = after[c] = re.compile(re.escape(c) + f"(?:{self.body})")
            if r.search(hay) is not None:
                return True
        return False


# (the risk cues keep their one alternation: client utterances are short, and on them
# the searches after each separator cost more than the one search)
_PRESENT = {m: _AfterBoundary(ps) for m, ps in MOVE_LEXICON.items() if all(map(_word_led, ps))}


def has_risk_cue(text: str) -> bool:
    text = text or ""
    if text.isascii():
        return _RISK_ANY_LOWER.search(text.lower()) is not None
    return _RISK_ANY.search(text) is not None


def _text_moves(text: str) -> dict[str, str]:
    """The first phrase (in lexicon order) of each move found in ``text``: move -> the
    matched text, as written."""
    present: dict[str, _AfterBoundary] = {}
    seps: set[str] = set()
    if text.isascii():
        hay, anys, compiled, present = text.lower(), _ANY_LOWER, _COMPILED_LOWER, _PRESENT
        seps = set(hay) - _WORD_LOWER
    else:
        hay, anys, compiled = text, _ANY, _COMPILED
    out: dict[str, str] = {}
    for move, pats in compiled.items():
        fast = present.get(move)
        if not (anys[move].search(hay) is not None if fast is None else fast(hay, seps)):
            continue
        for p in pats:
            m = p.search(hay)
            if m:
                out[move] = text[m.start() : m.end()]
                break
    return out


def move_labels(current: Mapping[str, Any]) -> dict[str, Any]:
    """The analyst labels of one exchange the appraisal may use (from the per-exchange scratch)."""
    plan = current.get("plan") or {}
    risk = current.get("risk") or {}
    out: dict[str, Any] = {}
    if plan.get("strategy"):
        out["strategy"] = plan["strategy"]
    if risk.get("level"):
        out["client_risk"] = risk["level"]
    return out


def appraise(counselor_text: str, client_text: str = "", labels: Mapping[str, Any] | None = None, *, exchange: int = 99) -> dict[str, Any]:
    """The appraisal of one counselor reply: move strengths 0..1 and the evidence behind each."""
    labels = labels or {}
    strength: dict[str, float] = dict.fromkeys(MOVES, 0.0)
    evidence: dict[str, list[str]] = {}
    for move, found in _text_moves(counselor_text or "").items():
        strength[move] = TEXT_WEIGHT
        evidence.setdefault(move, []).append(f"text: {found!r}")
    label_move = LABEL_EVIDENCE.get(str(labels.get("strategy") or ""))
    if label_move:
        strength[label_move] = min(1.0, strength[label_move] + LABEL_WEIGHT)
        evidence.setdefault(label_move, []).append(f"analyst strategy: {labels['strategy']}")
    if strength["advice"] > 0 and (max(strength["validation"], strength["reflection"]) == 0 or exchange < EARLY_EXCHANGES):
        strength["premature_advice"] = strength["advice"]
        why = "no validation or reflection first" if exchange >= EARLY_EXCHANGES else f"advice in exchange {exchange} of the course"
        evidence["premature_advice"] = [why]
        strength["advice"] = 0.0
    cue = has_risk_cue(client_text)
    analyst_risk = str(labels.get("client_risk") or "") in ("moderate", "high", "imminent")
    if (cue or analyst_risk) and strength["safety_check"] == 0:
        strength["missed_risk_cue"] = TEXT_WEIGHT if cue else LABEL_WEIGHT
        evidence["missed_risk_cue"] = [("risk cue in the client's words" if cue else "") + (f"; analyst risk {labels['client_risk']}" if analyst_risk else "")]
    if not (cue or analyst_risk):
        strength["safety_check"] = min(strength["safety_check"], 0.5)  # asking about safety unprompted is fine but not a repair
    moves = {k: round(v, 3) for k, v in strength.items() if v > 0}
    return {"moves": moves, "evidence": {k: v for k, v in evidence.items() if k in moves}, "risk_cue": cue, "labels": dict(labels)}
