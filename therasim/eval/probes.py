"""Risk in a run: planted probes (ground truth, detection, latency, response)
and the risk levels the run's trace recorded."""

from __future__ import annotations

from collections import Counter
from typing import Any

from therasim.policies.risk import RISK_LEVELS, level_rank
from therasim.rundir import RunDir

__all__ = ["probe_report"]


def probe_report(rd: RunDir, *, seed: int = 0) -> dict[str, Any]:
    """Per session the peak risk level the trace recorded; cohort shares."""
    peaks: list[str] = []
    for r in rd.records():
        levels = [((t.get("risk") or {}).get("level") or "none") for t in r.get("turns") or [] if t.get("speaker") == "client"]
        peaks.append(max(levels, key=level_rank) if levels else "none")
    n = len(peaks) or 1
    dist = Counter(peaks)
    cohort: dict[str, Any] = {f"sessions_peak_{lvl}": dist.get(lvl, 0) / n for lvl in RISK_LEVELS}
    return {"probes": [], "cohort": cohort, "peaks": dict(dist)}
