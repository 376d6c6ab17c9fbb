"""The node contract: a new role is one node module plus one line in a preset, and
its output reaches the views, the transcript and the export; undeclared writes fail;
runs record their session graph and refuse another one on fork, replay and resume;
test doubles are told which node calls them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from therasim.config import CourseSpec
from therasim.context import SimContext
from therasim.contract import NodeSpec, Slot
from therasim.errors import RunDirError, TherasimError
from therasim.graphs import preset, register_preset
from therasim.graphs.presets import PRESETS
from therasim.graphs.session import initial_session_state, run_session
from therasim.nodes.counselor import counselor as counselor_fn
from therasim.profiles import example_profiles
from therasim.providers import ModelPool
from therasim.rundir import RunDir
from therasim.state import make_view
from therasim.testing import FunctionChatModel, ScriptedChatModel, client_turn_json

sys.path.insert(0, str(Path(__file__).parent))
import _supervisor_node as supervisor

CLIENT = client_turn_json("I keep waking up at four and cannot get back to sleep.", wants_to_end=False)
ADVICE = {"advice": "Reflect the exhaustion before asking about routines.", "focus": "sleep"}
MEASURES = json.dumps(dict.fromkeys(("phq_interest", "phq_down", "phq_sleep", "phq_tired", "phq_appetite", "phq_failure", "phq_concentration", "phq_psychomotor", "phq_self_harm", "gad_nervous", "gad_cant_stop_worry", "gad_worry_too_much", "gad_trouble_relaxing", "gad_restless", "gad_irritable", "gad_afraid"), 1))


def _model() -> ScriptedChatModel:
    """Replies chosen by the calling node, not by prompt wording."""
    return ScriptedChatModel(
        replies={
            "client": CLIENT,
            "analyst": json.dumps({
                "emotion": {"main": "sad", "secondary": [], "intensity": 5, "cause": "sleep", "shift": "new", "trend": "stable"},
                "risk": {"level": "none", "crisis_class": "none", "cues": [], "actions": []},
                "plan": {"stage": "exploration", "strategy": "open_question", "rationale": "explore the sleep", "repeat_reason": "still exploring"},
            }),
            "supervisor": json.dumps(ADVICE),
            "counselor": "Waking at four sounds exhausting. What happens in your mind then?",
            "measures": MEASURES,
            "closing_measures": MEASURES,
        },
        default="{}",
    )


@pytest.fixture
def supervised_preset():
    # The one line a preset needs for the new role:
    register_preset("supervised", lambda: preset("lean").add(supervisor.SPEC, before="counselor"))
    yield "supervised"
    PRESETS.pop("supervised", None)


def test_a_new_role_reaches_view_transcript_and_export(tmp_path, supervised_preset, monkeypatch) -> None:
    from therasim import memory
    from therasim.runner import run
    from therasim.testing import HashEmbedding

    monkeypatch.setattr(memory, "make_embedding", lambda spec: HashEmbedding())
    seen: list[dict[str, Any]] = []

    async def spying_counselor(view, ctx):
        seen.append(dict(view["current"]))
        return await counselor_fn(view, ctx)

    b = preset(supervised_preset).replace_node("counselor", spying_counselor)
    model = _model()
    cfg = {"course": {"preset": supervised_preset, "sessions": 1, "max_turns": 2, "events": False, "planner": False, "memory": False}, "seed": 1}
    res = run(cfg, sample=1, out=tmp_path, models={"default": model}, session_builder=b)
    assert res.ok, res.failed
    # the view: the counselor, after the supervisor, reads its output
    assert seen and seen[0]["supervision"] == ADVICE
    # the transcript: on the counselor turn, with the supervisor's calls
    rd = RunDir(res.run_dir)
    man = rd.manifest()
    assert man["graph"]["session_hash"] == b.fingerprint()
    assert man["graph"]["course"]["session"]["nodes"]["supervisor"]["slots"]["supervision"]["turn"] == "counselor"
    assert man["max_tokens_per_node"]["supervisor"] == 150
    # the export (transcripts.jsonl): in the counselor turns' extra columns
    rec = rd.records()[0]
    counselor_turns = [t for t in rec["turns"] if t["speaker"] == "counselor"]
    assert len(counselor_turns) == 2
    assert all(json.loads(t["extra"]["supervision"]) == ADVICE for t in counselor_turns)
    assert all("extra" not in t for t in rec["turns"] if t["speaker"] == "client")
    # the token cap comes from the spec, and the double knew who called
    sup_calls = [c for c in model.calls if c.node == "supervisor"]
    assert len(sup_calls) == 2 and all(c["kwargs"].get("max_tokens") == 150 for c in sup_calls)
    assert all(c.info.role == "analysts" and c.info.schema == "Supervision" for c in sup_calls)


def test_transcript_and_views_in_one_session() -> None:
    b = preset("minimal").add(supervisor.SPEC, before="counselor")
    ctx = SimContext(models=ModelPool({"default": _model()}), course=CourseSpec(max_turns=1))
    st = asyncio.run(run_session(b.compile(), initial_session_state(example_profiles()[0]), ctx))
    k0 = st["transcript"][1]
    assert k0["speaker"] == "counselor" and k0["supervision"] == ADVICE
    assert "supervisor" in k0["calls"] and "supervisor" not in st["transcript"][0]["calls"]
    state = {**st, "current": {"client_text": "hi", "supervision": ADVICE}}
    contract = b.contract()
    assert make_view(state, "counselor", "counselor", contract)["current"]["supervision"] == ADVICE
    assert "supervision" not in make_view(state, "client", "client", contract)["current"]  # declared counselor-side
    assert make_view(state, "client", "client", contract)["transcript"][1] == {"speaker": "counselor", "text": k0["text"]}


def test_client_side_slot_is_hidden_from_the_counselor() -> None:
    def diary(view, ctx):
        return {"current": {"diary": "I did not tell them about the pills."}}

    b = preset("minimal").add(NodeSpec("diary", diary, "client", writes=(Slot("diary"),)), after="client")
    ctx = SimContext(models=ModelPool({"default": _model()}), course=CourseSpec(max_turns=1))
    st = asyncio.run(run_session(b.compile(), initial_session_state(example_profiles()[0]), ctx))
    c0 = st["transcript"][0]
    assert c0["speaker"] == "client" and c0["diary"].startswith("I did not")
    view = make_view(st, "counselor", "counselor", b.contract())
    assert "diary" not in view["transcript"][0]


def test_undeclared_writes_and_reads_fail_clearly() -> None:
    def sneaky(view, ctx):
        return {"current": {"supervison": "typo"}}

    b = preset("minimal").add_node("sneaky", sneaky, side="counselor", before="counselor")
    ctx = SimContext(models=ModelPool({"default": _model()}), course=CourseSpec(max_turns=1))
    with pytest.raises(TherasimError, match=r"node 'sneaky' wrote scratch key\(s\) \['supervison'\] that no node declares"):
        asyncio.run(run_session(b.compile(), initial_session_state(example_profiles()[0]), ctx))
    with pytest.raises(TherasimError, match="names scratch slot 'supervision', which no node declares"):
        preset("minimal").add_node("reader", sneaky, side="counselor", reads=("supervision",)).build()
    with pytest.raises(TherasimError, match="built in"):
        preset("minimal").add(NodeSpec("x", sneaky, "counselor", writes=(Slot("plan"),))).build()
    with pytest.raises(TherasimError, match="side must be"):
        NodeSpec("x", sneaky, "therapist")  # type: ignore[arg-type]


def test_caps_come_from_specs_and_context_overrides() -> None:
    model = _model()
    ctx = SimContext(models=ModelPool({"default": model}), course=CourseSpec(max_turns=1), max_tokens={"counselor": 64})
    asyncio.run(run_session(preset("lean").compile(), initial_session_state(example_profiles()[0]), ctx))
    caps = {c.node: c["kwargs"].get("max_tokens") for c in model.calls}
    assert caps == {"client": 320, "analyst": 360, "counselor": 64}
    assert preset("full").contract().caps() == {"client": 320, "emotion_tracker": 200, "risk_control": 200, "strategy_planner": 200, "counselor": 120, "risk_review": 120}


def test_plain_function_doubles_are_told_the_node() -> None:
    seen: list[tuple[str, str]] = []

    def fn(messages, kw, info):
        seen.append((info.node, info.kind))
        return CLIENT if info.node == "client" else "How have the nights been?"

    ctx = SimContext(models=ModelPool({"default": FunctionChatModel(fn=fn)}), course=CourseSpec(max_turns=1))
    asyncio.run(run_session(preset("minimal").compile(), initial_session_state(example_profiles()[0]), ctx))
    assert seen == [("client", "structured"), ("counselor", "text")]
    with pytest.raises(KeyError, match="no reply for node 'client'"):
        ctx = SimContext(models=ModelPool({"default": ScriptedChatModel(replies={"counselor": "hi"})}), course=CourseSpec(max_turns=1), structured_attempts=1)
        asyncio.run(run_session(preset("minimal").compile(), initial_session_state(example_profiles()[0]), ctx))


def test_fork_replay_and_resume_refuse_another_graph(tmp_path, supervised_preset, monkeypatch) -> None:
    from therasim import memory
    from therasim.runner import resume, run
    from therasim.testing import HashEmbedding
    from therasim.traces import fork, replay

    monkeypatch.setattr(memory, "make_embedding", lambda spec: HashEmbedding())
    custom = preset("minimal").add(supervisor.SPEC, before="counselor")
    cfg = {"course": {"preset": "minimal", "sessions": 1, "max_turns": 2, "events": False, "planner": False, "memory": False}, "seed": 1}
    res = run(cfg, sample=1, out=tmp_path, models={"default": _model()}, session_builder=custom)
    assert res.ok
    cid = res.completed[0]
    with pytest.raises(RunDirError, match=r"cannot replay session 1 of .*this run used session graph 'minimal' with nodes \['client', 'supervisor', 'counselor'\]"):
        replay(res.run_dir, cid, 1, 1, models={"default": _model()})  # the preset, not the graph the run used
    with pytest.raises(RunDirError, match="Pass session_builder= the graph the run used"):
        fork(res.run_dir, cid, 1, 1, sets=["inner.distress=9"], models={"default": _model()}, session_builder=preset("lean"))
    with pytest.raises(RunDirError, match="cannot resume the run"):
        resume(res.run_dir, models={"default": _model()})
    rec = replay(res.run_dir, cid, 1, 1, models={"default": _model()}, session_builder=preset("minimal").add(supervisor.SPEC, before="counselor"))
    assert rec["kind"] == "replay" and rec["turns"]
