"""Structured output: parsing, grammar schemas, retries; property tests over node schemas."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import HumanMessage

from therasim.errors import StructuredOutputError
from therasim.nodes.client import ClientTurn
from therasim.nodes.emotion import emotion_model
from therasim.nodes.risk import DraftReview, RiskAssessment
from therasim.nodes.strategy import plan_model
from therasim.nodes.unified import unified_model
from therasim.schema_sampling import instance_from_schema
from therasim.structured import (
    agenerate_structured,
    grammar_schema,
    parse_json_text,
    response_format_for,
)
from therasim.testing import FunctionChatModel

SCHEMAS = [RiskAssessment, DraftReview, emotion_model("plutchik"), emotion_model("basic8"), plan_model("cbt"), plan_model("mi"), plan_model("person_centred"), unified_model("plutchik", "cbt")]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_every_node_schema_samples_valid(schema: Any, seed: int) -> None:
    inst = instance_from_schema(schema.model_json_schema(), random.Random(seed))
    try:
        schema.model_validate(inst)
    except Exception as e:  # cross-field rules the sampler does not know (secondary groups)
        assert "secondary" in str(e)


@given(obj=st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(st.integers(), st.text(max_size=20), st.booleans(), st.none()), max_size=5))
def test_parse_json_round_trip(obj: dict[str, Any]) -> None:
    text = json.dumps(obj)
    assert parse_json_text(text) == obj
    assert parse_json_text(f"Sure! ```json\n{text}\n```") == obj


@given(junk=st.text(max_size=200))
def test_parse_never_crashes_unexpectedly(junk: str) -> None:
    try:
        parse_json_text(junk)
    except json.JSONDecodeError:
        pass


def test_grammar_schema_turns_small_int_ranges_into_enums() -> None:
    g = grammar_schema(RiskAssessment.model_json_schema())
    assert "$defs" not in json.dumps(g) and "$ref" not in json.dumps(g)
    rf = response_format_for(ClientTurn, "json_object_schema")
    assert rf is not None and rf["schema"]["properties"]["changes"]["properties"]["alliance"]["properties"]["delta"] == {"enum": [-2, -1, 0, 1, 2]}
    assert response_format_for(ClientTurn, "prompt") is None


def test_retry_then_typed_error_with_raw_text() -> None:
    model = FunctionChatModel(fn=lambda m, k: '{"safe": "maybe"}')
    with pytest.raises(StructuredOutputError) as ei:
        asyncio.run(agenerate_structured(model, DraftReview, [HumanMessage(content="x")], max_attempts=3))
    e = ei.value
    assert e.schema_name == "DraftReview" and e.raw == '{"safe": "maybe"}' and e.attempts == 3 and len(e.errors) == 3
    assert len(model.calls) == 3
    # The third attempt carries the validation error back to the model.
    assert "That reply was invalid" in str(model.calls[2]["messages"][-1].content)


def test_prompt_dialect_carries_schema_in_last_message() -> None:
    model = FunctionChatModel(fn=lambda m, k: 'Here you go: {"safe": true, "problems": "", "suggestion": ""}', therasim_dialect="prompt")
    obj, st_ = asyncio.run(agenerate_structured(model, DraftReview, [HumanMessage(content="check")]))
    assert obj.safe and st_.attempts == 1
    assert "JSON schema" in str(model.calls[0]["messages"][-1].content)
    assert "response_format" not in model.calls[0]["kwargs"]


def test_own_http_model_skips_langchain_only_without_callbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The direct path sends the same request and returns the same message; with a
    callback handler attached (LangGraph's messages stream, tracing) the langchain
    path runs, so the handler still sees the call."""
    from langchain_core.callbacks import AsyncCallbackHandler
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    from therasim.config import ModelSpec
    from therasim.providers import OpenAICompatChatModel, make_chat_model
    from therasim.structured import _direct, agenerate_text

    seen: list[dict[str, Any]] = []

    async def fake(self: Any, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        seen.append({"n": len(messages), **kw})
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="hi", usage_metadata={"input_tokens": 3, "output_tokens": 1, "total_tokens": 4}))])

    async def fake_message(self: Any, messages: Any, stop: Any = None, **kw: Any) -> AIMessage:
        return (await fake(self, messages, stop, **kw)).generations[0].message  # type: ignore[return-value]

    monkeypatch.setattr(OpenAICompatChatModel, "_agenerate", fake)
    monkeypatch.setattr(OpenAICompatChatModel, "_areply", fake_message)  # the direct path takes the message's fields alone
    model = make_chat_model(ModelSpec(provider="openai", model="m", base_url="http://127.0.0.1:9/v1"))
    tagged = model.with_config(tags=["counselor"])
    assert _direct(tagged) is model
    text, stats = asyncio.run(agenerate_text(tagged, [HumanMessage(content="x")], seed=5, max_tokens=7))
    assert text == "hi" and stats.input_tokens == 3 and seen[-1] == {"n": 1, "seed": 5, "max_tokens": 7}

    class Spy(AsyncCallbackHandler):
        calls = 0

        async def on_chat_model_start(self, *a: Any, **kw: Any) -> None:
            Spy.calls += 1

    assert _direct(model.with_config(callbacks=[Spy()])) is None
    text, _ = asyncio.run(agenerate_text(model.with_config(callbacks=[Spy()]), [HumanMessage(content="x")], seed=5, max_tokens=7))
    assert text == "hi" and Spy.calls == 1 and seen[-1] == {"n": 1, "seed": 5, "max_tokens": 7}
