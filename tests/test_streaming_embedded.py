"""The embedded model streams tokens, and a cancelled call frees it (llama.cpp stops
at its next token instead of finishing the generation)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from therasim.config import ModelSpec
from therasim.providers import _GenerationCancelled, _load_llama, make_chat_model

pytestmark = pytest.mark.embedded

MSGS = [SystemMessage(content="You are a storyteller."), HumanMessage(content="Tell me a very long story about a lighthouse keeper and the sea.")]


def test_embedded_astream_yields_tokens():
    model = make_chat_model(ModelSpec(n_ctx=1024))

    async def go() -> list[Any]:
        return [c async for c in model.astream(MSGS, max_tokens=24, seed=1)]

    chunks = asyncio.run(go())
    assert len([c for c in chunks if c.content]) >= 5
    total = sum(chunks[1:], chunks[0])
    assert total.usage_metadata["output_tokens"] == len([c for c in chunks if c.content]) and total.usage_metadata["input_tokens"] > 10


def test_a_cancelled_call_frees_the_model(monkeypatch):
    model = make_chat_model(ModelSpec(n_ctx=1024))
    llama, lock = _load_llama(model.model_path, model.n_ctx, model.n_threads, "default")  # type: ignore[attr-defined]
    outcome: list[str] = []
    real = llama.create_chat_completion

    started = threading.Event()

    def spy(**kw: Any) -> Any:
        started.set()
        if kw.get("stream"):
            gen = real(**kw)

            def tokens() -> Any:
                try:
                    yield from gen
                except GeneratorExit:  # closed by therasim at the next token after the cancel
                    outcome.append("cancelled")
                    raise
                outcome.append("finished")

            return tokens()
        try:
            out = real(**kw)
        except _GenerationCancelled:
            outcome.append("cancelled")
            raise
        outcome.append("finished")
        return out

    monkeypatch.setattr(llama, "create_chat_completion", spy)

    async def go() -> float:
        task = asyncio.create_task(model.ainvoke(MSGS, max_tokens=900, temperature=1.0, seed=3))
        assert await asyncio.to_thread(started.wait, 60)
        await asyncio.sleep(0.3)
        task.cancel()
        t0 = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        got = await asyncio.to_thread(lock.acquire, True, 60)
        assert got
        lock.release()
        return time.monotonic() - t0

    waited = asyncio.run(go())
    assert outcome == ["cancelled"], outcome
    assert waited < 30
