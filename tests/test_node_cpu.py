"""The per-call CPU cuts around a model call (docs/benchmarks.md, "the nodes' own
Python"): each fast path gives what the plain way gives, on the inputs that matter."""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from therasim.policies import appraisal
from therasim.policies.appraisal import MOVE_LEXICON, RISK_CUES, appraise, has_risk_cue


def _appraise_reference(counselor_text: str, client_text: str = "", labels: Any = None, *, exchange: int = 99) -> dict[str, Any]:
    """The appraisal as written before the ASCII fast path: every phrase searched
    case-insensitively in the text as written."""
    strength = dict.fromkeys(appraisal.MOVES, 0.0)
    evidence: dict[str, list[str]] = {}
    for move, ps in MOVE_LEXICON.items():
        for p in ps:
            m = re.search(p, counselor_text or "", re.IGNORECASE)
            if m:
                strength[move] = appraisal.TEXT_WEIGHT
                evidence.setdefault(move, []).append(f"text: {m.group(0)!r}")
                break
    labels = labels or {}
    label_move = appraisal.LABEL_EVIDENCE.get(str(labels.get("strategy") or ""))
    if label_move:
        strength[label_move] = min(1.0, strength[label_move] + appraisal.LABEL_WEIGHT)
        evidence.setdefault(label_move, []).append(f"analyst strategy: {labels['strategy']}")
    if strength["advice"] > 0 and (max(strength["validation"], strength["reflection"]) == 0 or exchange < appraisal.EARLY_EXCHANGES):
        strength["premature_advice"] = strength["advice"]
        evidence["premature_advice"] = ["no validation or reflection first" if exchange >= appraisal.EARLY_EXCHANGES else f"advice in exchange {exchange} of the course"]
        strength["advice"] = 0.0
    cue = any(re.search(p, client_text or "", re.IGNORECASE) for p in RISK_CUES)
    analyst_risk = str(labels.get("client_risk") or "") in ("moderate", "high", "imminent")
    if (cue or analyst_risk) and strength["safety_check"] == 0:
        strength["missed_risk_cue"] = appraisal.TEXT_WEIGHT if cue else appraisal.LABEL_WEIGHT
        evidence["missed_risk_cue"] = [("risk cue in the client's words" if cue else "") + (f"; analyst risk {labels['client_risk']}" if analyst_risk else "")]
    if not (cue or analyst_risk):
        strength["safety_check"] = min(strength["safety_check"], 0.5)
    moves = {k: round(v, 3) for k, v in strength.items() if v > 0}
    return {"moves": moves, "evidence": {k: v for k, v in evidence.items() if k in moves}, "risk_cue": cue, "labels": dict(labels)}


PHRASES = [
    "That sounds really hard", "it makes sense", "No wonder", "Thank you for sharing", "I'm so sorry", "It sounds like",
    "you're feeling", "What I'm hearing", "So you are", "Tell me more", "What was that like?", "how did it go?",
    "Are you safe", "hurting yourself", "SUICIDE", "ending your life", "safety plan", "You should", "Just relax",
    "why don't you", "have you tried", "try not to", "everyone feels", "not a big deal", "could be worse", "Get over it",
    "Calm down", "cheer up", "bright side", "move on", "that's just life", "it's nothing", "I want to kill myself",
    "better off dead", "I don't want to live", "wish I were dead", "end it all", "i hear you", "part of you",
]
FILLER = ["the week", "at work", "and then", "I wonder", "with your family", "long nights", ".", ",", "?", "!", "\n"]
ODD = ["\u212a", "\u017f", "\u0130", "é", "straße", "ǅ", "\u2019", "ﬁ"]  # Kelvin sign, long s, dotted I, ...: IGNORECASE folds some


def _text(rng: random.Random, odd: bool) -> str:
    parts = [rng.choice(PHRASES if rng.random() < 0.4 else FILLER) for _ in range(rng.randint(0, 14))]
    if odd:
        parts.insert(rng.randint(0, len(parts)), rng.choice(ODD))
    s = " ".join(parts)
    return "".join(c.upper() if rng.random() < 0.2 else c for c in s)


def test_every_lexicon_pattern_is_lowercase() -> None:
    """The ASCII fast path lowers the text and matches case-sensitively: only valid
    while every pattern is written in lowercase."""
    for p in (*(p for ps in MOVE_LEXICON.values() for p in ps), *RISK_CUES):
        assert p == p.lower(), p


@pytest.mark.parametrize("odd", [False, True])
def test_appraisal_fast_path_gives_the_case_insensitive_result(odd: bool) -> None:
    rng = random.Random(7 + odd)
    seen_moves: set[str] = set()
    for i in range(600):
        reply, said = _text(rng, odd), _text(rng, odd)
        labels = rng.choice([None, {"strategy": "question"}, {"client_risk": "high"}, {"strategy": "providing_suggestions", "client_risk": "low"}])
        got = appraise(reply, said, labels, exchange=i % 4)
        assert got == _appraise_reference(reply, said, labels, exchange=i % 4), (reply, said)
        assert has_risk_cue(said) == got["risk_cue"]
        seen_moves |= set(got["moves"])
    assert seen_moves >= {"validation", "reflection", "exploration", "safety_check", "premature_advice", "dismissal", "missed_risk_cue"}
    # evidence quotes the reply as written, not lowered
    assert appraise("It Sounds Like you are TIRED.")["evidence"]["reflection"] == ["text: 'It Sounds Like'"]
    # a non-ASCII reply still folds what IGNORECASE folds (Kelvin sign K, long s)
    assert appraise("Than\u212a you for sharing that.")["evidence"]["validation"] == ["text: 'Than\u212a you for sharing'"]
    assert has_risk_cue("\u017fuicidal thoughts") and not has_risk_cue("suicidal".replace("s", "z"))


def test_transcript_projection_is_the_filtered_copy() -> None:
    """Each side's transcript: the same keys in the same order as the filtering it
    replaced, and fresh dicts (a node changing its view leaves the state alone)."""
    from therasim.contract import builtin_contract

    c = builtin_contract()
    hidden = c._hidden_turn_fields
    assert hidden, "the built-in slots hide some turn fields from the counselor side"
    rng = random.Random(3)
    keys = ["speaker", "text", "emotion", "risk", "calls", "exchange", *sorted(hidden), "strategy", "review"]
    turns = []
    for i in range(40):
        ks = rng.sample(keys[2:], rng.randint(0, len(keys) - 2))
        turns.append({"speaker": rng.choice(["client", "counselor"]), "text": f"t{i}", **{k: {"v": i} for k in ks}})
    got = c.transcript_for("counselor", turns)
    want = [{k: v for k, v in t.items() if k not in hidden} for t in turns]
    assert got == want and [list(t) for t in got] == [list(t) for t in want]
    assert all(g is not t for g, t in zip(got, turns, strict=True))
    got[0]["text"] = "changed"
    assert turns[0]["text"] == "t0"
    assert c.transcript_for("client", turns) == [{"speaker": t["speaker"], "text": t["text"]} for t in turns]


def test_header_fixed_parts_follow_the_registered_objects() -> None:
    """The headers' fixed parts are rendered once per taxonomy, modality and
    instrument object: the same text as rendered afresh, and a newly registered
    object under the same name is rendered anew."""
    from therasim.context import SimContext
    from therasim.policies.instruments import (
        INSTRUMENTS,
        get_instrument,
        items_text,
        register_instrument,
    )
    from therasim.policies.modalities import MODALITIES, get_modality, register_modality
    from therasim.prompts import HEADER_OUTCOME_ITEMS, counselor_header, forms_text

    def fresh_forms(names: tuple[str, ...]) -> str:
        return "\n".join(f"{i.title}, {i.period} ({i.anchors}):\n{items_text((i.name,))}" for i in map(get_instrument, names))

    assert forms_text(HEADER_OUTCOME_ITEMS) == fresh_forms(HEADER_OUTCOME_ITEMS)
    assert forms_text(HEADER_OUTCOME_ITEMS) is forms_text(HEADER_OUTCOME_ITEMS)  # rendered once
    sim = SimContext()
    view = {"modality": sim.course.modality, "intake": {"name": "A"}, "session": 2, "goals": ["g"]}
    before = counselor_header(view, sim)
    old_inst, old_mod = get_instrument("phq9"), get_modality(sim.course.modality)
    try:
        register_instrument(dataclasses_replace(old_inst, title="PHQ-9 (renamed)"))
        assert "PHQ-9 (renamed)" in forms_text(HEADER_OUTCOME_ITEMS) and forms_text(HEADER_OUTCOME_ITEMS) == fresh_forms(HEADER_OUTCOME_ITEMS)
        stages = [s.model_copy(update={"name": "renamed_stage"}) for s in old_mod.stages]
        register_modality(old_mod.model_copy(update={"stages": stages}))
        after = counselor_header(view, sim)
        assert "renamed_stage" in after and after != before
    finally:
        INSTRUMENTS[old_inst.name] = old_inst
        MODALITIES[old_mod.name] = old_mod
    assert counselor_header(view, sim) == before and forms_text(HEADER_OUTCOME_ITEMS) == fresh_forms(HEADER_OUTCOME_ITEMS)
    # the risk protocol is a plain object whose steps may be edited: always rendered afresh
    sim.risk_protocol.steps["low"] = []
    assert counselor_header(view, sim) != before


def dataclasses_replace(obj: Any, **kw: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_tags_bound_only_where_callbacks_would_see_them(stub_url: str) -> None:
    """``labelled``: the model itself on the direct path, a tagged binding otherwise;
    the direct path's message is the one ``_agenerate`` wraps."""
    from langchain_core.callbacks import AsyncCallbackHandler
    from langchain_core.runnables import RunnableBinding

    from therasim.config import ModelSpec
    from therasim.providers import make_chat_model
    from therasim.structured import labelled
    from therasim.testing import FunctionChatModel

    model = make_chat_model(ModelSpec(provider="openai", model="m", base_url=stub_url))
    assert labelled(model, ["therasim:speech"]) is model
    bound = labelled(model.with_config(callbacks=[AsyncCallbackHandler()]), ["therasim:speech"])
    assert isinstance(bound, RunnableBinding) and bound.config["tags"] == ["therasim:speech"]
    fake = FunctionChatModel(fn=lambda messages, kw: "hi")
    assert isinstance(labelled(fake, ["x"]), RunnableBinding)

    async def both() -> tuple[Any, Any]:
        msgs = [HumanMessage(content="Say something.")]
        m = await model._amessage(msgs, None, seed=3, max_tokens=20)
        r = await model._agenerate(msgs, None, seed=3, max_tokens=20)
        await model.aclose_loop()
        return m, r.generations[0].message

    direct, wrapped = asyncio.run(both())
    transport = ("transport",)
    strip = lambda m: {k: v for k, v in m.model_dump().items() if k != "response_metadata"} | {"rm": {k: v for k, v in m.response_metadata.items() if k not in transport}}  # noqa: E731
    assert strip(direct) == strip(wrapped) and direct.content
