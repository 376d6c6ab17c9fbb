"""Simulator health: deterministic metrics (no LLM) on one session record of
transcripts.jsonl, aggregated per course and per cohort.

Each key, its definition and its published source are listed in
:data:`HEALTH_METRICS` and in docs/evaluation.md. Turns are the record's
``turns`` (client and counselor alternating within each exchange).
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from therasim.eval.stats import mean_ci
from therasim.eval.text import content_words, ngram_overlap, ngrams, words

__all__ = ["ECHO_THRESHOLD", "HEALTH_METRICS", "REPEAT_THRESHOLD", "health", "health_summary"]

ECHO_THRESHOLD = 0.5  # share of a client turn's word trigrams found in the preceding counselor turn
REPEAT_THRESHOLD = 0.5  # share of a turn's word trigrams already said by the same speaker this session
CURE_DISTRESS_DROP = 5  # inner distress points lost within one session that count as an instant cure

# key -> (definition, source)
HEALTH_METRICS: dict[str, tuple[str, str]] = {
    "exchanges": ("client turns in the session (one exchange = client turn + counselor reply)", "therasim"),
    "end_reason": ("why the session ended (max_turns, client_wish, closing, handoff, ...)", "therasim termination policy"),
    "words_client": ("mean words per client turn", "therasim"),
    "words_counselor": ("mean words per counselor turn", "therasim"),
    "strategy_stickiness": ("share of consecutive counselor-turn pairs (both labelled) with the same strategy label; humans ~0.27, LLM counselors 0.50-0.56", "MINT (2025) tactic stickiness"),
    "echo_overlap": ("mean share of a client turn's word trigrams that occur in the preceding counselor turn", "SPASM (2026) echoing"),
    "echo_rate": (f"share of client turns (with a preceding counselor turn) whose trigram overlap is >= {ECHO_THRESHOLD}", "SPASM (2026) echoing"),
    "distinct1_client": ("distinct unigrams / all unigrams over the client's turns", "Li et al. (2016) distinct-n"),
    "distinct2_client": ("distinct bigrams / all bigrams over the client's turns", "Li et al. (2016) distinct-n"),
    "distinct1_counselor": ("distinct unigrams / all unigrams over the counselor's turns", "Li et al. (2016) distinct-n"),
    "distinct2_counselor": ("distinct bigrams / all bigrams over the counselor's turns", "Li et al. (2016) distinct-n"),
    "self_repetition_client": (f"share of client turns after the first whose trigrams are >= {REPEAT_THRESHOLD} already said by the client earlier in the session", "repetition rate, after Holtzman et al. (2020) / Li et al. (2016)"),
    "self_repetition_counselor": (f"share of counselor turns after the first whose trigrams are >= {REPEAT_THRESHOLD} already said by the counselor earlier in the session", "repetition rate, after Holtzman et al. (2020) / Li et al. (2016)"),
    "role_breaks": ("turns where a speaker leaves its role: AI or format talk by either side, therapist talk by the client", "SPASM (2026) role drift; therasim client validator"),
    "calls": ("model calls recorded on the session's turns", "therasim trace"),
    "degraded_calls": ("calls that failed after all attempts (the node degraded openly)", "therasim trace (call records, events.jsonl)"),
    "degraded_turns": ("client turns produced by the plain-text fallback after the structured call failed", "therasim trace (client note)"),
    "persona_conflicts": ("stated facts (age, name, occupation) contradicting the intake form or an earlier statement in the session", "Abdulhai et al. (2025) prompt-to-line and line-to-line consistency (lexical form)"),
    "persona_grounding": ("share of client turns using at least one content word of the client's profile (needs the profile)", "Abdulhai et al. (2025) prompt-to-line consistency (lexical proxy)"),
    "disclosure_start": ("client's inner disclosure level (0-4) at the first turn", "Adaptive Virtual Patient (2026) disclosure"),
    "disclosure_end": ("client's inner disclosure level (0-4) at the last turn", "Adaptive Virtual Patient (2026) disclosure"),
    "disclosure_slope": ("least-squares slope of inner disclosure per exchange", "Adaptive Virtual Patient (2026) disclosure"),
    "disclosure_max_step": ("largest change of disclosure between consecutive client turns (policy allows 1)", "MindEval (2025) gradual disclosure"),
    "instant_cure": (f"a client turn declares the problem solved ('I'm cured', 'I feel completely better') or inner distress falls by >= {CURE_DISTRESS_DROP} within the session", "SPASM (2026) / MindEval (2025) unrealistically fast improvement"),
}

NUMERIC_KEYS = tuple(k for k in HEALTH_METRICS if k not in ("end_reason", "instant_cure"))
COUNT_KEYS = ("role_breaks", "calls", "degraded_calls", "degraded_turns", "persona_conflicts")

_AI_TALK = re.compile(r"\b(?:as an ai|i am an ai|i'm an ai|an ai (?:language )?model|language model|as a chatbot|json|inner state|wants_to_end|utterance)\b", re.I)
_THERAPIST_TALK = re.compile(
    r"\b(?:as (?:a|your) (?:therapist|counsel+or)|how does that make you feel|what brings you (?:here|in) today|in our session today|let's explore|i hear you saying)\b", re.I
)
_CURE = re.compile(
    r"\b(?:i(?:'m| am) (?:completely |totally |fully |all )?(?:cured|healed)"
    r"|i(?:'m| am) (?:completely|totally|fully|all) (?:better|fine|fixed)"
    r"|i feel (?:completely|totally|so much|a lot|way|100%|all) better"
    r"|(?:you(?:'ve| have)|that(?:'s| has)?|this(?:'s| has)?) (?:cured|fixed) me"
    r"|all my problems are (?:gone|solved|fixed)"
    r"|my (?:depression|anxiety|problems?) (?:is|are) (?:gone|solved|cured)"
    r"|i(?:'m| am) not (?:depressed|anxious) any ?more)\b",
    re.I,
)
_AGE = re.compile(r"\b(?:i'm|i am|im)\s+(\d{1,3})\s*(?:years?\s+old|yrs?\s+old|y/o)\b|\bi\s+(?:just\s+)?turned\s+(\d{1,3})\b", re.I)
_NAME = re.compile(r"\bmy name(?:'s| is)\s+([A-Z][a-z]+)|\b(?:i'm|i am) called\s+([A-Z][a-z]+)")
_JOB = re.compile(r"\bi (?:work|am working) as an? ([a-z][a-z -]{2,40}?)(?=[.,;!?]|$| and | but | at | in | for )", re.I)


def _speaker_turns(turns: list[dict[str, Any]], speaker: str) -> list[dict[str, Any]]:
    return [t for t in turns if t.get("speaker") == speaker]


def _mean(xs: Iterable[float]) -> float | None:
    xs = list(xs)
    return statistics.fmean(xs) if xs else None


def _distinct(texts: list[str], n: int) -> float | None:
    grams = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else None


def _self_repetition(texts: list[str]) -> float | None:
    seen: set[tuple[str, ...]] = set()
    flags: list[bool] = []
    for i, t in enumerate(texts):
        grams = set(ngrams(words(t), 3))
        if i > 0 and grams:
            flags.append(len(grams & seen) / len(grams) >= REPEAT_THRESHOLD)
        seen |= grams
    return sum(flags) / len(flags) if flags else None


def _stickiness(counselor: list[dict[str, Any]]) -> tuple[float | None, int]:
    labels = [((t.get("strategy") or {}).get("strategy")) for t in counselor]
    pairs = [(a, b) for a, b in itertools.pairwise(labels) if a and b]
    if not pairs:
        return None, 0
    return sum(a == b for a, b in pairs) / len(pairs), len(pairs)


def _echo(turns: list[dict[str, Any]]) -> list[float]:
    out: list[float] = []
    prev_counselor: str | None = None
    for t in turns:
        if t.get("speaker") == "counselor":
            prev_counselor = t.get("text") or ""
        elif t.get("speaker") == "client" and prev_counselor is not None:
            ov = ngram_overlap(t.get("text") or "", prev_counselor, 3)
            if ov is not None:
                out.append(ov)
    return out


def _role_breaks(turns: list[dict[str, Any]]) -> list[int]:
    out = []
    for i, t in enumerate(turns):
        text = t.get("text") or ""
        if _AI_TALK.search(text) or (t.get("speaker") == "client" and _THERAPIST_TALK.search(text)):
            out.append(int(t.get("index", i)))
    return out


def _facts(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for m in _AGE.finditer(text):
        out.append(("age", m.group(1) or m.group(2)))
    for m in _NAME.finditer(text):
        out.append(("name", (m.group(1) or m.group(2)).lower()))
    for m in _JOB.finditer(text):
        out.append(("occupation", m.group(1).strip().lower()))
    return out


def _persona_conflicts(client: list[dict[str, Any]], profile: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    intake = (profile or {}).get("intake") or {}
    truth: dict[str, str] = {}
    if intake.get("age") is not None:
        truth["age"] = str(intake["age"])
    if intake.get("name"):
        truth["name"] = str(intake["name"]).split()[0].lower()
    if intake.get("occupation") and intake["occupation"] != "unspecified":
        truth["occupation"] = str(intake["occupation"]).lower()
    stated: dict[str, tuple[str, int]] = {}
    conflicts: list[dict[str, Any]] = []
    for i, t in enumerate(client):
        idx = int(t.get("index", i))
        for key, val in _facts(t.get("text") or ""):
            if key in truth and not _same(key, val, truth[key]):
                conflicts.append({"turn": idx, "fact": key, "said": val, "against": "profile", "expected": truth[key]})
            elif key in stated and not _same(key, val, stated[key][0]):
                conflicts.append({"turn": idx, "fact": key, "said": val, "against": f"turn {stated[key][1]}", "expected": stated[key][0]})
            stated.setdefault(key, (val, idx))
    return conflicts


def _same(key: str, said: str, expected: str) -> bool:
    if key != "occupation":
        return said == expected
    a, b = content_words(said, 3), content_words(expected, 3)
    return bool(a & b) or said in expected or expected in said


def _profile_words(profile: Mapping[str, Any]) -> set[str]:
    parts: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, str):
            parts.append(x)
        elif isinstance(x, Mapping):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk({"intake": profile.get("intake"), "hidden": profile.get("hidden")})
    return content_words(" ".join(parts))


def _slope(ys: list[float]) -> float | None:
    if len(ys) < 2:
        return None
    xs = list(range(len(ys)))
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def health(record: Mapping[str, Any], profile: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Health metrics of one session record (a transcripts.jsonl line).

    ``profile`` (the client's profile dict from profiles.jsonl) enables the
    profile-based persona checks; without it ``persona_grounding`` is None and
    ``persona_conflicts`` compares statements with each other only.
    """
    turns = list(record.get("turns") or [])
    client = _speaker_turns(turns, "client")
    counselor = _speaker_turns(turns, "counselor")
    ctexts = [t.get("text") or "" for t in client]
    otexts = [t.get("text") or "" for t in counselor]
    sticky, pairs = _stickiness(counselor)
    echo = _echo(turns)
    breaks = _role_breaks(turns)
    conflicts = _persona_conflicts(client, profile)
    grounding = None
    if profile:
        vocab = _profile_words(profile)
        grounding = _mean(1.0 if content_words(t) & vocab else 0.0 for t in ctexts) if ctexts else None
    inner = [t.get("inner") or {} for t in client]
    disc = [float(i["disclosure"]) for i in inner if i.get("disclosure") is not None]
    distress = [float(i["distress"]) for i in inner if i.get("distress") is not None]
    cure_turns = [int(t.get("index", i)) for i, t in enumerate(client) if _CURE.search(t.get("text") or "")]
    distress_drop = (max(distress[: k + 1]) - distress[k] for k in range(len(distress))) if distress else iter(())
    cure = bool(cure_turns) or any(d >= CURE_DISTRESS_DROP for d in distress_drop)
    return {
        "client_id": record.get("client_id"),
        "session": record.get("session"),
        "branch": record.get("branch"),
        "exchanges": len(client),
        "end_reason": record.get("end_reason"),
        "words_client": _mean(len(words(t)) for t in ctexts),
        "words_counselor": _mean(len(words(t)) for t in otexts),
        "strategy_stickiness": sticky,
        "strategy_pairs": pairs,
        "echo_overlap": _mean(echo),
        "echo_rate": _mean(1.0 if e >= ECHO_THRESHOLD else 0.0 for e in echo),
        "distinct1_client": _distinct(ctexts, 1),
        "distinct2_client": _distinct(ctexts, 2),
        "distinct1_counselor": _distinct(otexts, 1),
        "distinct2_counselor": _distinct(otexts, 2),
        "self_repetition_client": _self_repetition(ctexts),
        "self_repetition_counselor": _self_repetition(otexts),
        "role_breaks": len(breaks),
        "role_break_turns": breaks,
        "calls": sum(int(t.get("n_calls") or 0) for t in turns),
        "degraded_calls": sum(int(t.get("call_errors") or 0) for t in turns),
        "degraded_turns": sum(1 for t in client if t.get("degraded")),
        "persona_conflicts": len(conflicts),
        "persona_conflict_details": conflicts,
        "persona_grounding": grounding,
        "disclosure_start": disc[0] if disc else None,
        "disclosure_end": disc[-1] if disc else None,
        "disclosure_slope": _slope(disc),
        "disclosure_max_step": max((abs(b - a) for a, b in itertools.pairwise(disc)), default=None),
        "instant_cure": cure,
        "instant_cure_turns": cure_turns,
    }


def _course_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"client_id": rows[0]["client_id"], "sessions": len(rows)}
    for k in NUMERIC_KEYS:
        vals = [r[k] for r in rows if r.get(k) is not None]
        if k in COUNT_KEYS:
            out[k] = sum(vals)
        else:
            out[k] = statistics.fmean(vals) if vals else None
    out["instant_cure"] = any(r["instant_cure"] for r in rows)
    out["end_reasons"] = dict(Counter(str(r.get("end_reason")) for r in rows))
    return out


def health_summary(records: Iterable[Mapping[str, Any]], profiles: Mapping[str, Mapping[str, Any]] | None = None, *, seed: int = 0) -> dict[str, Any]:
    """Per-session health, per-course aggregates (means; counts summed) and the
    cohort (mean of course values with bootstrap 95% intervals over courses)."""
    sessions = [health(r, (profiles or {}).get(str(r.get("client_id")))) for r in records]
    by_course: dict[str, list[dict[str, Any]]] = {}
    for s in sessions:
        by_course.setdefault(str(s["client_id"]), []).append(s)
    courses = [_course_row(sorted(v, key=lambda r: r["session"] or 0)) for _, v in sorted(by_course.items())]
    cohort: dict[str, Any] = {k: mean_ci([c[k] for c in courses], seed=seed) for k in NUMERIC_KEYS}
    cohort["instant_cure"] = mean_ci([1.0 if c["instant_cure"] else 0.0 for c in courses], seed=seed)
    cohort["end_reasons"] = dict(Counter(str(s.get("end_reason")) for s in sessions))
    return {"sessions": sessions, "courses": courses, "cohort": cohort}
