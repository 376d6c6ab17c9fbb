"""The per-call CPU cuts around a model call (docs/benchmarks.md, "the nodes' own
Python"): each fast path gives what the plain way gives, on the inputs that matter."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path
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


def test_boundary_search_gives_the_plain_search() -> None:
    """The lexicons' presence test after a separator (appraisal._AfterBoundary) finds a
    phrase exactly where the plain ``\\b`` search does: at the text's start, after
    any non-word character (space, punctuation, newline, quote, hyphen), never after
    a letter, digit or underscore; and every pattern qualifies for it."""
    assert set(appraisal._PRESENT) == set(MOVE_LEXICON)
    for p in (*(p for ps in MOVE_LEXICON.values() for p in ps), *RISK_CUES):
        assert appraisal._word_led(p), p
    for p in (r"\bs?uicid", r"\b(?:a?|b)c", r"\b(?:ab|c)?d", r"\b.x", r"\b(?:ab|(?:c))d", r"\b(?<=a)b", r"\b(?:|a)b", r"\b^ab"):
        assert not appraisal._word_led(p), p  # a match could start elsewhere: the plain search
    risk = appraisal._AfterBoundary(RISK_CUES)  # the risk cues qualify too (has_risk_cue keeps its one search)
    rng = random.Random(11)
    glue = ["", " ", "\n", ".", ",", "'", '"', "-", "(", ")", "_", "3", "x", "?", "!", "/", ":", "\t", "  "]
    phrases = [p.lower() for p in PHRASES]
    for _ in range(3000):
        words = [*phrases, "the week", "and", "i"]
        parts = [rng.choice(words) for _ in range(rng.randint(1, 5))]
        text = "".join(rng.choice(glue) + part for part in parts) + rng.choice(glue)
        seps = set(text) - appraisal._WORD_LOWER
        for move, ps in MOVE_LEXICON.items():
            want = any(re.search(p, text) for p in ps)
            assert appraisal._PRESENT[move](text, seps) is want, (move, text)
        assert risk(text, seps) is any(re.search(p, text) for p in RISK_CUES), text
    assert appraisal._PRESENT["safety_check"]("suicide", set()) and not appraisal._PRESENT["safety_check"]("x_suicide", {"_"} - appraisal._WORD_LOWER)
    assert appraisal._PRESENT["exploration"]("(tell me more)", {"(", ")"}) and not appraisal._PRESENT["exploration"]("3tell me more", {" "})


def test_expected_changes_are_the_per_variable_loop() -> None:
    """The dynamics' expected changes, walked move by move, equal the loop over
    variables, then moves (values, types, order, ties); the archetype's default is
    still a fresh record for an unknown name."""
    from therasim.policies import dynamics
    from therasim.policies.archetypes import ARCHETYPES, archetype

    def reference(moves: dict[str, Any], inner: dict[str, Any], name: str | None) -> dict[str, Any]:
        arch = archetype(name)
        scale = 0.5 + float(inner.get("alliance", 4)) / 10.0
        out: dict[str, Any] = {}
        for v in dynamics.VARIABLES:
            parts = []
            for move, strength in moves.items():
                c = dynamics.EFFECTS.get(move, {}).get(v, 0.0) * float(strength)
                if not c:
                    continue
                if (v in dynamics.SYMPTOMS and c < 0) or (v == "self_efficacy" and c > 0):
                    c *= scale
                if v in ("alliance", "wish_to_continue"):
                    c *= arch.alliance_gain if c > 0 else arch.rupture_sensitivity
                parts.append((move, round(c, 4)))
            parts.sort(key=lambda p: -abs(p[1]))
            out[v] = (round(sum(c for _, c in parts), 4), parts)
        return out

    rng = random.Random(5)
    names = [*dynamics.EFFECTS, "not_a_move"]
    for _ in range(4000):
        moves = {m: rng.choice([0, 0.0, 0.5, 1.0, 0.25, 1, 0.333, True]) for m in rng.sample(names, rng.randint(0, len(names)))}
        inner = {"alliance": rng.choice([0, 3.3, 4, 5, 7.25, 10, "6"])} if rng.random() < 0.9 else {}
        name = rng.choice([None, "", *ARCHETYPES, "nobody"])
        assert repr(dynamics.expected_changes(moves, inner, name)) == repr(reference(moves, inner, name)), (moves, inner, name)
    assert archetype("nobody") == archetype("nobody") and archetype("nobody") is not archetype("nobody")
    assert archetype(None).name == "unspecified" and archetype("sceptic") is ARCHETYPES["sceptic"]


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

    async def both() -> tuple[Any, Any, Any]:
        msgs = [HumanMessage(content="Say something.")]
        m = await model._amessage(msgs, None, seed=3, max_tokens=20)
        r = await model._agenerate(msgs, None, seed=3, max_tokens=20)
        reply = await model._areply(msgs, None, seed=3, max_tokens=20)
        await model.aclose_loop()
        return m, r.generations[0].message, reply

    direct, wrapped, reply = asyncio.run(both())
    transport = ("transport",)
    strip = lambda m: {k: v for k, v in m.model_dump().items() if k != "response_metadata"} | {"rm": {k: v for k, v in m.response_metadata.items() if k not in transport}}  # noqa: E731
    assert strip(direct) == strip(wrapped) and direct.content
    # the direct path's reply (no message built) holds what the message holds
    assert reply.content == wrapped.content and reply.usage_metadata == wrapped.usage_metadata
    assert {k: v for k, v in reply.response_metadata.items() if k not in transport} == {k: v for k, v in wrapped.response_metadata.items() if k not in transport}


class UrlLike:
    def __str__(self) -> str:
        return "see https://u:PW@example.org/x"


def _structlog_line(name: str, fields: dict[str, Any], ts: str) -> str:
    """What the run's event log wrote before: structlog with a timestamp, rendered by
    ``dumps_strict``, from redacted fields."""
    import io

    import structlog

    from therasim._internal.rundir import dumps_strict
    from therasim.redact import redact

    out = io.StringIO()
    log = structlog.wrap_logger(
        structlog.WriteLogger(out),
        processors=[lambda _l, _m, ed: {**ed, "timestamp": ts}, structlog.processors.JSONRenderer(serializer=lambda o, **_: dumps_strict(o))],
        wrapper_class=structlog.make_filtering_bound_logger(0),
    )
    log.info(name, **redact(fields))
    return out.getvalue()


@pytest.mark.parametrize(
    "fields",
    [
        {"run_id": "r", "client_id": "c1", "session": 1, "exchange": 2, "node": "client", "attempts": 1, "latency_s": 0.0021, "errors": [], "repairs": []},
        {"error": "ProviderError: model call to https://user:SECRET@host/v1?api_key=K failed", "nested": {"urls": ("http://a:b@c/x", 3)}},
        {"score": float("nan"), "inf": float("inf"), "text": "naïve ünïcödé ✓", "none": None, "flag": True},
        {"path": Path("/tmp/x"), "obj_url": UrlLike()},
        {"timestamp": "given", "event_note": "a field named like the stamp"},
    ],
)
def test_event_line_is_what_structlog_wrote(fields: dict[str, Any]) -> None:
    from therasim._internal.rundir import event_line

    ts = "2026-11-27T07:16:52.618581Z"
    assert event_line("node_call", fields, ts) == _structlog_line("node_call", fields, ts)
    if "error" in fields:
        assert "SECRET" not in event_line("course_failed", fields, ts)


def test_event_timestamps_keep_structlog_format() -> None:
    import datetime

    import structlog

    from therasim._internal.rundir import iso_now

    theirs = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})["timestamp"]
    ours = iso_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", ours) and len(ours) in (20, 27)
    assert ours[-1] == theirs[-1] == "Z"
    a, b = (datetime.datetime.fromisoformat(x.replace("Z", "+00:00")) for x in (theirs, ours))
    assert abs((b - a).total_seconds()) < 60


def test_a_run_writes_its_events_through_the_lean_writer(tmp_path: Path) -> None:
    """events.jsonl of a real (small) run: every line JSON with event and timestamp last,
    node_call records with their fields."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _run_target import reply

    from therasim.runner import run
    from therasim.testing import FunctionChatModel

    res = run({"course": {"preset": "minimal", "sessions": 1, "max_turns": 2}, "memory": {"backend": "none"}, "seed": 4}, sample=1, out=tmp_path, models={"default": FunctionChatModel(fn=reply)})
    assert res.ok
    lines = (res.run_dir / "events.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert any(r["event"] == "node_call" and r["node"] == "counselor" and "latency_s" in r for r in recs)
    assert all(list(r)[-2:] == ["event", "timestamp"] for r in recs)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": [1, 2.5, -0.0, 1e-7], "c": null, "d": true}',
        '  {"a": "x\\u00e9\\ud83d\\ude00"}  ',
        '{"a": NaN, "b": Infinity}',
        '{"big": 123456789012345678901234567890}',
        '{"i64": 9223372036854775807, "past": 9223372036854775808, "neg": -9223372036854775809}',
        '{"f": 0.1234567890123456789012}',
        '{"huge": 1e400}',
        '{"ctrl": "line\nbreak\there"}',
        '{"dup": 1, "dup": 2, "z": 0}',
        '{"lone": "\\ud800"}',
        '```json\n{"fenced": [1, 2]}\n```',
        'Sure! Here it is: {"wrapped": {"x": 1}} hope that helps',
        '[1, 2, 3]',
        '"just a string"',
    ],
)
def test_parse_json_text_gives_what_json_gave(text: str) -> None:
    """parse_json_text's values are json.loads(strict=False)'s. orjson is not a drop-in
    for it: it reads integers past 64 bits as floats (the case below), refuses NaN, raw
    control characters and lone surrogates; and the check that would route those texts
    to json cost more than orjson saved on a reply-sized text (measured), so json stays."""
    import json

    from therasim.structured import parse_json_text

    def reference(t: str) -> Any:
        t = t.strip()
        try:
            return json.loads(t, strict=False)
        except json.JSONDecodeError:
            pass
        m = re.search(r"```(?:json)?\s*(.*?)```", t, re.S)
        if m:
            try:
                return json.loads(m.group(1), strict=False)
            except json.JSONDecodeError:
                pass
        start, end = t.find("{"), t.rfind("}")
        return json.loads(t[start : end + 1], strict=False)

    got, want = parse_json_text(text), reference(text)
    assert repr(got) == repr(want)  # same values, same types (int vs float), same key order


@pytest.mark.parametrize("memory", [True, False])
def test_a_ray_worker_sizes_the_memory_pool_to_its_courses(memory: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``CourseWorker.open`` (the Ray actor's class, run here without Ray) makes room
    for one memory call per course in flight, as the local runner does; without
    memory it leaves the pool alone."""
    from therasim.memory import MEMORY_BACKENDS, register_memory_backend
    from therasim.memory import pool as pool_mod
    from therasim.ray_executor import CourseWorker

    monkeypatch.setattr(pool_mod, "_POOL", pool_mod.MemoryPool())
    register_memory_backend("pool-test", lambda spec, default_path, scope: DictLikeStore())
    try:
        cfg = {"course": {"preset": "minimal", "sessions": 1, "max_turns": 1, "memory": memory}, "memory": {"backend": "pool-test"}}
        w = CourseWorker("run", cfg, 97, {}, memory_scope="run", memory_layout="shared")

        async def go() -> None:
            await w.open()
            await w.close()

        monkeypatch.chdir(tmp_path)
        asyncio.run(go())
    finally:
        MEMORY_BACKENDS.pop("pool-test", None)
    assert pool_mod.memory_pool().workers == (97 if memory else pool_mod.MIN_WORKERS)


class DictLikeStore:
    pending: list[Any] = []
    retried = 0

    def flush(self) -> int:
        return 0


_CLIENT_LINES = [
    "I'm going to kill myself tonight.",
    "I wish I were dead, honestly.",
    "Sometimes I cut myself when it gets bad.",
    "I want to hurt him for what he did.",
    "He hits me when he drinks.",
    "I was only joking, forget it.",
    "I'm not suicidal, I promise.",
    "I have the pills saved up in a drawer.",
    "Work was fine, I went for a walk.",
    "I didn't really mean it.",
]
_COUNSELOR_LINES = ["Are you having thoughts of killing yourself?", "Are you safe right now?", "How was your week?", "That sounds hard.", ""]


def _fold_sequence(rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    steps: list[tuple[str, dict[str, Any]]] = []
    for session in range(1, rng.randint(2, 4)):
        if rng.random() < 0.6:
            steps.append(("phq9", {"session": session, "score": rng.choice([None, 0, 1, 2, 3]), "when": "before"}))
        for ex in range(rng.randint(1, 8)):
            steps.append(("turn", {"session": session, "exchange": ex, "text": rng.choice(_CLIENT_LINES), "previous_counselor": rng.choice(_COUNSELOR_LINES), "llm_level": rng.choice([None, "none", "low", "moderate", "high"])}))
    return steps


def _run_folds(steps: list[tuple[str, dict[str, Any]]], *, check_inputs: bool) -> list[Any]:
    import copy

    from therasim.policies.risk import scan
    from therasim.policies.risk_register import fold_phq9, observe_turn

    reg: Any = None
    out = []
    for kind, kw in steps:
        before = copy.deepcopy(reg)
        if kind == "phq9":
            new, changes = fold_phq9(reg, **kw)
        else:
            new, changes = observe_turn(reg, cues=scan(kw["text"], model=False), **kw)
        if check_inputs:
            assert reg == before  # the fold left its input as it was
        out.append((copy.deepcopy(new), copy.deepcopy(changes), new != reg))
        reg = new
    return out


def test_register_folds_copy_what_they_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """The register's structural copy (``risk_register._copy``) gives every fold the
    result a deep copy gave, and no fold changes the register it was handed, over
    random sequences of turns (raises, retractions, direct assessments, walk-backs)
    and PHQ-9 answers."""
    import copy

    from therasim.policies import risk_register

    rng = random.Random(17)
    seqs = [_fold_sequence(rng) for _ in range(60)]
    fast = [_run_folds(s, check_inputs=True) for s in seqs]
    monkeypatch.setattr(risk_register, "_copy", lambda reg: copy.deepcopy(dict(reg)) if reg else risk_register.new_register())
    slow = [_run_folds(s, check_inputs=False) for s in seqs]
    assert fast == slow
    lowered = sum(1 for run in fast for reg, changes, _ in run for c in changes if c.get("to") == "none")
    raised = sum(1 for run in fast for reg, changes, _ in run for c in changes if c.get("to") not in (None, "none"))
    assert lowered and raised  # the sequences exercise walk-backs and raises, not only no-ops


def test_a_node_call_asks_whether_to_go_direct_once(monkeypatch) -> None:
    """A node's model call reads LangSmith's tracing setting once (``prepared``), not once
    for its tags and again to call (``labelled`` + ``ainvoke_model``), retries included;
    the request is the one the direct path sends."""
    from langchain_core.messages import AIMessage
    from pydantic import BaseModel

    from therasim import structured
    from therasim.config import ModelSpec
    from therasim.context import NodeContext, SimContext
    from therasim.providers import ModelPool, OpenAICompatChatModel

    asked = [0]
    real = structured._tracing_v2_is_enabled

    def counting() -> Any:
        asked[0] += 1
        return real()

    replies = iter(['{"n": "x"}', '{"n": 2}', "Hello there, how are you?"])
    sent: list[dict[str, Any]] = []

    async def fake(self: Any, messages: Any, stop: Any = None, **kw: Any) -> AIMessage:
        sent.append(self._body(messages, stop, kw))
        return AIMessage(content=next(replies))

    class N(BaseModel):
        n: int

    monkeypatch.setattr(structured, "_tracing_v2_is_enabled", counting)
    monkeypatch.setattr(OpenAICompatChatModel, "_areply", fake)
    pool = ModelPool({"default": ModelSpec(provider="openai", model="m", base_url="http://127.0.0.1:9/v1")})
    ctx = NodeContext(SimContext(models=pool), "analyst", "counselor", {"client_id": "c", "session": 1, "exchange": 1})
    msgs = [HumanMessage(content="x")]
    assert asyncio.run(ctx.structured("analysts", N, msgs)).n == 2  # the first reply is invalid: two attempts
    assert asked[0] == 1 and len(sent) == 2 and sent[0]["response_format"]["type"] == "json_schema"
    asyncio.run(ctx.text("counselor", msgs))
    assert asked[0] == 2 and len(sent) == 3 and sent[2]["messages"] == [{"role": "user", "content": "x"}]


def _risk_corpus() -> list[str]:
    """Every sentence-like string literal of the risk tests (cues, denials, hyperbole,
    third person, quotes, abuse) plus generated replies: texts with and without cues."""
    import ast

    texts: set[str] = set()
    for name in ("test_risk_scan.py", "test_risk_detector.py", "test_risk_register.py"):
        tree = ast.parse((Path(__file__).parent / name).read_text(encoding="utf-8"))
        texts |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and " " in n.value and len(n.value) < 400}
    rng = random.Random(11)
    texts |= {_text(rng, odd=i % 5 == 0) for i in range(400)}
    return sorted(texts)


def test_pattern_scan_alternation_finds_what_the_patterns_find(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-alternation test that skips the per-pattern loop: the same cues as the
    loop over every text (the reference: an alternation that always matches), and it
    finds nothing exactly where no pattern finds anything."""
    from therasim.policies import risk

    texts = _risk_corpus()
    fast = [risk.pattern_scan(t) for t in texts]
    assert all(rx.groups == 0 for _, _, rx in risk._COMPILED)  # nothing the alternation would renumber
    any_cue = risk._ANY_CUE
    monkeypatch.setattr(risk, "_ANY_CUE", re.compile(""))
    slow = [risk.pattern_scan(t) for t in texts]
    assert fast == slow
    for t, cues in zip(texts, slow, strict=True):
        assert (any_cue.search(t) is None) == (not any(rx.search(t) for _, _, rx in risk._COMPILED))
        assert bool(cues) == any(rx.search(t) for _, _, rx in risk._COMPILED)
    hits = sum(1 for c in slow if c)
    assert hits > 50 and len(texts) - hits > 100, hits


def test_pattern_scan_alternation_is_built_from_the_patterns() -> None:
    from therasim.policies import risk

    assert risk._ANY_CUE.pattern == "|".join(f"(?:{p})" for _, _, p in risk._PATTERNS)
    assert risk._ANY_CUE.flags == risk._COMPILED[0][2].flags and len({rx.flags for _, _, rx in risk._COMPILED}) == 1


@pytest.mark.parametrize(
    "text",
    ["", "a", "ok", "ok then", "  hi  ", "I 2 u", "x y z", "well, okay", "42 43", "a_b cd", "élan vital", "один", "word", "do it", "_ab_ cd", "ab\ncd", "a1 b2 cd"],
)
def test_two_words_is_the_findall_count(text: str) -> None:
    from therasim.context import two_words

    assert two_words(text) == (len(re.findall(r"[^\W\d_]{2,}", text)) >= 2)


@pytest.mark.parametrize("text", ["", "   ", "{", '{"a": }', "nothing here", "```json\n{bad}\n```", '{"a": 1 {"b": 2}', '{"a": NaN', "[1, 2"])
def test_parse_json_text_fails_as_json_did(text: str) -> None:
    """Invalid replies fail with json's own error (message and position), the text the
    retry and the repair turn quote."""
    import json

    from therasim.structured import parse_json_text

    def reference(t: str) -> Any:
        t = t.strip()
        try:
            return json.loads(t, strict=False)
        except json.JSONDecodeError:
            pass
        m = re.search(r"```(?:json)?\s*(.*?)```", t, re.S)
        if m:
            try:
                return json.loads(m.group(1), strict=False)
            except json.JSONDecodeError:
                pass
        start, end = t.find("{"), t.rfind("}")
        if start != -1 and end > start:
            return json.loads(t[start : end + 1], strict=False)
        raise json.JSONDecodeError("no JSON object found", t, 0)

    with pytest.raises(json.JSONDecodeError) as want:
        reference(text)
    with pytest.raises(json.JSONDecodeError) as got:
        parse_json_text(text)
    assert (got.value.msg, got.value.pos, got.value.doc) == (want.value.msg, want.value.pos, want.value.doc)


def test_closing_phrases_compiled_once_match_as_searched() -> None:
    from therasim.policies.termination import TerminationRules

    rules = TerminationRules()
    listed = TerminationRules(closing_phrases=[r"\bsee ya\b", r"\bCHEERS\b"])  # type: ignore[arg-type]
    for t in ["See you next week!", "until next time", "Goodbye", "bye", "That's all for today.", "let's end the session", "see ya", "cheers then", "nothing", ""]:
        assert rules.is_closing(t) == any(re.search(p, t, re.IGNORECASE) for p in rules.closing_phrases)
        assert listed.is_closing(t) == any(re.search(p, t, re.IGNORECASE) for p in listed.closing_phrases)


def test_client_readable_slot_fields_in_the_client_transcript() -> None:
    """A slot declared readable by the client shows its recorded field in the client's
    transcript (worked out once per contract now)."""
    from therasim.contract import ExchangeContract, NodeSpec, Slot

    c = ExchangeContract([NodeSpec("labeller", side="counselor", writes=(Slot("move_label", frozenset({"client", "counselor"}), "counselor"),))])
    turns = [{"speaker": "client", "text": "hi there"}, {"speaker": "counselor", "text": "hello", "move_label": "reflection", "plan": "x"}, {"speaker": "counselor", "text": "ok", "move_label": None}]
    assert c.transcript_for("client", turns) == [{"speaker": "client", "text": "hi there"}, {"speaker": "counselor", "text": "hello", "move_label": "reflection"}, {"speaker": "counselor", "text": "ok"}]
