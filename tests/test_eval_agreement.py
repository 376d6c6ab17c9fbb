"""Judge-human agreement on synthetic human-annotation files with a known
relation between judge and raters (MindEval's criterion names, three shapes)."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from therasim.cli import app
from therasim.errors import ConfigError
from therasim.eval.agreement import agreement_report, load_annotations

CRITS = ["Clinical Accuracy & Competence", "Ethical & Professional Conduct"]


def _exact_rows() -> list[dict]:
    # rater A = truth; rater B = truth except every 4th interaction one point lower;
    # the judge copies A on the first criterion and mirrors it (7 - x) on the second.
    rows = []
    for i in range(24):
        truth = 1 + i % 6
        b = truth - 1 if i % 4 == 0 and truth > 1 else truth
        rows.append({"interaction_id": f"i{i}", "annotator": "A", CRITS[0]: truth, CRITS[1]: truth})
        rows.append({"interaction_id": f"i{i}", "annotator": "B", CRITS[0]: b, CRITS[1]: b})
        rows.append({"interaction_id": f"i{i}", "annotator": "judge", CRITS[0]: truth, CRITS[1]: 7 - truth})
    return rows


def test_exact_relations_in_three_file_shapes(tmp_path: Path) -> None:
    rows = _exact_rows()
    jl = tmp_path / "human.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cs = tmp_path / "human.csv"
    with open(cs, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["interaction_id", "annotator", *CRITS])
        w.writeheader()
        w.writerows(rows)
    nested = tmp_path / "human.json"
    by: dict[str, dict] = {}
    for r in rows:
        d = by.setdefault(r["interaction_id"], {"interaction_id": r["interaction_id"], "ratings": {}})
        scores = {c: r[c] for c in CRITS}
        if r["annotator"] == "judge":
            d["judge"] = scores
        else:
            d["ratings"][r["annotator"]] = scores
    nested.write_text(json.dumps(list(by.values())))
    reports = [agreement_report(load_annotations(p), scale=(1, 6)) for p in (jl, cs, nested)]
    assert reports[0] == reports[1] == reports[2]
    rep = reports[0]
    assert rep["raters"] == ["A", "B"] and rep["judge"] == "judge" and rep["interactions"] == 24
    same, mirrored = rep["criteria"][CRITS[0]], rep["criteria"][CRITS[1]]
    # the judge equals rater A on the first criterion: rho and kappa with A are 1
    from therasim.eval.stats import quadratic_kappa, spearman

    a = [1 + i % 6 for i in range(24)]
    b = [x - 1 if i % 4 == 0 and x > 1 else x for i, x in enumerate(a)]
    assert same["judge_spearman"] == pytest.approx((1 + spearman(a, b)) / 2)
    assert same["judge_qwk"] == pytest.approx((1 + quadratic_kappa(a, b, lo=1, hi=6)) / 2)
    assert same["rater_spearman"] == pytest.approx(spearman(a, b)) and same["rater_spearman"] > 0.95
    assert mirrored["judge_spearman"] == pytest.approx((-1 - spearman(a, b)) / 2) and mirrored["judge_qwk"] < -0.9
    assert same["alpha_raters"] == mirrored["alpha_raters"] > 0.9
    assert same["alpha_with_judge"] > 0.9 > 0 > mirrored["alpha_with_judge"]


def _synthetic(n: int, r: float, seed: int) -> list[dict]:
    """Latent bivariate normal (judge, truth) with correlation r; two raters see
    the truth with small noise; all cut into 1..6 at fixed thresholds."""
    rng = random.Random(seed)
    cut = [-1.5, -0.6, 0.0, 0.6, 1.5]

    def bin6(x: float) -> int:
        return 1 + sum(x > c for c in cut)

    rows = []
    for i in range(n):
        t = rng.gauss(0, 1)
        j = r * t + math.sqrt(1 - r * r) * rng.gauss(0, 1)
        rows.append({"interaction_id": i, "rater": "c1", "Assessment & Response": bin6(t + 0.2 * rng.gauss(0, 1))})
        rows.append({"interaction_id": i, "rater": "c2", "Assessment & Response": bin6(t + 0.2 * rng.gauss(0, 1))})
        rows.append({"interaction_id": i, "rater": "judge", "Assessment & Response": bin6(j)})
    return rows


def test_synthetic_file_recovers_a_known_correlation(tmp_path: Path) -> None:
    got = {}
    for r in (0.0, 0.5, 0.9):
        f = tmp_path / f"syn{r}.jsonl"
        f.write_text("\n".join(json.dumps(x) for x in _synthetic(600, r, seed=11)))
        got[r] = agreement_report(load_annotations(f), scale=(1, 6))["criteria"]["Assessment & Response"]
    # Spearman of a bivariate normal is (6/pi) asin(r/2); binning to six levels and rater noise lower it a little
    for r, row in got.items():
        expected = 6 / math.pi * math.asin(r / 2)
        assert abs(row["judge_spearman"] - expected) < 0.08, (r, row["judge_spearman"], expected)
    assert got[0.0]["judge_qwk"] < got[0.5]["judge_qwk"] < got[0.9]["judge_qwk"]
    assert all(row["rater_spearman"] > 0.85 for row in got.values())


def test_bad_files_name_the_problem(tmp_path: Path) -> None:
    f = tmp_path / "x.jsonl"
    f.write_text('{"annotator": "A", "Clinical Accuracy & Competence": 3}\n')
    with pytest.raises(ConfigError, match="no interaction id"):
        load_annotations(f)
    f.write_text('{"interaction_id": 1, "Clinical Accuracy & Competence": 3}\n')
    with pytest.raises(ConfigError, match="no rater"):
        load_annotations(f)
    f.write_text("{broken\n")
    with pytest.raises(ConfigError, match=r"x.jsonl:1: invalid JSON"):
        load_annotations(f)


def test_cli_agreement(tmp_path: Path) -> None:
    f = tmp_path / "h.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in _exact_rows()))
    r = CliRunner().invoke(app, ["eval", "agreement", str(f)])
    assert r.exit_code == 0, r.output
    assert "Clinical Accuracy & Competence" in r.output and "raters A, B" in r.output
    r = CliRunner().invoke(app, ["eval", "agreement", str(f), "--json"])
    assert json.loads(r.output)["criteria"]["Ethical & Professional Conduct"]["n"] == 24
