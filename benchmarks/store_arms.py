"""The durable write's CPU in a real run, per checkpoint setting, arms alternated in one
process: the runner's cohort (``arun_dir``: run files, SQLite group-commit checkpoints,
lean, memory off unless ``--memory``) on a stub, once per arm per round, the arms' order
reversed every other round. The saver's ``_write`` (SQLite ``executemany``, the writer's
future), ``_commit`` (SQLite commit) and the serializer's ``dumps_typed`` (msgpack and
compression) are wrapped in thread-CPU timers (~1 us each, inside the figures); also the
process CPU per model call and the checkpoint file's size (with its WAL). Needs a stub:

    therasim stub --profile zero --port 8011 &
    python benchmarks/store_arms.py --url http://127.0.0.1:8011 --courses 64 --rounds 6 \\
        --arms "3,256,4096;1,512,16384"

An arm is ``LEVEL,MIN_SIZE,PAGE_SIZE``: the zstd level, the smallest blob compressed and
a new checkpoint file's page size (``3,256,4096``: what session 16 of #17 wrote;
``1,512,16384``: the defaults since session 17).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cohort_scaling as cs  # the cohort's config and warm-up

tt = time.thread_time
T: dict[str, float] = {"write": 0.0, "commit": 0.0, "serde": 0.0}


def _timers() -> None:
    from therasim._internal import checkpoint as ck

    w0, c0, d0 = ck.GroupCommitSaver._write, ck.GroupCommitSaver._commit, ck.CompressedSerializer.dumps_typed

    def write(self: Any, sql: str, rows: Any) -> Any:
        t = tt()
        try:
            return w0(self, sql, rows)
        finally:
            T["write"] += tt() - t

    def commit(self: Any) -> None:
        t = tt()
        try:
            c0(self)
        finally:
            T["commit"] += tt() - t

    def dumps(self: Any, obj: Any) -> Any:
        t = tt()
        try:
            return d0(self, obj)
        finally:
            T["serde"] += tt() - t

    ck.GroupCommitSaver._write, ck.GroupCommitSaver._commit, ck.CompressedSerializer.dumps_typed = write, commit, dumps  # type: ignore[method-assign]


def once(arm: str, tag: str, url: str, n: int, memory: bool, root: Path) -> dict[str, float]:
    import uvloop

    from therasim._internal import checkpoint as ck
    from therasim.runner import arun_dir, start_run
    from therasim.tools.bench import _get

    old = (ck.ZSTD_LEVEL, ck.ZSTD_MIN_SIZE, ck.PAGE_SIZE)
    ck.ZSTD_LEVEL, ck.ZSTD_MIN_SIZE, ck.PAGE_SIZE = map(int, arm.split(","))
    try:
        rd, _ = start_run(cs._config(url, n, memory, (2, 4)), sample=n, out=root, run_id=tag)
        r0 = int(_get(url + "/metrics")["requests"])
        T.update(write=0.0, commit=0.0, serde=0.0)
        c0 = time.process_time()
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            out = r.run(arun_dir(rd, concurrency=n))
        c = time.process_time() - c0
    finally:
        ck.ZSTD_LEVEL, ck.ZSTD_MIN_SIZE, ck.PAGE_SIZE = old
    calls = max(int(_get(url + "/metrics")["requests"]) - r0, 1)
    if len(out.completed) != n:
        raise SystemExit(f"arm {arm}: {len(out.completed)} of {n} courses completed: {out.failed}")
    size = sum(f.stat().st_size for f in rd.root.glob("checkpoints.sqlite*"))
    shutil.rmtree(rd.root, ignore_errors=True)
    return {
        "cpu_ms_per_call": 1000 * c / calls,
        "sqlite_write_us_per_call": 1e6 * T["write"] / calls,
        "sqlite_commit_us_per_call": 1e6 * T["commit"] / calls,
        "sqlite_us_per_call": 1e6 * (T["write"] + T["commit"]) / calls,
        "serde_us_per_call": 1e6 * T["serde"] / calls,
        "checkpoint_bytes": size,
        "calls": calls,
        "load": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8011")
    ap.add_argument("--courses", type=int, default=64, help="courses, all in flight")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--memory", action="store_true", help="memory on (off by default: less noise)")
    ap.add_argument("--arms", default="3,256,4096;1,512,16384", help="';'-separated LEVEL,MIN_SIZE,PAGE_SIZE arms, the first is the baseline")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    arms = a.arms.split(";")
    root = Path(tempfile.mkdtemp(prefix="store-arms-"))
    try:
        cs._warm_up(a.url, root, a.memory, "w", (2, 4), None)
        _timers()
        runs: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
        for i in range(a.rounds):
            for arm in arms if i % 2 == 0 else arms[::-1]:
                runs[arm].append(once(arm, f"a{arms.index(arm)}r{i}", a.url, a.courses, a.memory, root))
                print(arm, i, json.dumps({k: round(v, 3) for k, v in runs[arm][-1].items()}), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {arm: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for arm, rs in runs.items()}
    base = med[arms[0]]
    print(f"\n{a.courses} courses x 2 sessions x 4 turns, all in flight, memory {'on' if a.memory else 'off'}, {a.rounds} rounds alternated; medians (ratio to the first arm)")
    print("| arm (zstd level, least blob compressed, page size) | SQLite executemany us/call | commit us/call | SQLite us/call | serialisation us/call | checkpoint file bytes | process CPU ms/call |")
    print("|---|---|---|---|---|---|---|")
    for arm in arms:
        m = med[arm]
        cells = [f"{m[k]:.1f} ({m[k] / base[k]:.2f})" for k in ("sqlite_write_us_per_call", "sqlite_commit_us_per_call", "sqlite_us_per_call", "serde_us_per_call")]
        print(f"| {arm} | {' | '.join(cells)} | {m['checkpoint_bytes']:,.0f} ({m['checkpoint_bytes'] / base['checkpoint_bytes']:.3f}) | {m['cpu_ms_per_call']:.3f} ({m['cpu_ms_per_call'] / base['cpu_ms_per_call']:.3f}) |")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "runs": runs, "medians": med}, indent=1))


if __name__ == "__main__":
    main()
