"""Evaluation of therasim runs: simulator health, outcomes, rubric judges,
planted risk probes, paired comparisons, judge-human agreement, gates and an
HTML report. See docs/evaluation.md for every metric's definition and source.

Importing this package opens no connection and loads no model.
"""

from __future__ import annotations

from therasim.eval.compare import compare
from therasim.eval.gates import check_gates, load_gates
from therasim.eval.health import HEALTH_METRICS, health, health_summary
from therasim.eval.outcomes import outcomes, reliable_change_index
from therasim.eval.run import aevaluate, evaluate
from therasim.eval.stats import (
    bootstrap_ci,
    cohens_d,
    krippendorff_alpha,
    mean_ci,
    paired_compare,
    quadratic_kappa,
    spearman,
)

__all__ = [
    "HEALTH_METRICS",
    "aevaluate",
    "bootstrap_ci",
    "check_gates",
    "cohens_d",
    "compare",
    "evaluate",
    "health",
    "health_summary",
    "krippendorff_alpha",
    "load_gates",
    "mean_ci",
    "outcomes",
    "paired_compare",
    "quadratic_kappa",
    "reliable_change_index",
    "spearman",
]
