"""PNG plots of a run (matplotlib, Agg backend, offline): emotion intensity and risk
level over turns and sessions, PHQ-9/GAD-7 across sessions; and a drawing of a
graph's shape."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from therasim.errors import MissingExtraError, RunDirError
from therasim.policies.risk import RISK_LEVELS, level_rank
from therasim.rundir import RunDir

__all__ = ["plot_client", "plot_run", "render_graph_png"]


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
    xs, inten, risk, bounds, labels = [], [], [], [], []
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
            rk = (t.get("risk") or {}).get("level")
            risk.append(level_rank(rk) if rk else float("nan"))
            x += 1
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), constrained_layout=True)
    ax = axes[0]
    ax.plot(xs, inten, marker="o", color="tab:purple")
    ax.set_ylim(-0.5, 10.5)
    ax.set_ylabel("emotion intensity (0-10)")
    ax.set_title(f"{client_id}: course of {len(recs)} session(s)")
    ax = axes[1]
    ax.step(xs, risk, where="mid", color="tab:red", marker="s")
    ax.set_yticks(range(len(RISK_LEVELS)), list(RISK_LEVELS))
    ax.set_ylabel("risk level")
    ax.set_xlabel("client turn (across sessions)")
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
    ax.plot(names, [p[1] if p[1] is not None else nan for p in pts], marker="o", label="PHQ-9 (0-27)")
    ax.plot(names, [p[2] if p[2] is not None else nan for p in pts], marker="o", label="GAD-7 (0-21)")
    ax.set_ylim(0, 27)
    ax.set_ylabel("score")
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
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for c in ids:
        recs = sorted((r for r in rd.records() if r["client_id"] == c), key=lambda r: r["session"])
        for ax, key in zip(axes, ("phq9", "gad7"), strict=True):
            ys = [((r.get("measures") or {}).get(key) or {}).get("total") for r in recs]
            ax.plot([r["session"] for r in recs], [y if y is not None else float("nan") for y in ys], marker="o", label=c)
    axes[0].set_title("PHQ-9 before each session")
    axes[1].set_title("GAD-7 before each session")
    for ax in axes:
        ax.set_xlabel("session")
    if len(ids) <= 12:
        axes[1].legend(fontsize=7)
    p = rd.plots / "cohort_measures.png"
    fig.savefig(p, dpi=90)
    plt.close(fig)
    return [*paths, p]


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
