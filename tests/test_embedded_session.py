"""Integration: real sessions on the embedded model (llama.cpp + SmolLM2-135M)."""

from __future__ import annotations

import asyncio

import pytest

from therasim.config import CourseSpec, ModelSpec
from therasim.context import SimContext
from therasim.graphs import preset
from therasim.graphs.session import initial_session_state, run_session
from therasim.profiles import example_profiles
from therasim.providers import ModelPool

pytestmark = pytest.mark.embedded
CANARY = "CANARY-e2e-91c4"


@pytest.mark.parametrize("name", ["full", "unified"])
def test_real_session(name: str) -> None:
    p = example_profiles()[1]
    # in the surface layer: disclosed from the first turn (deeper layers unlock later: policies/disclosure.py)
    p = p.model_copy(update={"hidden": p.hidden.model_copy(update={"personality": f"{p.hidden.personality} {CANARY}"})})
    prompts: list[tuple[str, str, str]] = []
    ctx = SimContext(
        models=ModelPool({"default": ModelSpec(sampling={"seed": 7})}),
        course=CourseSpec(max_turns=2, preset=name),
        on_prompt=lambda node, side, msgs: prompts.append((node, side, "\n".join(str(m.content) for m in msgs))),
    )
    st = asyncio.run(run_session(preset(name).compile(), initial_session_state(p), ctx))
    assert st["ended"] and st["end_reason"] in ("max_turns", "client_wish", "risk_handoff", "closing_exchange")
    tr = st["transcript"]
    assert len(tr) >= 2 and tr[0]["speaker"] == "client" and tr[1]["speaker"] == "counselor"
    assert all(t["text"].strip() for t in tr)
    # Every analyst output is either a validated reading or an explicit recorded error.
    for t in tr:
        if t["speaker"] == "client":
            assert t["risk"] is not None and "level" in t["risk"]
            assert ("main" in t["emotion"]) or ("error" in t["emotion"])
            tokens = sum(c["output_tokens"] for calls in t["calls"].values() for c in calls)
            assert tokens > 0
    counselor_side = [x for x in prompts if x[1] == "counselor"]
    assert counselor_side and all(CANARY not in text for _, _, text in counselor_side)
    assert any(CANARY in text for _, side, text in prompts if side == "client")
