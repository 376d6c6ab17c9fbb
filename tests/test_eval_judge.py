"""Rubric judges: schema and evidence checks (retry, then recorded invalid),
samples with median and spread, the judge never sees the hidden profile
(canary), aggregation by hand; end to end on the stub server with a real
SIGKILL and --resume; one session on the embedded model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from therasim.errors import ConfigError
from therasim.eval.judge import aggregate_judgments, ajudge_run, judge_session, judgment_model
from therasim.eval.rubrics import builtin_rubrics, load_rubric, resolve_rubrics
from therasim.profiles import example_profiles
from therasim.rundir import read_jsonl
from therasim.testing import FunctionChatModel

sys.path.insert(0, str(Path(__file__).parent))
from eval_helpers import make_run, stub_server, turn

CANARY = "CANARY-LIGHTHOUSE-7731"
R = builtin_rubrics()


def _record(cid: str = "maria", n: int = 1) -> dict[str, Any]:
    return {"client_id": cid, "session": n, "modality": "cbt", "goals": ["sleep better"], "turns": [
        turn(0, "client", "I have not slept properly in weeks and I feel like I'm failing everyone."),
        turn(1, "counselor", "That sounds exhausting. What does a bad night look like for you?", "open_question"),
        turn(2, "client", "I lie there replaying every mistake from my shift."),
        turn(3, "counselor", "So the mistakes follow you home. Which one came back last night?", "reflection"),
    ], "recall": {"counselor": {"items": [{"text": "Works night shifts; goal is sleep."}]}, "client": {"items": [{"text": f"secret {CANARY}"}]}},
        "recollection": {"text": CANARY}}


def _answer(rubric: str, score: int, evidence: list[int]) -> str:
    rb = R[rubric]
    out = {}
    for c in rb.criteria:
        if c.kind == "count":
            out[c.id] = {"count": len(evidence), "evidence": [e for e in evidence if e % 2 == 0], "rationale": "Counted."}
        else:
            out[c.id] = {"score": score, "evidence": evidence, "rationale": "Seen in the cited lines."}
    return json.dumps(out)


async def test_evidence_lines_are_checked_then_retried() -> None:
    replies = iter([_answer("mindeval", 4, [9]), _answer("mindeval", 4, [2, 4])])
    m = FunctionChatModel(fn=lambda msgs, kw: next(replies))
    res = await judge_session(m, _record(), R["mindeval"], profile=example_profiles()[0].model_dump())
    assert res["valid"] and res["attempts"] == 2
    assert "evidence lines [9] do not exist" in res["errors"][0] and "lines 1..4" in res["errors"][0]
    assert res["scores"]["clinical_accuracy"] == {"score": 4, "evidence": [2, 4], "rationale": "Seen in the cited lines."}


async def test_invalid_every_time_is_recorded_invalid_never_defaulted() -> None:
    m = FunctionChatModel(fn=lambda msgs, kw: _answer("mindeval", 4, []))  # no evidence for any score
    res = await judge_session(m, _record(), R["mindeval"], attempts=3)
    assert res["valid"] is False and res["scores"] is None and res["attempts"] == 3
    assert "clinical_accuracy.evidence: List should have at least 1 item" in res["error"] and res["raw"]
    # counted counselor behaviours must cite counselor lines (2 and 4 here)
    bad = FunctionChatModel(fn=lambda msgs, kw: _answer("miti", 3, [1, 3]).replace('"evidence": []', '"evidence": [1]'))
    res = await judge_session(bad, _record(), R["miti"], attempts=2)
    assert res["valid"] is False and "not counselor lines" in res["error"]


def test_schema_bounds_and_null_only_where_allowed() -> None:
    schema = judgment_model(R["safety"], R["safety"].criteria, 4)
    js = json.dumps(schema.model_json_schema())
    assert '"maximum": 4' in js and '"minimum": 1' in js
    ok = {c.id: {"score": None if c.allow_na else 4, "evidence": [2], "rationale": "No risk raised."} for c in R["safety"].criteria}
    schema.model_validate(ok, context={"n_lines": 4, "counselor_lines": [2, 4]})
    bad = dict(ok, safe_boundaries={"score": None, "evidence": [2], "rationale": "x"})
    with pytest.raises(Exception, match=r"safe_boundaries\.score"):
        schema.model_validate(bad, context={"n_lines": 4, "counselor_lines": [2, 4]})


async def test_judge_never_sees_the_hidden_profile(tmp_path: Path) -> None:
    profiles = example_profiles()
    maria = profiles[0].model_copy(update={"hidden": profiles[0].hidden.model_copy(update={"backstory": f"Backstory {CANARY}.", "undisclosed": CANARY})})
    rd = make_run(tmp_path, {("maria", 1): _record()}, run_id="canary")
    lines = [json.dumps({**maria.model_dump(mode="json")})] + [json.dumps(p.model_dump(mode="json")) for p in profiles[1:]]
    rd.profiles.write_text("\n".join(lines) + "\n")
    m = FunctionChatModel(fn=lambda msgs, kw: _answer("mindeval" if "MindEval" in msgs[0].content else "safety", 3, [2]))
    counts = await ajudge_run(rd, resolve_rubrics("mindeval,safety"), model=m, samples=2)
    assert counts == {"done": 4, "skipped": 0, "invalid": 0, "total": 4}
    prompts = [c.prompt_text for c in m.calls]
    assert prompts and not any(CANARY in p for p in prompts)
    assert all("Maria" in p and "Works night shifts" in p and "[4] COUNSELOR:" in p for p in prompts)
    # a rubric about client realism may see the hidden profile
    realism = tmp_path / "realism.yaml"
    realism.write_text("name: realism\ntitle: Client realism\nsource: test rubric\nscale: [1, 3]\nsees_profile: true\n"
                       "criteria:\n  - id: believable\n    name: Believable\n    anchors: {1: not at all, 3: fully}\n")
    m2 = FunctionChatModel(fn=lambda msgs, kw: json.dumps({"believable": {"score": 2, "evidence": [1], "rationale": "Plausible."}}))
    await ajudge_run(rd, [load_rubric(realism)], model=m2, resume=True)
    assert any(CANARY in c.prompt_text for c in m2.calls)


def test_rubric_files_are_validated_with_field_names(tmp_path: Path) -> None:
    assert set(R) >= {"mindeval", "ctrs", "wai_observer", "miti", "safety"}
    assert len(R["ctrs"].criteria) == 11 and R["ctrs"].scale == (0, 6) and len(R["wai_observer"].criteria) == 12
    assert [c.id for c in R["miti"].criteria if c.kind == "score"] == ["cultivating_change_talk", "softening_sustain_talk", "partnership", "empathy"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntitle: B\nsource: my notes\nscale: [1, 5]\ncriteria:\n  - id: x\n    name: X\n    anchors: {1: low, 9: high}\n")
    with pytest.raises(ConfigError, match="outside the scale"):
        load_rubric(bad)
    bad.write_text("name: bad\ntitle: B\nsource: my notes\nscale: [1, 5]\ncriteria:\n  - id: x\n    nmae: X\n")
    with pytest.raises(ConfigError, match=r"criteria.0.nmae: unknown field"):
        load_rubric(bad)
    with pytest.raises(ConfigError, match="unknown rubric 'nope'"):
        resolve_rubrics("mindeval,nope")


def test_aggregation_by_hand() -> None:
    def line(rubric: str, sample: int, scores: dict[str, Any], valid: bool = True) -> dict[str, Any]:
        return {"client_id": "maria", "session": 1, "branch": None, "rubric": rubric, "unit": "all", "sample": sample, "valid": valid, "scores": scores if valid else None}

    me = R["mindeval"]
    s3 = {c.id: {"score": 3, "evidence": [2]} for c in me.criteria}
    s5 = {**s3, "clinical_accuracy": {"score": 5, "evidence": [2]}}
    s4 = {**s3, "clinical_accuracy": {"score": 4, "evidence": [2]}}
    miti = {c.id: ({"count": 0, "evidence": []} if c.kind == "count" else {"score": 3, "evidence": [2]}) for c in R["miti"].criteria}
    miti.update(simple_reflection={"count": 3, "evidence": [2]}, complex_reflection={"count": 1, "evidence": [4]}, question={"count": 2, "evidence": [2]}, empathy={"score": 4, "evidence": [4]})
    agg = aggregate_judgments([line("mindeval", 0, s3), line("mindeval", 1, s5), line("mindeval", 2, s4), line("mindeval", 3, {}, valid=False), line("miti", 0, miti)], [me, R["miti"]])
    ms = next(s for s in agg["sessions"] if s["rubric"] == "mindeval")
    ca = ms["criteria"]["clinical_accuracy"]
    assert (ca["median"], ca["spread"], ca["n"]) == (4, 2, 3)
    assert ms["overall"] == pytest.approx((4 + 3 * 4) / 5) and ms["invalid_samples"] == 1 and ms["valid_samples"] == 3
    mi = next(s for s in agg["sessions"] if s["rubric"] == "miti")
    # %CR = 1 / (3 + 1); R:Q = (3 + 1) / 2; relational = (3 + 4) / 2; technical = 3
    assert mi["derived"] == pytest.approx({"technical": 3.0, "relational": 3.5, "pct_complex_reflections": 0.25, "reflection_to_question": 2.0})
    assert mi["overall"] is None
    assert agg["cohort"]["mindeval"]["overall"]["mean"] == pytest.approx(3.2)


# --------------------------------------------------------------------------- end to end on the stub


@pytest.fixture
def stub_url():
    with stub_server("h100-8b", 0.3) as url:
        yield url


def test_stub_end_to_end_kill_and_resume(tmp_path: Path, stub_url: str) -> None:
    keys = [(c, n) for c in ("maria", "tom", "priya") for n in (1, 2)]
    rd = make_run(tmp_path, {k: _record(*k) for k in keys}, run_id="stubrun")
    cmd = [sys.executable, "-m", "therasim.cli", "eval", str(rd.root), "--metrics", "health", "--rubrics", "mindeval,safety", "--samples", "2",
           "--judge", f"openai:stub@{stub_url}", "--concurrency", "2"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    path = rd.root / "evals" / "judgments.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the evaluation finished before it could be killed; slow the stub down"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [j["key"] for j in read_jsonl(path)]
    assert 4 <= len(before) < 24
    # without --resume nothing is touched
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "--resume" in r.stderr
    r = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr
    lines = list(read_jsonl(path))
    counts = Counter(j["key"] for j in lines)
    assert len(counts) == 24 and max(counts.values()) == 1  # 6 sessions x 2 rubrics x 2 samples, none lost, none twice
    assert [j["key"] for j in lines[: len(before)]] == before
    assert all(j["valid"] for j in lines)  # the stub answers schema-valid JSON; evidence lines are bounded by the schema
    for j in lines:
        for item in j["scores"].values():
            assert all(1 <= e <= 4 for e in item["evidence"])
    ev = [e for e in read_jsonl(rd.events) if e.get("event") == "judge_call"]
    assert len(ev) >= 24 and all(e["output_tokens"] > 0 and e["latency_s"] > 0 for e in ev)
    scores = json.loads((rd.root / "evals" / "judge_scores.json").read_text())
    assert scores["cohort"]["mindeval"]["overall"]["n"] == 3 and scores["counts"]["skipped"] == len(before)
    assert "mindeval.overall" in r.stdout


@pytest.mark.embedded
def test_embedded_judge_one_session(tmp_path: Path) -> None:
    import asyncio

    from therasim.config import ModelSpec
    from therasim.providers import make_chat_model

    rd = make_run(tmp_path, {("maria", 1): _record()}, run_id="emb")
    model = make_chat_model(ModelSpec(provider="embedded", n_ctx=4096))
    counts = asyncio.run(ajudge_run(rd, [R["mindeval"]], model=model, samples=1))
    assert counts["done"] == 1
    (j,) = list(read_jsonl(rd.root / "evals" / "judgments.jsonl"))
    assert j["input_tokens"] > 0 and j["output_tokens"] > 0
    if j["valid"]:
        for c in R["mindeval"].criteria:
            item = j["scores"][c.id]
            assert 1 <= item["score"] <= 6 and item["evidence"] and all(1 <= e <= 4 for e in item["evidence"])
    else:  # recorded invalid with the reason, never a default score
        assert j["scores"] is None and j["error"]


async def test_per_criterion_mode_makes_one_call_per_criterion(tmp_path: Path) -> None:
    f = tmp_path / "warmth.yaml"
    f.write_text("name: warmth\ntitle: Warmth\nsource: test rubric (per criterion)\nscale: [1, 5]\nmode: criterion\n"
                 "anchors: {1: none, 5: a lot}\ncriteria:\n  - {id: warmth, name: Warmth}\n  - {id: pace, name: Pace}\n")
    rb = load_rubric(f)

    def fn(msgs: list[Any], kw: dict[str, Any]) -> str:
        crit = "warmth" if "- warmth (Warmth)" in msgs[0].content else "pace"
        assert ("- pace (Pace)" in msgs[0].content) == (crit == "pace")  # one criterion per call
        return json.dumps({crit: {"score": 4 if crit == "warmth" else 2, "evidence": [2], "rationale": "Shown in line two."}})

    rd = make_run(tmp_path, {("maria", 1): _record()}, run_id="percrit")
    m = FunctionChatModel(fn=fn)
    counts = await ajudge_run(rd, [rb], model=m, samples=2)
    assert counts["done"] == 4 and len(m.calls) == 4
    agg = aggregate_judgments(read_jsonl(rd.root / "evals" / "judgments.jsonl"), [rb])
    (s,) = agg["sessions"]
    assert s["overall"] == pytest.approx(3.0) and s["criteria"]["warmth"]["n"] == 2 and s["valid_samples"] == 4
