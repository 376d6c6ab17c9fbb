"""Simulator health metrics against values computed by hand on transcripts
written for these tests: a sticky counselor and an echoing client (maria s1),
a client who breaks role, contradicts her profile and is 'cured' (maria s2)."""

from __future__ import annotations

import math

import pytest

from therasim.eval import health, health_summary


def T(i, speaker, text, strategy=None, inner=None, n_calls=1, call_errors=0, degraded=None):
    return {"index": i, "exchange": i // 2, "speaker": speaker, "text": text, "strategy": {"strategy": strategy} if strategy else None,
            "inner": inner, "n_calls": n_calls, "call_errors": call_errors, "degraded": degraded}


MARIA = {"id": "maria", "intake": {"name": "Maria", "age": 34, "occupation": "nurse", "presenting_problem": "exhaustion and low mood after night shifts"},
         "hidden": {"backstory": "She moved cities for work and cares for her mother by phone.", "core_beliefs": ["needing help is weak"]}}

# sticky counselor (reflection x3, then a question), echoing client
STICKY = {"client_id": "maria", "session": 1, "end_reason": "max_turns", "turns": [
    T(0, "client", "I haven't been sleeping and work feels impossible lately.", inner={"disclosure": 1, "distress": 7}),
    T(1, "counselor", "It sounds like work feels impossible and sleep has been hard to come by.", "reflection"),
    T(2, "client", "Yes, work feels impossible and sleep has been hard to come by.", inner={"disclosure": 1, "distress": 7}),
    T(3, "counselor", "So work feels impossible right now.", "reflection"),
    T(4, "client", "Work feels impossible right now, yes.", inner={"disclosure": 2, "distress": 6}),
    T(5, "counselor", "Work feels impossible right now.", "reflection"),
    T(6, "client", "My sister called on Sunday and we argued about our mother.", inner={"disclosure": 2, "distress": 6}),
    T(7, "counselor", "What happened when your sister called?", "open_question"),
]}

BROKEN = {"client_id": "maria", "session": 2, "end_reason": "client_wish", "turns": [
    T(0, "client", "Well, my name is Anna and I'm 40 years old, for what it's worth.", inner={"disclosure": 1, "distress": 8}),
    T(1, "counselor", "Thank you for telling me. What would you like to focus on?", "open_question", n_calls=3, call_errors=1),
    T(2, "client", "As an AI language model I cannot share feelings.", inner={"disclosure": 2, "distress": 5}, degraded=True),
    T(3, "counselor", "Let's slow down. What is on your mind today?", "reflection"),
    T(4, "client", "Honestly I feel so much better already, you've cured me.", inner={"disclosure": 4, "distress": 2}),
    T(5, "counselor", "I'm glad. Shall we plan for next week?", None),
]}


def test_sticky_counselor_and_echoing_client() -> None:
    h = health(STICKY, MARIA)
    # strategies r, r, r, q: pairs (r,r) (r,r) (r,q) -> 2 of 3 the same
    assert h["strategy_stickiness"] == pytest.approx(2 / 3) and h["strategy_pairs"] == 3
    # client trigram overlap with the preceding counselor turn: 9/10, 3/4, 0/9 (the first client turn has none)
    assert h["echo_overlap"] == pytest.approx((0.9 + 0.75 + 0.0) / 3)
    assert h["echo_rate"] == pytest.approx(2 / 3)
    # counselor: turn 3 repeats 1/4 of its trigrams, turn 5 all 3, turn 7 none -> 1 of 3
    assert h["self_repetition_counselor"] == pytest.approx(1 / 3)
    # client: 1/10, 1/4, 0 -> none at or above one half
    assert h["self_repetition_client"] == 0.0
    # client: 38 tokens, 28 distinct; counselor: 27 bigrams, 21 distinct
    assert h["distinct1_client"] == pytest.approx(28 / 38)
    assert h["distinct2_counselor"] == pytest.approx(21 / 27)
    assert h["words_client"] == pytest.approx(38 / 4) and h["words_counselor"] == pytest.approx(31 / 4)
    assert h["exchanges"] == 4 and h["end_reason"] == "max_turns"
    assert h["role_breaks"] == 0 and h["persona_conflicts"] == 0 and h["instant_cure"] is False
    # disclosure 1,1,2,2: slope 0.4 per exchange (sxy = 2, sxx = 5)
    assert (h["disclosure_start"], h["disclosure_end"], h["disclosure_max_step"]) == (1, 2, 1)
    assert h["disclosure_slope"] == pytest.approx(0.4)
    # every client turn uses a content word of the profile ('work' x3, 'mother')
    assert h["persona_grounding"] == pytest.approx(1.0)
    assert h["calls"] == 8 and h["degraded_calls"] == 0


def test_role_break_persona_conflicts_and_instant_cure() -> None:
    h = health(BROKEN, MARIA)
    assert h["role_breaks"] == 1 and h["role_break_turns"] == [2]
    facts = {(c["fact"], c["said"], c["against"]) for c in h["persona_conflict_details"]}
    assert facts == {("name", "anna", "profile"), ("age", "40", "profile")}
    assert h["instant_cure"] is True and h["instant_cure_turns"] == [4]
    assert h["degraded_calls"] == 1 and h["degraded_turns"] == 1 and h["calls"] == 8
    # disclosure 1, 2, 4: steps 1 and 2; slope (sxy 3 / sxx 2)
    assert h["disclosure_max_step"] == 2 and h["disclosure_slope"] == pytest.approx(1.5)
    # the first client turn has no preceding counselor turn; none of the others echo
    assert h["echo_rate"] == 0.0
    # without the profile: no profile checks, the two statements do not contradict each other
    h2 = health(BROKEN)
    assert h2["persona_conflicts"] == 0 and h2["persona_grounding"] is None


def test_line_to_line_conflict_and_distress_cure() -> None:
    rec = {"client_id": "x", "session": 1, "turns": [
        T(0, "client", "I work as a teacher at the primary school.", inner={"distress": 9}),
        T(1, "counselor", "How is school going?"),
        T(2, "client", "I work as a plumber, mostly call-outs.", inner={"distress": 3}),
    ]}
    h = health(rec)
    assert [(c["fact"], c["said"], c["against"]) for c in h["persona_conflict_details"]] == [("occupation", "plumber", "turn 0")]
    assert h["instant_cure"] is True and h["instant_cure_turns"] == []  # distress 9 -> 3 within one session


def test_figures_of_speech_are_not_flags() -> None:
    rec = {"client_id": "x", "session": 1, "turns": [
        T(0, "client", "I'm not better, and my job is killing me. I'm 5 minutes late to everything."),
        T(1, "counselor", "That sounds exhausting."),
        T(2, "client", "I feel a little better talking, but it's still there."),
    ]}
    h = health(rec, MARIA)
    assert h["instant_cure"] is False and h["persona_conflicts"] == 0 and h["role_breaks"] == 0


def test_summary_per_course_and_cohort() -> None:
    tom = {"client_id": "tom", "session": 1, "end_reason": "max_turns", "turns": STICKY["turns"][:4]}
    s = health_summary([STICKY, BROKEN, tom], {"maria": MARIA})
    maria = next(c for c in s["courses"] if c["client_id"] == "maria")
    assert maria["sessions"] == 2 and maria["role_breaks"] == 1 and maria["instant_cure"] is True
    assert maria["exchanges"] == pytest.approx(3.5)
    assert maria["end_reasons"] == {"max_turns": 1, "client_wish": 1}
    assert s["cohort"]["exchanges"]["n"] == 2 and s["cohort"]["exchanges"]["mean"] == pytest.approx((3.5 + 2) / 2)
    lo, hi = s["cohort"]["exchanges"]["ci_low"], s["cohort"]["exchanges"]["ci_high"]
    assert 2 <= lo <= hi <= 3.5
    assert s["cohort"]["end_reasons"] == {"max_turns": 2, "client_wish": 1}
    assert not math.isnan(s["cohort"]["instant_cure"]["mean"])
