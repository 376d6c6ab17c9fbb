"""CLI commands for data in and out: ``therasim export`` and ``therasim profiles``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from therasim.errors import TherasimError

profiles_app = typer.Typer(no_args_is_help=True, help="Client profiles: import foreign formats, validate, sample, show.")


def export(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    to: Annotated[str, typer.Option("--to", help="sft | dpo | mindeval")],
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="new folder for the dataset (datasets.load_from_disk reads it)")],
    role: Annotated[str, typer.Option("--role", help="counselor | client (sft, dpo)")] = "counselor",
) -> None:
    """Export a run as a chat dataset: SFT rows with the exact messages the role saw,
    DPO pairs from forks and replays ranked by evals/ scores, or MindEval-shaped sessions."""
    from therasim.cli import _fail as fail
    from therasim.cli import out
    from therasim.export import export_run

    try:
        info = export_run(run_dir, to, out_dir, role=role)  # type: ignore[arg-type]
    except TherasimError as e:
        fail(e)
        return
    out.print(json.dumps(info), highlight=False, markup=False, soft_wrap=True)


@profiles_app.command("import")
def profiles_import(
    fmt: Annotated[str, typer.Argument(help="mindeval | patient-psi")],
    file: Annotated[Path, typer.Argument(help="the foreign profiles file (JSONL or JSON)")],
    out_file: Annotated[Path, typer.Option("-o", "--out", help="therasim profiles JSONL to write")],
) -> None:
    """Convert MindEval or Patient-Psi profiles to therasim profiles (docs/profiles_import.md)."""
    from therasim.cli import _fail as fail
    from therasim.cli import err, out
    from therasim.profile_import import import_profiles

    try:
        profiles, problems = import_profiles(fmt, file)
    except TherasimError as e:
        fail(e)
        return
    with open(out_file, "w", encoding="utf-8") as f:
        for p in profiles:
            f.write(json.dumps(p.model_dump(mode="json"), ensure_ascii=False) + "\n")
    for pr in problems:
        err.print(f"skipped: {pr}", highlight=False, markup=False)
    out.print(f"imported {len(profiles)} profile(s) to {out_file}" + (f"; {len(problems)} record(s) skipped" if problems else ""), highlight=False, markup=False)
    if problems and not profiles:
        raise typer.Exit(2)


@profiles_app.command("validate")
def profiles_validate(file: Annotated[Path, typer.Argument(help="profiles YAML or JSONL")]) -> None:
    """Check every record; each problem names the record and field."""
    from therasim.cli import _or_fail, err, out
    from therasim.profiles import load_profiles

    ok, problems = _or_fail(lambda: load_profiles(file))
    for pr in problems:
        err.print(f"- {pr}", highlight=False, markup=False)
    out.print(f"{file}: {len(ok)} valid, {len(problems)} invalid", highlight=False, markup=False)
    if problems:
        raise typer.Exit(1)


@profiles_app.command("sample")
def profiles_sample(
    n: Annotated[int, typer.Argument(help="how many")],
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out_file: Annotated[Optional[Path], typer.Option("-o", "--out", help="JSONL file (default: stdout)")] = None,
) -> None:
    """Draw N diverse profiles with a seed (the run sampler)."""
    from therasim.cli import _fail as fail
    from therasim.profiles import sample_profiles

    if n < 1:
        fail(TherasimError(f"N must be at least 1, got {n}"))
    lines = [json.dumps(p.model_dump(mode="json"), ensure_ascii=False) for p in sample_profiles(n, seed=seed)]
    if out_file is None:
        sys.stdout.write("\n".join(lines) + "\n")
    else:
        out_file.write_text("\n".join(lines) + "\n", encoding="utf-8")


@profiles_app.command("show")
def profiles_show(
    file: Annotated[Path, typer.Argument(help="profiles YAML or JSONL")],
    profile_id: Annotated[Optional[str], typer.Argument(help="id of one profile (default: list them)")] = None,
) -> None:
    """List the profiles in a file, or print one in full."""
    from therasim.cli import _fail as fail
    from therasim.cli import _or_fail, out
    from therasim.profiles import load_profiles

    ok, problems = _or_fail(lambda: load_profiles(file))
    if profile_id is None:
        for p in ok:
            out.print(f"{p.id}\t{p.intake.name}, {p.intake.age}\t{p.intake.presenting_problem[:90]}", highlight=False, markup=False)
        if problems:
            out.print(f"({len(problems)} invalid record(s); `therasim profiles validate {file}` lists them)", highlight=False, markup=False)
        return
    match = [p for p in ok if p.id == profile_id]
    if not match:
        fail(TherasimError(f"no valid profile {profile_id!r} in {file}; ids: {[p.id for p in ok][:20]}"))
        return
    sys.stdout.write(json.dumps(match[0].model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")


async def print_streamed_session(graph: Any, state: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Print speech as it is generated (``therasim session --stream``); returns the final state."""
    from therasim.streaming import stream_session

    speaker = None
    final: dict[str, Any] = {}
    try:
        async for kind, payload in stream_session(graph, state, ctx):
            if kind == "speech":
                node, text = payload
                if node != speaker:
                    sys.stdout.write(("\n" if speaker else "") + f"{node}: ")
                    speaker = node
                sys.stdout.write(text)
                sys.stdout.flush()
            elif kind == "event" and payload.get("event") == "exchange":
                speaker = speaker and (sys.stdout.write("\n") and None)
            elif kind == "final":
                final = payload
    finally:
        await ctx.models.aclose()
    sys.stdout.write("\n")
    return final


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.add_typer(profiles_app, name="profiles")
