"""The therasim command line. Errors print one clear paragraph, not a traceback."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from therasim.errors import TherasimError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="therasim: longitudinal therapy simulations on open-weight models.")
config_app = typer.Typer(no_args_is_help=True, help="Example and validation of run configurations.")
app.add_typer(config_app, name="config")
# Paths and ids are never broken across lines; piped output gets a wide table.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)


def _safe(text: object) -> str:
    """What the terminal may show: no credential in a URL, no control character."""
    from therasim.redact import redact_text, terminal_safe

    return terminal_safe(redact_text(str(text)))


def _cell(text: object) -> str:
    """Untrusted text (model output, ids, errors) for a rich markup string or table cell."""
    from rich.markup import escape

    return escape(_safe(text))


def _fail(e: Exception, code: int = 2) -> None:
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(_safe(e))}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


_T = TypeVar("_T")


def _or_fail(fn: Callable[[], _T]) -> _T:
    """``fn()``; a :class:`TherasimError` ends the command with its message (exit 2)."""
    try:
        return fn()
    except TherasimError as e:
        _fail(e)
        raise  # not reached: _fail exits


class LogLevel(str, Enum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


@app.callback()
def _main(
    log_format: Annotated[str, typer.Option("--log-format", help="console | json (structlog on stderr)")] = "console",
    log_level: Annotated[LogLevel, typer.Option("--log-level", case_sensitive=False)] = LogLevel.WARNING,
) -> None:
    from therasim._logging import configure_cli_logging

    if log_format not in ("console", "json"):
        _fail(TherasimError(f"--log-format must be 'console' or 'json', got {log_format!r}"))
    configure_cli_logging(log_format, log_level.value)  # type: ignore[arg-type]


@config_app.command("example")
def config_example() -> None:
    """Print a commented example configuration."""
    from therasim.config import example_config_yaml

    sys.stdout.write(example_config_yaml())


@config_app.command("validate")
def config_validate(file: Path) -> None:
    """Check a configuration file; every problem names its field."""
    from therasim.config import load_config
    from therasim.runner import check_names

    try:
        cfg = load_config(file)
        check_names(cfg, str(file))  # preset, modality, taxonomy: known now, not mid-run
    except TherasimError as e:
        _fail(e)
    out.print(f"[green]ok[/]: {file} is valid (preset {cfg.course.preset}, {cfg.course.sessions} sessions, models: {cfg.models.default.provider})")


def _load(config: Optional[Path]):  # type: ignore[no-untyped-def]
    from therasim.config import load_config
    from therasim.runner import check_names

    try:
        cfg = load_config(config)
        check_names(cfg, str(config or "config"))
        return cfg
    except TherasimError as e:
        _fail(e)


@app.command()
def doctor(
    config: Annotated[Optional[Path], typer.Argument(help="run config (default: embedded defaults)")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="also check a Ray cluster (auto or HOST:PORT)")] = None,
) -> None:
    """Load each configured model and the memory backend; one real generation and one
    structured output per model; check the Postgres checkpointer and a Ray cluster
    when configured; report what works and what to fix."""
    from therasim.doctor import run_doctor

    cfg = _load(config)
    checks = run_doctor(cfg, ray_address=ray_address)
    t = Table(title="therasim doctor")
    t.add_column("check")
    t.add_column("ok")
    t.add_column("detail")
    t.add_column("fix")
    for c in checks:
        t.add_row(c.name, "[green]yes[/]" if c.ok else "[red]NO[/]", c.detail, c.fix)
    out.print(t)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@app.command()
def serve(
    model: str,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    health_timeout: Annotated[float, typer.Option("--health-timeout")] = 900.0,
    extra: Annotated[Optional[list[str]], typer.Argument(help="extra vllm flags after --")] = None,
) -> None:
    """Start `vllm serve MODEL` (prefix caching on), wait for /health, print the base_url."""
    from therasim.serve import serve as _serve

    if not 1 <= port <= 65535:
        _fail(TherasimError(f"--port {port} is not a TCP port; use 1-65535"))

    try:
        code = _serve(model, host=host, port=port, extra=extra or [], health_timeout_s=health_timeout, echo=lambda s: out.print(s, highlight=False))
    except TherasimError as e:
        _fail(e)
    raise typer.Exit(code)


@app.command()
def graph(
    preset: Annotated[Optional[str], typer.Option("--preset")] = None,
    config: Annotated[Optional[Path], typer.Option("--config")] = None,
    course: Annotated[bool, typer.Option("--course/--session", help="the course graph (steps between sessions) or the session graph")] = False,
    png: Annotated[Optional[Path], typer.Option("--png", help="also draw a PNG here (offline)")] = None,
) -> None:
    """Print a graph as mermaid text (offline); --png draws it too."""
    from therasim.graphs import course_builder
    from therasim.graphs import preset as get_preset

    cfg = _load(config)
    name = preset or cfg.course.preset
    try:
        b = course_builder(cfg.course.model_copy(update={"preset": name})) if course else get_preset(name)
        sys.stdout.write(b.mermaid() + "\n")
        if png is not None:
            from therasim.plotting import render_graph_png

            err.print(f"png: {render_graph_png(b, png)}", highlight=False, markup=False)
    except TherasimError as e:
        _fail(e)


@app.command()
def session(
    config: Annotated[Optional[Path], typer.Option("--config")] = None,
    profile: Annotated[str, typer.Option("--profile", help="id of a shipped example profile")] = "maria",
    turns: Annotated[Optional[int], typer.Option("--turns")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    stream: Annotated[bool, typer.Option("--stream", help="print client and counselor replies token by token as they are generated")] = False,
) -> None:
    """Run one session on an example profile and print the transcript."""
    from therasim.context import SimContext
    from therasim.graphs import preset as get_preset
    from therasim.graphs.session import initial_session_state, run_session
    from therasim.profiles import example_profiles

    cfg = _load(config)
    course = cfg.course.model_copy(update={k: v for k, v in {"max_turns": turns, "preset": preset}.items() if v is not None})
    profiles = {p.id: p for p in example_profiles()}
    if profile not in profiles:
        _fail(TherasimError(f"--profile {profile!r} is not a shipped example; choose one of {sorted(profiles)}"))
    try:
        g = get_preset(course.preset).compile()
        ctx = SimContext.from_config(cfg, course=course)
        if stream:
            from therasim.cli_data import print_streamed_session

            st = asyncio.run(print_streamed_session(g, initial_session_state(profiles[profile], modality=course.modality), ctx))
            out.print(f"session ended: {st.get('end_reason')}")
            return
        st = asyncio.run(run_session(g, initial_session_state(profiles[profile], modality=course.modality), ctx))
    except TherasimError as e:
        _fail(e)
    if as_json:
        sys.stdout.write(json.dumps({"end_reason": st.get("end_reason"), "transcript": st["transcript"]}, default=str) + "\n")
        return
    for t in st["transcript"]:
        extra = ""
        if t["speaker"] == "client":
            emo = t.get("emotion") or {}
            extra = f"  [dim]emotion={emo.get('main', '?')}/{emo.get('intensity', '?')} risk={(t.get('risk') or {}).get('level', '?')}[/]"
        else:
            extra = f"  [dim]strategy={(t.get('strategy') or {}).get('strategy', '-')}[/]"
        out.print(f"[bold]{t['speaker']}[/]: {_cell(t['text'])}{extra}", highlight=False)
    out.print(f"session ended: {st.get('end_reason')}")


def _print_result(res, rd_path) -> None:  # type: ignore[no-untyped-def]
    s = res.summary()
    out.print(f"[bold]run[/] {s['run_id']}: {s['courses_completed']} course(s) completed, {len(s['courses_failed'])} failed, {s['sessions_written']} session(s) written, {s['turns']} turns, {s['call_errors']} call error(s), {s['retries']} retries, {s['wall_s']} s", highlight=False)
    from rich.markup import escape

    for cid, why in s["courses_failed"].items():
        out.print(f"  [red]failed[/] {escape(_safe(cid))}: {escape(_safe(why))}", highlight=False, markup=True)
    for p in s["bad_profiles"]:
        out.print(f"  skipped profile {_safe(p)}", highlight=False, markup=False)
    out.print(f"outputs: {rd_path}", highlight=False)


def _executor(name: str, address: Optional[str], workers: int):  # type: ignore[no-untyped-def]
    if name == "local":
        if address is not None:
            raise TherasimError("--address is for --executor ray; drop it or add --executor ray")
        return None
    if name == "ray":
        from therasim.ray_executor import RayExecutor

        return RayExecutor(address, workers)
    raise TherasimError(f"--executor must be 'local' or 'ray', got {name!r}")


@app.command()
def run(
    config: Annotated[Optional[Path], typer.Argument(help="run config YAML (default: embedded defaults)")] = None,
    profiles: Annotated[Optional[Path], typer.Option("--profiles", help="profiles YAML or JSONL")] = None,
    sample: Annotated[Optional[int], typer.Option("--sample", help="draw N profiles with the run's seed")] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", min=1, help="courses in flight")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="folder for run directories")] = None,
    resume_dir: Annotated[Optional[Path], typer.Option("--resume", help="finish an interrupted run directory")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    executor: Annotated[str, typer.Option("--executor", help="local (this process) | ray (courses sharded over Ray actors; docs/scale-out.md)")] = "local",
    address: Annotated[Optional[str], typer.Option("--address", help="ray: a running cluster, auto or HOST:PORT (default: start Ray locally)")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="ray: actors (one core each); --concurrency is per actor")] = 2,
) -> None:
    """Run a cohort of courses (or --resume one) and write a run directory."""
    from therasim._internal.checkpoint import checkpoint_codec
    from therasim.runner import arun_dir, event_loop_factory, run_loop, start_run

    try:
        ex = _executor(executor, address, workers)
        if ex is None:
            event_loop_factory()  # a bad THERASIM_EVENT_LOOP is refused before a run directory is made
            checkpoint_codec()  # and a bad THERASIM_CHECKPOINT_CODEC
        if resume_dir is not None:
            if config is not None or profiles is not None or sample is not None:
                raise TherasimError("--resume continues a run with its own config and profiles; drop CONFIG, --profiles and --sample")
            rd_path = resume_dir
            from therasim._internal.rundir import RunDir

            rd = RunDir(resume_dir)
        else:
            rd, problems = start_run(_load(config), profiles=profiles, sample=sample, out=out_dir)
            rd_path = rd.root
            for p in problems:
                err.print(f"skipped profile: {_safe(p)}", highlight=False, markup=False)
            err.print(f"run directory: {rd.root}", highlight=False, markup=False)
        # this process's courses on uvloop when installed; a Ray driver keeps asyncio's loop
        res = (run_loop if ex is None else asyncio.run)(arun_dir(rd, concurrency=concurrency, progress=progress, executor=ex))
    except TherasimError as e:
        _fail(e)
    _print_result(res, rd_path)
    if not res.ok:
        raise typer.Exit(1)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out")] = Path("therasim-runs"),
    clients: Annotated[int, typer.Option("--clients", min=1)] = 2,
    sessions: Annotated[int, typer.Option("--sessions", min=1)] = 3,
    turns: Annotated[int, typer.Option("--turns", min=1)] = 2,
    preset_name: Annotated[str, typer.Option("--preset")] = "lean",
) -> None:
    """A real small run on the embedded defaults (2 sampled clients x 3 sessions)."""
    from therasim.config import RunConfig
    from therasim.runner import arun_dir, start_run
    from therasim.traces import overview

    cfg = RunConfig.model_validate({"course": {"preset": preset_name, "sessions": sessions, "max_turns": turns}, "seed": 7, "concurrency": 1})
    try:
        rd, _ = start_run(cfg, sample=clients, out=out_dir)
        err.print(f"demo run: {clients} sampled client(s) x {sessions} session(s), up to {turns} turn(s) each, on SmolLM2-135M (CPU)", highlight=False, markup=False)
        res = asyncio.run(arun_dir(rd, progress=True))
        ov = overview(rd)
    except TherasimError as e:
        _fail(e)
    _overview_table(ov)
    _print_result(res, rd.root)
    first = ov["courses"][0]["client_id"]
    out.print(f"next: therasim inspect {rd.root} --client {first} --session 1   |   therasim plot {rd.root}   |   therasim fork {rd.root} --client {first} --session 2 --turn 1 --set inner.distress=9", highlight=False)


def _overview_table(ov) -> None:  # type: ignore[no-untyped-def]
    t = Table(title=f"run {ov['run_id']} (preset {ov['preset']})")
    for c in ("client", "status", "session", "modality", "PHQ-9", "GAD-7", "risk peak", "turns", "ended", "branches"):
        t.add_column(c)
    for c in ov["courses"]:
        if not c["sessions"]:
            t.add_row(_cell(c["client_id"]), _cell(c["status"] + (f": {c['error'][:60]}" if c.get("error") else "")), "-", "", "", "", "", "", "", "")
        for i, s in enumerate(c["sessions"]):
            phq = "" if s["phq9"] is None else str(s["phq9"])
            gad = "" if s["gad7"] is None else str(s["gad7"])
            if s.get("phq9_after") is not None:
                phq += f" -> {s['phq9_after']}"
                gad += f" -> {s['gad7_after']}"
            t.add_row(_cell(c["client_id"]) if i == 0 else "", _cell(c["status"]) if i == 0 else "", str(s["session"]), _cell(s["modality"] or ""), phq, gad, _cell(s["risk_peak"]), str(s["turns"]), _cell(s["end_reason"] or ""), _cell(", ".join(b["branch"] for b in s["branches"])))
    out.print(t)
    for p in ov.get("bad_profiles") or []:
        out.print(f"skipped profile {_safe(p)}", highlight=False, markup=False)


@app.command()
def inspect(
    run_dir: Annotated[Path, typer.Argument(help="a run directory")],
    client: Annotated[Optional[str], typer.Option("--client")] = None,
    session_n: Annotated[Optional[int], typer.Option("--session")] = None,
    turn: Annotated[Optional[int], typer.Option("--turn")] = None,
    branch: Annotated[Optional[str], typer.Option("--branch")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Course overview; --client/--session: per-turn timeline; --turn: full node-level state."""
    from therasim import traces

    try:
        if turn is not None and (session_n is None or client is None):
            raise TherasimError("--turn needs --client and --session (which session's turn?)")
        if session_n is not None and client is None:
            raise TherasimError("--session needs --client")
        if branch is not None and session_n is None:
            raise TherasimError("--branch needs --client and --session")
        if client is None:
            data = traces.overview(run_dir)
            if as_json:
                sys.stdout.write(json.dumps(data, default=str, indent=1) + "\n")
            else:
                _overview_table(data)
            return
        if session_n is None:
            ov = traces.overview(run_dir)
            course = [c for c in ov["courses"] if c["client_id"] == client]
            if not course:
                raise TherasimError(f"no client {client!r} in this run; clients: {[c['client_id'] for c in ov['courses']]}")
            if as_json:
                sys.stdout.write(json.dumps(course[0], default=str, indent=1) + "\n")
            else:
                _overview_table({**ov, "courses": course, "bad_profiles": []})
            return
        if turn is not None:
            data = traces.turn_state(run_dir, client, session_n, turn, branch=branch)
            if as_json:
                sys.stdout.write(json.dumps(data, default=str, indent=1) + "\n")
                return
            out.print(f"[bold]{data['thread_id']}[/] turn {turn} (checkpoint {data['checkpoint_id']}); nodes: {' -> '.join(data['nodes'])}", highlight=False)
            for t in data["exchange"]:
                out.print(f"\n[bold]{t['speaker']}[/]: {_cell(t['text'])}", highlight=False)
                for k in ("emotion", "risk", "strategy", "review", "recalled", "client_inner", "note"):
                    if t.get(k):
                        out.print(f"  {k}: {_safe(json.dumps(t[k], default=str)[:400])}", highlight=False, markup=False)
                for node, calls in (t.get("calls") or {}).items():
                    for c in calls:
                        out.print(_safe(f"  call {node}: attempts {c.get('attempts')} tokens {c.get('input_tokens')}+{c.get('output_tokens')} {c.get('latency_s')} s" + (f" error {c['error'][:120]}" if c.get("error") else "")), highlight=False, markup=False)
            st = data["state"]
            out.print(_safe(f"\nstate: modality {st.get('modality')}; goals {st.get('goals')}; inner {json.dumps(st.get('inner'), default=str)}"), highlight=False, markup=False)
            return
        rows = traces.timeline(run_dir, client, session_n, branch)
        if as_json:
            sys.stdout.write(json.dumps(rows, default=str, indent=1) + "\n")
            return
        t = Table(title=f"{client} session {session_n}" + (f" (branch {branch})" if branch else ""))
        for c in ("turn", "speaker", "text", "emotion", "risk", "strategy", "recalled"):
            t.add_column(c, overflow="fold")
        for r in rows:
            emo = r["emotion"] or {}
            t.add_row(
                str(r["turn"]),
                _cell(r["speaker"]),
                _cell(r["text"]),
                _cell(f"{emo.get('main')}/{emo.get('intensity')}") if emo else "",
                _cell((r["risk"] or {}).get("level") or ""),
                _cell((r["strategy"] or {}).get("strategy") or ""),
                _cell("\n".join(f"[{m.get('score')}] s{m.get('session')} {m.get('text', '')[:60]}" for m in r["recalled"])),
            )
        out.print(t)
    except TherasimError as e:
        _fail(e)


def _branch_summary(rec) -> None:  # type: ignore[no-untyped-def]
    out.print(f"[bold]{rec['kind']}[/] {_cell(rec['branch'])}: {_cell(rec['client_id'])} session {rec['session']} from turn {rec['from_turn']} -> {sum(1 for t in rec['turns'] if t['speaker'] == 'client')} turn(s), ended {rec['end_reason']} (original ended {rec['original_end_reason']})", highlight=False)
    for t in rec["turns"]:
        if int(t.get("exchange") or 0) + 1 >= rec["from_turn"]:
            out.print(_safe(f"  {t['speaker']}: {t['text']}"), highlight=False, markup=False)


@app.command()
def replay(
    run_dir: Annotated[Path, typer.Argument()],
    client: Annotated[str, typer.Option("--client")],
    session_n: Annotated[int, typer.Option("--session")],
    turn: Annotated[int, typer.Option("--turn")],
    branch: Annotated[Optional[str], typer.Option("--branch", help="name of the new branch")] = None,
) -> None:
    """Re-run a session from the checkpoint before --turn, as a new branch."""
    from therasim import traces

    try:
        rec = traces.replay(run_dir, client, session_n, turn, branch=branch)
    except TherasimError as e:
        _fail(e)
    _branch_summary(rec)


@app.command()
def fork(
    run_dir: Annotated[Path, typer.Argument()],
    client: Annotated[str, typer.Option("--client")],
    session_n: Annotated[int, typer.Option("--session")],
    turn: Annotated[int, typer.Option("--turn")],
    sets: Annotated[Optional[list[str]], typer.Option("--set", help="PATH=VALUE, e.g. inner.distress=9 (repeatable)")] = None,
    counselor_model: Annotated[Optional[str], typer.Option("--counselor-model", help="embedded | openai:MODEL@URL | vllm:MODEL@URL")] = None,
    branch: Annotated[Optional[str], typer.Option("--branch")] = None,
) -> None:
    """A counterfactual from the same state: changed state and/or another counselor."""
    from therasim import traces

    if not sets and counselor_model is None:
        _fail(TherasimError("fork needs a change: --set PATH=VALUE and/or --counselor-model SPEC (use replay for no change)"))
    try:
        rec = traces.fork(run_dir, client, session_n, turn, sets=list(sets or []), counselor_model=counselor_model, branch=branch)
    except TherasimError as e:
        _fail(e)
    _branch_summary(rec)


@app.command()
def plot(
    run_dir: Annotated[Path, typer.Argument()],
    client: Annotated[Optional[str], typer.Option("--client")] = None,
) -> None:
    """PNGs: emotion intensity and risk over turns and sessions, PHQ-9/GAD-7 across sessions."""
    from therasim.plotting import plot_run

    try:
        paths = plot_run(run_dir, client)
    except TherasimError as e:
        _fail(e)
    for p in paths:
        out.print(str(p), highlight=False)




@app.command()
def stub(
    profile: Annotated[str, typer.Option("--profile", help="zero | h100-8b | api-like")] = "zero",
    port: Annotated[int, typer.Option("--port")] = 8011,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    faults: Annotated[float, typer.Option("--faults", help="total fault rate, spread over all kinds")] = 0.0,
    fault: Annotated[Optional[list[str]], typer.Option("--fault", help="KIND=RATE (repeatable)")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    time_scale: Annotated[float, typer.Option("--time-scale", help="multiply every modelled latency")] = 1.0,
    trace: Annotated[Optional[Path], typer.Option("--trace", help="append every request body to this JSONL file")] = None,
    trace_dir: Annotated[Optional[Path], typer.Option("--trace-dir", help="folder where POST /trace {\"name\": NAME} may start NAME.jsonl (off without it)")] = None,
) -> None:
    """An OpenAI-compatible stub model server (benchmarks and tests only)."""
    from therasim.tools.stub import PROFILES, parse_faults, run_stub

    try:
        if profile not in PROFILES:
            raise TherasimError(f"unknown stub profile {profile!r}; profiles: {sorted(PROFILES)}")
        plan = parse_faults(faults, fault)
        if host not in ("127.0.0.1", "localhost", "::1"):
            err.print(f"warning: the stub listens on {host}, beyond this machine; it has no authentication", highlight=False, markup=False)
        run_stub(profile, host=host, port=port, faults=plan, seed=seed, time_scale=time_scale, trace=str(trace) if trace else None, trace_dir=str(trace_dir) if trace_dir else None, print_fn=lambda s: err.print(s, highlight=False, markup=False))
    except TherasimError as e:
        _fail(e)
    except OSError as e:
        _fail(TherasimError(f"cannot listen on {host}:{port}: {e.strerror}; pick another --port"))


@app.command()
def bench(
    profile: Annotated[str, typer.Option("--profile")] = "h100-8b",
    clients: Annotated[int, typer.Option("--clients", min=1)] = 100,
    sessions: Annotated[int, typer.Option("--sessions", min=1)] = 6,
    turns: Annotated[int, typer.Option("--turns", min=1)] = 10,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 64,
    arms: Annotated[str, typer.Option("--arms", help="comma-separated: sequential,threads,therasim")] = "sequential,threads,therasim",
    preset: Annotated[str, typer.Option("--preset")] = "lean",
    seq_clients: Annotated[int, typer.Option("--seq-clients", min=1, help="courses the sequential arm runs (then extrapolated)")] = 2,
    threads_clients: Annotated[Optional[int], typer.Option("--threads-clients", min=1)] = None,
    faults: Annotated[float, typer.Option("--faults")] = 0.0,
    fault: Annotated[Optional[list[str]], typer.Option("--fault")] = None,
    time_scale: Annotated[float, typer.Option("--time-scale")] = 1.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the result here")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out")] = None,
    no_checkpoint_sizes: Annotated[bool, typer.Option("--no-checkpoint-sizes")] = False,
) -> None:
    """Benchmark therasim against the sequential and thread-pool ways, on the stub server."""
    from therasim.tools.bench import bench as _bench
    from therasim.tools.bench import summarise
    from therasim.tools.stub import PROFILES, parse_faults

    try:
        if profile not in PROFILES:
            raise TherasimError(f"unknown stub profile {profile!r}; profiles: {sorted(PROFILES)}")
        parse_faults(faults, fault)
        res = _bench(
            profile=profile, clients=clients, sessions=sessions, turns=turns, concurrency=concurrency,
            arms=tuple(a.strip() for a in arms.split(",") if a.strip()), preset=preset, seed=seed, seq_clients=seq_clients,
            threads_clients=threads_clients, faults=faults, fault=fault, time_scale=time_scale, out_dir=out_dir,
            checkpoint_sizes=not no_checkpoint_sizes, echo=lambda s: err.print(s, highlight=False, markup=False),
        )
    except TherasimError as e:
        _fail(e)
    if json_out is not None:
        json_out.write_text(json.dumps(res, indent=2, default=str))
    out.print(summarise(res), highlight=False, markup=False)


def describe_failure(e: BaseException) -> str | None:
    """One line for an error of the machine rather than of therasim (a full disk, a
    read-only folder, a damaged database), or None for a bug (keep the traceback)."""
    import errno
    import sqlite3

    if isinstance(e, OSError) and e.errno is not None:
        where = f" ({e.filename})" if e.filename else ""
        hint = {
            errno.ENOSPC: "the disk is full; free some space and resume with `therasim run --resume RUN_DIR` (nothing already written is lost)",
            errno.EDQUOT: "the disk quota is spent; free some space and resume (nothing already written is lost)",
            errno.EROFS: "the file system is read-only; copy the run directory somewhere writable",
            errno.EACCES: "permission denied; use a folder you can write to",
            errno.EPERM: "permission denied; use a folder you can write to",
            errno.EADDRINUSE: "the address is in use; pick another --port",
            errno.EADDRNOTAVAIL: "that address is not on this machine; check --host",
        }.get(e.errno, e.strerror or str(e))
        return f"{e.strerror or type(e).__name__}{where}: {hint}"
    if isinstance(e, sqlite3.DatabaseError):
        return f"the checkpoint database is damaged or unreadable ({e}); the finished sessions in transcripts.jsonl are kept"
    if isinstance(e, UnicodeError):
        return f"a file is not UTF-8 text ({e})"
    return None


from therasim import cli_data  # noqa: E402  (export and profiles commands)

cli_data.register(app)

from therasim.eval.cli import register as _register_eval  # noqa: E402  (eval, compare)

_register_eval(app)


def main() -> None:
    try:
        app()
    except TherasimError as e:
        err.print(f"error: {_safe(e)}", highlight=False, markup=False)
        sys.exit(2)
    except Exception as e:
        line = describe_failure(e)
        if line is None:
            raise
        err.print(f"error: {_safe(line)}", highlight=False, markup=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
