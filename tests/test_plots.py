"""Plots: integer session ticks, PHQ-9/GAD-7 severity bands at the published
cut-offs, the cohort mean with its 95% interval beyond 20 clients (compared with
hand-computed values), emotion labels on the emotion plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from therasim._version import RUN_FORMAT_VERSION
from therasim.plotting import SEVERITY_BANDS, cohort_figure, plot_client


def _run_dir(tmp: Path, n_clients: int) -> Path:
    (tmp / "manifest.json").write_text(json.dumps({"run_format_version": RUN_FORMAT_VERSION, "run_id": "r", "cohort": {"ids": [f"c{i}" for i in range(n_clients)]}, "config": {}}))
    lines = []
    for i in range(n_clients):
        for s in (1, 2):
            turns = [
                {"speaker": "client", "exchange": 0, "text": "hi", "emotion": {"main": "sadness", "intensity": 6}, "risk": {"level": "low"}},
                {"speaker": "counselor", "exchange": 0, "text": "hello"},
                {"speaker": "client", "exchange": 1, "text": "ok", "emotion": {"main": "fear", "intensity": 4}, "risk": {"level": "none"}},
            ]
            m = {"phq9": {"total": i - 2 * (s - 1) if i >= 2 else i}, "gad7": {"total": min(21, i)}}
            lines.append({"run_id": "r", "client_id": f"c{i}", "session": s, "turns": turns, "measures": m})
    (tmp / "transcripts.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return tmp


def test_severity_bands_are_the_published_cutoffs():
    assert [(lo, hi) for lo, hi, _ in SEVERITY_BANDS["phq9"]] == [(0, 4), (5, 9), (10, 14), (15, 19), (20, 27)]
    assert [(lo, hi) for lo, hi, _ in SEVERITY_BANDS["gad7"]] == [(0, 4), (5, 9), (10, 14), (15, 21)]
    assert SEVERITY_BANDS["phq9"][3][2] == "moderately severe"


def test_cohort_mean_with_interval_beyond_20_clients(tmp_path):
    import matplotlib.pyplot as plt

    fig = cohort_figure(_run_dir(tmp_path, 24))
    ax = fig.axes[0]
    mean = next(ln for ln in ax.get_lines() if ln.get_label().startswith("cohort mean"))
    # session 1: PHQ-9 totals 0..23 -> mean 11.5, SD sqrt(50), 95% half-width 1.96*sqrt(50)/sqrt(24) = 2.8290
    # session 2: clients 0 and 1 keep 0 and 1, the others drop by 2 -> (0+1+sum(0..21))/24 = 232/24
    assert list(mean.get_xdata()) == [1, 2]
    assert mean.get_ydata()[0] == pytest.approx(11.5) and mean.get_ydata()[1] == pytest.approx(232 / 24)
    band = next(c for c in ax.collections if c.get_label().startswith("95% interval"))
    ys = band.get_paths()[0].vertices[:, 1]
    assert any(abs(y - (11.5 - 2.82901)) < 1e-4 for y in ys)
    assert any(abs(y - (11.5 + 2.82901)) < 1e-4 for y in ys)
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert sum(1 for ln in ax.get_lines() if ln.get_alpha() == 0.15) == 24  # faint individual lines
    assert {t.get_text() for t in ax.texts} >= {"minimal", "mild", "moderate", "moderately severe", "severe"}
    plt.close(fig)
    (tmp_path / "small").mkdir()
    small = cohort_figure(_run_dir(tmp_path / "small", 5))
    assert not any(ln.get_label().startswith("cohort mean") for ln in small.axes[0].get_lines())
    plt.close(small)


def test_client_plot_has_emotion_labels_and_integer_ticks(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    seen: list[Any] = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (seen.append(self), real(self, *a, **k))[1])
    path = plot_client(_run_dir(tmp_path, 3), "c2")
    assert path.exists()
    emo_ax = seen[0].axes[0]
    assert [t.get_text() for t in emo_ax.texts if t.get_text() in ("sadness", "fear")] == ["sadness", "fear", "sadness", "fear"]
    assert all(float(t).is_integer() for t in emo_ax.get_xticks())
