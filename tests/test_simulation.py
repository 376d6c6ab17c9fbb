"""The client simulator: scripted counselors, appraisal, dynamics, staged disclosure,
instruments, session-dependent events and coherent profiles."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage

from therasim.config import CourseSpec, ModelSpec, load_config
from therasim.context import NodeContext, SimContext
from therasim.errors import ConfigError, ProfileError, TherasimError
from therasim.graphs import CourseGraphBuilder, initial_course_state, preset, run_course
from therasim.graphs.session import initial_session_state, run_session
from therasim.nodes.events import apply_event, draw_event
from therasim.nodes.measures import run_instruments
from therasim.policies.appraisal import appraise
from therasim.policies.disclosure import background
from therasim.policies.dynamics import attendance, beat_weights, update_inner
from therasim.policies.instruments import anchor, get_instrument, score
from therasim.profiles import (
    ClientProfile,
    example_profiles,
    has_risk_history,
    load_profiles,
    sample_profiles,
)
from therasim.providers import ModelPool, make_chat_model
from therasim.scripted import ScriptedCounselor, reply_for
from therasim.state import View
from therasim.testing import FunctionChatModel, SchemaFakeChatModel, client_turn_json

CANARY = "CANARY-9d1a-DEEPEST-LAYER"


# ----------------------------------------------------------------- scripted counselors


def test_scripted_counselors_are_deterministic_and_do_what_they_say() -> None:
    said = "I have been so tired and I feel useless since I lost my job."
    risky = "Some nights I think everyone would be better off without me."
    for style in ("dismissive", "eliza", "supportive"):
        assert reply_for(style, said, 2) == reply_for(style, said, 2)
    dis = appraise(reply_for("dismissive", said, 3), said)["moves"]
    assert "dismissal" in dis and "premature_advice" in dis and "validation" not in dis
    sup = appraise(reply_for("supportive", said, 3), said)["moves"]
    assert {"validation", "reflection", "exploration"} <= set(sup) and "dismissal" not in sup
    eliza = appraise(reply_for("eliza", said, 3), said)["moves"]
    assert not {"advice", "premature_advice", "dismissal", "validation"} & set(eliza)
    # risk: supportive asks about safety; dismissive misses the cue
    assert "safety_check" in appraise(reply_for("supportive", risky, 1), risky)["moves"]
    assert "missed_risk_cue" in appraise(reply_for("dismissive", risky, 1), risky)["moves"]


def test_scripted_counselor_from_config_is_a_chat_model_at_the_counselor_role() -> None:
    cfg = load_config({"models": {"counselor": {"provider": "scripted", "model": "supportive"}}})
    model = make_chat_model(cfg.models.for_role("counselor"))
    assert isinstance(model, ScriptedCounselor)
    out = model.invoke([HumanMessage(content="TRANSCRIPT SO FAR:\nClient: I feel so alone lately.\n\nWrite your next reply.")])
    assert "alone" in out.content and out.content.endswith("?")
    with pytest.raises(ConfigError, match="dismissive, eliza or supportive"):
        load_config({"models": {"counselor": {"provider": "scripted", "model": "rogers"}}})
    with pytest.raises(ConfigError, match=r"use it only under models\.counselor"):
        load_config({"models": {"client": {"provider": "scripted", "model": "eliza"}}})
    with pytest.raises(TherasimError, match="only writes counselor replies"):
        model.invoke([HumanMessage(content="x")], response_format={"type": "json_object"})


# ----------------------------------------------------------------- appraisal and dynamics


def test_appraisal_reads_text_and_analyst_labels() -> None:
    a = appraise("Have you tried going for a walk?", "I feel low", {"strategy": "reflection_of_feelings", "client_risk": "moderate"}, exchange=5)
    # advice with the analyst's (half-weight) reflection label is not premature; the moderate risk reading is missed
    assert a["moves"] == {"advice": 1.0, "reflection": 0.5, "missed_risk_cue": 0.5}
    assert a["evidence"]["reflection"] == ["analyst strategy: reflection_of_feelings"]
    assert "premature_advice" in appraise("You should just relax.", "I feel low")["moves"]


def test_update_bounds_steers_and_caps_with_reasons() -> None:
    inner = {"distress": 6.0, "hopelessness": 5.0, "anxiety": 5.0, "self_efficacy": 4.0, "alliance": 4.0, "wish_to_continue": 6.0}
    dismissal = {"moves": {"dismissal": 1.0}}
    up = {v: {"delta": 2, "because": "validation"} for v in inner}
    new, trace = update_inner(inner, dismissal, up, archetype_name="ready", session=1)
    al = next(t for t in trace if t["variable"] == "alliance")
    # expected = -0.45 x rupture_sensitivity 0.8 (ready) = -0.36; a +0.2 proposal may not turn it positive
    assert al["expected"] == pytest.approx(-0.36) and al["delta"] == pytest.approx(-0.21)
    assert "not seen in the reply; attributed to 'dismissal'" in al["reason"] and al["moves"] == ["dismissal"]
    d = next(t for t in trace if t["variable"] == "distress")
    assert d["expected"] == pytest.approx(0.25) and d["delta"] == pytest.approx(0.2)  # the proposal is within 0.15: kept
    # the per-session cap: repeated dismissals stop moving distress after 1.5
    for _ in range(12):
        new, trace = update_inner(new, dismissal, None, session=1)
    assert new["distress"] == pytest.approx(7.5) and "session cap 1.5" in trace[0]["reason"]
    # a new session resets the budget
    new2, _ = update_inner(new, dismissal, None, session=2)
    assert new2["distress"] > new["distress"]


def test_events_depend_on_the_session_and_stay_seeded() -> None:
    poor = {"alliance": 1.0, "session_change": {"distress": 1.0, "alliance": -2.0}, "wish_to_continue": 6}
    good = {"alliance": 7.0, "session_change": {"distress": -1.2, "alliance": 1.5}, "wish_to_continue": 8}
    wp, _ = beat_weights(poor)
    wg, _ = beat_weights(good)
    assert wp["rupture"] > 2 * wg["rupture"] and wg["breakthrough"] > 2 * wp["breakthrough"]
    assert attendance({"wish_to_continue": 8}, 0.0)[0] == "attended"
    assert attendance({"wish_to_continue": 1}, 0.3)[0] == "dropout"  # p = 0.6 x 2.5/3.5 = 0.43
    assert attendance({"wish_to_continue": 4}, 0.05)[0] == "no_show"
    ev = draw_event(3, "c1", 2)
    assert ev == draw_event(3, "c1", 2)
    a, b = apply_event({**poor, "disclosure": 2}, ev)[1], apply_event({**poor, "disclosure": 2}, ev)[1]
    assert a == b and a["weights"]["rupture"] == round(wp["rupture"], 4)
    # a rupture lowers disclosure one step and the alliance and wish to continue
    state = {"disclosure": 2, "alliance": 5.0, "wish_to_continue": 8.0}
    outcomes = [apply_event(state, {**ev, "u_beat": u / 200}) for u in range(200)]
    inner, _ = next(o for o in outcomes if o[1]["beat"] == "rupture")
    assert inner["disclosure"] == 1 and inner["alliance"] == 3.8 and inner["wish_to_continue"] == 6.5
    assert {o[1]["beat"] for o in outcomes} == {"plateau", "breakthrough", "setback", "rupture", "external_event", "new_problem"}


# ----------------------------------------------------------------- instruments


def test_instrument_anchor_and_score_by_hand() -> None:
    phq = get_instrument("phq9")
    inner = {"distress": 8, "hopelessness": 6, "anxiety": 4, "self_efficacy": 2}
    # 'failure': 0.4 x 6/10 + 0.6 x (1 - 2/10) = 0.72 -> 0.72 x 3 = 2.16
    assert anchor(phq, phq.item("failure"), inner) == pytest.approx(2.16)
    assert anchor(phq, phq.item("self_harm"), inner) == 0.0  # gated: no risk history
    answers = dict.fromkeys(phq.keys, 3)
    rec = score(phq, answers, inner)
    assert rec["items"]["self_harm"] == 0 and rec["anchored"]["self_harm"] == {"answered": 3, "kept": 0, "anchor": 0.0}
    assert rec["total"] == sum(rec["items"].values()) and rec["band"] == phq.band(rec["total"])
    missing = score(phq, {**answers, "sleep": None}, inner)
    assert missing["total"] is None and missing["missing"] == ["sleep"] and "band" not in missing
    wai = score(get_instrument("wai_sr"), dict.fromkeys(get_instrument("wai_sr").keys, 5), {"alliance": 10, "wish_to_continue": 10, "self_efficacy": 10})
    assert wai["total"] == 60 and wai["subscales"] == {"goal": 5.0, "task": 5.0, "bond": 5.0}
    srs = score(get_instrument("srs"), dict.fromkeys(get_instrument("srs").keys, 9), {"alliance": 2, "wish_to_continue": 3, "distress": 8})
    assert srs["total"] < 36 and "flag" in srs


@pytest.mark.parametrize(("mode", "calls"), [("whole", 1), ("blocks", 2), ("item", 16)])
def test_measures_modes_and_missing_items(mode: str, calls: int) -> None:
    seen: list[str] = []

    def fn(messages: list[BaseMessage], kw: dict[str, Any]) -> str:
        props = kw["response_format"]["schema"]["properties"]
        seen.append(",".join(props))
        if "gad_afraid" in props and mode != "whole":
            return "no idea"  # this block/item fails every attempt
        return json.dumps(dict.fromkeys(props, 2))

    p = example_profiles()[0]
    sim = SimContext(models=ModelPool({"default": FunctionChatModel(fn=fn)}), course=CourseSpec(measures_mode=mode), structured_attempts=1)
    ctx = NodeContext(sim, "measures", "client", {"client_id": p.id, "session": 1})
    view = View({"profile": {"intake": p.intake.model_dump(), "hidden": p.hidden.model_dump()}, "inner": p.initial_state.model_dump(), "session": 1}, "client", "measures", frozenset())
    rec = asyncio.run(run_instruments(view, ctx, ("phq9", "gad7"), when="before session 1", session=1, kind="outcome"))
    assert len(seen) == calls and rec["mode"] == mode
    assert rec["phq9"]["total"] == sum(rec["phq9"]["items"].values())
    if mode == "whole":
        assert rec["gad7"]["total"] is not None and "error" not in rec
    elif mode == "blocks":
        assert rec["gad7"] is None and "GAD7Answer invalid" in rec["error"]
    else:
        assert rec["gad7"]["missing"] == ["afraid"] and rec["gad7"]["total"] is None and rec["gad7"]["items"]["nervous"] is not None


# ----------------------------------------------------------------- staged disclosure


def test_canary_in_the_deepest_layer_reaches_client_prompts_only_after_unlock() -> None:
    p = example_profiles()[0]
    p = p.model_copy(update={"hidden": p.hidden.model_copy(update={"undisclosed": f"secret {CANARY}", "risk_history": f"once {CANARY}"})})
    prompts: list[tuple[str, str]] = []

    def client_fn(messages: list[BaseMessage], kw: dict[str, Any]) -> str:
        return client_turn_json("I have been sleeping badly and I feel so tired.", delta=1, because="validation")

    # alliance 9 is enough; the last layer also needs 6 exploring moves and the client has met 5
    inner = {**p.initial_state.model_dump(), "disclosure": 3, "alliance": 9.0, "explored": 5}
    assert CANARY not in background({"hidden": p.hidden.model_dump()}, inner)
    ctx = SimContext(
        models=ModelPool({"default": FunctionChatModel(fn=client_fn), "counselor": ScriptedCounselor(style="supportive")}),
        course=CourseSpec(max_turns=3),
        on_prompt=lambda node, side, msgs: prompts.append((node, "\n".join(str(m.content) for m in msgs))) if side == "client" else None,
    )
    st = asyncio.run(run_session(preset("minimal").compile(), initial_session_state(p, inner=inner), ctx))
    client_prompts = [t for n, t in prompts if n == "client"]
    assert len(client_prompts) == 3
    # turn 1: nothing to appraise; turn 2 appraises an exploring reply -> 6 moves -> layer 4 unlocks
    assert st["transcript"][2]["note"]["disclosure"]["to"] == 4
    assert CANARY not in client_prompts[0] and CANARY not in client_prompts[1]
    assert CANARY in client_prompts[2]
    assert all(CANARY not in json.dumps(t.get("text")) for t in st["transcript"] if t["speaker"] == "counselor")

    # a whole course without the unlock: no client-side prompt (measures, role-play,
    # recollection, session ratings) ever holds the deepest layer
    prompts.clear()
    locked = {**inner, "explored": 0}
    ctx2 = SimContext(models=ctx.models, course=CourseSpec(max_turns=2, sessions=2, memory=False), on_prompt=ctx.on_prompt)
    state = {**initial_course_state(p, sessions=2), "inner": locked}
    asyncio.run(run_course(CourseGraphBuilder("minimal").without("memory").compile(), state, ctx2))
    nodes = {n for n, _ in prompts}
    assert {"measures", "client", "summarise_client", "session_measures", "closing_measures"} <= nodes
    assert all(CANARY not in t for _, t in prompts)


# ----------------------------------------------------------------- determinism and trace


def _course(seed: int, style: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    recs: list[dict[str, Any]] = []
    models = ModelPool({"default": SchemaFakeChatModel(seed=1), "counselor": make_chat_model(ModelSpec(provider="scripted", model=style))})
    ctx = SimContext(models=models, course=CourseSpec(max_turns=3, sessions=3, memory=False), seed=seed, on_record=recs.append)
    prof = sample_profiles(1, seed=seed)[0]
    out = asyncio.run(run_course(CourseGraphBuilder("minimal").without("memory").compile(), initial_course_state(prof, sessions=3), ctx))
    return out, recs


def test_same_seed_same_profiles_events_and_appraisals() -> None:
    a, ra = _course(4, "dismissive")
    b, rb = _course(4, "dismissive")
    c, _ = _course(5, "dismissive")
    assert sample_profiles(5, seed=4) == sample_profiles(5, seed=4)
    assert a["events"] == b["events"] and a["events"] != c["events"]
    notes = lambda recs: [(t["note"] or {}).get("appraisal") for r in recs for t in r["turns"] if t["speaker"] == "client"]  # noqa: E731
    assert notes(ra) == notes(rb) and any(notes(ra))
    # the trace names the counselor moves behind the updates
    ups = [u for r in ra for t in r["turns"] if t["speaker"] == "client" for u in (t["note"] or {}).get("updates", [])]
    assert ups and all(u["reason"] for u in ups)
    assert any("dismissal" in u["moves"] for u in ups if u["variable"] == "alliance")
    # WAI-SR and SRS after each attended session, item scores stored
    rated = [r["session_measures"] for r in ra if r["turns"]]
    assert rated and all(len(m["wai_sr"]["items"]) == 12 and len(m["srs"]["items"]) == 4 for m in rated)


# ----------------------------------------------------------------- profiles


def test_sampled_profiles_are_coherent() -> None:
    from therasim.policies.problems import PROBLEMS

    by_key = {t.key: t for t in PROBLEMS}
    for p in sample_profiles(60, seed=2):
        t = by_key[p.extra["template"]]
        h = p.hidden
        assert set(h.risk_factors) <= {f for f, _ in t.risk_factors} and "none known" not in h.risk_factors
        assert not h.risk_history or h.risk_history in t.risk_history
        assert h.undisclosed in t.secrets and h.core_beliefs == list(t.core_beliefs)
        assert 2 <= len(h.situations) <= 3 and h.formulation is not None and h.formulation.precipitating
        assert set(h.core_belief_family) <= {"helpless", "unlovable", "worthless"}
        lo, hi = t.severity["distress"]
        assert lo <= p.initial_state.distress <= hi
        assert has_risk_history(p) == bool(h.risk_history or any("death" in f for f in h.risk_factors))


def test_profile_limits_fit_real_profiles_and_extra_is_kept(tmp_path) -> None:
    base = example_profiles()[0].model_dump()
    base["hidden"]["backstory"] = "She grew up by the sea. " * 140  # ~3,300 characters
    base["extra"] = {"source": "mindeval", "member_id": 17}
    base["initial_state"] = {"trust": 3, "distress": 6}  # old name of alliance
    p = ClientProfile.model_validate(base)
    assert p.initial_state.alliance == 3 and p.extra["member_id"] == 17
    f = tmp_path / "p.yaml"
    f.write_text(json.dumps([{**base, "hidden": {**base["hidden"], "core_belief_family": ["doomed"]}}]))
    with pytest.raises(ProfileError, match="core_belief_family"):
        load_profiles(f, strict=True)


def test_sensitivity_direction_on_a_small_cohort() -> None:
    """The benchmark's comparison on 16 clients x 2 sessions with an in-process double (at 6
    clients the PHQ-9 means flip with the double's draws, on any prompt wording):
    the dismissive arm ends with worse PHQ-9 change and a weaker alliance."""
    import argparse
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "sensitivity.py"
    spec = importlib.util.spec_from_file_location("sensitivity", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    args = argparse.Namespace(preset="minimal", sessions=2, turns=4, seed=0, concurrency=4)
    profiles = sample_profiles(16, seed=0)
    res = {arm: asyncio.run(mod.run_arm(arm, profiles, {"default": SchemaFakeChatModel(seed=2)}, args)) for arm in ("dismissive", "supportive")}
    out = {arm: [mod.outcomes(res[arm][p.id]) for p in profiles] for arm in res}
    mean = lambda arm, k: sum(o[k] for o in out[arm]) / len(profiles)  # noqa: E731
    assert mean("dismissive", "phq9_change") > mean("supportive", "phq9_change")
    assert mean("dismissive", "wai_sr") < mean("supportive", "wai_sr")
    assert mod.cohen_d([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == 1.0
