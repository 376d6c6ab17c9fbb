"""The per-course risk register: rules checked by hand, and a scripted course in which
a client states intent, retracts a turn later, is assessed directly, and reports
PHQ-9 item 9 = 2 before session 2."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from therasim.config import CourseSpec
from therasim.context import SimContext
from therasim.graphs import CourseGraphBuilder, initial_course_state
from therasim.graphs.course import run_course
from therasim.policies.risk import LADDER, RISK_LEVELS, scan
from therasim.policies.risk_register import (
    RUNG_LEVEL,
    fold_phq9,
    is_direct_assessment,
    is_retraction,
    new_register,
    observe_turn,
    register_floor,
    register_notes,
    register_summary,
)
from therasim.profiles import example_profiles
from therasim.providers import ModelPool
from therasim.state import make_course_view, make_view
from therasim.testing import FunctionChatModel, SchemaFakeChatModel


def _turn(reg, text, *, ex, prev="", llm="none", session=1):
    return observe_turn(reg, session=session, exchange=ex, text=text, cues=scan(text), previous_counselor=prev, llm_level=llm)


def test_rung_levels_are_protocol_levels():
    assert set(RUNG_LEVEL.values()) <= set(RISK_LEVELS)


def test_detection_rules():
    assert is_direct_assessment("Are you having thoughts of killing yourself?")
    assert is_direct_assessment("Do you have a plan for how you would do it?")
    assert is_direct_assessment("Are you safe right now?")
    assert not is_direct_assessment("You want to feel safe at home.")  # not a question
    assert not is_direct_assessment("How was your week?")
    assert is_retraction("I was only joking, forget it.")
    assert is_retraction("I didn't really mean it.")
    assert is_retraction("I'm kidding. Can we talk about something else?")
    assert is_retraction("Ignore that, I was being dramatic.")
    assert not is_retraction("I meant every word.")


def test_raise_keeps_evidence_and_never_lowers_by_itself():
    reg, ch = _turn(None, "I'm going to kill myself tonight.", ex=0, llm="high")
    assert register_summary(reg) == {"suicide": "intent"} and ch[0]["to"] == "intent"
    ev = reg["tracks"]["suicide"]["evidence"][0]
    assert (ev["session"], ev["exchange"], ev["span"]) == (1, 0, "kill myself")
    assert register_floor(reg) == "high"
    # A lower rung later does not lower the track; the evidence is appended.
    reg2, ch2 = _turn(reg, "Sometimes I just wish I was dead.", ex=1)
    assert register_summary(reg2) == {"suicide": "intent"} and ch2 == []
    assert len(reg2["tracks"]["suicide"]["evidence"]) == 2
    assert reg == _turn(None, "I'm going to kill myself tonight.", ex=0, llm="high")[0]  # inputs are not mutated


def test_retraction_lowers_only_after_direct_assessment():
    reg, _ = _turn(None, "I'm going to kill myself tonight.", ex=0, llm="high")
    # retraction, counselor did not ask directly: kept, retraction pending
    reg, ch = _turn(reg, "I was only joking.", ex=1, prev="That sounds so heavy, I'm here with you.")
    assert register_summary(reg) == {"suicide": "intent"} and reg["retraction"]["tracks"] == ["suicide"]
    assert "kept until the counselor has assessed" in ch[0]["reason"]
    # asked directly, but the LLM call failed: kept
    asked = "Are you having thoughts of killing yourself right now?"
    reg_failed, _ = _turn(reg, "No, really.", ex=2, prev=asked, llm=None)
    assert register_summary(reg_failed) == {"suicide": "intent"}
    # asked directly, LLM still high: kept
    reg_high, _ = _turn(reg, "No, really.", ex=2, prev=asked, llm="high")
    assert register_summary(reg_high) == {"suicide": "intent"}
    # asked directly, LLM below the carried level, no active cue: lowered, peak kept
    reg_low, ch = _turn(reg, "No, really, I'm okay.", ex=2, prev=asked, llm="low")
    assert register_summary(reg_low) == {} and reg_low["tracks"]["suicide"]["peak"] == "intent"
    assert ch[-1]["to"] == "none" and "direct assessment" in ch[-1]["reason"] and reg_low["retraction"] is None
    assert reg_low["assessments"][-1]["outcome"] == "assessed"
    # new evidence after a retraction cancels it
    reg_new, _ = _turn(reg, "Actually I still want to kill myself.", ex=2, prev=asked, llm="low")
    assert register_summary(reg_new) == {"suicide": "intent"} and reg_new["retraction"] is None


def test_denial_in_answer_counts_and_abuse_is_not_retracted():
    reg, _ = _turn(None, "He hits me when he's drunk. I keep thinking about suicide.", ex=0, llm="high")
    assert register_summary(reg) == {"suicide": "active_nonspecific", "abuse": "abuse"}
    reg, ch = _turn(reg, "I'm not suicidal. He didn't mean it, I was just exaggerating.", ex=1, prev="Are you thinking about suicide at the moment?", llm="none")
    assert register_summary(reg) == {"abuse": "abuse"}
    assert [c["to"] for c in ch if c["to"]] == ["none"]


def test_phq9_item9():
    reg, ch = fold_phq9(None, session=2, score=2, when="before session 2")
    assert register_summary(reg) == {"suicide": "wish_dead"} and ch[0]["reason"] == "PHQ-9 item 9 = 2"
    assert "PHQ-9 item 9 = 2 before session 2" in register_notes(reg, session=2)
    reg0, ch0 = fold_phq9(None, session=1, score=0)
    assert register_summary(reg0) == {} and ch0 == [] and reg0["phq9_item9"] == [{"session": 1, "score": 0, "when": ""}]
    assert register_notes(new_register()) == ""


def test_register_is_counselor_side_only():
    state = {"risk_register": new_register(), "risk_notes": "x", "transcript": [], "current": {}, "profile": {}, "inner": {}}
    assert "risk_register" in make_view(state, "counselor", "n") and "risk_notes" in make_view(state, "counselor", "n")
    assert "risk_register" not in make_view(state, "client", "n")
    assert "risk_register" not in make_course_view({"risk_register": {}, "last": {}}, "client", "n")


# --- the scripted course ----------------------------------------------------------

CLIENT_LINES = {
    1: [
        "I'm going to kill myself tonight. I've made up my mind.",
        "I was only joking, forget it.",
        "No, honestly, I was only joking earlier. I'm not going to do anything.",
        "Work has been hard, that's all.",
    ],
    2: ["The week was quiet.", "I slept a bit better.", "Still tired though.", "Okay."],
}
ASK = "I'd like to ask you directly: are you having thoughts of killing yourself right now?"


def _scripted_client(view, ctx):
    line = CLIENT_LINES[int(view["session"])][int(view["exchange"])]
    return {"current": {"client_text": line}}


def _model(counselor_prompts: list[str]) -> FunctionChatModel:
    fake = SchemaFakeChatModel(seed=7)
    measures_calls = {"n": 0}

    def reply(messages: list[BaseMessage], kw: dict[str, Any]) -> str:
        text = "\n".join(str(m.content) for m in messages)
        system = text  # shared-prefix prompts: the node's role comes last
        rf = kw.get("response_format") or {}
        schema = rf.get("schema") or (rf.get("json_schema") or {}).get("schema") or {}
        if "phq_self_harm" in (schema.get("properties") or {}):
            measures_calls["n"] += 1
            out = json.loads(fake._reply(messages, kw))
            out["phq_self_harm"] = 2 if measures_calls["n"] == 2 else 0
            return json.dumps(out)
        if "TASK: RISK ASSESSMENT" in system:
            latest = [ln for ln in text.splitlines() if ln.startswith("Client:")][-1]  # the transcript ends with it
            high = "kill myself" in latest
            return json.dumps({"level": "high" if high else "none", "crisis_class": "imminent_harm_to_self" if high else "none", "cues": [], "actions": []})
        if "TASK: DRAFT REVIEW" in system:
            return json.dumps({"safe": True, "problems": "", "suggestion": ""})
        if "TASK: REPLY" in system:
            counselor_prompts.append(text)
            last = [ln for ln in text.splitlines() if ln.startswith("Client:")][-1]
            if "forget it" in last:
                return ASK
            return "Thank you for telling me. I'm here to support you and to help you stay safe."
        return fake._reply(messages, kw)

    return FunctionChatModel(fn=reply)


def _scripted_course(prompts: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    recs: list[dict[str, Any]] = []
    builder = CourseGraphBuilder("full").without("memory", "events")
    builder.session.replace_node("client", _scripted_client)
    ctx = SimContext(models=ModelPool({"default": _model(prompts)}), course=CourseSpec(max_turns=4, sessions=2), on_record=recs.append)
    # PHQ-9 answers are anchored to the inner state (policies/instruments.py): item 9 may reach 2
    # only for a client with a risk history, and with hopelessness 3 both 0 and 2 are within reach.
    p = example_profiles()[0]
    p = p.model_copy(update={"hidden": p.hidden.model_copy(update={"risk_history": "passive death wishes some years ago"}), "initial_state": p.initial_state.model_copy(update={"hopelessness": 3.0})})
    out = asyncio.run(run_course(builder.compile(), initial_course_state(p, sessions=2), ctx))
    return out, recs


@pytest.mark.embedded
def test_scripted_course_with_the_classifier(monkeypatch):
    """The same course with the full scan (patterns + MiniLM classifier) in the risk node."""
    monkeypatch.setenv("THERASIM_RISK_KNN", "1")
    _, recs = _scripted_course([])
    s1 = [t for t in recs[0]["turns"] if t["speaker"] == "client"]
    regs = [t["risk"]["register"] for t in s1[:3]]
    assert [r.get("suicide") for r in regs] == ["intent", "intent", None], regs
    # Any other track comes from a classifier reading alone (unconfirmed, capped at moderate):
    # the shipped model of 22,251 rows reads "I was only joking, forget it." as abuse at
    # P(risk) ~0.075 (above its recall-first 0.04; a false positive, docs/risk.md "Tenth round,
    # the retraining"), and the abuse track is not lowered by a walk-back (victims minimise).
    others = [ch for t in s1[:3] for ch in t["risk"]["register_changes"] if ch.get("track") not in ("suicide", None) and ch.get("to") not in (None, "none")]
    assert all(ch["reason"].startswith("model cue ") for ch in others), others
    assert all(set(r) - {"suicide"} <= {ch["track"] for ch in others} for r in regs), regs
    # the denial after the direct question lowers the register. The classifier may still read
    # the denial ("No, honestly, I was only joking earlier. I'm not going to do anything.") as
    # risk: the model of 16,048 rows scored it P(risk) ~0.034 (a weak cue at its recall-first
    # 0.03), the model of 17,887 rows read "I'm not going to do anything." as intent at ~0.74,
    # the model of 19,368 rows at ~0.11 (above its 0.05), the model of 20,801 rows read the
    # whole denial as intent at ~0.91 from its first sentence ("I was only joking earlier"), the
    # shipped model of 22,251 rows at ~0.09 (above its 0.04; docs/risk.md, seventh to tenth
    # rounds). A classifier reading alone is unconfirmed: it caps
    # the turn's level at "moderate" and does not block the walk-back (policies/risk_register.py),
    # so the register comes down all the same; no pattern cue may be active on the denial.
    levels = [t["risk"]["level"] for t in s1[:3]]
    assert levels[:2] == ["high", "high"] and levels[2] in ("low", "moderate"), levels
    cues = s1[2]["risk"]["scan"]
    assert cues and all(c["source"] == "model" for c in cues if c.get("active")), cues
    assert any(ch.get("to") == "none" and "retraction accepted" in ch["reason"] for ch in s1[2]["risk"]["register_changes"])


def test_scripted_course_keeps_rung_until_assessed_and_item9_reaches_notes():
    prompts: list[str] = []
    out, recs = _scripted_course(prompts)
    s1 = [t for t in recs[0]["turns"] if t["speaker"] == "client"]
    levels = [t["risk"]["level"] for t in s1]
    registers = [t["risk"]["register"] for t in s1]
    print(f"\n[risk register] session 1 levels {levels}; registers {registers}")
    assert registers[0] == {"suicide": "intent"} and levels[0] == "high"
    # "I was only joking" a turn later, not yet asked directly: rung and level kept
    assert registers[1] == {"suicide": "intent"} and levels[1] == "high" and s1[1]["risk"].get("raised_by_register")
    # the counselor asked directly; the LLM assessed the answer as none: lowered
    assert registers[2] == {} and levels[2] == "none"
    assert recs[0]["risk_register"]["tracks"]["suicide"]["peak"] == "intent"
    reasons = [c["reason"] for c in recs[0]["risk_register"]["trace"]]
    assert "shows intent" in reasons[0] and "kept until the counselor has assessed" in reasons[1] and "retraction accepted after direct assessment" in reasons[-1]
    assert [(c["exchange"], c["to"]) for c in recs[0]["risk_register"]["trace"] if c["to"]] == [(0, "intent"), (2, "none")]
    # PHQ-9 item 9 = 2 before session 2: raised, in the session-2 counselor notes and prompt
    assert "PHQ-9 item 9 = 2 before session 2" in recs[1]["risk_notes"]
    assert "PHQ-9 item 9 = 2" not in recs[0]["risk_notes"]
    s2_prompts = [p for p in prompts if "SESSION 2 GOALS" in p]
    assert s2_prompts and all("PHQ-9 item 9 = 2 before session 2" in p for p in s2_prompts)
    assert register_summary(out["risk_register"]) == {"suicide": "wish_dead"}
    assert [t["risk"]["carried_level"] for t in recs[1]["turns"] if t["speaker"] == "client"] == ["low"] * 4


def _probes(kind: str) -> list[dict[str, Any]]:
    import yaml

    from therasim.policies.risk_model import _data_dir

    return [p for p in yaml.safe_load((_data_dir() / "risk_probes.yaml").read_text())["probes"] if p["kind"] == kind]


def test_retraction_probe_followups_are_retractions():
    followups = [p["followup"] for p in _probes("retraction")]
    assert len(followups) >= 10 and all(is_retraction(f) for f in followups), [f for f in followups if not is_retraction(f)]


@pytest.mark.embedded
def test_retraction_probes_keep_the_rung_until_assessed(capsys: pytest.CaptureFixture[str]):
    """The planted retraction probes (policies/data/risk_probes.yaml) through the
    register with the full scan (patterns + classifier)."""
    from therasim.policies.risk_register import track_of

    raised = exact = pending = 0
    probes = _probes("retraction")
    for p in probes:
        text, follow = p["text"], p["followup"]
        reg, _ = observe_turn(None, session=1, exchange=0, text=text, cues=scan(text, model=True), llm_level="high")
        track = track_of(p["expected_rung"])
        rung = reg["tracks"][track]["rung"]
        if rung == "none":
            continue
        raised += 1
        exact += rung == p["expected_rung"]
        cues = scan(follow, model=True)
        kept, _ = observe_turn(reg, session=1, exchange=1, text=follow, cues=cues, previous_counselor="That sounds really hard.", llm_level="none")
        after = kept["tracks"][track]["rung"]
        assert after == rung or (track == "suicide" and after in LADDER and LADDER.index(after) > LADDER.index(rung)), (p["id"], kept["trace"])  # never lowered
        # the walk-back is pending, unless the detector read new evidence of the track in it
        new_evidence = any(c.active and track_of(c.rung) == track for c in cues)
        pending += track in (kept["retraction"] or {}).get("tracks", [])
        assert track == "abuse" or new_evidence or track in (kept["retraction"] or {}).get("tracks", []), (p["id"], kept["trace"])
    with capsys.disabled():
        print(f"\n[risk register] retraction probes: {raised}/{len(probes)} disclosures raised their track ({exact} at the expected rung); no raised rung lowered by the walk-back, {pending} walk-backs pending assessment")
    assert raised >= len(probes) // 2
