"""The second deterministic risk layer: the MiniLM exemplar bank beside the patterns.

Logic on hand-made vectors (fast lane); the shipped calibration reproduced from the
shipped embeddings; the patterns-only fallback; and, on the real MiniLM model, the
held-out figures per rung printed next to the patterns alone."""

from __future__ import annotations

import collections
import json
import subprocess
import sys

import numpy as np
import pytest

from therasim.errors import MissingExtraError
from therasim.policies import risk_knn
from therasim.policies.risk import RUNG_CATEGORY, RUNGS, pattern_scan, scan
from therasim.policies.risk_knn import Exemplar, ExemplarBank, calibrate


def _unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype="float32")
    return v / np.linalg.norm(v)


# Three directions: "risk" (x), "benign" (y), and z for everything else.
BANK = [
    Exemplar("r1", "plan a", "plan", "direct"),
    Exemplar("r2", "plan b", "plan", "direct"),
    Exemplar("r3", "wish", "wish_dead", "direct"),
    Exemplar("b1", "film", "benign", "media"),
    Exemplar("b2", "job", "benign", "professional"),
]
VECS = [_unit(1, 0, 0), _unit(1, 0.1, 0), _unit(1, 0, 0.3), _unit(0, 1, 0), _unit(0, 1, 0.2)]


def _bank(query: dict[str, np.ndarray], **kw) -> ExemplarBank:
    return ExemplarBank(BANK, np.stack(VECS), lambda texts: [query[t] for t in texts], **{"k": 2, "add_margin": 0.1, "veto_margin": 0.1, **kw})


def test_margin_vote_and_neighbour_by_hand():
    b = _bank({})
    sims = b.vectors @ _unit(1, 0, 0)
    margin, label, subtype, nb = b.margins(sims)
    risk_top2 = sorted([float(sims[0]), float(sims[1]), float(sims[2])], reverse=True)[:2]
    benign_top2 = sorted([float(sims[3]), float(sims[4])], reverse=True)
    assert margin == pytest.approx(np.mean(risk_top2) - np.mean(benign_top2))
    assert (label, subtype, nb) == ("plan", "", "r1")  # r1 and r2 (plan) are the two nearest
    margin, label, subtype, nb = b.margins(b.vectors @ _unit(0, 1, 0.1))
    assert margin < 0 and (label, subtype, nb) == ("benign", "professional", "b2")


def test_bank_adds_a_cue_the_patterns_miss():
    text = "I've worked out the when and the where."
    assert pattern_scan(text) == []
    from therasim.policies.risk import _with_bank

    cues = _with_bank(text, [], _bank({text: _unit(1, 0.05, 0)}))
    assert len(cues) == 1
    c = cues[0]
    assert (c.category, c.rung, c.source, c.active, c.span) == ("self_harm", "plan", "knn", True, text)
    assert c.pattern == "knn:r2" and c.score is not None and c.score >= 0.1


def test_bank_marks_pattern_cues_in_hard_negatives_and_raises_rungs():
    from therasim.policies.risk import _with_bank

    text = "We watched a documentary about suicide prevention."
    pat = pattern_scan(text)
    assert pat and pat[0].active  # the pattern alone flags it
    vetoed = _with_bank(text, pat, _bank({text: _unit(0, 1, 0)}))
    assert not vetoed[0].active and vetoed[0].context == "benign:media" and vetoed[0].negated is False
    # near the threshold: neither added nor vetoed
    same = _with_bank(text, pat, _bank({text: _unit(0.7, 0.71, 0)}))
    assert same == pat
    text2 = "I want to kill myself."
    raised = _with_bank(text2, pattern_scan(text2), _bank({text2: _unit(1, 0, 0)}))
    assert [c.rung for c in raised] == ["plan"] and raised[0].source == "pattern"


def test_calibration_by_hand():
    # Separable bank: risk exemplars near x, benign near y. Left out, each still has
    # its own class nearer, so some threshold makes no error; smallest k, then the
    # smallest add_margin (-0.05, the grid's first), win the tie.
    ex = [Exemplar(f"e{i}", "", lab, "") for i, lab in enumerate(["plan", "plan", "plan", "benign", "benign", "benign"])]
    vecs = np.stack([_unit(1, 0), _unit(1, 0.1), _unit(1, 0.3), _unit(0, 1), _unit(0.1, 1), _unit(0.3, 1)])
    cal = calibrate(ex, vecs, [False] * 6)
    assert cal["loo_recall"] == 1.0 and cal["loo_benign_fp"] == 0.0 and cal["cost"] == 0
    assert (cal["k"], cal["add_margin"], cal["veto_margin"]) == (3, -0.05, 0.0)
    # A pattern hit on a benign exemplar is vetoed by its negative margin (veto 0.0:
    # any margin at or below 0); never vetoing (1.0) would cost one false alarm.
    cal2 = calibrate(ex, vecs, [False, False, False, True, False, False])
    assert cal2["cost"] == 0 and cal2["veto_margin"] == 0.0


def test_shipped_calibration_matches_data_and_is_reproducible():
    d = risk_knn._data_dir()
    cal = json.loads((d / risk_knn.CALIBRATION_FILE).read_text())
    assert cal["data_sha256"] == risk_knn.data_sha256(), "rebuild: python -m therasim.policies.risk_knn"
    bank = risk_knn.bank_rows(risk_knn.load_rows())
    rows = risk_knn.load_rows()
    assert len(bank) == cal["bank_size"] and {e.id for e in bank} == {r["id"] for r in rows if r["split"] == "train"}
    assert set(RUNGS) | {"benign"} == {r["label"] for r in rows}
    vecs = np.load(d / risk_knn.EMBEDDINGS_FILE).astype("float32")
    assert vecs.shape == (len(bank), 384)
    again = calibrate(bank, vecs, [any(c.active for c in pattern_scan(e.text)) for e in bank])
    assert {k: again[k] for k in ("k", "add_margin", "veto_margin")} == {k: cal[k] for k in ("k", "add_margin", "veto_margin")}


def test_patterns_only_without_sentence_transformers(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sentence_transformers" else real(name, *a))
    monkeypatch.setattr(risk_knn, "_BANK", {})
    monkeypatch.setenv("THERASIM_RISK_KNN", "1")
    assert not risk_knn.knn_available() and risk_knn.default_bank() is None
    text = "I'm going to kill myself tonight."
    assert scan(text) == pattern_scan(text) and scan(text)[0].rung == "intent"
    with pytest.raises(MissingExtraError, match="sentence-transformers"):
        scan(text, knn=True)


def test_import_loads_no_model():
    code = (
        "import sys, therasim, therasim.policies.risk, therasim.policies.risk_knn, therasim.nodes.risk, therasim.graphs\n"
        "print([m for m in ('torch', 'sentence_transformers', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PATH": "", "THERASIM_RISK_KNN": "1"})
    assert out.stdout.strip() == "[]"


# --- on the real MiniLM model ---------------------------------------------------------

IMPLICIT = {"indirect", "understated", "hypothetical", "disguise"}


def _heldout_figures(knn: bool) -> dict[str, object]:
    rows = [r for r in risk_knn.load_rows() if r["split"] == "heldout"]
    hit: collections.Counter[str] = collections.Counter()
    exact: collections.Counter[str] = collections.Counter()
    n: collections.Counter[str] = collections.Counter()
    fp: collections.Counter[str] = collections.Counter()
    nb: collections.Counter[str] = collections.Counter()
    explicit = [0, 0]
    for r in rows:
        active = [c for c in scan(r["text"], knn=knn) if c.active]
        if r["label"] == "benign":
            nb[r["subtype"]] += 1
            fp[r["subtype"]] += bool(active)
            continue
        ok = any(c.category == RUNG_CATEGORY[r["label"]] for c in active)
        n[r["label"]] += 1
        hit[r["label"]] += ok
        exact[r["label"]] += any(c.rung == r["label"] for c in active)
        if r["subtype"] not in IMPLICIT:
            explicit[0] += ok
            explicit[1] += 1
    return {"hit": hit, "exact": exact, "n": n, "fp": fp, "nb": nb, "explicit": explicit}


@pytest.mark.embedded
def test_heldout_figures_per_rung(capsys: pytest.CaptureFixture[str]):
    """Held-out split, never used for calibration. Recall: an active cue of the
    right category (self-harm for the ladder and NSSI); rung: the exact rung."""
    pat, both = _heldout_figures(False), _heldout_figures(True)
    lines = ["", "[risk scan, held-out] label: recall patterns -> patterns+bank (exact rung with bank)"]
    for lab in RUNGS:
        n = both["n"][lab]
        lines.append(f"  {lab:18s} {pat['hit'][lab]:2d}/{n} -> {both['hit'][lab]:2d}/{n} ({both['exact'][lab]}/{n})")
    for name, f in (("patterns", pat), ("patterns+bank", both)):
        e = f["explicit"]
        lines.append(f"  {name}: explicit {e[0]}/{e[1]} = {e[0] / e[1]:.1%}; benign false positives {sum(f['fp'].values())}/{sum(f['nb'].values())} = {sum(f['fp'].values()) / sum(f['nb'].values()):.1%} {dict(f['fp'])}")
    with capsys.disabled():
        print("\n".join(lines))
    e_pat, e_both = pat["explicit"], both["explicit"]
    assert e_both[0] > e_pat[0]
    prep = both["hit"]["preparatory"] / both["n"]["preparatory"]
    assert prep >= 0.98
    # Floors from the first held-out measurement (docs/risk.md), a regression guard:
    assert e_both[0] / e_both[1] >= 0.90
    assert sum(both["fp"].values()) / sum(both["nb"].values()) <= 0.50


@pytest.mark.embedded
@pytest.mark.xfail(strict=True, reason="not reached with MiniLM neighbours on this set (docs/risk.md): explicit recall 93%, benign false positives 44% on the held-out split")
def test_heldout_targets_of_issue_14():
    both = _heldout_figures(True)
    e = both["explicit"]
    assert e[0] / e[1] >= 0.98
    assert sum(both["fp"].values()) / sum(both["nb"].values()) <= 0.05


@pytest.mark.embedded
def test_issue_examples_with_bank():
    risky = [
        "I have the pills saved up and I know how many I'd need.",
        "I wrote goodbye letters to my kids last night.",
        "I've been giving my things away to people.",
        "I've just taken all of them, the whole packet, about an hour ago.",
        "honestly i just wanna kms",
        "The voices keep telling me to end it all.",
    ]
    for t in risky:
        assert any(c.active and c.category == "self_harm" for c in scan(t, knn=True)), (t, scan(t, knn=True))
