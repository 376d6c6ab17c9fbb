"""Client outcomes per course: PHQ-9 / GAD-7 trajectories, Jacobson-Truax
reliable and clinically significant change, service-threshold change,
caseness and recovery, dropout; cohort means with bootstrap 95% intervals.

Sources (docs/evaluation.md): Jacobson & Truax (1991); Kroenke, Spitzer &
Williams (2001) PHQ-9 test-retest r = 0.84; Spitzer et al. (2006) GAD-7
test-retest r = 0.83; NHS Talking Therapies manual (reliable change PHQ-9 >= 6,
GAD-7 >= 4; caseness PHQ-9 >= 10, GAD-7 >= 8).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from therasim.eval.stats import mean_ci

__all__ = ["NORMS", "Norm", "outcomes", "reliable_change_index"]


@dataclass(frozen=True)
class Norm:
    """Per instrument: test-retest reliability r, the SD used for S_diff (None: the
    cohort's baseline SD, as Jacobson & Truax did), the service's reliable-change
    threshold and caseness cut-off."""

    reliability: float
    sd: float | None
    service_change: int
    caseness: int


NORMS: dict[str, Norm] = {
    "phq9": Norm(reliability=0.84, sd=None, service_change=6, caseness=10),
    "gad7": Norm(reliability=0.83, sd=None, service_change=4, caseness=8),
}


def reliable_change_index(x1: float, x2: float, sd: float, r: float) -> float | None:
    """RCI = (x2 - x1) / S_diff, S_diff = sqrt(2) * SD * sqrt(1 - r) (Jacobson & Truax 1991)."""
    s_diff = math.sqrt(2) * sd * math.sqrt(1 - r)
    if s_diff <= 0:
        return None
    return (x2 - x1) / s_diff


def _total(m: Any, key: str) -> float | None:
    v = ((m or {}).get(key) or {}).get("total") if isinstance(m, Mapping) else None
    return float(v) if v is not None else None


def _trajectory(records: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in sorted(records, key=lambda r: r.get("session") or 0):
        m = r.get("measures")
        if m:
            out.append({"session": r.get("session"), "when": m.get("when", f"before session {r.get('session')}"), "phq9": _total(m, "phq9"), "gad7": _total(m, "gad7")})
        ma = r.get("measures_after")
        if ma:
            out.append({"session": r.get("session"), "when": ma.get("when", "post-course"), "phq9": _total(ma, "phq9"), "gad7": _total(ma, "gad7")})
    return out


def outcomes(records: Iterable[Mapping[str, Any]], *, planned_sessions: int | None = None, norms: Mapping[str, Norm] | None = None, seed: int = 0) -> dict[str, Any]:
    """Per-course outcomes and the cohort summary from session records
    (transcripts.jsonl). ``planned_sessions`` (the run's course.sessions) defines
    dropout: a course with fewer finished sessions than planned."""
    norms = dict(norms or NORMS)
    by_course: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_course.setdefault(str(r.get("client_id")), []).append(r)
    courses: list[dict[str, Any]] = []
    for cid, recs in sorted(by_course.items()):
        traj = _trajectory(recs)
        row: dict[str, Any] = {"client_id": cid, "sessions": len(recs), "trajectory": traj}
        row["dropout"] = planned_sessions is not None and len(recs) < planned_sessions
        row["client_wish_endings"] = sum(1 for r in recs if r.get("end_reason") == "client_wish")
        row["missing_measures"] = sum(1 for r in recs if r.get("measures") is not None and (r.get("measures") or {}).get("phq9") is None)
        for inst in norms:
            vals = [p[inst] for p in traj if p[inst] is not None]
            row[f"{inst}_baseline"] = vals[0] if vals else None
            row[f"{inst}_final"] = vals[-1] if len(vals) >= 2 else None
            row[f"{inst}_change"] = vals[-1] - vals[0] if len(vals) >= 2 else None
        courses.append(row)
    used: dict[str, dict[str, Any]] = {}
    for inst, norm in norms.items():
        baselines = [c[f"{inst}_baseline"] for c in courses if c[f"{inst}_baseline"] is not None]
        sd = norm.sd if norm.sd is not None else (statistics.stdev(baselines) if len(baselines) >= 2 else None)
        for c in courses:
            x1, x2 = c[f"{inst}_baseline"], c[f"{inst}_final"]
            rci = reliable_change_index(x1, x2, sd, norm.reliability) if (x1 is not None and x2 is not None and sd) else None
            c[f"{inst}_rci"] = rci
            c[f"{inst}_reliable_improvement"] = None if rci is None else rci <= -1.96
            c[f"{inst}_reliable_deterioration"] = None if rci is None else rci >= 1.96
            c[f"{inst}_service_improvement"] = None if x2 is None or x1 is None else (x1 - x2) >= norm.service_change
            c[f"{inst}_caseness_start"] = None if x1 is None else x1 >= norm.caseness
            c[f"{inst}_caseness_end"] = None if x2 is None else x2 >= norm.caseness
            c[f"{inst}_recovery"] = None if x1 is None or x2 is None else (x1 >= norm.caseness and x2 < norm.caseness)
            c[f"{inst}_reliable_recovery"] = None if c[f"{inst}_recovery"] is None or rci is None else bool(c[f"{inst}_recovery"] and rci <= -1.96)
        used[inst] = {"reliability": norm.reliability, "sd": sd, "sd_source": "norm" if norm.sd is not None else "cohort baseline", "s_diff": None if not sd else math.sqrt(2) * sd * math.sqrt(1 - norm.reliability), "service_change": norm.service_change, "caseness": norm.caseness}
    cohort: dict[str, Any] = {}
    rate_keys = ["dropout"] + [f"{i}_{k}" for i in norms for k in ("reliable_improvement", "reliable_deterioration", "service_improvement", "recovery", "reliable_recovery")]
    for inst in norms:
        for k in ("baseline", "final", "change", "rci"):
            cohort[f"{inst}_{k}"] = mean_ci([c[f"{inst}_{k}"] for c in courses], seed=seed)
    for k in rate_keys:
        cohort[k] = mean_ci([None if c[k] is None else float(bool(c[k])) for c in courses], seed=seed)
    per_session: dict[str, list[float]] = {}
    for c in courses:
        for p in c["trajectory"]:
            if p["phq9"] is not None:
                per_session.setdefault(p["when"], []).append(p["phq9"])
    cohort["phq9_by_timepoint"] = {w: mean_ci(v, seed=seed) for w, v in per_session.items()}
    return {"courses": courses, "cohort": cohort, "norms": used}
