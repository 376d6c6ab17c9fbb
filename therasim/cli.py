"""The therasim command line. Errors print one clear paragraph, not a traceback."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from therasim.errors import TherasimError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="therasim: longitudinal therapy simulations on open-weight models.")
config_app = typer.Typer(no_args_is_help=True, help="Example and validation of run configurations.")
app.add_typer(config_app, name="config")
out = Console()
err = Console(stderr=True)


def _fail(e: Exception, code: int = 2) -> None:
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.callback()
def _main(
    log_format: Annotated[str, typer.Option("--log-format", help="console | json (structlog on stderr)")] = "console",
    log_level: Annotated[str, typer.Option("--log-level")] = "WARNING",
) -> None:
    from therasim._logging import configure_cli_logging

    if log_format not in ("console", "json"):
        _fail(TherasimError(f"--log-format must be 'console' or 'json', got {log_format!r}"))
    configure_cli_logging(log_format, log_level)  # type: ignore[arg-type]


@config_app.command("example")
def config_example() -> None:
    """Print a commented example configuration."""
    from therasim.config import example_config_yaml

    sys.stdout.write(example_config_yaml())


@config_app.command("validate")
def config_validate(file: Path) -> None:
    """Check a configuration file; every problem names its field."""
    from therasim.config import load_config

    try:
        cfg = load_config(file)
    except TherasimError as e:
        _fail(e)
    out.print(f"[green]ok[/]: {file} is valid (preset {cfg.course.preset}, {cfg.course.sessions} sessions, models: {cfg.models.default.provider})")


def _load(config: Optional[Path]):  # type: ignore[no-untyped-def]
    from therasim.config import load_config

    try:
        return load_config(config)
    except TherasimError as e:
        _fail(e)


@app.command()
def doctor(config: Annotated[Optional[Path], typer.Argument(help="run config (default: embedded defaults)")] = None) -> None:
    """Load each configured model and the memory backend; one real generation and one
    structured output per model; report what works and what to fix."""
    from therasim.doctor import run_doctor

    cfg = _load(config)
    checks = run_doctor(cfg)
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

    try:
        code = _serve(model, host=host, port=port, extra=extra or [], health_timeout_s=health_timeout, echo=lambda s: out.print(s, highlight=False))
    except TherasimError as e:
        _fail(e)
    raise typer.Exit(code)


@app.command()
def graph(
    preset: Annotated[str, typer.Option("--preset")] = "full",
    config: Annotated[Optional[Path], typer.Option("--config")] = None,
) -> None:
    """Print the session graph as mermaid text (offline)."""
    from therasim.graphs import preset as get_preset

    name = _load(config).course.preset if config else preset
    try:
        sys.stdout.write(get_preset(name).mermaid() + "\n")
    except TherasimError as e:
        _fail(e)


@app.command()
def session(
    config: Annotated[Optional[Path], typer.Option("--config")] = None,
    profile: Annotated[str, typer.Option("--profile", help="id of a shipped example profile")] = "maria",
    turns: Annotated[Optional[int], typer.Option("--turns")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run one session on an example profile and print the transcript."""
    from therasim.context import SimContext
    from therasim.graphs import preset as get_preset
    from therasim.graphs.session import initial_session_state, run_session
    from therasim.profiles import example_profiles
    from therasim.providers import ModelPool

    cfg = _load(config)
    course = cfg.course.model_copy(update={k: v for k, v in {"max_turns": turns, "preset": preset}.items() if v is not None})
    profiles = {p.id: p for p in example_profiles()}
    if profile not in profiles:
        _fail(TherasimError(f"--profile {profile!r} is not a shipped example; choose one of {sorted(profiles)}"))
    try:
        g = get_preset(course.preset).compile()
        ctx = SimContext(models=ModelPool(cfg.models), course=course, seed=cfg.seed, structured_attempts=cfg.structured_attempts)
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
        out.print(f"[bold]{t['speaker']}[/]: {t['text']}{extra}", highlight=False)
    out.print(f"session ended: {st.get('end_reason')}")


def main() -> None:
    try:
        app()
    except TherasimError as e:
        err.print(f"error: {e}", highlight=False, markup=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
