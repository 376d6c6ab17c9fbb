"""Providers: the openai provider against real OpenAI-compatible servers on 127.0.0.1;
the exact vLLM json_schema request shape; replica choice; the embedded model."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from therasim import ModelPool, ModelSpec, agenerate_structured, make_chat_model
from therasim.providers import EmbeddedChatModel, choose_replica, dialect_for
from therasim.structured import agenerate_text


class Mood(BaseModel):
    mood: Literal["low", "neutral", "good"]
    intensity: int = Field(ge=0, le=4)


class _Capture(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]] = []
    reply = '{"mood": "low", "intensity": 3}'

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).bodies.append({"path": self.path, "auth": self.headers.get("authorization"), **body})
        out = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": type(self).reply}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18, "prompt_tokens_details": {"cached_tokens": 0}},
        }
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a: Any) -> None:
        pass


@pytest.fixture()
def capture_server():
    _Capture.bodies = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def test_vllm_json_schema_request_shape(capture_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_KEY", "sk-test-not-logged")
    spec = ModelSpec(provider="vllm", model="my/model", base_url=capture_server, api_key_env="VLLM_KEY", sampling={"max_tokens": 50, "temperature": 0.2, "seed": 5})
    model = make_chat_model(spec)
    assert dialect_for(model) == "json_schema"
    obj, stats = asyncio.run(agenerate_structured(model, Mood, [HumanMessage(content="how?")], seed=42))
    assert obj == Mood(mood="low", intensity=3)
    assert stats.attempts == 1 and stats.input_tokens == 11 and stats.output_tokens == 7
    body = _Capture.bodies[-1]
    assert body["path"] == "/v1/chat/completions"
    assert body["auth"] == "Bearer sk-test-not-logged"
    rf = body["response_format"]
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["name"] == "Mood" and rf["json_schema"]["strict"] is True
    schema = rf["json_schema"]["schema"]
    assert schema["properties"]["intensity"]["maximum"] == 4  # vLLM's grammar backends honour bounds
    assert schema["properties"]["mood"]["enum"] == ["low", "neutral", "good"]
    assert body["seed"] == 42 and body["temperature"] == 0.2
    assert body.get("max_tokens", body.get("max_completion_tokens")) == 50
    assert body["model"] == "my/model"


def test_out_of_range_output_is_retried_and_counted(capture_server: str) -> None:
    spec = ModelSpec(provider="openai", model="m", base_url=capture_server)
    model = make_chat_model(spec)
    replies = iter(['{"mood": "low", "intensity": 10}', '{"mood": "low", "intensity": 2}'])

    def next_reply(*_: Any) -> None:
        _Capture.reply = next(replies)

    orig = _Capture.do_POST

    def patched(self: _Capture) -> None:
        next_reply()
        orig(self)

    _Capture.do_POST = patched  # type: ignore[method-assign]
    try:
        obj, stats = asyncio.run(agenerate_structured(model, Mood, [HumanMessage(content="x")]))
    finally:
        _Capture.do_POST = orig  # type: ignore[method-assign]
        _Capture.reply = '{"mood": "low", "intensity": 3}'
    assert obj.intensity == 2
    assert stats.attempts == 2 and stats.retries == 1
    assert "intensity" in stats.errors[0] and "less than or equal to 4" in stats.errors[0]


def test_replica_choice_is_stable_and_spread() -> None:
    urls = [f"http://10.0.0.{i}:8000/v1" for i in range(4)]
    picks = {k: choose_replica(urls, f"run/client-{k}") for k in range(200)}
    assert all(choose_replica(urls, f"run/client-{k}") == picks[k] for k in range(200))
    assert len(set(picks.values())) == 4
    # Adding a replica moves only the courses that now hash to it.
    more = [*urls, "http://10.0.0.9:8000/v1"]
    moved = [k for k in range(200) if choose_replica(more, f"run/client-{k}") != picks[k]]
    assert all(choose_replica(more, f"run/client-{k}") == more[-1] for k in moved)
    pool = ModelPool({"default": ModelSpec(provider="openai", model="m", base_url=urls)})
    assert pool.get("counselor", "run/client-1") is pool.get("client", "run/client-1")


@pytest.mark.embedded
def test_openai_provider_against_llama_cpp_server(llama_server: str) -> None:
    spec = ModelSpec(provider="openai", model="smollm2", base_url=llama_server, structured_output="json_object_schema", sampling={"max_tokens": 40, "seed": 1})
    model = make_chat_model(spec)
    text, st = asyncio.run(agenerate_text(model, [HumanMessage(content="Say hello in one sentence.")], seed=3))
    assert text.strip() and st.output_tokens > 0
    obj, st2 = asyncio.run(
        agenerate_structured(model, Mood, [SystemMessage(content="Classify the mood."), HumanMessage(content="'Nothing helps, I feel awful.' Reply as JSON.")], max_attempts=4, seed=1)
    )
    assert isinstance(obj, Mood) and 0 <= obj.intensity <= 4
    assert st2.input_tokens > 0


@pytest.mark.embedded
def test_embedded_generation_structured_and_concurrency() -> None:
    model = make_chat_model(ModelSpec(sampling={"max_tokens": 24, "seed": 1}))
    assert isinstance(model, EmbeddedChatModel)

    async def go() -> Any:
        texts = await asyncio.gather(*[agenerate_text(model, [HumanMessage(content=f"Say a greeting number {i}.")], seed=i) for i in range(4)])
        obj = await agenerate_structured(model, Mood, [SystemMessage(content="Classify the mood."), HumanMessage(content="'I feel great today!' JSON.")], max_attempts=4, seed=2)
        return texts, obj

    texts, (obj, st) = asyncio.run(go())
    assert all(t.strip() and s.output_tokens > 0 for t, s in texts)
    assert isinstance(obj, Mood) and st.attempts >= 1 and st.output_tokens > 0


def test_provider_protocol_gives_call_arguments_and_leaves_foreign_models_alone(capture_server: str) -> None:
    from therasim.providers import OpenAICompatChatModel, as_provider, own_max_tokens
    from therasim.testing import FunctionChatModel

    emb = EmbeddedChatModel(model_path="/nonexistent.gguf")  # not loaded until called
    p = as_provider(emb)
    assert p is not None and p.small_context and p.call_kwargs(cache_slot="counselor", course_key="r/c1") == {"cache_slot": "counselor"}
    api = make_chat_model(ModelSpec(provider="openai", model="m", base_url=capture_server))
    assert isinstance(api, OpenAICompatChatModel)
    q = as_provider(api)
    assert q is not None and not q.small_context and q.call_kwargs(cache_slot="counselor", course_key="r/c1") == {"user": "r/c1"}
    assert q.call_kwargs(cache_slot="judge", course_key=None) == {}
    assert own_max_tokens(api) is None and dialect_for(api) == "json_schema"
    foreign = FunctionChatModel(fn=lambda m, k: "hi")
    assert as_provider(foreign) is None and dialect_for(foreign) == "json_object_schema"
    # the sync path posts through the same client: the transport's record is on the message
    msg = api.invoke([HumanMessage(content="hello")])
    assert msg.response_metadata["transport"]["attempts"] == 1


def test_the_pool_gives_each_course_its_replicas_model_and_one_model_for_one_replica() -> None:
    from therasim.config import ModelSpec
    from therasim.providers import ModelPool

    urls = [f"http://10.0.0.{i}:8000/v1" for i in range(1, 4)]
    pool = ModelPool({"default": ModelSpec(provider="openai", model="m", base_url=urls), "client": ModelSpec(provider="openai", model="m", base_url=urls[0])})
    for k in range(30):  # asked twice per course: the second answer is the first
        key = f"run/client-{k}"
        m = pool.get("counselor", key)
        assert m.base_url == choose_replica(urls, key) and pool.get("counselor", key) is m  # type: ignore[attr-defined]
    assert len({pool.get("counselor", f"run/client-{k}").base_url for k in range(30)}) == 3  # type: ignore[attr-defined]
    one = pool.get("client", "run/client-1")
    assert all(pool.get("client", f"run/client-{k}") is one for k in range(30)) and pool.get("client") is one
