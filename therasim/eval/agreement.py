"""Judge-human agreement on clinician ratings per criterion per interaction
(MindEval's human-annotation release and any file of the same shape).

Accepted shapes (JSONL, a JSON list, or CSV):

* long/wide rows, one per (interaction, rater): an interaction id
  (``interaction_id``, ``conversation_id``, ``id`` or ``key``), a rater
  (``annotator``, ``rater``, ``clinician`` or ``annotator_id``) and one column per
  criterion (MindEval's names such as "Clinical Accuracy & Competence", or ids);
  the judge's rows use the rater name ``judge`` (``--judge-rater``);
* nested rows, one per interaction: ``{"interaction_id": ..., "ratings":
  {RATER: {CRITERION: score}}, "judge": {CRITERION: score}}``.

Reported per criterion: Spearman's rho and quadratic-weighted kappa between
the judge and each rater (averaged over raters), Krippendorff's ordinal alpha
of the raters with and without the judge, and the same rho and kappa between
pairs of raters (rater-rater agreement beside judge-human agreement).
"""

from __future__ import annotations

import csv
import itertools
import json
import statistics
from pathlib import Path
from typing import Any

from therasim.errors import ConfigError
from therasim.eval.stats import krippendorff_alpha, quadratic_kappa, spearman

__all__ = ["Annotations", "agreement_report", "load_annotations"]

ID_KEYS = ("interaction_id", "conversation_id", "id", "key", "interaction")
RATER_KEYS = ("annotator", "rater", "clinician", "annotator_id", "rater_id")
SKIP_KEYS = {"notes", "comment", "comments", "timestamp", "overall score", "average score"}

# ratings[criterion][interaction][rater] = score
Annotations = dict[str, dict[str, dict[str, float]]]


def _rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(text.splitlines()))
    s = text.strip()
    if s.startswith("["):
        data = json.loads(s)
        if not isinstance(data, list):
            raise ConfigError(f"{path}: expected a JSON list of rows")
        return data
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{i}: invalid JSON ({e.msg})") from None
    return rows


def _num(v: Any) -> float | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def load_annotations(path: str | Path) -> Annotations:
    """Read a human-annotation file into ``ratings[criterion][interaction][rater]``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such annotation file")
    rows = _rows(p)
    out: Annotations = {}
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ConfigError(f"{p}: row {i} is not an object")
        iid = next((str(row[k]) for k in ID_KEYS if row.get(k) not in (None, "")), None)
        if iid is None:
            raise ConfigError(f"{p}: row {i} has no interaction id; name it one of {list(ID_KEYS)}")
        if isinstance(row.get("ratings"), dict):
            groups = dict(row["ratings"])
            if isinstance(row.get("judge"), dict):
                groups["judge"] = row["judge"]
        else:
            rater = next((str(row[k]) for k in RATER_KEYS if row.get(k) not in (None, "")), None)
            if rater is None:
                raise ConfigError(f"{p}: row {i} has no rater; name it one of {list(RATER_KEYS)} (or nest ratings under 'ratings')")
            groups = {rater: {k: v for k, v in row.items() if k not in ID_KEYS and k not in RATER_KEYS}}
        for rater, scores in groups.items():
            if not isinstance(scores, dict):
                raise ConfigError(f"{p}: row {i}: ratings of {rater!r} must be a mapping criterion -> score")
            for crit, v in scores.items():
                if str(crit).lower() in SKIP_KEYS:
                    continue
                x = _num(v)
                if x is None:
                    continue
                out.setdefault(str(crit), {}).setdefault(iid, {})[str(rater)] = x
    if not out:
        raise ConfigError(f"{p}: no numeric ratings found")
    return out


def _mean(xs: list[float | None]) -> float | None:
    ys = [x for x in xs if x is not None]
    return statistics.fmean(ys) if ys else None


def agreement_report(ann: Annotations, *, judge: str = "judge", scale: tuple[int, int] | None = None) -> dict[str, Any]:
    """Per-criterion agreement; ``scale`` (lo, hi) for kappa, else the observed range."""
    raters = sorted({r for crit in ann.values() for by in crit.values() for r in by if r != judge})
    has_judge = any(judge in by for crit in ann.values() for by in crit.values())
    report: dict[str, Any] = {"raters": raters, "judge": judge if has_judge else None, "interactions": len({i for c in ann.values() for i in c}), "criteria": {}}
    for crit, by_item in sorted(ann.items()):
        items = sorted(by_item)
        vals = [v for by in by_item.values() for v in by.values()]
        lo, hi = scale if scale else (int(min(vals)), int(max(vals)))
        col = {r: [by_item[i].get(r) for i in items] for r in [*raters, judge]}
        row: dict[str, Any] = {"n": len(items)}
        if has_judge:
            rho = [spearman(col[judge], col[r]) for r in raters]
            kap = [quadratic_kappa(col[judge], col[r], lo=lo, hi=hi) for r in raters]
            mean_raters = [_mean([by_item[i].get(r) for r in raters]) for i in items]
            row["judge_spearman"] = _mean(rho)
            row["judge_qwk"] = _mean(kap)
            row["judge_vs_rater_mean_spearman"] = spearman(col[judge], mean_raters)
            row["alpha_with_judge"] = krippendorff_alpha([col[r] for r in [*raters, judge]], level="ordinal")
        else:
            row.update(judge_spearman=None, judge_qwk=None, judge_vs_rater_mean_spearman=None, alpha_with_judge=None)
        pairs = list(itertools.combinations(raters, 2))
        row["rater_spearman"] = _mean([spearman(col[a], col[b]) for a, b in pairs]) if pairs else None
        row["rater_qwk"] = _mean([quadratic_kappa(col[a], col[b], lo=lo, hi=hi) for a, b in pairs]) if pairs else None
        row["alpha_raters"] = krippendorff_alpha([col[r] for r in raters], level="ordinal") if len(raters) >= 2 else None
        report["criteria"][crit] = row
    return report
