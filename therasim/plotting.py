"""PNG plots of a run (matplotlib, Agg backend, offline): emotion intensity and risk
level over turns and sessions, PHQ-9/GAD-7 across sessions; and a drawing of a
graph's shape."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from therasim._internal.rundir import RunDir
from therasim.errors import MissingExtraError, RunDirError
from therasim.policies.risk import RISK_LEVELS, level_rank

__all__ = ["SEVERITY_BANDS", "cohort_figure", "plot_client", "plot_run", "render_graph_png"]

# Published severity cut-offs: PHQ-9 (Kroenke, Spitzer & Williams 2001, J Gen Intern Med
# 16:606) and GAD-7 (Spitzer, Kroenke, Williams & Löwe 2006, Arch Intern Med 166:1092).
SEVERITY_BANDS: dict[str, list[tuple[int, int, str]]] = {
    "phq9": [(0, 4, "minimal"), (5, 9, "mild"), (10, 14, "moderate"), (15, 19, "moderately severe"), (20, 27, "severe")],
    "gad7": [(0, 4, "minimal"), (5, 9, "mild"), (10, 14, "moderate"), (15, 21, "severe")],
}
_BAND_COLOURS = ("#e8f5e9", "#fffde7", "#fff3e0", "#fbe9e7", "#ffebee")
# Beyond this many clients the cohort plot shows faint lines and the mean with its interval.
COHORT_MEAN_FROM = 20


def _bands(ax: Any, key: str, *, labels: bool = True) -> None:
    """Shade the severity bands of ``key`` (phq9/gad7) behind the data, labelled at the right."""
    top = SEVERITY_BANDS[key][-1][1]
    for (lo, hi, name), colour in zip(SEVERITY_BANDS[key], _BAND_COLOURS, strict=False):
        ax.axhspan(lo - 0.5 if lo else 0, min(hi + 0.5, top), color=colour, zorder=0, lw=0)
        if labels:
            ax.text(1.01, (lo + hi) / 2 / top, name, transform=ax.transAxes, fontsize=6, va="center", color="#555")
    ax.set_ylim(0, top)


def _integer_ticks(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise MissingExtraError("matplotlib", "plot", "Plots") from None
    return plt


def plot_client(run_dir: str | Path | RunDir, client_id: str, out: str | Path | None = None) -> Path:
    """One PNG for one client: emotion intensity and risk per client turn across the
    course (session boundaries marked), and PHQ-9 / GAD-7 before each session and
    after the last."""
    plt = _plt()
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    rd.manifest()
    recs = sorted((r for r in rd.records() if r["client_id"] == client_id), key=lambda r: r["session"])
    if not recs:
        ids = sorted({r["client_id"] for r in rd.records()})
        raise RunDirError(f"no finished sessions for client {client_id!r}; clients with sessions: {ids}")
    xs, inten, risk, bounds, labels, emo = [], [], [], [], [], []
    x = 0
    for r in recs:
        bounds.append(x)
        labels.append(f"S{r['session']}\n{r.get('modality') or ''}")
        for t in r.get("turns") or []:
            if t.get("speaker") != "client":
                continue
            xs.append(x)
            e = t.get("emotion") or {}
            inten.append(e.get("intensity") if e.get("intensity") is not None else float("nan"))
            emo.append(e.get("main"))
            rk = (t.get("risk") or {}).get("level")
            risk.append(level_rank(rk) if rk else float("nan"))
            x += 1
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), constrained_layout=True)
    ax = axes[0]
    ax.plot(xs, inten, marker="o", color="tab:purple")
    for xi, yi, lab in zip(xs, inten, emo, strict=True):
        if lab and yi == yi:  # skip NaN intensities
            ax.annotate(lab, (xi, yi), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=6, color="tab:purple")
    ax.set_ylim(-0.5, 11.5)
    ax.set_ylabel("emotion intensity (0-10)")
    ax.set_title(f"{client_id}: course of {len(recs)} session(s)")
    ax = axes[1]
    ax.step(xs, risk, where="mid", color="tab:red", marker="s")
    ax.set_yticks(range(len(RISK_LEVELS)), list(RISK_LEVELS))
    ax.set_ylabel("risk level")
    ax.set_xlabel("client turn (across sessions)")
    for a in axes[:2]:
        _integer_ticks(a)
    for a in axes[:2]:
        for b, lab in zip(bounds, labels, strict=False):
            a.axvline(b - 0.5, color="grey", lw=0.8, ls="--")
            a.text(b - 0.4, a.get_ylim()[1], lab, va="top", fontsize=7, color="grey")
    ax = axes[2]
    pts: list[tuple[str, Any, Any]] = []
    for r in recs:
        m = r.get("measures") or {}
        pts.append((f"before S{r['session']}", (m.get("phq9") or {}).get("total"), (m.get("gad7") or {}).get("total")))
    last = recs[-1].get("measures_after") or {}
    if last:
        pts.append(("after", (last.get("phq9") or {}).get("total"), (last.get("gad7") or {}).get("total")))
    names = [p[0] for p in pts]
    nan = float("nan")
    _bands(ax, "phq9")  # PHQ-9 bands; GAD-7 shares the 5/10/15 cut-offs
    ax.plot(names, [p[1] if p[1] is not None else nan for p in pts], marker="o", label="PHQ-9 (0-27)")
    ax.plot(names, [p[2] if p[2] is not None else nan for p in pts], marker="o", label="GAD-7 (0-21)")
    ax.set_ylabel("score (bands: PHQ-9 severity)")
    ax.legend(loc="upper right", fontsize=8)
    path = Path(out) if out is not None else rd.plots / f"{client_id}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_run(run_dir: str | Path | RunDir, client_id: str | None = None) -> list[Path]:
    """Plots for one client, or for every client plus a cohort PHQ-9/GAD-7 overview."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    rd.manifest()
    try:
        rd.plots.mkdir(exist_ok=True)
        probe = rd.plots / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"{rd.plots}: cannot write the plots there ({e.strerror}); copy the run directory somewhere writable and plot that") from None
    if client_id is not None:
        return [plot_client(rd, client_id)]
    ids = sorted({r["client_id"] for r in rd.records()})
    if not ids:
        raise RunDirError(f"{rd.root}: no finished sessions to plot yet")
    paths = [plot_client(rd, c) for c in ids]
    plt = _plt()
    fig = cohort_figure(rd)
    p = rd.plots / "cohort_measures.png"
    fig.savefig(p, dpi=90)
    plt.close(fig)
    return [*paths, p]


def _mean_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95% interval (normal approximation, mean +/- 1.96 SD/sqrt(n))."""
    import statistics

    m = statistics.fmean(values)
    if len(values) < 2:
        return m, m, m
    half = 1.96 * statistics.stdev(values) / len(values) ** 0.5
    return m, m - half, m + half


def cohort_figure(run_dir: str | Path | RunDir) -> Any:
    """PHQ-9 and GAD-7 before each session across the cohort, over severity bands; one
    line per client, and beyond 20 clients faint lines with the cohort mean and its
    95% interval."""
    plt = _plt()
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    by_client: dict[str, list[dict[str, Any]]] = {}
    for r in rd.records():
        by_client.setdefault(r["client_id"], []).append(r)
    many = len(by_client) > COHORT_MEAN_FROM
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4), constrained_layout=True)
    for ax, key, title in zip(axes, ("phq9", "gad7"), ("PHQ-9", "GAD-7"), strict=True):
        _bands(ax, key)
        per_session: dict[int, list[float]] = {}
        for c, recs in sorted(by_client.items()):
            recs = sorted(recs, key=lambda r: r["session"])
            ys = [((r.get("measures") or {}).get(key) or {}).get("total") for r in recs]
            for r, y in zip(recs, ys, strict=True):
                if y is not None:
                    per_session.setdefault(int(r["session"]), []).append(float(y))
            ax.plot([r["session"] for r in recs], [y if y is not None else float("nan") for y in ys], **({"color": "grey", "alpha": 0.15, "lw": 0.8} if many else {"marker": "o", "label": c}))
        if many and per_session:
            xs = sorted(per_session)
            stats = [_mean_ci(per_session[x]) for x in xs]
            ax.fill_between(xs, [s[1] for s in stats], [s[2] for s in stats], color="tab:blue", alpha=0.25, label="95% interval of the mean")
            ax.plot(xs, [s[0] for s in stats], color="tab:blue", lw=2.2, marker="o", label=f"cohort mean (n={len(by_client)})")
        ax.set_title(f"{title} before each session")
        ax.set_xlabel("session")
        _integer_ticks(ax)
    if many or len(by_client) <= 12:
        axes[1].legend(fontsize=7, loc="upper right")
    return fig


def render_graph_png(builder: Any, path: str | Path) -> Path:
    """Draw a session or course builder's shape as a PNG, offline (no mermaid service)."""
    plt = _plt()
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from therasim.graphs.course import CourseGraphBuilder

    columns: list[tuple[str, list[str], str]] = []
    if isinstance(builder, CourseGraphBuilder):
        columns.append((f"course: {builder.name}", [*builder.order, "finish"], "next session"))
        columns.append((f"session: {builder.session.name}", [*builder.session.order, "record", "termination"], "next turn"))
        conds = builder.session.conditionals
    else:
        columns.append((f"session: {builder.name}", [*builder.order, "record", "termination"], "next turn"))
        conds = builder.conditionals
    h = max(len(c[1]) for c in columns)
    fig, ax = plt.subplots(figsize=(4.2 * len(columns), 0.75 * h + 1.4))
    ax.set_xlim(0, 4.2 * len(columns))
    ax.set_ylim(-h - 0.6, 1.0)
    ax.axis("off")
    for ci, (title, nodes, loop) in enumerate(columns):
        cx = 4.2 * ci + 2.1
        ax.text(cx, 0.55, title, ha="center", fontsize=10, weight="bold")
        ys = {n: -i for i, n in enumerate(nodes)}
        for n, y in ys.items():
            ax.add_patch(FancyBboxPatch((cx - 1.2, y - 0.28), 2.4, 0.56, boxstyle="round,pad=0.02", fc="#eef3fb" if n not in ("record", "termination", "finish", "session") else "#f6efe0", ec="#44546a"))
            ax.text(cx, y, n, ha="center", va="center", fontsize=8)
        for a, b in itertools.pairwise(nodes):
            ax.add_patch(FancyArrowPatch((cx, ys[a] - 0.3), (cx, ys[b] + 0.3), arrowstyle="-|>", mutation_scale=9, color="#44546a"))
        ax.add_patch(FancyArrowPatch((cx + 1.2, ys[nodes[-1]]), (cx + 1.2, ys[nodes[0]]), connectionstyle="arc3,rad=0.35", arrowstyle="-|>", mutation_scale=9, color="#7f7f7f", ls="--"))
        ax.text(cx + 1.75, (ys[nodes[0]] + ys[nodes[-1]]) / 2, loop, rotation=90, va="center", fontsize=7, color="#7f7f7f")
        if ci == len(columns) - 1:
            for src, cond in conds.items():
                for label, dst in cond.destinations.items():
                    if dst in ys and src in ys:
                        ax.add_patch(FancyArrowPatch((cx - 1.2, ys[src]), (cx - 1.2, ys[dst]), connectionstyle="arc3,rad=0.4", arrowstyle="-|>", mutation_scale=8, color="#c0504d"))
                        ax.text(cx - 1.95, (ys[src] + ys[dst]) / 2, label, fontsize=7, color="#c0504d", rotation=90, va="center")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out
