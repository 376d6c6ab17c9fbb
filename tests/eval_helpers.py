"""Run directories with hand-written sessions, for the evaluation tests: the
manifest and cohort come from the real start_run; the transcripts are written
here (no model runs)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from therasim.profiles import example_profiles
from therasim.rundir import JsonlWriter, RunDir
from therasim.runner import start_run


def measures(phq: int | None, gad: int | None, when: str) -> dict[str, Any]:
    return {"when": when, "phq9": None if phq is None else {"total": phq}, "gad7": None if gad is None else {"total": gad}}


def turn(i: int, speaker: str, text: str, strategy: str | None = None, risk: str | None = None, **kw: Any) -> dict[str, Any]:
    return {"index": i, "exchange": i // 2, "speaker": speaker, "text": text, "strategy": {"strategy": strategy} if strategy else None,
            "risk": {"level": risk} if risk else None, "n_calls": 1, "call_errors": 0, **kw}


def make_run(tmp: Path, sessions: dict[tuple[str, int], dict[str, Any]], *, planned: int = 2, run_id: str = "r", branches: list[dict[str, Any]] | None = None) -> RunDir:
    """A run directory whose transcripts.jsonl holds ``sessions`` ((client, n) -> record fields)."""
    cfg = {"course": {"preset": "minimal", "sessions": planned, "max_turns": 3}, "memory": {"backend": "none"}, "seed": 1}
    rd, _ = start_run(cfg, profiles=example_profiles(), out=tmp, run_id=run_id)
    w = JsonlWriter(rd.transcripts)
    for (cid, n), rec in sessions.items():
        w.write({"run_id": run_id, "client_id": cid, "session": n, "branch": None, "modality": "cbt", "goals": [], "end_reason": "max_turns", "measures": None, "measures_after": None, **rec})
    w.close()
    if branches:
        b = JsonlWriter(rd.branches)
        for rec in branches:
            b.write({"run_id": run_id, "modality": "cbt", "goals": [], "end_reason": "max_turns", "measures": None, "measures_after": None, "kind": "fork", "from_turn": 1, **rec})
        b.close()
    return rd


@contextlib.contextmanager
def stub_server(profile: str = "zero", time_scale: float = 1.0) -> Iterator[str]:
    """`therasim stub` in a subprocess; yields its /v1 URL."""
    from conftest import start_stub

    proc, port = start_stub("--profile", profile, "--time-scale", str(time_scale), timeout=60)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)
