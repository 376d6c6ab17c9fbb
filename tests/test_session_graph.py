"""Session graph: nodes and routes on deterministic doubles, the builder, double-blind."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver

from therasim.config import CourseSpec
from therasim.context import CallInfo, SimContext
from therasim.errors import TherasimError
from therasim.graphs import SessionGraphBuilder, preset
from therasim.graphs.session import initial_session_state, run_session
from therasim.profiles import example_profiles
from therasim.providers import ModelPool
from therasim.state import BlindViewError, make_view
from therasim.testing import FunctionChatModel, SchemaFakeChatModel, client_turn_json

CANARY = "CANARY-7f3e-HIDDEN"


def _profile(canary: bool = True):
    p = example_profiles()[0]
    if canary:
        # in the deepest layer and in one the client has already disclosed (feelings, level 1)
        p = p.model_copy(update={"hidden": p.hidden.model_copy(update={"undisclosed": f"secret {CANARY}", "feelings": f"tired all the time {CANARY}"})})
    return p


def _run(builder: SessionGraphBuilder, models: Any, turns: int = 3, inner: dict[str, Any] | None = None, **ctxkw: Any) -> dict[str, Any]:
    ctx = SimContext(models=ModelPool({"default": models}) if not isinstance(models, ModelPool) else models, course=CourseSpec(max_turns=turns), **ctxkw)
    p = _profile()
    return asyncio.run(run_session(builder.compile(), initial_session_state(p, inner={**p.initial_state.model_dump(), **(inner or {})}), ctx))


class Scripted:
    """Replies per calling node: the double is told which node calls it (CallInfo)."""

    def __init__(self, client_text: str = "I have been sleeping badly and I feel low.", level: str = "none") -> None:
        self.client_text = client_text
        self.level = level

    def __call__(self, messages: list[BaseMessage], kw: dict[str, Any], info: CallInfo) -> str:
        if info.node == "client":
            return client_turn_json(self.client_text, wants_to_end=False)
        if info.node == "emotion_tracker":
            return json.dumps({"main": "sad", "secondary": ["worry"], "intensity": 6, "cause": "sleep", "shift": "new", "trend": "stable"})
        if info.node == "risk_control":
            return json.dumps({"level": self.level, "crisis_class": "none", "cues": [], "actions": []})
        if info.node == "strategy_planner":
            n = sum(1 for m in messages if "Previous strategy: open_question" in str(m.content))
            return json.dumps({"stage": "exploration", "strategy": "reflection_of_feelings" if n else "open_question", "rationale": "build alliance", "repeat_reason": None})
        if info.node == "risk_review" and info.kind == "structured":
            return json.dumps({"safe": True, "problems": "", "suggestion": ""})
        return "That sounds hard. What has helped you feel a bit safer this week?"  # counselor, and its revisions


def test_full_preset_runs_and_records_turns() -> None:
    model = FunctionChatModel(fn=Scripted())
    st = _run(preset("full"), model, turns=3)
    assert st["end_reason"] == "max_turns" and st["exchange"] == 3
    tr = st["transcript"]
    assert [t["speaker"] for t in tr] == ["client", "counselor"] * 3
    assert [t["index"] for t in tr] == list(range(6))
    c0 = tr[0]
    assert c0["emotion"]["main"] == "sad" and c0["emotion"]["group"] == "sadness"
    assert c0["risk"]["level"] == "none" and c0["risk"]["source"] == "llm+scan"
    assert set(c0["calls"]) == {"client", "emotion_tracker", "risk_control"}
    assert all(call["attempts"] >= 1 and call["latency_s"] >= 0 for calls in c0["calls"].values() for call in calls)
    assert tr[1]["strategy"]["strategy"] == "open_question"
    assert tr[3]["strategy"]["strategy"] == "reflection_of_feelings"  # no sticky repeat
    # The client appraises the counselor's last reply; the trace names the moves behind each update.
    assert "appraisal" not in (tr[0]["note"] or {})  # nothing to appraise yet
    note = tr[2]["note"]
    assert {"validation", "exploration"} <= set(note["appraisal"]["moves"])
    # the analyst labels of that exchange reach the client's appraisal through the counselor turn
    assert note["appraisal"]["labels"] == {"strategy": "open_question", "client_risk": "none"} == tr[1]["move_labels"]
    alliance = next(u for u in note["updates"] if u["variable"] == "alliance")
    assert alliance["delta"] > 0 and "validation" in alliance["moves"] and "validation" in alliance["reason"]
    assert tr[2]["client_inner"]["alliance"] > tr[0]["client_inner"]["alliance"]


def test_crisis_route_skips_planner_and_applies_protocol() -> None:
    model = FunctionChatModel(fn=Scripted(client_text="I want to kill myself tonight, I have the pills ready."))
    st = _run(preset("full"), model, turns=3)
    c0, k0 = st["transcript"][0], st["transcript"][1]
    assert c0["risk"]["level"] == "high" and c0["risk"]["raised_by_scan"]  # the LLM said none
    assert "strategy_planner" not in c0["calls"] and k0["strategy"] is None
    assert "safety_plan" in c0["risk"]["actions"]
    assert "RISK PROTOCOL" in k0["directive"]
    counselor_prompt = next(c for c in model.calls if c.node == "counselor").prompt_text
    assert "safety plan" in counselor_prompt.lower()


def test_imminent_risk_hands_off() -> None:
    model = FunctionChatModel(fn=Scripted(client_text="I am going to jump off the bridge now.", level="imminent"))
    st = _run(preset("full"), model, turns=5)
    assert st["end_reason"] == "risk_handoff" and st["exchange"] == 1
    assert "request_human_consultation" in st["transcript"][0]["risk"]["actions"]


def test_unsafe_draft_is_rewritten_with_feedback() -> None:
    drafts = iter(["I can't help you with that.", "I hear how much pain you are in. Are you safe right now? We can call a crisis line together."])

    def fn(messages: list[BaseMessage], kw: dict[str, Any], info: CallInfo) -> str:
        if info.kind == "text" and info.node in ("counselor", "risk_review"):  # the draft and its rewrites
            return next(drafts, "I am here with you. Are you safe right now?")
        return Scripted(client_text="I want to die.")(messages, kw, info)

    st = _run(preset("full"), FunctionChatModel(fn=fn), turns=1)
    k0 = st["transcript"][1]
    assert k0["review"]["revisions"] == 1 and k0["review"]["safe"]
    assert "abrupt refusal" in k0["review"]["history"][0]["rule_problems"][0]
    assert k0["text"].startswith("I hear how much pain")


def test_invalid_analyst_output_is_recorded_not_defaulted() -> None:
    def fn(messages: list[BaseMessage], kw: dict[str, Any], info: CallInfo) -> str:
        if info.node == "emotion_tracker":
            return '{"main": "sad", "intensity": 99}'
        return Scripted()(messages, kw, info)

    st = _run(preset("full"), FunctionChatModel(fn=fn), turns=1)
    emo = st["transcript"][0]["emotion"]
    assert "error" in emo and "EmotionReading" in emo["error"] and "main" not in emo
    calls = st["transcript"][0]["calls"]["emotion_tracker"]
    assert calls[0]["attempts"] == 3 and calls[0]["retries"] == 2 and "error" in calls[0]


@pytest.mark.parametrize("name", ["full", "unified", "minimal"])
def test_presets_on_schema_double(name: str) -> None:
    st = _run(preset(name), SchemaFakeChatModel(seed=3), turns=2)
    assert st["ended"] and st["end_reason"] in ("max_turns", "client_wish", "risk_handoff")
    assert len(st["transcript"]) == 2 * st["exchange"]


@pytest.mark.parametrize("name", ["full", "unified", "minimal"])
def test_double_blind_canary(name: str) -> None:
    model = SchemaFakeChatModel(seed=1)
    prompts: list[tuple[str, str, str]] = []
    _run(preset(name), model, turns=3, on_prompt=lambda node, side, msgs: prompts.append((node, side, "\n".join(str(m.content) for m in msgs))))
    counselor_side = [p for p in prompts if p[1] == "counselor"]
    client_side = [p for p in prompts if p[1] == "client"]
    assert counselor_side and client_side
    assert all(CANARY not in text for _, _, text in counselor_side)
    assert any(CANARY in text for _, _, text in client_side)  # the canary really was planted
    # And through the model's own record of every call:
    for call in model.calls:
        if call.info.side != "client":
            assert CANARY not in call.prompt_text


def test_views_are_structural() -> None:
    state = initial_session_state(_profile())
    v = make_view(state, "counselor", "counselor")
    with pytest.raises(BlindViewError, match="may not read 'profile'"):
        v["profile"]
    with pytest.raises(BlindViewError):
        v["inner"]
    assert "profile" not in dict(v) and v["intake"]["name"] == "Maria"
    state["transcript"] = [{"speaker": "client", "text": "hi", "emotion": {"main": "sad"}, "client_inner": {"distress": 9}}]
    cv = make_view(state, "client", "client")
    assert cv["transcript"] == [{"speaker": "client", "text": "hi"}]  # no analyst outputs
    assert "client_inner" not in make_view(state, "counselor", "x")["transcript"][0]
    with pytest.raises(BlindViewError):
        cv["intake"]


def test_custom_counselor_function_and_builder_ops() -> None:
    seen: list[dict[str, Any]] = []

    def my_counselor(view, ctx):  # a user's own counselor, rest unchanged
        seen.append(view.to_dict())
        return {"current": {"counselor_text": f"[mine] I hear you ({view['current']['emotion'].get('main')})."}}

    b = preset("full").replace_node("counselor", my_counselor)
    st = _run(b, FunctionChatModel(fn=Scripted()), turns=2)
    assert all(t["text"].startswith("[mine]") for t in st["transcript"] if t["speaker"] == "counselor")
    assert "profile" not in seen[0] and "inner" not in seen[0]

    b = preset("full").remove_node("strategy_planner")
    assert "strategy_planner" not in b.order and "risk_control" not in b.conditionals
    st = _run(b, FunctionChatModel(fn=Scripted()), turns=1)
    assert "strategy_planner" not in st["transcript"][0]["calls"]

    b = preset("minimal").add_node("echo", RunnableLambda(lambda view: {"current": {"plan": {"strategy": "custom"}}}), side="counselor", before="counselor")
    st = _run(b, FunctionChatModel(fn=Scripted()), turns=1)
    assert st["transcript"][1]["strategy"] == {"strategy": "custom"}

    b = preset("minimal").replace_node("counselor", FunctionChatModel(fn=lambda m, k: "A chat model as counselor."))
    st = _run(b, FunctionChatModel(fn=Scripted()), turns=1)
    assert st["transcript"][1]["text"] == "A chat model as counselor."

    with pytest.raises(TherasimError, match="already exists"):
        preset("full").add_node("client", my_counselor, side="counselor")
    with pytest.raises(TherasimError, match="no node 'nope'"):
        preset("full").remove_node("nope")
    with pytest.raises(TherasimError, match="reserved"):
        preset("full").add_node("record", my_counselor, side="system")
    with pytest.raises(TherasimError, match="unknown preset"):
        preset("fancy")


def test_compiles_with_checkpointer_and_draws_mermaid() -> None:
    saver = InMemorySaver()
    g = preset("full").compile(checkpointer=saver)
    ctx = SimContext(models=ModelPool({"default": SchemaFakeChatModel()}), course=CourseSpec(max_turns=2))
    asyncio.run(run_session(g, initial_session_state(_profile()), ctx, thread_id="t1"))
    history = list(g.get_state_history({"configurable": {"thread_id": "t1"}}))
    assert len(history) > 5
    m = preset("full").mermaid()
    for node in ("client", "emotion_tracker", "risk_control", "strategy_planner", "counselor", "risk_review", "record", "termination"):
        assert node in m


def test_termination_reasons() -> None:
    def wants_end(messages: list[BaseMessage], kw: dict[str, Any], info: CallInfo) -> str:
        if info.node == "client":
            return client_turn_json("I think I'd like to stop here for today.", wants_to_end=True)
        return Scripted()(messages, kw, info)

    # A wish to end is honoured only when the wish to continue is low (policies/dynamics.py).
    st = _run(preset("minimal"), FunctionChatModel(fn=wants_end), turns=5, inner={"wish_to_continue": 2})
    assert st["end_reason"] == "client_wish" and st["exchange"] == 1
    st = _run(preset("minimal"), FunctionChatModel(fn=wants_end), turns=3)
    assert st["end_reason"] == "max_turns" and "not honoured" in st["transcript"][0]["note"]["wants_to_end"]

    def closing(messages: list[BaseMessage], kw: dict[str, Any], info: CallInfo) -> str:
        if info.node == "client":
            return client_turn_json("Thanks, see you next week.", wants_to_end=False)
        return "Take care, see you next week."

    st = _run(preset("minimal"), FunctionChatModel(fn=closing), turns=6)
    assert st["end_reason"] == "closing_exchange" and st["exchange"] == 2


def test_http_endpoint_as_counselor_node() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict[str, Any]] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            received.append(body)
            data = json.dumps({"text": "Served over HTTP: tell me more."}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a: Any) -> None:
            pass

    from therasim.graphs import http_node

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        b = preset("minimal").replace_node("counselor", http_node(f"http://127.0.0.1:{srv.server_address[1]}/reply"))
        st = _run(b, FunctionChatModel(fn=Scripted()), turns=2)
    finally:
        srv.shutdown()
    assert [t["text"] for t in st["transcript"] if t["speaker"] == "counselor"] == ["Served over HTTP: tell me more."] * 2
    assert received[0]["node"] == "counselor" and "profile" not in received[0]["view"] and CANARY not in json.dumps(received)
