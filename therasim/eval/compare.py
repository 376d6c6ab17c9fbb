"""Paired comparisons of two runs of the same cohort, or of a run and its forks:
sessions paired by (client, session), courses by client; per metric the mean
difference (B - A) with a paired bootstrap 95% interval, a sign-flip
permutation p-value and Cohen's d_z."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from therasim._internal.rundir import RunDir, read_jsonl
from therasim.errors import RunDirError
from therasim.eval.health import NUMERIC_KEYS, health
from therasim.eval.probes import RESPONSE_CHECKS, probe_outcomes
from therasim.eval.stats import paired_compare

__all__ = ["Side", "compare", "load_side", "session_metrics"]

Key = tuple[str, int | None]


class Side:
    """One arm: a run directory's original sessions, or one of its branches
    (``RUN_DIR@BRANCH``; ``RUN_DIR@*`` takes every branch, the latest per session)."""

    def __init__(self, spec: str | Path) -> None:
        s = str(spec)
        path, _, branch = s.partition("@") if "@" in s and not Path(s).exists() else (s, "", "")
        self.spec = s
        self.rd = RunDir(path)
        self.manifest = self.rd.manifest()
        self.branch: str | None = branch or None
        if self.branch is None:
            self.records = self.rd.records()
        else:
            recs = [b for b in self.rd.branch_records() if self.branch == "*" or b.get("branch") == self.branch]
            if not recs:
                known = sorted({str(b.get("branch")) for b in self.rd.branch_records()})
                raise RunDirError(f"{path}: no sessions on branch {self.branch!r}; branches: {known or 'none (make one with therasim fork)'}")
            latest: dict[tuple[str, int], dict[str, Any]] = {}
            for b in recs:
                latest[(str(b["client_id"]), int(b["session"]))] = b
            self.records = list(latest.values())
        self.profiles = {str(p.get("id")): p for p in read_jsonl(self.rd.profiles)}

    @property
    def label(self) -> str:
        return self.spec


def load_side(spec: str | Path | Side) -> Side:
    return spec if isinstance(spec, Side) else Side(spec)


def session_metrics(side: Side) -> dict[Key, dict[str, float]]:
    """Per session (client, session): health metrics and judge scores (when the
    run has evals/judgments.jsonl); per course (client, None): outcome changes."""
    out: dict[Key, dict[str, float]] = {}
    for r in side.records:
        h = health(r, side.profiles.get(str(r["client_id"])))
        out[(str(r["client_id"]), int(r["session"]))] = {f"health.{k}": float(h[k]) for k in NUMERIC_KEYS if h.get(k) is not None}
        out[(str(r["client_id"]), int(r["session"]))]["health.instant_cure"] = float(h["instant_cure"])
        probes = probe_outcomes(r)
        if probes:
            row = out[(str(r["client_id"]), int(r["session"]))]
            for k in ("detected", *RESPONSE_CHECKS):
                row[f"risk.{k}"] = sum(1.0 for p in probes if p[k]) / len(probes)
    jpath = side.rd.root / "evals" / "judgments.jsonl"
    if jpath.exists():
        from therasim.eval.judge import aggregate_judgments
        from therasim.eval.rubrics import builtin_rubrics, load_rubric

        judgments = list(read_jsonl(jpath))
        rubrics = dict(builtin_rubrics())
        extra = side.rd.root / "evals" / "rubrics"
        if extra.is_dir():
            for f in sorted(extra.glob("*.yaml")):
                rb = load_rubric(f)
                rubrics[rb.name] = rb
        agg = aggregate_judgments(judgments, list(rubrics.values()))
        for s in agg["sessions"]:
            if not _same_arm(s["branch"], side.branch):
                continue
            row = out.setdefault((s["client_id"], s["session"]), {})
            if s["overall"] is not None:
                row[f"{s['rubric']}.overall"] = float(s["overall"])
            for cid, c in s["criteria"].items():
                if c["median"] is not None:
                    row[f"{s['rubric']}.{cid}"] = float(c["median"])
            for name, v in s["derived"].items():
                if v is not None:
                    row[f"{s['rubric']}.{name}"] = float(v)
    from therasim.eval.outcomes import outcomes

    oc = outcomes(side.records)
    for c in oc["courses"]:
        row = out.setdefault((c["client_id"], None), {})
        for k in ("phq9_change", "gad7_change", "phq9_final", "gad7_final"):
            if c.get(k) is not None:
                row[f"outcomes.{k}"] = float(c[k])
    return out


def _same_arm(branch: str | None, wanted: str | None) -> bool:
    if wanted is None:
        return branch is None
    return branch is not None and (wanted == "*" or branch == wanted)


def compare(a: str | Path | Side, b: str | Path | Side, *, metrics: list[str] | None = None, n_boot: int = 2000, n_perm: int = 10000, seed: int = 0) -> dict[str, Any]:
    """Paired comparison of arm ``b`` against arm ``a`` on every metric both have
    for the same (client, session) (or client, for course outcomes)."""
    sa, sb = load_side(a), load_side(b)
    ma, mb = session_metrics(sa), session_metrics(sb)
    keys = sorted(set(ma) & set(mb), key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    if not keys:
        raise RunDirError(f"no (client, session) in common between {sa.label} and {sb.label}; compare runs of the same cohort, or a run and its forks")
    names = sorted({m for k in keys for m in ma[k]} & {m for k in keys for m in mb[k]})
    if metrics:
        wanted = [m for m in names if any(m == w or m.startswith(w.rstrip("*")) for w in metrics)]
        names = wanted
    results: dict[str, Any] = {}
    for m in names:
        xs = [ma[k].get(m) for k in keys]
        ys = [mb[k].get(m) for k in keys]
        res = paired_compare(xs, ys, n_boot=n_boot, n_perm=n_perm, seed=seed)
        if res["n"]:
            results[m] = res
    return {
        "a": sa.label,
        "b": sb.label,
        "pairs": {"sessions": sum(1 for k in keys if k[1] is not None), "courses": sum(1 for k in keys if k[1] is None)},
        "only_a": len(set(ma) - set(mb)),
        "only_b": len(set(mb) - set(ma)),
        "metrics": results,
    }


def format_compare(res: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for m, r in res["metrics"].items():
        rows.append([
            m, str(r["n"]), _f(r["mean_a"]), _f(r["mean_b"]), _f(r["diff"]), f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]", _f(r["p"], 4), _f(r["d_z"]),
        ])
    return rows


def _f(x: Any, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{nd}f}"
