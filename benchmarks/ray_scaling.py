"""Ray executor scaling: the same cohort on the `zero` stub profile (answers at
once, so only orchestration is measured) through the local executor and through
1 and 2 Ray workers, checkpoints in a throw-away Postgres; model calls per second
in total and per worker, and orchestrator CPU per call in each worker.

Starts everything itself on 127.0.0.1 (stub, Postgres, a Ray head and a worker node
of ``--cpus`` CPUs each, and a `chroma run` server with ``--memory``) and stops it
at the end:

    python benchmarks/ray_scaling.py [--clients 48] [--sessions 2] [--turns 3]
        [--concurrency 16] [--repeat 1] [--memory] [--json docs/bench-results/ray_scaling.json]

Needs the `ray` and `postgres` extras and PostgreSQL 15 server binaries
(tests/scaleout_services.py says where it looks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from scaleout_services import Postgres, RayCluster, chroma_server, stub_server

DSN_ENV = "THERASIM_BENCH_PG_DSN"


def _calls(rd: Path) -> int:
    from therasim._internal.rundir import read_jsonl

    return sum(1 for e in read_jsonl(rd / "events.jsonl") if e.get("event") == "node_call")


def one(arm: str, workers: int, cfg: dict[str, Any], clients: int, out: Path, address: str) -> dict[str, Any]:
    from therasim.ray_executor import RayExecutor
    from therasim.runner import arun_dir, start_run

    rd, _ = start_run(cfg, sample=clients, out=out)
    ex = RayExecutor(address, workers) if arm == "ray" else None
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    res = asyncio.run(arun_dir(rd, executor=ex))
    wall = time.perf_counter() - t0
    calls = _calls(rd.root)
    row: dict[str, Any] = {"arm": arm if arm == "local" else f"ray x{workers}", "workers": workers, "courses": len(res.completed), "calls": calls, "wall_s": round(wall, 2)}
    if ex is not None:
        busy = ex.stats["run_s"]  # from the actors being up to the last result
        cpu = ex.stats.get("worker_cpu_s") or []
        row.update(
            run_s=round(busy, 2),
            calls_per_s=round(calls / busy, 1),
            calls_per_s_per_worker=round(calls / busy / workers, 1),
            worker_cpu_ms_per_call=round(1000 * sum(cpu) / calls, 2) if cpu else None,
            driver_cpu_ms_per_call=round(1000 * (time.process_time() - cpu0) / calls, 2),
            actor_start_s=round(ex.stats["start_s"], 2),
            actor_deaths=ex.stats["actor_deaths"],
        )
    else:
        row.update(run_s=round(wall, 2), calls_per_s=round(calls / wall, 1), calls_per_s_per_worker=round(calls / wall, 1), worker_cpu_ms_per_call=round(1000 * (time.process_time() - cpu0) / calls, 2))
    assert res.ok and len(res.completed) == clients, res.summary()
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=48)
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--preset", default="lean")
    ap.add_argument("--concurrency", type=int, default=16, help="courses in flight per worker")
    ap.add_argument("--cpus", type=int, default=1, help="CPUs of each Ray node (head and worker)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--memory", action="store_true", help="cross-session memory on a `chroma run` server")
    ap.add_argument("--json")
    a = ap.parse_args()
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    tmp = Path(tempfile.mkdtemp(prefix="raybench"))
    made: list[Any] = []
    try:
        pg = Postgres()
        made.append(pg)
        stub = stub_server("--profile", "zero")
        made.append(stub)
        mem: dict[str, Any] = {"backend": "none"}
        if a.memory:
            ch = chroma_server(tmp / "chroma")
            made.append(ch)
            mem = {"backend": "chroma-http", "port": ch.port, "embedding": "hash"}
        rc = RayCluster(worker_nodes=1, cpus=a.cpus)
        made.append(rc)
        os.environ[DSN_ENV] = pg.dsn
        cfg = {
            "models": {"default": {"provider": "openai", "model": "stub", "base_url": f"http://127.0.0.1:{stub.port}/v1", "max_retries": 4, "timeout_s": 30}},
            "course": {"preset": a.preset, "sessions": a.sessions, "max_turns": a.turns, "memory": a.memory},
            "memory": mem,
            "checkpointer": {"backend": "postgres", "dsn_env": DSN_ENV},
            "concurrency": a.concurrency,
            "seed": 3,
        }
        rows: list[dict[str, Any]] = []
        for r in range(a.repeat):
            for arm, w in (("local", 1), ("ray", 1), ("ray", 2)):
                row = one(arm, w, cfg, a.clients, tmp / f"runs-{r}", rc.address)
                row["repeat"] = r
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        for m in reversed(made):
            try:
                m.close()
            except Exception as e:
                print(f"cleanup: {e}", file=sys.stderr)
    med: list[dict[str, Any]] = []
    for name in dict.fromkeys(r["arm"] for r in rows):
        rs = [r for r in rows if r["arm"] == name]
        m = {k: (statistics.median(r[k] for r in rs) if isinstance(rs[0][k], (int, float)) and not isinstance(rs[0][k], bool) and all(r.get(k) is not None for r in rs) else rs[0][k]) for k in rs[0]}
        med.append(m)
    base = next(m for m in med if m["arm"] == "ray x1")
    print(f"cohort: {a.clients} courses x {a.sessions} sessions x {a.turns} turns, preset {a.preset}, zero stub, Postgres checkpoints, memory {'on' if a.memory else 'off'}, {a.concurrency} courses in flight per worker, medians of {a.repeat}, {os.cpu_count()} cores")
    print("| executor | calls | run s | calls/s total | calls/s per worker | worker CPU ms/call | speedup vs 1 worker |")
    print("|---|---|---|---|---|---|---|")
    for m in med:
        sp = round(m["calls_per_s"] / base["calls_per_s"], 2)
        print(f"| {m['arm']} | {m['calls']} | {m['run_s']} | {m['calls_per_s']} | {m['calls_per_s_per_worker']} | {m.get('worker_cpu_ms_per_call')} | {sp} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "cores": os.cpu_count(), "rows": rows, "medians": med}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
