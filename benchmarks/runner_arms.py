"""Arms of the runner alternated in one process: the same cohort (``arun_dir``: run
files, SQLite checkpoints, embedded Chroma memory with the hash embedding, lean) on
the ``zero`` stub, once per arm per round, the arms' order reversed every other round.
CPU per model call of the process and of the event loop's thread, kernel CPU, context
switches, minor faults and collector pauses per call. Needs a running stub:

    therasim stub --profile zero --port 8011 &
    python benchmarks/runner_arms.py --url http://127.0.0.1:8011 --courses 32 --rounds 2 \\
        --arms "asyncio:nofresh;asyncio;uvloop"

An arm is ``LOOP[:OPTION/OPTION...]``: LOOP ``asyncio`` or ``uvloop`` (the loop the
cohort runs on); options ``nofresh`` (on a tree with ``ChromaMemoryStore.fresh``, session 13's
first increment, since reverted: that method a no-op), ``gc=A,B,C`` (collector thresholds set
before the run; the runner keeps the first at 20,000 or more), ``fold=0`` / ``fold=1`` (the
layout the run is made in: ``THERASIM_FOLD_CALLS`` while it starts, pinned in its manifest) and
``codec=zlib`` / ``codec=zstd`` (the checkpoint blobs' codec: ``THERASIM_CHECKPOINT_CODEC``
while it starts, recorded in its manifest and kept by the run); ``saves=tasks`` (on a tree with
``graphs.executor._Saves``, session 17: the lean loop's checkpoint and write saves submitted as
LangGraph submits them, an asyncio task each), ``read=langgraph`` (on a tree with
``graphs.executor._local_read``: a router's fresh read copies every channel, as LangGraph's does),
``ck=LEVEL,MIN_SIZE,PAGE_SIZE`` (the zstd level, the smallest blob compressed and a new
checkpoint file's page size the run is made with: ``ck=3,256,4096`` is what session 16 of #17
wrote, the defaults since session 17 are 1,512,16384) and ``mem=0`` (the cohort without memory,
``course.memory: false``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cohort_scaling as cs  # the cohort's config and warm-up


def once(arm: str, tag: str, url: str, n: int, conc: int, shape: tuple[int, int], root: Path, pauses: list[float]) -> dict[str, float]:
    from therasim._internal import checkpoint as ck
    from therasim.memory.chroma import ChromaMemoryStore
    from therasim.runner import arun_dir, start_run
    from therasim.tools.bench import _get

    loop_name, _, rest = arm.partition(":")
    opts = [o for o in rest.split("/") if o]
    real_fresh = getattr(ChromaMemoryStore, "fresh", None)
    if "nofresh" in opts and real_fresh is not None:
        ChromaMemoryStore.fresh = lambda self, cid: None  # type: ignore[method-assign]
    import therasim.graphs.executor as ex

    real_saves = getattr(ex, "_saves_submit", None)
    if "saves=tasks" in opts and real_saves is not None:
        ex._saves_submit = lambda submit, saver: submit
    real_read = getattr(ex, "_local_read", None)
    if "read=langgraph" in opts and real_read is not None:
        from langgraph.pregel._algo import local_read

        ex._local_read = local_read
    old = gc.get_threshold()
    old_ck = (ck.ZSTD_LEVEL, ck.ZSTD_MIN_SIZE, ck.PAGE_SIZE)
    memory = "mem=0" not in opts
    old_env = {k: os.environ.get(k) for k in ("THERASIM_FOLD_CALLS", "THERASIM_CHECKPOINT_CODEC")}
    for o in opts:
        if o.startswith("gc="):
            gc.set_threshold(*map(int, o[3:].split(",")))
        if o.startswith("env="):  # NAME=VALUE set while the run starts and runs
            k, _, v = o[4:].partition("=")
            old_env.setdefault(k, os.environ.get(k))
            os.environ[k] = v
        if o.startswith("fold="):  # the layout the run is made in (pinned in its manifest by start_run)
            os.environ["THERASIM_FOLD_CALLS"] = o[5:]
        if o.startswith("codec="):  # the checkpoint codec the run is made with (recorded in its manifest)
            os.environ["THERASIM_CHECKPOINT_CODEC"] = o[6:]
        if o.startswith("ck="):  # zstd level, smallest blob compressed, a new checkpoint file's page size
            ck.ZSTD_LEVEL, ck.ZSTD_MIN_SIZE, ck.PAGE_SIZE = map(int, o[3:].split(","))
    factory: Any = asyncio.new_event_loop
    if loop_name == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    try:
        rd, _ = start_run(cs._config(url, conc, memory, shape), sample=n, out=root, run_id=tag)
        r0 = int(_get(url + "/metrics")["requests"])
        del pauses[:]
        c0, t0, ru0 = time.process_time(), time.thread_time(), resource.getrusage(resource.RUSAGE_SELF)
        with asyncio.Runner(loop_factory=factory) as r:
            out = r.run(arun_dir(rd, concurrency=conc))
        c, t, ru = time.process_time() - c0, time.thread_time() - t0, resource.getrusage(resource.RUSAGE_SELF)
    finally:
        gc.set_threshold(*old)
        ck.ZSTD_LEVEL, ck.ZSTD_MIN_SIZE, ck.PAGE_SIZE = old_ck
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if real_fresh is not None:
            ChromaMemoryStore.fresh = real_fresh  # type: ignore[method-assign]
        if real_saves is not None:
            ex._saves_submit = real_saves
        if real_read is not None:
            ex._local_read = real_read
    calls = max(int(_get(url + "/metrics")["requests"]) - r0, 1)
    if len(out.completed) != n:
        raise SystemExit(f"arm {arm}: {len(out.completed)} of {n} courses completed: {out.failed}")
    return {
        "cpu_ms_per_call": 1000 * c / calls,
        "loop_thread_ms_per_call": 1000 * t / calls,
        "calls": calls,
        "sys_ms_per_call": 1000 * (ru.ru_stime - ru0.ru_stime) / calls,
        "voluntary_switches_per_call": (ru.ru_nvcsw - ru0.ru_nvcsw) / calls,
        "involuntary_switches_per_call": (ru.ru_nivcsw - ru0.ru_nivcsw) / calls,
        "minor_faults_per_call": (ru.ru_minflt - ru0.ru_minflt) / calls,
        "gc_ms_per_call": 1000 * sum(pauses) / calls,
        "gc_max_ms": 1000 * max(pauses, default=0.0),
        "load": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8011")
    ap.add_argument("--courses", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=None, help="courses in flight (default: all)")
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--arms", default="asyncio;uvloop", help="';'-separated arms, the first is the baseline")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    arms = a.arms.split(";")
    shape = (a.sessions, a.turns)
    root = Path(tempfile.mkdtemp(prefix="runner-arms-"))
    cs._warm_up(a.url, root, True, "w", shape, None)
    pauses: list[float] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses.append(time.perf_counter() - started.pop())

    gc.callbacks.append(on_gc)
    runs: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    for i in range(a.rounds):
        for arm in arms if i % 2 == 0 else arms[::-1]:
            tag = f"a{arms.index(arm)}r{i}"
            runs[arm].append(once(arm, tag, a.url, a.courses, a.concurrency or a.courses, shape, root, pauses))
            print(arm, i, json.dumps({k: round(v, 4) for k, v in runs[arm][-1].items()}), flush=True)
    med = {arm: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for arm, rs in runs.items()}
    print(f"\n{a.courses} courses x {a.sessions} sessions x {a.turns} turns, {a.concurrency or a.courses} in flight, {a.rounds} rounds alternated; medians")
    print("| arm | CPU ms/call | loop thread ms/call | kernel ms/call | voluntary switches/call | collector ms/call | CPU vs first arm, per round |")
    print("|---|---|---|---|---|---|---|")
    for arm in arms:
        m = med[arm]
        ratios = ", ".join(f"{x['cpu_ms_per_call'] / y['cpu_ms_per_call']:.3f}" for x, y in zip(runs[arm], runs[arms[0]], strict=True))
        print(f"| {arm} | {m['cpu_ms_per_call']:.3f} | {m['loop_thread_ms_per_call']:.3f} | {m['sys_ms_per_call']:.3f} | {m['voluntary_switches_per_call']:.2f} | {m['gc_ms_per_call']:.3f} | {ratios} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "runs": runs, "medians": med}, indent=1))


if __name__ == "__main__":
    main()
