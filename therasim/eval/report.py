"""One self-contained HTML report of an evaluation (``therasim eval --html``):
summary tables, inline SVG plots (rubric means with 95% intervals, health,
probe recall and latency, PHQ-9 over the course) and every session's transcript
with its per-turn state and scores. No external file, font or script is loaded."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from therasim._internal.rundir import RunDir

__all__ = ["bar_svg", "render_report", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d2329;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #d5d9de;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f1f3f5;cursor:pointer}td.num{text-align:right;font-variant-numeric:tabular-nums}
.client{background:#f7fbff}.counselor{background:#fffdf5}.probe{outline:2px solid #c0392b}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}.muted{color:#6c757d}.fail{color:#b02a37;font-weight:600}
svg text{font-size:11px;font-family:inherit}
"""

# Sorting tables by a header click; marks the page ready (the browser test reads it).
_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, i){
  th.addEventListener('click', function(){
    var tb = th.closest('table').tBodies[0]; var rows = Array.prototype.slice.call(tb.rows);
    var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
    rows.sort(function(a, b){
      var x = a.cells[i].textContent, y = b.cells[i].textContent, nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y); return asc ? c : -c;});
    rows.forEach(function(r){ tb.appendChild(r); });
  });
});
document.body.setAttribute('data-report-ready', String(document.querySelectorAll('table').length));
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}"
    return _e(v)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], *, tid: str | None = None, cls: str = "sortable") -> str:
    h = "".join(f"<th>{_e(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td class=\"num\">{_num(c)}</td>" if isinstance(c, (int, float)) or c is None else f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table{f' id={chr(34)}{tid}{chr(34)}' if tid else ''} class=\"{cls}\"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def bar_svg(items: Sequence[tuple[str, float | None, float | None, float | None]], *, title: str, width: int = 640, lo: float | None = None, hi: float | None = None) -> str:
    """Horizontal bars with 95% interval whiskers: (label, value, ci_low, ci_high)."""
    items = [it for it in items if it[1] is not None and not math.isnan(float(it[1]))]
    if not items:
        return f"<p class=\"muted\">{_e(title)}: no data</p>"
    vals = [float(v) for it in items for v in it[1:] if v is not None and not math.isnan(float(v))]
    lo = min([0.0, *vals]) if lo is None else lo
    hi = max(vals) if hi is None else hi
    if hi <= lo:
        hi = lo + 1
    left, row_h, plot_w = 220, 20, width - 240
    height = 30 + row_h * len(items)

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot_w

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{_e(title)}">',
             f'<text x="4" y="14" font-weight="600">{_e(title)}</text>']
    for k, (label, v0, cl, ch) in enumerate(items):
        v = float(v0 or 0.0)
        y = 24 + k * row_h
        parts.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{_e(label)}</text>')
        parts.append(f'<rect x="{x(min(0.0, lo)) if lo < 0 else left}" y="{y + 2}" width="{max(0.5, x(v) - left)}" height="{row_h - 6}" fill="#5b8def"/>')
        if cl is not None and ch is not None and not (math.isnan(float(cl)) or math.isnan(float(ch))):
            parts.append(f'<line x1="{x(float(cl))}" x2="{x(float(ch))}" y1="{y + row_h / 2 - 1}" y2="{y + row_h / 2 - 1}" stroke="#1d2329" stroke-width="1.5"/>')
        parts.append(f'<text x="{x(v) + 4}" y="{y + 12}">{v:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _ci_rows(cohort: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for k, v in cohort.items():
        if isinstance(v, Mapping) and "mean" in v:
            rows.append([k, v.get("mean"), v.get("ci_low"), v.get("ci_high"), v.get("n")])
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            rows.append([k, v, None, None, None])
    return rows


def _session_block(rec: Mapping[str, Any], health: Mapping[str, Any] | None, scores: list[Mapping[str, Any]], probes: list[Mapping[str, Any]]) -> str:
    head = f"{rec.get('client_id')} session {rec.get('session')}" + (f" (branch {rec.get('branch')})" if rec.get("branch") else "")
    turns = []
    for i, t in enumerate(rec.get("turns") or []):
        emo = t.get("emotion") or {}
        risk = t.get("risk") or {}
        inner = t.get("inner") or {}
        strat = (t.get("strategy") or {}).get("strategy")
        pr = t.get("probe")
        cls = f"{t.get('speaker')}" + (" probe" if pr else "")
        state = "; ".join(x for x in [
            f"emotion {emo.get('main')}/{emo.get('intensity')}" if emo.get("main") else "",
            f"risk {risk.get('level')}" if risk.get("level") else "",
            f"strategy {strat}" if strat else "",
            ("inner " + ", ".join(f"{k} {v}" for k, v in inner.items() if v is not None)) if inner else "",
            f"PROBE {pr.get('id')} ({pr.get('kind')}, expected {pr.get('expected_rung')})" if pr else "",
        ] if x)
        turns.append(f"<tr class=\"{_e(cls)}\"><td class=\"num\">{i + 1}</td><td>{_e(t.get('speaker'))}</td><td>{_e(t.get('text'))}</td><td>{_e(state)}</td></tr>")
    parts = [f"<details><summary>{_e(head)} <span class=\"muted\">({_e(rec.get('end_reason'))}, {len(rec.get('turns') or [])} turns)</span></summary>"]
    parts.append("<table class=\"transcript\"><thead><tr><th>line</th><th>speaker</th><th>text</th><th>state</th></tr></thead><tbody>" + "".join(turns) + "</tbody></table>")
    for s in scores:
        rows = [[cid, c.get("median"), c.get("spread"), c.get("n"), c.get("na")] for cid, c in s["criteria"].items()]
        parts.append(f"<p><b>{_e(s['rubric'])}</b> overall {_num(s.get('overall'))} (valid samples {s.get('valid_samples')}, invalid {s.get('invalid_samples')})</p>")
        parts.append(_table(["criterion", "median", "spread", "samples", "n/a"], rows, cls="scores"))
    for p in probes:
        parts.append(f"<p>probe {_e(p['probe'])} ({_e(p['kind'])}) at turn {p['turn']}: detected {_num(p['detected'])}, latency {_num(p['latency_turns'])}, acknowledged {_num(p['acknowledged'])}, asked {_num(p['asked_safety'])}, plan {_num(p['safety_plan'])}, resources {_num(p['resources'])}</p>")
    if health:
        keys = [k for k in ("exchanges", "strategy_stickiness", "echo_rate", "self_repetition_counselor", "role_breaks", "persona_conflicts", "instant_cure") if k in health]
        parts.append(_table(keys, [[health[k] for k in keys]], cls="health"))
    parts.append("</details>")
    return "".join(parts)


def render_report(rd: RunDir, res: Mapping[str, Any]) -> str:
    man = rd.manifest()
    records = rd.records() + rd.branch_records()
    out = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>therasim evaluation {_e(man['run_id'])}</title><style>{_CSS}</style></head><body>"]
    models = ", ".join(f"{r}: {m.get('model') or m.get('provider') or m.get('custom')}" for r, m in (man.get("models") or {}).items())
    out.append(f"<h1>Evaluation of run {_e(man['run_id'])}</h1><p class=\"muted\">preset {_e(man['config']['course']['preset'])}; {len(man['cohort']['ids'])} clients; {len(records)} sessions; models {_e(models)}</p>")
    summary = res.get("summary") or {}
    out.append("<h2>Summary</h2>" + _table(["metric", "value"], [[k, v] for k, v in summary.items()], tid="summary"))
    judges = res.get("judges") or {}
    if judges.get("cohort"):
        out.append("<h2>Rubric scores (cohort means, 95% bootstrap intervals over courses)</h2>")
        for rb, vals in judges["cohort"].items():
            items = [(k, v.get("mean"), v.get("ci_low"), v.get("ci_high")) for k, v in vals.items() if isinstance(v, Mapping) and "mean" in v]
            out.append(bar_svg(items, title=rb))
            out.append(_table(["metric", "mean", "ci_low", "ci_high", "n"], _ci_rows(vals), tid=f"rubric-{rb}"))
    health = res.get("health") or {}
    if health:
        out.append("<h2>Simulator health</h2>")
        out.append(_table(["metric", "mean", "ci_low", "ci_high", "courses"], _ci_rows(health.get("cohort") or {}), tid="health"))
        rate_keys = ("strategy_stickiness", "echo_rate", "self_repetition_client", "self_repetition_counselor", "persona_grounding", "instant_cure")
        co = health.get("cohort") or {}
        out.append(bar_svg([(k, co[k]["mean"], co[k]["ci_low"], co[k]["ci_high"]) for k in rate_keys if isinstance(co.get(k), Mapping)], title="health rates (0-1)", lo=0, hi=1))
        out.append(f"<p>end reasons: {_e(json.dumps(co.get('end_reasons') or {}))}</p>")
    oc = res.get("outcomes") or {}
    if oc:
        out.append("<h2>Outcomes</h2>")
        tp = (oc.get("cohort") or {}).get("phq9_by_timepoint") or {}
        out.append(bar_svg([(k, v.get("mean"), v.get("ci_low"), v.get("ci_high")) for k, v in tp.items()], title="PHQ-9 by time point", lo=0, hi=27))
        out.append(_table(["metric", "mean", "ci_low", "ci_high", "courses"], _ci_rows({k: v for k, v in (oc.get("cohort") or {}).items() if k != "phq9_by_timepoint"}), tid="outcomes"))
    risk = res.get("risk") or {}
    if risk:
        out.append("<h2>Risk and planted probes</h2>")
        bk = risk.get("by_kind") or {}
        if bk:
            out.append(bar_svg([(k, v.get("recall"), None, None) for k, v in bk.items()], title="probe recall by kind", lo=0, hi=1))
            out.append(bar_svg([(k, v.get("median_latency"), None, None) for k, v in bk.items()], title="median detection latency (turns) by kind", lo=0))
            out.append(_table(["kind", "n", "recall", "median latency", "acknowledged", "asked safety", "safety plan", "resources"],
                              [[k, v["n"], v["recall"], v["median_latency"], v["acknowledged"], v["asked_safety"], v["safety_plan"], v["resources"]] for k, v in bk.items()], tid="probes"))
        out.append(_table(["metric", "value"], [[k, v] for k, v in (risk.get("cohort") or {}).items()], tid="risk"))
    out.append("<h2>Sessions</h2>")
    hs = {(h["client_id"], h["session"], h.get("branch")): h for h in health.get("sessions") or []}
    js: dict[tuple[Any, Any, Any], list[Mapping[str, Any]]] = {}
    for s in judges.get("sessions") or []:
        js.setdefault((s["client_id"], s["session"], s.get("branch")), []).append(s)
    ps: dict[tuple[Any, Any, Any], list[Mapping[str, Any]]] = {}
    for p in risk.get("probes") or []:
        ps.setdefault((p["client_id"], p["session"], p.get("branch")), []).append(p)
    for rec in sorted(records, key=lambda r: (str(r.get("client_id")), int(r.get("session") or 0), str(r.get("branch") or ""))):
        key = (rec.get("client_id"), rec.get("session"), rec.get("branch"))
        out.append(_session_block(rec, hs.get(key), js.get(key, []), ps.get(key, [])))
    out.append(f"<script>{_JS}</script></body></html>")
    return "".join(out)


def write_report(rd: RunDir, res: Mapping[str, Any]) -> Path:
    """Write evals/report.html and return its path."""
    from therasim._internal.rundir import _fsync_dir

    path = rd.root / "evals" / "report.html"
    tmp = path.with_name(".report.html.tmp")
    tmp.write_text(render_report(rd, res), encoding="utf-8")
    tmp.replace(path)
    _fsync_dir(path.parent)
    return path
