"""Outcomes (Jacobson-Truax, service thresholds, dropout), `therasim compare`
and `therasim eval` on run directories with hand-written sessions."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from therasim.cli import app
from therasim.eval.compare import compare
from therasim.eval.outcomes import outcomes, reliable_change_index

sys.path.insert(0, str(Path(__file__).parent))
from eval_helpers import make_run, measures, turn

# maria: PHQ-9 15 -> 12 -> 8 (post), GAD-7 10 -> 6; tom: 12 -> 12; priya: one session of two, 6 -> 3
RECS = [
    {"client_id": "maria", "session": 1, "measures": measures(15, 10, "before session 1")},
    {"client_id": "maria", "session": 2, "measures": measures(12, 8, "before session 2"), "measures_after": measures(8, 6, "post-course")},
    {"client_id": "tom", "session": 1, "measures": measures(12, 9, "before session 1")},
    {"client_id": "tom", "session": 2, "measures": measures(12, 9, "before session 2"), "measures_after": measures(12, 9, "post-course")},
    {"client_id": "priya", "session": 1, "measures": measures(6, 5, "before session 1"), "measures_after": measures(3, 4, "post-course"), "end_reason": "client_wish"},
]


def test_jacobson_truax_by_hand() -> None:
    # baseline PHQ-9 15, 12, 6: sd = sqrt(42 / 2); S_diff = sqrt(2) * sd * sqrt(1 - 0.84)
    s_diff = math.sqrt(2) * math.sqrt(21) * 0.4
    assert reliable_change_index(15, 8, math.sqrt(21), 0.84) == pytest.approx(-7 / s_diff)
    o = outcomes(RECS, planned_sessions=2)
    c = {x["client_id"]: x for x in o["courses"]}
    assert [p["phq9"] for p in c["maria"]["trajectory"]] == [15, 12, 8]
    assert c["maria"]["phq9_change"] == -7 and c["maria"]["phq9_rci"] == pytest.approx(-7 / s_diff)  # -2.70
    assert c["maria"]["phq9_reliable_improvement"] is True and c["maria"]["phq9_service_improvement"] is True
    assert c["maria"]["phq9_recovery"] is True and c["maria"]["phq9_reliable_recovery"] is True
    assert c["priya"]["phq9_rci"] == pytest.approx(-3 / s_diff)  # -1.16: not reliable
    assert c["priya"]["phq9_reliable_improvement"] is False and c["priya"]["phq9_caseness_start"] is False
    assert c["tom"]["phq9_recovery"] is False and c["tom"]["phq9_change"] == 0
    assert (c["maria"]["dropout"], c["tom"]["dropout"], c["priya"]["dropout"]) == (False, False, True)
    assert c["priya"]["client_wish_endings"] == 1
    co = o["cohort"]
    assert co["phq9_change"]["mean"] == pytest.approx(-10 / 3) and co["dropout"]["mean"] == pytest.approx(1 / 3)
    assert co["phq9_reliable_improvement"]["mean"] == pytest.approx(1 / 3)
    assert co["phq9_change"]["ci_low"] <= -10 / 3 <= co["phq9_change"]["ci_high"]
    assert o["norms"]["phq9"]["sd"] == pytest.approx(math.sqrt(21)) and o["norms"]["phq9"]["sd_source"] == "cohort baseline"
    # GAD-7 service threshold 4: maria 10 -> 6
    assert c["maria"]["gad7_service_improvement"] is True and c["maria"]["gad7_recovery"] is True


def test_missing_measures_are_not_filled() -> None:
    recs = [{"client_id": "a", "session": 1, "measures": measures(None, None, "before session 1")}, {"client_id": "a", "session": 2, "measures": measures(9, 5, "before session 2")}]
    c = outcomes(recs)["courses"][0]
    assert c["missing_measures"] == 1 and c["phq9_baseline"] == 9 and c["phq9_change"] is None and c["phq9_rci"] is None


def _session(cid: str, n: int, counselor: list[str], strategies: list[str]) -> dict:
    client = ["I can't sleep and I keep worrying about work.", "My boss keeps adding shifts and I never say no.", "I guess I am scared of letting people down."]
    turns = []
    for k, (c, o, s) in enumerate(zip(client, counselor, strategies, strict=True)):
        turns += [turn(2 * k, "client", c), turn(2 * k + 1, "counselor", o, s)]
    return {"client_id": cid, "session": n, "turns": turns}


def _arms(tmp_path: Path):
    sticky = ["Tell me more.", "Tell me more about that.", "Tell me more about that please."]
    varied = ["That sounds exhausting; what keeps you awake?", "It sounds hard to say no to him.", "What would letting someone down mean to you?"]
    keys = [(c, n) for c in ("maria", "tom", "priya") for n in (1, 2)]
    a = make_run(tmp_path / "a", {k: _session(k[0], k[1], sticky, ["question"] * 3) for k in keys}, run_id="armA")
    b = make_run(tmp_path / "b", {k: _session(k[0], k[1], varied, ["reflection", "question", "reflection"]) for k in keys}, run_id="armB",
                 branches=[{**_session("maria", 1, varied, ["reflection"] * 3), "branch": "warm"}])
    return a, b


def test_compare_pairs_sessions_and_finds_the_direction(tmp_path: Path) -> None:
    a, b = _arms(tmp_path)
    res = compare(a.root, b.root)
    assert res["pairs"]["sessions"] == 6 and res["only_a"] == 0
    st = res["metrics"]["health.strategy_stickiness"]
    # A: question x3 -> 1.0 in every session; B: r, q, r -> 0.0
    assert st["diff"] == pytest.approx(-1.0) and st["ci_low"] == st["ci_high"] == pytest.approx(-1.0)
    assert st["p"] == pytest.approx(2 / 64) and st["d_z"] is None  # all six differences equal: sd 0
    # a run against one of its forks: only the forked session pairs
    fork = compare(b.root, f"{b.root}@warm")
    assert fork["pairs"]["sessions"] == 1 and fork["metrics"]["health.strategy_stickiness"]["diff"] == pytest.approx(1.0)


def test_cli_eval_compare_and_gates(tmp_path: Path) -> None:
    a, b = _arms(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["eval", str(a.root), "--metrics", "health,outcomes"])
    assert r.exit_code == 0, r.output
    assert "health.strategy_stickiness" in r.output and (a.root / "evals" / "health.json").is_file()
    summary = json.loads((a.root / "evals" / "summary.json").read_text())
    assert summary["health.strategy_stickiness"] == pytest.approx(1.0)
    gates = tmp_path / "gates.yaml"
    gates.write_text("gates:\n  health.strategy_stickiness: {max: 0.5}\n  health.exchanges: {min: 1}\n  mindeval.overall: {min: 3}\n")
    r = runner.invoke(app, ["eval", str(a.root), "--metrics", "health", "--gate", str(gates)])
    assert r.exit_code == 3
    assert "health.strategy_stickiness = 1 is above max 0.5" in r.output and "mindeval.overall: not computed" in r.output
    assert "gate failed: health.exchanges" not in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates:\n  health.exchanges: {minimum: 1}\n")
    r = runner.invoke(app, ["eval", str(a.root), "--gate", str(bad)])
    assert r.exit_code == 2 and "minimum" in r.output
    r = runner.invoke(app, ["compare", str(a.root), str(b.root)])
    assert r.exit_code == 0 and "health.strategy_stickiness" in r.output and "-1.000" in r.output
    r = runner.invoke(app, ["compare", str(a.root), f"{b.root}@nope"])
    assert r.exit_code == 2 and "no sessions on branch 'nope'" in r.output and "warm" in r.output
    r = runner.invoke(app, ["eval", str(a.root), "--metrics", "health,vibes"])
    assert r.exit_code == 2 and "unknown metric group" in r.output
