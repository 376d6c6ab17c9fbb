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
wrote, the defaults since session 17 are 1,512,16384), ``mem=0`` (the cohort without memory,
``course.memory: false``), ``files=0`` (on a tree with ``rundir._ENCODERS``, session 18: the
run files' records encoded by ``json.dumps`` each, the event log's stamps by a ``datetime``
each, as before), ``ser=0`` (on a tree with ``checkpoint._MSGPACK``, session 18: the
checkpoint serializer through ``JsonPlusSerializer.dumps_typed``, as before) and ``records=0`` (on
a tree with ``records._EXPORTS``, session 18: a transcript turn's export as before, the slots'
sets per turn and ``json.dumps`` per ``extra`` field). ``--timers``: the
loop thread's CPU in the store's pieces (the event log, the JSONL writers, the checkpoint
statements and commits) per call, timed (:func:`_timers`).
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

#: ``--timers``: the loop thread's CPU in the store's pieces, by piece (seconds, reset per run)
PIECES: dict[str, float] = {}


def _timers() -> None:
    """Wrap the store's pieces in thread-CPU timers (``time.thread_time``, ~1 us a pair,
    inside the figures): the transcript records' ``dataset_record``, the event log's
    ``EventLogFile.log``, the JSONL writers'
    ``JsonlWriter.write`` (transcripts, course status, prompt log), the durable write's
    statements ``GroupCommitSaver.put_rows`` / ``put_write_rows`` (serialisation and
    SQLite) and its ``_commit``. Not nested: each is timed once."""
    from therasim import runner
    from therasim._internal import checkpoint as ck
    from therasim._internal import rundir

    tt = time.thread_time

    def wrap(owner: Any, name: str, key: str) -> None:
        fn = getattr(owner, name)
        PIECES[key] = 0.0

        def timed(*a: Any, **kw: Any) -> Any:
            t = tt()
            try:
                return fn(*a, **kw)
            finally:
                PIECES[key] += tt() - t

        setattr(owner, name, timed)

    wrap(runner, "dataset_record", "dataset_record_us")
    wrap(runner.EventLogFile, "log", "events_us")
    wrap(rundir.JsonlWriter, "write", "jsonl_us")
    wrap(ck.GroupCommitSaver, "put_rows", "put_rows_us")
    wrap(ck.GroupCommitSaver, "put_write_rows", "put_write_rows_us")
    wrap(ck.GroupCommitSaver, "_commit", "commit_us")


def _dumps_typed_before(self: Any, obj: Any) -> tuple[str, bytes]:
    """``CompressedSerializer.dumps_typed`` as it was before session 18 (through
    ``JsonPlusSerializer.dumps_typed``)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from therasim._internal import checkpoint as ck

    typ, data = JsonPlusSerializer.dumps_typed(self, obj)
    if len(data) < self.min_size or typ.startswith((ck._TAG, ck._ZTAG)):
        return typ, data
    if self._zs is not None:
        return ck._ZTAG + typ, self._zs.compress(data, self.level)
    return ck._TAG + typ, ck.zlib.compress(data, self.level)


def _export_turn_before(t: Any, contract: Any = None) -> dict[str, Any]:
    """``records.export_turn`` as it was before session 18 (the slots' sets per turn,
    ``json.dumps`` per ``extra`` field)."""
    from therasim.contract import BUILTIN_SLOTS, TURN_CORE

    calls = t.get("calls") or {}
    out: dict[str, Any] = {k: t.get(k) for k in ("index", "exchange", "speaker", "text")}
    for s in BUILTIN_SLOTS.values():
        if callable(s.export):
            out[s.name] = s.export(t.get(s.name))
    out["n_calls"] = sum(len(v) for v in calls.values())
    out["call_errors"] = sum(1 for v in calls.values() for c in v if c.get("error"))
    builtin = {s.name for s in BUILTIN_SLOTS.values()} | set(TURN_CORE)
    if contract is not None:
        builtin |= {s.name for s in contract.slots.values() if s.export is None}
    extra = {k: json.dumps(v, default=str, ensure_ascii=False) for k, v in t.items() if k not in builtin}
    if extra:
        out["extra"] = extra
    return out


def _iso_now_datetime() -> str:
    """The event log's stamp as ``rundir.iso_now`` made it before session 18 (a datetime each)."""
    import datetime

    return datetime.datetime.now(tz=datetime.timezone.utc).isoformat().replace("+00:00", "Z")


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
    import therasim.runner as runner_mod
    from therasim._internal import rundir

    real_files = (getattr(rundir, "_ENCODERS", None), runner_mod.iso_now)
    if "files=0" in opts and real_files[0] is not None:
        rundir._ENCODERS = None
        runner_mod.iso_now = _iso_now_datetime
    from therasim import records

    real_export = records.export_turn
    if "records=0" in opts and hasattr(records, "_EXPORTS"):
        records.export_turn = _export_turn_before
    real_dumps = ck.CompressedSerializer.dumps_typed
    if "ser=0" in opts and hasattr(ck, "_MSGPACK"):
        ck.CompressedSerializer.dumps_typed = _dumps_typed_before  # type: ignore[method-assign]
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
        PIECES.update(dict.fromkeys(PIECES, 0.0))
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
        if real_files[0] is not None:
            rundir._ENCODERS, runner_mod.iso_now = real_files
        ck.CompressedSerializer.dumps_typed = real_dumps  # type: ignore[method-assign]
        records.export_turn = real_export
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
        **{k: 1e6 * v / calls for k, v in PIECES.items()},
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
    ap.add_argument("--timers", action="store_true", help="the store's pieces in thread-CPU timers (us per call each; see _timers)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.timers:
        _timers()
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
    print("| arm | CPU ms/call | loop thread ms/call | kernel ms/call | voluntary switches/call | collector ms/call | CPU vs first arm, per round | loop thread vs first arm, per round |")
    print("|---|---|---|---|---|---|---|---|")
    for arm in arms:
        m = med[arm]
        ratios = ", ".join(f"{x['cpu_ms_per_call'] / y['cpu_ms_per_call']:.3f}" for x, y in zip(runs[arm], runs[arms[0]], strict=True))
        loop_ratios = ", ".join(f"{x['loop_thread_ms_per_call'] / y['loop_thread_ms_per_call']:.3f}" for x, y in zip(runs[arm], runs[arms[0]], strict=True))
        print(f"| {arm} | {m['cpu_ms_per_call']:.3f} | {m['loop_thread_ms_per_call']:.3f} | {m['sys_ms_per_call']:.3f} | {m['voluntary_switches_per_call']:.2f} | {m['gc_ms_per_call']:.3f} | {ratios} | {loop_ratios} |")
    if PIECES:
        keys = list(PIECES)
        print(f"\n| arm | {' | '.join(k.removesuffix('_us') + ' us/call' for k in keys)} | their sum |")
        print("|---|" + "---|" * (len(keys) + 1))
        for arm in arms:
            m = med[arm]
            tot = statistics.median(sum(r[k] for k in keys) for r in runs[arm])
            base = statistics.median(sum(r[k] for k in keys) for r in runs[arms[0]])
            print(f"| {arm} | {' | '.join(f'{m[k]:.1f} ({m[k] / med[arms[0]][k]:.2f})' for k in keys)} | {tot:.1f} ({tot / base:.3f}) |")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "runs": runs, "medians": med}, indent=1))


if __name__ == "__main__":
    main()
