"""What a superstep's checkpoint save costs the orchestrator: lean sessions on the
run's checkpointer (SQLite, group commit, compressed blobs, ``durability="sync"``)
with a scripted model (no server, no HTTP), in one process, arms alternated round
by round (the arm that goes first rotates):

- ``scheduled``: each checkpoint and each task's writes saved by a task LangGraph's
  background executor schedules (``aput`` / ``aput_writes``), as before session 12;
- ``inline``: the lean executor executes them at once (``graphs/executor.py``,
  ``_inline_saves``; the default now).

Reported per arm: orchestrator CPU per superstep (``time.process_time`` over the
run / session checkpoints written; the scripted model's own work is in it and the
same in every arm) and checkpoint bytes; and the saving per superstep against
``scheduled``. The transcripts of every arm are checked to be the same.

    python benchmarks/checkpoint_saves.py --sessions 16 --turns 6 --rounds 5 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ARMS = ("scheduled", "inline")


def _arm(name: str) -> None:
    """Switch inline saves on or off (a module attribute, read per run)."""
    from therasim.graphs import executor

    if not hasattr(executor, "_inline_saves_on"):
        executor._inline_saves_on = executor._inline_saves  # type: ignore[attr-defined]
    executor._inline_saves = executor._inline_saves_on if name == "inline" else (lambda loop, submit: submit)  # type: ignore[attr-defined]


async def _run(sessions: int, turns: int, path: str) -> list[list[str]]:
    from therasim._internal.checkpoint import open_checkpointer
    from therasim.config import CourseSpec
    from therasim.context import SimContext
    from therasim.graphs import preset
    from therasim.graphs.session import initial_session_state, run_session
    from therasim.profiles import sample_profiles
    from therasim.providers import ModelPool
    from therasim.testing import SchemaFakeChatModel

    ctx = SimContext(models=ModelPool({"default": SchemaFakeChatModel()}), course=CourseSpec(max_turns=turns))
    profiles = sample_profiles(sessions, seed=3)
    async with open_checkpointer(path) as saver:
        g = preset("lean").compile(checkpointer=saver)
        finals = await asyncio.gather(*(run_session(g, initial_session_state(p, run_id="b"), ctx, thread_id=f"b/{p.id}/s1") for p in profiles))
    return [[t["text"] for t in f["transcript"]] for f in finals]


def measure(sessions: int, turns: int, rounds: int) -> dict[str, Any]:
    _arm("inline")
    asyncio.run(_run(2, 2, tempfile.mktemp(suffix=".sqlite")))  # imports, caches
    per: dict[str, list[dict[str, float]]] = {a: [] for a in ARMS}
    transcripts: dict[str, Any] = {}
    for r in range(rounds):
        order = ARMS[r % len(ARMS) :] + ARMS[: r % len(ARMS)]
        for arm in order:
            _arm(arm)
            path = tempfile.mktemp(suffix=".sqlite")
            gc.collect()  # each run starts from a collected heap (else the later arm of a round pays for the earlier's garbage)
            c0 = time.process_time()
            out = asyncio.run(_run(sessions, turns, path))
            cpu = time.process_time() - c0
            with sqlite3.connect(path) as con:
                (steps,) = con.execute("SELECT count(*) FROM checkpoints").fetchone()
                (nbytes,) = con.execute("SELECT coalesce(sum(length(checkpoint)), 0) + (SELECT coalesce(sum(length(value)), 0) FROM writes) FROM checkpoints").fetchone()
            Path(path).unlink(missing_ok=True)
            transcripts.setdefault(arm, out)
            per[arm].append({"cpu_us_per_step": 1e6 * cpu / steps, "steps": steps, "bytes": nbytes})
    _arm("inline")
    med = {a: statistics.median(x["cpu_us_per_step"] for x in per[a]) for a in ARMS}
    base = med["scheduled"]
    return {
        "sessions": sessions,
        "turns": turns,
        "rounds": rounds,
        "per_round": per,
        "median_cpu_us_per_step": med,
        "saved_us_per_step": {a: base - med[a] for a in ARMS},
        "ratio_to_scheduled": {a: med[a] / base for a in ARMS},
        "round_ratios": [b["cpu_us_per_step"] / s["cpu_us_per_step"] for b, s in zip(per["inline"], per["scheduled"], strict=True)],
        "bytes": {a: per[a][0]["bytes"] for a in ARMS},
        "transcripts_identical": all(transcripts[a] == transcripts["scheduled"] for a in ARMS),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    res = measure(a.sessions, a.turns, a.rounds)
    print(f"checkpoint saves: {a.sessions} lean sessions x {a.turns} turns, scripted model, {a.rounds} rounds alternated in one process")
    print("| arm | CPU us per superstep (median) | saved vs scheduled | ratio | checkpoint bytes |")
    print("|---|---|---|---|---|")
    for arm in ARMS:
        print(f"| {arm} | {res['median_cpu_us_per_step'][arm]:.0f} | {res['saved_us_per_step'][arm]:.0f} | {res['ratio_to_scheduled'][arm]:.3f} | {res['bytes'][arm]:,} |")
    print(f"inline / scheduled per round: {', '.join(f'{x:.3f}' for x in res['round_ratios'])}; transcripts identical: {res['transcripts_identical']}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
