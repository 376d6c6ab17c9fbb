"""CLI commands of the evaluation package (registered in therasim.cli):

``therasim eval RUN_DIR [--rubrics ...] [--metrics health,risk,outcomes]
[--judge MODEL] [--samples N] [--concurrency N] [--resume] [--gate FILE] [--html]``,
``therasim eval agreement FILE`` and ``therasim compare A B``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from therasim.errors import TherasimError

__all__ = ["register"]

GATE_EXIT = 3


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _summary_table(res: dict[str, Any]) -> Table:
    t = Table(title=f"evaluation of {res.get('run_id')}")
    for c in ("metric", "mean", "95% CI", "n"):
        t.add_column(c)
    groups = [("health", (res.get("health") or {}).get("cohort", {})), ("outcomes", (res.get("outcomes") or {}).get("cohort", {})), ("risk", (res.get("risk") or {}).get("cohort", {}))]
    groups += [(rb, vals) for rb, vals in ((res.get("judges") or {}).get("cohort") or {}).items()]
    for g, vals in groups:
        for k, v in vals.items():
            if isinstance(v, dict) and "mean" in v:
                if v.get("n"):
                    t.add_row(f"{g}.{k}", _fmt(v["mean"]), f"[{_fmt(v['ci_low'])}, {_fmt(v['ci_high'])}]", str(v["n"]))
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                t.add_row(f"{g}.{k}", _fmt(v), "", "")
    return t


def _print_result(out: Any, res: Any, as_json: bool, title: str, columns: Iterable[str], rows: Iterable[Iterable[str]]) -> None:
    """``res`` as JSON on stdout, or ``rows`` as a table."""
    if as_json:
        sys.stdout.write(json.dumps(res, indent=1, default=str) + "\n")
        return
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*row)
    out.print(t)


def register(app: typer.Typer) -> None:
    """Add ``eval`` and ``compare`` to the therasim CLI."""
    from therasim.cli import _fail, _or_fail, err, out

    @app.command("eval")
    def eval_cmd(
        target: Annotated[str, typer.Argument(metavar="RUN_DIR", help="a run directory (or `agreement FILE`)")],
        file: Annotated[Optional[Path], typer.Argument(help="with `agreement`: the human-annotation file")] = None,
        rubrics: Annotated[Optional[str], typer.Option("--rubrics", help="comma-separated: mindeval,ctrs,wai_observer,miti,safety or YAML files")] = None,
        metrics: Annotated[str, typer.Option("--metrics", help="comma-separated subset of health,risk,outcomes")] = "health,risk,outcomes",
        judge: Annotated[Optional[str], typer.Option("--judge", help="judge model: embedded | openai:MODEL@URL | vllm:MODEL@URL (default: the run config's judge role)")] = None,
        samples: Annotated[int, typer.Option("--samples", min=1, help="judge samples per judgment (median and spread kept)")] = 1,
        concurrency: Annotated[Optional[int], typer.Option("--concurrency", min=1, help="judge calls in flight")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="continue judgments already in evals/judgments.jsonl")] = False,
        gate: Annotated[Optional[Path], typer.Option("--gate", help="gates YAML; exit 3 naming each failed gate")] = None,
        html: Annotated[bool, typer.Option("--html", help="write evals/report.html")] = False,
        judge_rater: Annotated[str, typer.Option("--judge-rater", help="with `agreement`: the rater name of the judge's rows")] = "judge",
        as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    ) -> None:
        """Evaluate a run (health, outcomes, risk, rubric judges) into RUN_DIR/evals/; `eval agreement FILE`: judge-human agreement."""
        if target == "agreement":
            _agreement(file, judge_rater, as_json)
            return
        if file is not None:
            _fail(TherasimError(f"unexpected extra argument {str(file)!r}; usage: therasim eval RUN_DIR [OPTIONS] or therasim eval agreement FILE"))
        from therasim.eval.gates import check_gates, load_gates
        from therasim.eval.run import evaluate

        try:
            gates = load_gates(gate) if gate is not None else []
            res = evaluate(
                Path(target), metrics=[m.strip() for m in metrics.split(",") if m.strip()], rubrics=[rubrics] if rubrics else None,
                judge=judge, samples=samples, concurrency=concurrency, resume=resume, html=html,
                echo=lambda s: err.print(s, highlight=False, markup=False),
            )
        except TherasimError as e:
            _fail(e)
        if as_json:
            sys.stdout.write(json.dumps(res["summary"], indent=1) + "\n")
        else:
            out.print(_summary_table(res))
            out.print(f"written: {Path(target) / 'evals'}" + (f"  report: {res['report']}" if res.get("report") else ""), highlight=False)
        failed = check_gates(gates, res["summary"]) if gates else []
        for f in failed:
            err.print(f"gate failed: {f}", highlight=False, markup=False)
        if failed:
            raise typer.Exit(GATE_EXIT)
        if gates:
            err.print(f"all {len(gates)} gate(s) passed", highlight=False, markup=False)

    def _agreement(file: Optional[Path], judge_rater: str, as_json: bool) -> None:
        from therasim.eval.agreement import agreement_report, load_annotations

        if file is None:
            _fail(TherasimError("usage: therasim eval agreement FILE (clinician ratings per criterion per interaction, JSONL/JSON/CSV)"))
        assert file is not None
        rep = _or_fail(lambda: agreement_report(load_annotations(file), judge=judge_rater))
        _print_result(
            out, rep, as_json,
            f"agreement: {file} ({rep['interactions']} interactions, raters {', '.join(rep['raters'])}; judge: {rep['judge'] or 'none'})",
            ("criterion", "n", "judge-raters rho", "judge-raters QWK", "alpha (raters+judge)", "rater-rater rho", "rater-rater QWK", "alpha (raters)"),
            ([crit, str(r["n"]), *(_fmt(r[k]) for k in ("judge_spearman", "judge_qwk", "alpha_with_judge", "rater_spearman", "rater_qwk", "alpha_raters"))] for crit, r in rep["criteria"].items()),
        )

    @app.command("compare")
    def compare_cmd(
        a: Annotated[str, typer.Argument(help="run directory A (or RUN_DIR@BRANCH, RUN_DIR@* for its forks)")],
        b: Annotated[str, typer.Argument(help="run directory B (or RUN_DIR@BRANCH)")],
        metric: Annotated[Optional[list[str]], typer.Option("--metric", help="only these metrics (prefix* allowed; repeatable)")] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Paired comparison B - A per metric: sessions paired by (client, session); bootstrap CI, permutation p, d_z."""
        from therasim.eval.compare import compare, format_compare

        res = _or_fail(lambda: compare(a, b, metrics=list(metric) if metric else None))
        _print_result(
            out, res, as_json,
            f"B - A  (A = {res['a']}, B = {res['b']}; {res['pairs']['sessions']} session pairs, {res['pairs']['courses']} course pairs)",
            ("metric", "n", "mean A", "mean B", "B - A", "95% CI", "p (perm.)", "d_z"),
            format_compare(res),
        )
