"""Risk policy: deterministic crisis-cue detection and the risk protocol.

:func:`scan` is the first layer of risk control: lexical patterns that catch
explicit crisis statements even when the model is weak, while figures of
speech ("this traffic is killing me") are not flagged. Each cue says whether it
is negated, historical, about a third person or inside a quotation, so the LLM
layer and the protocol can weigh it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

__all__ = [
    "LADDER",
    "RISK_LEVELS",
    "RUNGS",
    "RiskCue",
    "RiskProtocol",
    "Step",
    "level_rank",
    "pattern_scan",
    "scan",
    "unvetoed",
    "vetoable",
    "with_reading",
]

Category = Literal["self_harm", "harm_to_others", "abuse"]
RISK_LEVELS: tuple[str, ...] = ("none", "low", "moderate", "high", "imminent")
CRISIS_CLASSES: tuple[str, ...] = (
    "none",
    "imminent_harm_to_self",
    "imminent_harm_to_others",
    "severe_psychological_decompensation",
)
RESPONSE_ACTIONS: tuple[str, ...] = (
    "assess_risk",
    "de_escalate",
    "safety_plan",
    "recommend_emergency_services",
    "request_human_consultation",
)


# C-SSRS-style ladder of suicidal ideation and behaviour (Posner et al. 2011), lowest
# first, then the categories kept beside it (docs/risk.md).
LADDER: tuple[str, ...] = ("wish_dead", "active_nonspecific", "ideation_method", "intent", "plan", "preparatory", "attempt")
OTHER_RUNGS: tuple[str, ...] = ("nssi", "harm_others", "abuse")
RUNGS: tuple[str, ...] = LADDER + OTHER_RUNGS
RUNG_CATEGORY: dict[str, Category] = {**dict.fromkeys(LADDER, "self_harm"), "nssi": "self_harm", "harm_others": "harm_to_others", "abuse": "abuse"}


def level_rank(level: str) -> int:
    return RISK_LEVELS.index(level) if level in RISK_LEVELS else 0


@dataclass(frozen=True, slots=True)
class RiskCue:
    """One crisis cue found in a text: category, the quoted span and qualifiers."""

    category: Category
    span: str
    start: int
    end: int
    pattern: str
    negated: bool = False
    past: bool = False
    third_person: bool = False
    quoted: bool = False
    rung: str = ""  # a RUNGS value: the ladder step or category this statement shows
    source: str = "pattern"  # "pattern" or "model" (the classifier, risk_model)
    score: float | None = None  # model: P(risk) of the whole text
    context: str = ""  # set when the classifier reads the text as a hard negative ("benign:media")

    @property
    def active(self) -> bool:
        """A present, first-person, unquoted, non-negated statement in no benign context."""
        return not (self.negated or self.past or self.third_person or self.quoted or self.context)

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["active"] = self.active
        return d


_OBJ = r"(?:him|her|them|you|someone|somebody|everyone|everybody|people|my (?:\w+ ){0,2}?(?:boss|wife|husband|partner|dad|father|mom|mother|mum|brother|sister|son|daughter|kids?|children|neighbou?r|ex|teacher|roommate|friend|coworkers?|colleagues?))"
_REFLEX = r"(?:myself|himself|herself|themselves|themself|yourself)"

# (category, rung, pattern). The rung is the C-SSRS-style step the statement shows on
# its own; :func:`_rung_in_context` may raise it (intent or plan words in the sentence).
_PATTERNS: list[tuple[Category, str, str]] = [
    # self-harm and suicide: explicit
    ("self_harm", "active_nonspecific", rf"\b(?:kill|killing|killed|hang|hanging|hanged|shoot|shooting|drown|drowning|poison|poisoning) {_REFLEX}\b"),
    ("self_harm", "nssi", rf"\b(?:hurt|hurting|hurted|harm|harming|harmed|cut|cutting|burn|burning|starve|starving) {_REFLEX}\b"),
    ("self_harm", "active_nonspecific", r"\bsuicid(?:e|al|ality)\b(?! (?:squad|mission|doors?|squeeze|run|note(?:s)? (?:in|from) (?:the|a) (?:song|film|movie|book)))"),
    ("self_harm", "active_nonspecific", r"\b(?:end|ending|ended|take|taking|took) (?:my|his|her|their) (?:own )?life\b"),
    ("self_harm", "intent", r"\b(?:going|plan|planning|ready) to die\b"),
    ("self_harm", "wish_dead", r"\b(?:want|wanted|wants|wanting|need) to die\b"),
    ("self_harm", "wish_dead", r"\bwanna die\b"),
    ("self_harm", "wish_dead", r"\bwish(?:ed)? (?:i|he|she|they) (?:was|were|had|could be) (?:dead|never born|gone)\b"),
    ("self_harm", "wish_dead", r"\bbetter off (?:dead|without me|if i (?:was|were) gone)\b"),
    ("self_harm", "wish_dead", r"\b(?:no|nothing) (?:reason|point) (?:to|in) (?:live|living|going on|being alive)\b"),
    ("self_harm", "wish_dead", r"\b(?:don'?t|do not|never) want to (?:live|be alive|wake up|exist|be here)\b"),
    ("self_harm", "wish_dead", r"\bnot (?:want|wanting) to (?:live|be alive|wake up|exist)\b"),
    ("self_harm", "wish_dead", r"\b(?:can'?t|cannot) (?:go on|keep going|do this anymore|take it anymore)\b"),
    ("self_harm", "active_nonspecific", r"\bend it all\b"),
    # texting slang (issue #14): "kms" (kill myself), "unalive myself"
    ("self_harm", "active_nonspecific", r"\b(?:kms|unalive (?:my ?self|me))\b"),
    ("self_harm", "intent", r"\b(?:not|won'?t) be (?:here|around) (?:anymore|much longer|for long|next week)\b"),
    ("self_harm", "nssi", r"\bself[- ]?harm(?:ing)?\b"),
    ("self_harm", "attempt", r"\boverdosed\b"),
    ("self_harm", "ideation_method", r"\boverdos(?:e|ing)\b"),
    ("self_harm", "attempt", r"\b(?:took|swallow(?:ed)?) (?:all (?:of )?(?:my |the )?|a (?:whole )?bottle of |a handful of |too many |every one of my )(?:pills|tablets|meds|medication|sleeping pills)\b"),
    ("self_harm", "intent", r"\b(?:take|taking|swallowing) (?:all (?:of )?(?:my |the )?|a (?:whole )?bottle of |a handful of |too many |every one of my )(?:pills|tablets|meds|medication|sleeping pills)\b"),
    ("self_harm", "preparatory", r"\b(?:saving up|stockpil\w+|hoard\w*|collecting) (?:my |the )?(?:pills|tablets|meds|medication|sleeping pills)\b"),
    ("self_harm", "ideation_method", r"\bjump(?:ing|ed)? (?:off|from|in front of) (?:a |the )?(?:bridge|roof|building|train|ledge|balcony)\b"),
    ("self_harm", "preparatory", r"\b(?:saved|stashed|hidden|hid) (?:up |away )?(?:all )?(?:my |the |some |enough )?(?:pills|tablets|meds|medication|sleeping pills|painkillers|paracetamol)\b"),
    ("self_harm", "preparatory", r"\b(?:pills|tablets|meds|medication|painkillers|paracetamol) (?:\w+ ){0,2}?(?:saved up|stashed|hidden away|put aside|set aside|stockpiled)\b"),
    ("self_harm", "preparatory", r"\b(?:wrote|writing|written|write|left|leaving) (?:a |my |the )?(?:suicide |goodbye )(?:notes?|letters?)\b"),
    ("self_harm", "preparatory", r"\bgoodbye (?:notes?|letters?) (?:to|for)\b"),
    ("self_harm", "preparatory", r"\b(?:bought|got|have|keep) (?:a |the )?(?:rope|gun|noose|razor blades?)\b(?= (?:for|to|so|in case|ready)\b| ready\b)"),
    ("self_harm", "preparatory", r"\b(?:gave|giving) away (?:all )?my (?:things|stuff|belongings)\b"),
    # harm to others
    ("harm_to_others", "harm_others", rf"\b(?:kill|killing|murder|murdering|stab|stabbing|shoot|shooting|strangle|strangling|hurt|hurting|beat up|attack|attacking) {_OBJ}\b(?! (?:for|with) (?:a|some|the) (?:coffee|pizza|chocolate|beer|nap|holiday|vacation)\b)"),
    ("harm_to_others", "harm_others", r"\bmake (?:him|her|them|everyone|you) (?:pay|suffer)\b"),
    ("harm_to_others", "harm_others", r"\b(?:bring|bringing|take|taking) (?:a |my )?(?:gun|knife|weapon) to (?:work|school|the office|their house|his house|her house)\b"),
    ("harm_to_others", "harm_others", r"\bthoughts? (?:of|about) (?:killing|hurting|harming) (?:others|people|someone|him|her|them)\b"),
    # abuse and neglect
    ("abuse", "abuse", r"\b(?:he|she|they|my \w+) (?:hits|hit|beats|beat|kicks|kicked|chokes|choked|slaps|slapped|punches|punched|burns|burned|rapes?d?|molest(?:s|ed)?|touches|touched) (?:me|us|my (?:kids?|children|son|daughter|mum|mom|mother|sister|brother))\b"),
    ("abuse", "abuse", r"\b(?:threatens?|threatened) to (?:kill|hurt|hit|beat) (?:me|us|the kids|my \w+)\b"),
    ("abuse", "abuse", r"\b(?:he|she|they)(?:'d| will| would| said (?:he|she|they)(?:'d| would| will)) kill me\b(?! if)"),
    ("abuse", "abuse", r"\b(?:afraid|scared|terrified) to go home\b"),
    ("abuse", "abuse", r"\b(?:locks?|locked) me (?:in|out|up)\b"),
    ("abuse", "abuse", r"\b(?:sexually |physically |emotionally )?abus(?:e|es|ed|ing|ive)\b(?! (?:of|the) (?:system|power|process|drugs|alcohol))"),
    ("abuse", "abuse", r"\b(?:doesn'?t|does not|don'?t|never) (?:feed|feeds) (?:me|us|the kids)\b"),
]
_COMPILED = [(cat, rung, re.compile(p, re.IGNORECASE)) for cat, rung, p in _PATTERNS]
# All the patterns as one alternation, with the same flag: it finds a match exactly when
# one of the patterns matches somewhere in the text (an alternative matches at a
# position when its pattern does; none has a backreference, a named group or an inline
# flag that the alternation would change). Most utterances hold no cue, and one search
# costs a fraction of forty (each a ``finditer`` set up and run); a text that matches goes
# on to the per-pattern loop as before.
_ANY_CUE = re.compile("|".join(f"(?:{rx.pattern})" for _, _, rx in _COMPILED), re.IGNORECASE)
_THIRD_IN_SPAN = re.compile(r"\b(?:himself|herself|themselves|themself|his own life|her own life|their own life|his life|her life|their life)\b")
_NEGATED_SPAN = re.compile(r"(?:don'?t|do not|never|not) ")
# Self-harm patterns that only name a topic (suicide, self-harm, an overdose) or read as
# everyday hyperbole ("I'm going to die", "I won't be here next week"); the other
# self-harm patterns above the wish-to-die rung name an explicit act, method or
# preparation in the speaker's words ("kms", "end it all", pills saved up, goodbye
# letters), and the classifier's benign reading alone does not silence them (:func:`vetoable`).
_TOPIC_STARTS = (r"\bsuicid", r"\bself[- ]", r"\boverdos", r"\b(?:going|plan", r"\b(?:not|won")
EXPLICIT_PATTERNS: frozenset[str] = frozenset(
    p[:40] for cat, rung, p in _PATTERNS if cat == "self_harm" and rung != "wish_dead" and not p.startswith(_TOPIC_STARTS)
)
# A hyperbole marker in the cue's sentence: a condition ("kms if this fee goes out"), a
# laughing or skull emoji, "lol"/"jk"; or a trivial object right after it ("kms this essay",
# "hang myself with it").
_HYPERBOLE = re.compile(r"\bif\b|💀|😭|😂|🙃|🙂|😩|🤣|😆|\b(?:lol|lmao|lmfao|haha\w*|jk|ugh)\b", re.IGNORECASE)
_TRIVIAL_OBJECT = re.compile(r"^\W*(?:\w+\W+){0,2}?(?:this|that|these|those|with (?:it|my|a|the))\b", re.IGNORECASE)

_NEGATORS = re.compile(
    r"\b(?:not|never|no|n't|dont|don't|didn't|won't|wouldn't|isn't|aren't|wasn't|nor|no longer have|stopped having)\b(?:\W+\w+){0,4}\W*$",
    re.IGNORECASE,
)
# "no longer want to live" and "never want to wake up" stay positive: those live inside patterns.
_PAST = re.compile(
    r"\b(?:tried|attempted|attempt|used to|years? ago|months? ago|last (?:year|month|spring|summer|winter|fall|autumn)|when i was (?:a |\d)|in the past|back in|history of|survived|recovered|back then|as a (?:kid|child|teen(?:ager)?)|at \d\d?)\b",
    re.IGNORECASE,
)
_THIRD = re.compile(
    r"(?:\b(?:he|she|they|his|her|their|my (?:\w+ ){0,2}?(?:friend|brother|sister|mum|mom|mother|dad|father|son|daughter|cousin|partner|wife|husband|colleague|coworker|roommate|patient|client|neighbou?r))\b(?:\W+\w+){0,6}\W*$)",
    re.IGNORECASE,
)
_FIRST = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|me|my ?self)\b(?:\W+\w+){0,6}\W*$", re.IGNORECASE)
_FIGURES = re.compile(
    r"\b(?:killing me|kill me with|would kill me if|dying to|to die for|die (?:of|from) (?:laughter|embarrassment|boredom)|kill for|killed it|killing it|dead tired|dead on my feet|bored to death|scared to death|suicide (?:squad|mission|doors?))\b",
    re.IGNORECASE,
)


_INTENT = re.compile(r"\b(?:going to|gonna|i'?ll|i will|decided to|ready to|tonight|tomorrow)\b", re.IGNORECASE)
_PLAN = re.compile(
    r"\b(?:planned|planning|my plan|the plan|worked out (?:how|when)|figured out (?:how|when)|(?:on|this|next) (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|weekend))\b",
    re.IGNORECASE,
)


def _rung_in_context(rung: str, sentence: str) -> str:
    """Raise an ideation rung to ``plan`` or ``intent`` when the sentence says so."""
    if rung not in ("wish_dead", "active_nonspecific", "ideation_method"):
        return rung
    if _PLAN.search(sentence):
        return "plan"
    if _INTENT.search(sentence):
        return "intent"
    return rung


def _in_quotes(text: str, start: int) -> bool:
    before = text[:start]
    return before.count('"') % 2 == 1 or (before.count("“") > before.count("”"))


def _clause_before(text: str, start: int) -> str:
    seg = text[:start]
    cut = max(seg.rfind(c) for c in ".!?;\n")
    return seg[cut + 1 :]


def scan(text: str, *, model: bool | None = None, knn: bool | None = None) -> list[RiskCue]:
    """Find crisis cues in ``text``; an empty list when there are none.

    Two deterministic detectors: the lexical patterns (:func:`pattern_scan`) and a
    classifier over MiniLM (:mod:`therasim.policies.risk_model`), which adds a cue
    the patterns miss (``source="model"``) and qualifies pattern cues in texts it
    reads as benign (denial, resolved history, third person, media, professional,
    figure of speech, everyday distress). ``model=None`` uses the classifier when
    the embedded extra is installed (it loads on first use, never at import) and
    ``THERASIM_RISK_KNN`` is not ``0``; ``False`` runs the patterns alone; ``True``
    requires the classifier. ``knn`` is the older name of ``model``.

    Cues carry qualifiers (negated, past, third_person, quoted, context);
    ``cue.active`` is true for a present first-person statement.
    """
    use = model if model is not None else knn
    cues = pattern_scan(text)
    if not text.strip() or use is False:
        return cues
    from therasim.policies import risk_model

    if use is None and not risk_model.model_default():
        return cues
    if use is True and not risk_model.model_available():
        from therasim.errors import MissingExtraError

        raise MissingExtraError("transformers", "embedded", "The risk scan's classifier")
    clf = risk_model.default_classifier()
    return with_reading(text, cues, clf.read(text), threshold=clf.threshold, veto=clf.veto) if clf is not None else cues


# What the classifier's benign reading says about a pattern cue in that text.
_BENIGN_QUALIFIER: dict[str, dict[str, bool]] = {
    "denial": {"negated": True},
    "resolved_history": {"past": True},
    "third_person": {"third_person": True},
}
# Benign readings that still mention risk (a qualified statement, not an everyday one).
_QUALIFIED_TOPICS = ("denial", "resolved_history", "third_person", "media", "professional")


def with_reading(text: str, cues: list[RiskCue], reading: Any, *, threshold: float, veto: float) -> list[RiskCue]:
    """Merge the classifier's reading of the whole text (a
    :class:`~therasim.policies.risk_model.Reading`) into the pattern cues.

    ``p_risk >= threshold``: a risk statement. A pattern cue of the same category
    keeps its span (the higher rung wins); otherwise a ``source="model"`` cue is
    added over the sentence that reads most like risk. Below the threshold, active
    pattern cues are qualified when ``p_risk <= veto`` (the text reads as benign:
    the benign reading sets ``negated``, ``past`` or ``third_person``, and
    ``context="benign:<subtype>"``), and a text the classifier reads as a qualified
    mention (denial, resolved history, third person, media, professional; that
    class at least 0.5) with no pattern cue gets one inactive ``model`` cue."""
    score = round(reading.p_risk, 4)
    if reading.p_risk >= threshold:
        category = RUNG_CATEGORY[reading.rung]
        same = [c for c in cues if c.active and c.category == category]
        if same:
            return [replace(c, rung=reading.rung) if c in same and _higher(reading.rung, c.rung) else c for c in cues]
        s, e = reading.span
        cue = RiskCue(category=category, span=text[s:e], start=s, end=e, pattern=f"model:{reading.rung}", quoted=_in_quotes(text, s) or _quoted_whole(text[s:e]), rung=reading.rung, source="model", score=score)
        return sorted([*cues, cue], key=lambda c: c.start)
    sub = reading.benign
    qual: dict[str, Any] = {**_BENIGN_QUALIFIER.get(sub, {}), "context": f"benign:{sub}"}
    if reading.p_risk <= veto and any(c.active for c in cues):
        return [replace(c, score=score, **qual) if c.active and vetoable(text, c, sub, reading.p_benign_subtype) else c for c in cues]
    if not cues and sub in _QUALIFIED_TOPICS and reading.p_benign_subtype >= 0.5:
        s, e = reading.span
        cue = RiskCue(category=RUNG_CATEGORY[reading.rung], span=text[s:e], start=s, end=e, pattern=f"model:benign:{sub}", rung=reading.rung, source="model", score=score, **qual)
        return [cue]
    return cues


def vetoable(text: str, cue: RiskCue, benign: str, p_benign_subtype: float) -> bool:
    """Whether a benign reading of ``text`` (its most probable benign subtype and that
    subtype's probability) may qualify the active pattern cue ``cue`` when ``P(risk)``
    is at or below the veto. Any cue may be qualified except an explicit one
    (:data:`EXPLICIT_PATTERNS`: "kms", "end it all", pills saved up, goodbye letters),
    which needs a qualifier besides: the classifier reads a qualified mention (denial,
    resolved history, third person, media, professional) at 0.5 or more, or the cue's
    sentence carries a hyperbole marker (:data:`_HYPERBOLE`, a trivial object)."""
    if cue.pattern not in EXPLICIT_PATTERNS:
        return True
    if benign in _QUALIFIED_TOPICS and p_benign_subtype >= 0.5:
        return True
    start = max(text.rfind(c, 0, cue.start) for c in ".!?\n") + 1
    ends = [i for i in (text.find(c, cue.end) for c in ".!?\n") if i != -1]
    end = min(ends, default=len(text))
    return bool(_HYPERBOLE.search(text[start:end]) or _TRIVIAL_OBJECT.search(text[cue.end : end]))


def unvetoed(text: str, cues: list[RiskCue], benign: str, p_benign_subtype: float) -> bool:
    """Whether an active pattern cue of ``text`` stands whatever ``P(risk)`` is (an
    explicit cue the benign reading may not qualify; the threshold choice counts these
    texts as flagged)."""
    return any(c.active and not vetoable(text, c, benign, p_benign_subtype) for c in cues)


def _higher(a: str, b: str) -> bool:
    return a in LADDER and (b not in LADDER or LADDER.index(a) > LADDER.index(b))


def _quoted_whole(span: str) -> bool:
    s = span.strip()
    return len(s) > 1 and s[0] in "\"“" and s[-1] in "\"”"


def pattern_scan(text: str) -> list[RiskCue]:
    """The lexical-pattern detector alone (the first layer of :func:`scan`)."""
    if not text:
        return []
    if _ANY_CUE.search(text) is None:
        return []
    cues: list[RiskCue] = []
    taken: list[tuple[int, int]] = []
    for cat, rung, rx in _COMPILED:
        for m in rx.finditer(text):
            s, e = m.span()
            if any(s < te and e > ts for ts, te in taken):
                continue
            # A figure of speech overlapping the match is not a cue.
            if any(f.start() <= s < f.end() or s <= f.start() < e for f in _FIGURES.finditer(text)):
                continue
            clause = _clause_before(text, s)
            span = m.group(0)
            lower = span.lower()
            sentence_end = len(text)
            for c in ".!?\n":
                idx = text.find(c, e)
                if idx != -1:
                    sentence_end = min(sentence_end, idx)
            sentence = clause + text[s:sentence_end]
            third = bool(_THIRD_IN_SPAN.search(lower))
            if not third and cat == "self_harm":
                th, fi = _THIRD.search(clause), _FIRST.search(clause)
                if th and (not fi or th.start() > fi.start()):
                    third = True
            negated = bool(_NEGATORS.search(clause)) and not _NEGATED_SPAN.match(lower)
            cues.append(
                RiskCue(
                    category=cat,
                    span=span,
                    start=s,
                    end=e,
                    pattern=rx.pattern[:40],
                    negated=negated,
                    past=bool(_PAST.search(sentence)),
                    third_person=third,
                    quoted=_in_quotes(text, s),
                    rung=_rung_in_context(rung, sentence),
                )
            )
            taken.append((s, e))
    cues.sort(key=lambda c: c.start)
    return cues


@dataclass(frozen=True, slots=True)
class Step:
    action: str
    guidance: str


class RiskProtocol:
    """What the counselor must do at each risk level: always compassionate, never
    an abrupt refusal (Compassionate Completion Standard: empathic
    acknowledgement, transparent boundary, graded transition, guided redirection)."""

    def __init__(self, steps: dict[str, list[Step]] | None = None, handoff_levels: tuple[str, ...] = ("imminent",)) -> None:
        self.steps = steps or {
            "none": [],
            "low": [Step("assess_risk", "Gently check in about safety if it feels natural.")],
            "moderate": [
                Step("assess_risk", "Ask directly and kindly about thoughts of harm, their frequency and any plan."),
                Step("de_escalate", "Reflect the pain you hear and slow the pace."),
            ],
            "high": [
                Step("assess_risk", "Ask directly about intent, plan, means and timing, with warmth."),
                Step("de_escalate", "Acknowledge the pain; stay with the client; no lecturing."),
                Step("safety_plan", "Build a short safety plan together: warning signs, coping steps, people to call, making means safer."),
                Step("recommend_emergency_services", "Share crisis line and emergency numbers as an offer of support."),
            ],
            "imminent": [
                Step("de_escalate", "Acknowledge the pain with empathy; say you are glad they told you."),
                Step("recommend_emergency_services", "Urge contact with emergency services or a crisis line now; explain why, kindly."),
                Step("request_human_consultation", "Say a human clinician is being brought in; stay present while that happens."),
            ],
        }
        self.handoff_levels = handoff_levels

    def steps_for(self, level: str) -> list[Step]:
        return list(self.steps.get(level, []))

    def directive(self, level: str) -> str:
        steps = self.steps_for(level)
        if not steps:
            return ""
        lines = [f"RISK PROTOCOL (level {level}): respond with compassion, never an abrupt refusal."]
        lines += [f"- {s.action}: {s.guidance}" for s in steps]
        return "\n".join(lines)

    def requires_handoff(self, level: str) -> bool:
        return level in self.handoff_levels
