"""Token streaming: the stub speaks SSE and honours json_object, stop and n (read
with the openai client); OpenAICompatChatModel streams; speech tokens reach
LangGraph's messages stream tagged apart from analyst JSON; therasim events reach
the custom stream; a course streamed with subgraphs=True shows its sessions;
`therasim session --stream`."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from therasim.config import CourseSpec, ModelSpec
from therasim.context import SimContext
from therasim.providers import ModelPool, make_chat_model
from therasim.streaming import UtteranceExtractor, speech_deltas


def _client(url: str) -> Any:
    import openai

    return openai.OpenAI(base_url=url, api_key="EMPTY", max_retries=0)


def test_openai_client_streams_from_the_stub(stub_url):
    c = _client(stub_url)
    msgs = [{"role": "user", "content": "How was your week?"}]
    whole = c.chat.completions.create(model="stub", messages=msgs, max_tokens=40, seed=1).choices[0].message.content
    pieces, finish, usage = [], None, None
    for ev in c.chat.completions.create(model="stub", messages=msgs, max_tokens=40, seed=1, stream=True, stream_options={"include_usage": True}):
        if ev.choices:
            pieces.append(ev.choices[0].delta.content or "")
            finish = ev.choices[0].finish_reason or finish
        if ev.usage:
            usage = ev.usage
    assert len([p for p in pieces if p]) > 3 and "".join(pieces) == whole
    assert finish == "stop" and usage is not None and usage.completion_tokens > 0


def test_stub_honours_json_object_stop_and_n(stub_url):
    c = _client(stub_url)
    schema = {"type": "object", "properties": {"mood": {"type": "integer", "minimum": 0, "maximum": 10}}, "required": ["mood"]}
    msgs = [{"role": "user", "content": "Rate it. Reply with one JSON object only, matching this JSON schema: " + json.dumps(schema)}]
    out = c.chat.completions.create(model="stub", messages=msgs, response_format={"type": "json_object"}, seed=2).choices[0].message.content
    assert 0 <= json.loads(out)["mood"] <= 10
    plain = c.chat.completions.create(model="stub", messages=[{"role": "user", "content": "hi"}], response_format={"type": "json_object"}).choices[0].message.content
    assert isinstance(json.loads(plain), dict)
    msgs = [{"role": "user", "content": "Tell me about it."}]
    full = c.chat.completions.create(model="stub", messages=msgs, seed=3, max_tokens=60).choices[0].message.content
    word = full.split()[3]
    cut = c.chat.completions.create(model="stub", messages=msgs, seed=3, max_tokens=60, stop=[word]).choices[0].message.content
    assert cut == full[: full.find(word)] and word not in cut
    many = c.chat.completions.create(model="stub", messages=msgs, seed=3, max_tokens=60, n=3)
    assert [ch.index for ch in many.choices] == [0, 1, 2] and len({ch.message.content for ch in many.choices}) == 3
    assert many.choices[0].message.content == full
    streamed: dict[int, str] = {}
    for ev in c.chat.completions.create(model="stub", messages=msgs, seed=3, max_tokens=60, n=2, stream=True):
        for ch in ev.choices:
            streamed[ch.index] = streamed.get(ch.index, "") + (ch.delta.content or "")
    assert streamed == {0: full, 1: many.choices[1].message.content}


def test_openai_compatible_model_astream(stub_url):
    model = make_chat_model(ModelSpec(provider="openai", model="stub", base_url=stub_url))
    msgs = [SystemMessage(content="You are kind."), HumanMessage(content="I feel low.")]

    async def go() -> tuple[list[Any], Any]:
        chunks = [c async for c in model.astream(msgs, max_tokens=30, seed=4)]
        whole = await model.ainvoke(msgs, max_tokens=30, seed=4)
        await model.aclose_loop()
        return chunks, whole

    chunks, whole = asyncio.run(go())
    text = "".join(str(c.content) for c in chunks)
    assert len([c for c in chunks if c.content]) > 3 and text == whole.content
    total = sum((c for c in chunks[1:]), chunks[0])
    assert total.usage_metadata["output_tokens"] > 0 and total.response_metadata.get("finish_reason") == "stop"


def test_utterance_extractor_reads_speech_out_of_streamed_json():
    ex = UtteranceExtractor()
    doc = json.dumps({"distress": 5, "utterance": 'I said "no" \u2014 then left.\nOK', "trust": 3})
    got = "".join(ex.feed(doc[i : i + 3]) for i in range(0, len(doc), 3))
    assert got == 'I said "no" \u2014 then left.\nOK'


def _ctx(url: str, **kw: Any) -> SimContext:
    spec = ModelSpec(provider="openai", model="stub", base_url=url)
    return SimContext(models=ModelPool({"default": spec}), course=CourseSpec(preset="unified", max_turns=2, sessions=2, **kw), seed=1)


def test_session_speech_in_messages_stream_and_events_in_custom(stub_url):
    from therasim.graphs import preset
    from therasim.graphs.session import initial_session_state
    from therasim.profiles import example_profiles

    g = preset("unified").compile()
    ctx = _ctx(stub_url)
    state = initial_session_state(example_profiles()[0])

    async def go() -> tuple[list[Any], list[Any], list[tuple[str, str]], dict[str, Any]]:
        msgs: list[Any] = []
        custom: list[Any] = []
        final: dict[str, Any] = {}
        async for mode, payload in g.astream(state, context=ctx, stream_mode=["messages", "custom", "values"], config={"recursion_limit": 200}):
            if mode == "messages":
                msgs.append(payload)
            elif mode == "custom":
                custom.append(payload)
            else:
                final = payload

        async def replay() -> Any:
            for m in msgs:
                yield m

        speech = [x async for x in speech_deltas(replay())]
        await ctx.models.aclose()
        return msgs, custom, speech, final

    msgs, custom, speech, final = asyncio.run(go())
    tags_by_node: dict[str, set[str]] = {}
    for _chunk, meta in msgs:
        tags_by_node.setdefault(meta["langgraph_node"], set()).update(meta.get("tags") or [])
    assert "therasim:speech" in tags_by_node["counselor"] and "therasim:json" not in tags_by_node["counselor"]
    assert {"therasim:speech", "therasim:json"} <= tags_by_node["client"]
    assert "therasim:analysis" in tags_by_node["analyst"] and "therasim:speech" not in tags_by_node["analyst"]
    assert sum(1 for chunk, meta in msgs if meta["langgraph_node"] == "counselor" and chunk.content) > 2 * 2  # token pieces, not whole replies
    # speech pieces rebuild exactly the transcript's utterances
    by_node: dict[str, str] = {}
    for node, text in speech:
        by_node[node] = by_node.get(node, "") + text
    said = final["transcript"]
    assert by_node["counselor"] == "".join(t["text"] for t in said if t["speaker"] == "counselor")
    assert by_node["client"] == "".join(t["text"] for t in said if t["speaker"] == "client")
    kinds = [e["event"] for e in custom]
    assert "node_call" in kinds and kinds.count("exchange") == 2


def test_course_streamed_with_subgraphs_shows_its_sessions(stub_url):
    from therasim.graphs import CourseGraphBuilder, initial_course_state
    from therasim.profiles import example_profiles

    cb = CourseGraphBuilder("minimal").without("memory", "events", "planner", "summaries")
    g = cb.compile()
    ctx = _ctx(stub_url, memory=False, events=False, planner=False)
    state = initial_course_state(example_profiles()[0], sessions=2)

    async def go() -> tuple[list[Any], list[Any]]:
        flat = [p async for p in g.astream(state, context=ctx, stream_mode=["messages", "updates"], config={"recursion_limit": 300})]
        sub = [p async for p in g.astream(state, context=ctx, stream_mode=["messages", "custom", "updates"], subgraphs=True, config={"recursion_limit": 300})]
        await ctx.models.aclose()
        return flat, sub

    flat, sub = asyncio.run(go())
    session_ns = [ns for ns, mode, payload in sub if ns and ns[0].startswith("session")]
    assert session_ns, "no session parts in a course streamed with subgraphs=True"
    speech = [(ns, p) for ns, mode, p in sub if mode == "messages" and "therasim:speech" in (p[1].get("tags") or [])]
    assert len({ns[0] for ns, _ in speech}) == 2  # both sessions, each under its own task namespace
    # an exchange's updates: LangGraph's one chunk per superstep, the folded node's writes in
    # order under its first node (one superstep per exchange: the client's; per call: the
    # counselor's, with record and termination folded into it), the turns recorded among them
    head = "client" if cb.session.fold_calls else "counselor"
    chunks = [p[head] for ns, mode, p in sub if ns and mode == "updates" and head in p]
    assert any(isinstance(c, list) and any("transcript" in w for w in c) for c in chunks), chunks[:2]
    assert any(mode == "custom" and p.get("event") == "exchange" for ns, mode, p in sub if ns)
    # without subgraphs, the course's own parts only
    assert all(mode != "messages" or p[1].get("langgraph_node") in ("measures", "closing_measures", "summarise_counselor", "summarise_client", "session_measures") for mode, p in flat)


def test_cli_session_stream(stub_url, tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"models:\n  default: {{provider: openai, model: stub, base_url: '{stub_url}'}}\ncourse: {{preset: minimal, max_turns: 2}}\n")
    r = subprocess.run([sys.executable, "-m", "therasim.cli", "session", "--config", str(cfg), "--stream"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert [ln.split(":")[0] for ln in lines[:4]] == ["client", "counselor", "client", "counselor"]
    assert lines[-1].startswith("session ended:")


class _FakeLlama:
    """Stands in for a llama.cpp model: yields a token every 10 ms, runs the logits
    processors before each one (as llama.cpp does), like create_chat_completion."""

    def __init__(self) -> None:
        self.tokens_made = 0

    @property
    def n_tokens(self) -> int:  # prompt (3) + completion in the context, as llama.cpp keeps it
        return 3 + self.tokens_made

    def tokenize(self, data: bytes, add_bos: bool = False) -> list[int]:
        return list(range(len(data.split())))

    def _steps(self, kw: dict[str, Any], n: int) -> Iterator[str]:
        for i in range(n):
            time.sleep(0.01)
            self.tokens_made += 1
            yield f"w{i} "

    def create_chat_completion(self, **kw: Any) -> Any:
        n = int(kw.get("max_tokens") or 10)
        if kw.get("stream"):
            return ({"choices": [{"delta": {"content": t}, "finish_reason": "length" if i == n - 1 else None}]} for i, t in enumerate(self._steps(kw, n)))
        text = "".join(self._steps(kw, n))
        return {"choices": [{"message": {"content": text}, "finish_reason": "length"}], "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3}}


@pytest.fixture
def fake_llama(monkeypatch):
    import therasim.providers as prov

    fake, lock = _FakeLlama(), threading.Lock()
    monkeypatch.setattr(prov, "_load_llama", lambda *a, **k: (fake, lock))
    model = prov.EmbeddedChatModel(model_path="/nonexistent/fake.gguf")
    return model, fake, lock


def test_embedded_astream_and_cancellation_logic(fake_llama):
    """The embedded provider's streaming and cancel paths (the real model: test_streaming_embedded.py)."""
    model, fake, lock = fake_llama
    msgs = [HumanMessage(content="tell me a story")]

    async def go() -> tuple[list[Any], int, int]:
        chunks = [c async for c in model.astream(msgs, max_tokens=8)]
        task = asyncio.create_task(model.ainvoke(msgs, max_tokens=2000))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(lock.acquire, True, 5)  # freed well before 2000 x 10 ms
        made = fake.tokens_made
        lock.release()
        # a consumer that stops reading a stream stops the generation too
        agen = model.astream(msgs, max_tokens=2000)
        async for _ in agen:
            break
        await agen.aclose()
        assert await asyncio.to_thread(lock.acquire, True, 5)
        lock.release()
        return chunks, made, fake.tokens_made

    chunks, after_cancel, after_stream = asyncio.run(go())
    assert "".join(str(c.content) for c in chunks) == "".join(f"w{i} " for i in range(8))
    total = sum(chunks[1:], chunks[0])
    assert total.usage_metadata["output_tokens"] == 8 and total.usage_metadata["input_tokens"] == 3 and total.response_metadata["finish_reason"] == "length"
    assert 8 < after_cancel < 8 + 200 and after_stream - after_cancel < 200
