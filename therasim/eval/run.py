"""``therasim eval``: evaluate a run directory and write ``RUN_DIR/evals/``.

::

    evals/
      health.json         per session, per course, cohort (bootstrap 95% CIs)
      outcomes.json       PHQ-9 / GAD-7 trajectories, reliable change, dropout
      judgments.jsonl     one line per judge sample (resumable)
      judge_scores.json   per-session rubric scores (median, spread), cohort means
      probes.json         planted risk probes: detection, latency, response
      summary.json        flat metric -> value (what gates read)
      report.html         with --html
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from therasim._internal.rundir import RunDir, atomic_write_json, read_jsonl
from therasim.errors import TherasimError

__all__ = ["METRIC_GROUPS", "aevaluate", "evaluate", "flatten"]

METRIC_GROUPS = ("health", "outcomes", "risk")


def flatten(results: dict[str, Any]) -> dict[str, float | None]:
    """Flat ``group.metric`` -> cohort value, the names gates and summaries use."""
    flat: dict[str, float | None] = {}

    def put(name: str, v: Any) -> None:
        if isinstance(v, dict) and "mean" in v:
            v = v["mean"]
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
            flat[name] = float(v)
        elif v is None:
            flat[name] = None

    for k, v in (results.get("health") or {}).get("cohort", {}).items():
        put(f"health.{k}", v)
    for k, v in (results.get("outcomes") or {}).get("cohort", {}).items():
        put(f"outcomes.{k}", v)
    for rb, vals in (results.get("judges") or {}).get("cohort", {}).items():
        for k, v in vals.items():
            put(f"{rb}.{k}", v)
    for k, v in (results.get("risk") or {}).get("cohort", {}).items():
        put(f"risk.{k}", v)
    return flat


async def aevaluate(
    run_dir: str | Path | RunDir,
    *,
    metrics: list[str] | tuple[str, ...] = METRIC_GROUPS,
    rubrics: list[str] | None = None,
    judge: str | None = None,
    model: Any = None,
    samples: int = 1,
    concurrency: int | None = None,
    resume: bool = False,
    html: bool = False,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate a run; returns ``{"health", "outcomes", "judges", "risk", "summary"}``
    (groups not asked for are absent) and writes evals/."""
    from therasim.eval.health import health_summary
    from therasim.eval.outcomes import outcomes

    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    man = rd.manifest()
    unknown = [m for m in metrics if m not in METRIC_GROUPS]
    if unknown:
        raise TherasimError(f"unknown metric group(s) {unknown}; --metrics takes a comma-separated subset of {','.join(METRIC_GROUPS)}")
    evals = rd.root / "evals"
    evals.mkdir(exist_ok=True)
    records = rd.records()
    if not records:
        raise TherasimError(f"{rd.root}: no finished sessions to evaluate (transcripts.jsonl is empty); run or resume it first")
    profiles = {str(p.get("id")): p for p in read_jsonl(rd.profiles)}
    seed = int(man.get("seed") or 0)
    res: dict[str, Any] = {"run_id": man["run_id"], "run_dir": str(rd.root)}
    if "health" in metrics:
        res["health"] = health_summary(records, profiles, seed=seed)
        atomic_write_json(evals / "health.json", res["health"])
    if "outcomes" in metrics:
        res["outcomes"] = outcomes(records, planned_sessions=int(man["config"]["course"]["sessions"]), seed=seed)
        atomic_write_json(evals / "outcomes.json", res["outcomes"])
    if "risk" in metrics:
        from therasim.eval.probes import probe_report

        res["risk"] = probe_report(rd, seed=seed)
        atomic_write_json(evals / "probes.json", res["risk"])
    if rubrics:
        from therasim.eval.judge import aggregate_judgments, ajudge_run
        from therasim.eval.rubrics import resolve_rubrics

        rbs = resolve_rubrics(rubrics)
        _keep_user_rubrics(rd, rubrics)
        counts = await ajudge_run(rd, rbs, model=model, judge=judge, samples=samples, concurrency=concurrency, resume=resume)
        if echo:
            echo(f"judge: {counts['done']} judgment sample(s) now, {counts['skipped']} already done, {counts['invalid']} invalid")
        agg = aggregate_judgments(read_jsonl(evals / "judgments.jsonl"), rbs, seed=seed)
        agg["counts"] = counts
        res["judges"] = agg
        atomic_write_json(evals / "judge_scores.json", agg)
        if res.get("risk", {}).get("probes") and any(r.name == "safety" for r in rbs):
            _attach_safety(res["risk"], agg)
            atomic_write_json(evals / "probes.json", res["risk"])
    res["summary"] = flatten(res)
    atomic_write_json(evals / "summary.json", res["summary"])
    if html:
        from therasim.eval.report import write_report

        res["report"] = str(write_report(rd, res))
    return res


def _attach_safety(risk: dict[str, Any], agg: dict[str, Any]) -> None:
    """Each probe gets its session's safety-rubric scores (the judged side of the
    crisis-response check)."""
    by = {(s["client_id"], s["session"], s["branch"]): s for s in agg["sessions"] if s["rubric"] == "safety"}
    for p in risk["probes"]:
        s = by.get((p["client_id"], p["session"], p.get("branch")))
        if s is not None:
            p["safety_rubric"] = {"overall": s["overall"], **{k: v["median"] for k, v in s["criteria"].items()}}


def _keep_user_rubrics(rd: RunDir, names: list[str]) -> None:
    """Copy user rubric files into evals/rubrics/ so later reads (compare, report) know them."""
    import shutil

    for n in (x.strip() for item in names for x in item.split(",")):
        p = Path(n)
        if n.endswith((".yaml", ".yml")) and p.is_file():
            dest = rd.root / "evals" / "rubrics"
            dest.mkdir(exist_ok=True)
            if p.resolve() != (dest / p.name).resolve():
                shutil.copyfile(p, dest / p.name)


def evaluate(run_dir: str | Path | RunDir, **kw: Any) -> dict[str, Any]:
    """Synchronous :func:`aevaluate` (works inside Jupyter too)."""
    from therasim.runner import _sync

    return cast("dict[str, Any]", _sync(aevaluate(run_dir, **kw)))
