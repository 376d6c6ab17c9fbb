"""``therasim bench``: the same cohort through three ways of running it, against the
stub model server in its own process, plus a replay of the captured request
trace for the ideal. Method: docs/benchmarks.md.

Arms (same templates, seeds, max_tokens and retry policy; same course graph):

- ``sequential``: one course at a time, one request in flight, LangGraph's
  default checkpoint durability, no compression, a Chroma query per recall; run
  on a few courses and extrapolated linearly;
- ``threads``: a 16-thread pool over courses, each thread with its own event
  loop and checkpointer (the peers' way);
- ``therasim``: the runner: asyncio tasks over one compiled graph, one
  checkpointer, ``--concurrency`` courses in flight;
- ``replay``: the therasim arm's captured requests sent straight to the stub at
  the same concurrency (no orchestration): the ideal.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from therasim.errors import TherasimError

__all__ = ["ARMS", "bench", "checkpoint_bytes_per_turn"]

ARMS = ("sequential", "threads", "therasim")


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read().decode())  # type: ignore[no-any-return]


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read().decode())  # type: ignore[no-any-return]


def _proc_cpu_s(pid: int) -> float:
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(parts[11]) + int(parts[12])) / ticks
    except (OSError, IndexError, ValueError):
        return float("nan")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Stub:
    """The stub in its own process, pinned to its own core when there are two."""

    def __init__(self, profile: str, *, faults: float = 0.0, fault: list[str] | None = None, time_scale: float = 1.0, cores: tuple[set[int], set[int]] | None = None, trace_dir: Path | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.trace_dir = trace_dir
        args = [sys.executable, "-m", "therasim.cli", "stub", "--profile", profile, "--port", str(self.port), "--time-scale", str(time_scale)]
        if trace_dir is not None:
            args += ["--trace-dir", str(trace_dir)]
        if faults:
            args += ["--faults", str(faults)]
        for f in fault or []:
            args += ["--fault", f]
        stub_cores = cores[1] if cores else None

        def pin() -> None:
            if stub_cores:
                os.sched_setaffinity(0, stub_cores)

        env = None
        if "THERASIM_STUB_PYTHONPATH" in os.environ:
            # benchmarks/before_after.py: the stub (an instrument) from this install in
            # every arm, whatever orchestrator PYTHONPATH points the bench at
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            if os.environ["THERASIM_STUB_PYTHONPATH"]:
                env["PYTHONPATH"] = os.environ["THERASIM_STUB_PYTHONPATH"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=pin, env=env, cwd=tempfile.gettempdir() if env is not None else None)
        wait_s = 120  # a loaded machine's imports can take a while
        deadline = time.time() + wait_s
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    r.read()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise TherasimError(f"the stub server exited: {self.proc.stderr.read().decode()[-500:] if self.proc.stderr else ''}") from None
                time.sleep(0.1)
        raise TherasimError(f"the stub server did not come up in {wait_s} s")

    def metrics(self) -> dict[str, Any]:
        return _get(self.url + "/metrics")

    def reset(self) -> None:
        _post(self.url + "/reset", {})

    def trace(self, name: str | None) -> Path | None:
        """Trace requests into ``TRACE_DIR/NAME.jsonl`` (None: stop); returns the file."""
        _post(self.url + "/trace", {"name": name})
        return self.trace_dir / f"{name}.jsonl" if (name and self.trace_dir) else None

    def cpu_s(self) -> float:
        return _proc_cpu_s(self.proc.pid)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _cfg(url: str, preset: str, sessions: int, turns: int, seed: int, concurrency: int, timeout_s: float = 120.0) -> dict[str, Any]:
    return {
        "models": {"default": {"provider": "openai", "model": "stub", "base_url": url + "/v1", "max_retries": 8, "timeout_s": timeout_s}},
        "course": {"preset": preset, "sessions": sessions, "max_turns": turns},
        "memory": {"embedding": "hash"},
        "seed": seed,
        "concurrency": concurrency,
    }


def _stub_profile(name: str) -> Any:
    from therasim.tools.stub import PROFILES

    return PROFILES[name]


def _get_list(url: str) -> list[Any]:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read().decode())  # type: ignore[no-any-return]


def _integrity(records: list[dict[str, Any]], *, cohort_ids: list[str], sessions: int, served: set[str], status: dict[str, Any]) -> dict[str, Any]:
    """Count from the run's own transcripts: courses completed, turns lost (a missing
    session or exchange, or a counselor turn the stub never served whole) and turns
    duplicated (a session or exchange recorded twice)."""
    from therasim.tools.stub import content_hash

    seen: dict[tuple[str, int], int] = {}
    dup = lost = 0
    for r in records:
        key = (r["client_id"], r["session"])
        seen[key] = seen.get(key, 0) + 1
        ex = [t["exchange"] for t in r["turns"] if t["speaker"] == "client"]
        dup += len(ex) - len(set(ex))
        lost += len(set(range(max(ex) + 1 if ex else 0)) - set(ex))
        for t in r["turns"]:
            if t["speaker"] == "counselor" and content_hash(t["text"]) not in served:
                lost += 1
    dup += sum(n - 1 for n in seen.values() if n > 1)
    completed = [c for c in cohort_ids if status.get(c, {}).get("status") == "completed"]
    for c in completed:
        lost += sum(1 for s in range(1, sessions + 1) if (c, s) not in seen)
    return {"courses_total": len(cohort_ids), "courses_completed": len(completed), "turns_lost": lost, "turns_duplicated": dup}


def _transcript_hash(records: list[dict[str, Any]], clients: set[str] | None = None) -> str:
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: (r["client_id"], r["session"])):
        if clients is not None and r["client_id"] not in clients:
            continue
        h.update(json.dumps([r["client_id"], r["session"], [(t["speaker"], t["text"]) for t in r["turns"]]]).encode())
    return h.hexdigest()[:16]


def _turn_latencies(events_path: Path) -> list[float]:
    from therasim._internal.rundir import read_jsonl

    last: dict[tuple[str, int], float] = {}
    out: list[float] = []
    for e in read_jsonl(events_path):
        if e.get("event") != "exchange":
            continue
        ts = e.get("timestamp")
        if not ts:
            continue
        import datetime as dt

        t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        key = (e.get("client_id"), e.get("session"))
        if key in last:
            out.append(t - last[key])
        last[key] = t  # type: ignore[index]
    return out


def _hit_ratios(events_path: Path) -> dict[str, Any]:
    """Prefix-cache hits from the calls' own usage: all calls, in-session calls after
    a session's first exchange (steady state), and per node."""
    from therasim._internal.rundir import read_jsonl

    tot = [0, 0]
    steady = [0, 0]
    per: dict[str, list[int]] = {}
    for e in read_jsonl(events_path):
        if e.get("event") != "node_call":
            continue
        p, c = int(e.get("input_tokens") or 0), int(e.get("cached_tokens") or 0)
        tot[0] += p
        tot[1] += c
        acc = per.setdefault(e.get("node") or "?", [0, 0])
        acc[0] += p
        acc[1] += c
        if e.get("exchange") is not None and int(e["exchange"]) >= 1:
            steady[0] += p
            steady[1] += c
    r = lambda a: round(a[1] / a[0], 4) if a[0] else None  # noqa: E731
    return {"prefix_hit_ratio_calls": r(tot), "prefix_hit_ratio_steady": r(steady), "prefix_hit_ratio_by_node": {k: r(v) for k, v in sorted(per.items())}}


def slot_time(events_path: Path, t0: float, t1: float, concurrency: int) -> dict[str, Any]:
    """Where the run's request slots went (``concurrency`` x wall seconds, from the
    calls' own ``node_call`` records: each call ends at ``ts`` and took ``latency_s``):
    ``in_calls`` (a request in flight), ``between_calls`` (a course in the slot between
    its own calls: orchestration, checkpoints, memory, the event loop's queue) and
    ``no_course`` (the slot empty: start-up before the first call, a course's hand-over
    to the next, and the cohort's tail when fewer courses than slots are left), as
    fractions of the slot time; ``startup_s`` (wall seconds to the first call),
    ``tail_s`` (from the last course's first call to the end) and
    ``mean_in_flight``. A flat replay keeps ``in_calls`` near 1: what falls short of
    it is what E loses, in slot time (the stub serves faster when fewer calls are in
    flight, so tokens/s loses less than slot time)."""
    import datetime as dt

    from therasim._internal.rundir import read_jsonl

    spans: dict[str, list[float]] = {}
    busy, calls = 0.0, 0
    for e in read_jsonl(events_path):
        if e.get("event") != "node_call" or not (e.get("ts") or e.get("timestamp")):
            continue
        calls += 1
        # the run's log stamps each record when written (ISO ``timestamp``, the call's end)
        end = float(e["ts"]) if e.get("ts") is not None else dt.datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00")).timestamp()
        lat = float(e.get("latency_s") or 0.0)
        busy += lat
        sp = spans.setdefault(str(e.get("client_id")), [end - lat, end, 0.0])
        sp[0], sp[1] = min(sp[0], end - lat), max(sp[1], end)
        sp[2] += lat
    wall = max(t1 - t0, 1e-9)
    slots = concurrency * wall
    in_course = sum(b - a for a, b, _ in spans.values())
    gaps = sum(max(0.0, (b - a) - c) for a, b, c in spans.values())
    first = min((a for a, _, _ in spans.values()), default=t0)
    last_start = max((a for a, _, _ in spans.values()), default=t1)
    return {
        "in_calls": round(busy / slots, 4),
        "between_calls": round(gaps / slots, 4),
        "no_course": round(max(0.0, slots - in_course) / slots, 4),
        "startup_s": round(first - t0, 2),
        "tail_s": round(t1 - last_start, 2),
        "mean_in_flight": round(busy / wall, 1),
        "mean_gap_ms_per_call": round(1000 * gaps / max(calls, 1), 2),
    }


def cost_accounting(metrics: dict[str, Any], events_path: Path, turns: int, prefill_tok_s: float) -> dict[str, Any]:
    """What the cohort asks of a model server, per simulated turn (one exchange):
    uncached prompt tokens (what the server must prefill), output tokens, the stub's
    modelled busy seconds (prefill plus each request's share of the batched decode),
    and distinct prompt tokens per course (the KV footprint a course keeps warm);
    the same per node from the calls' own usage (a node's decode share is its output
    tokens at the run's mean decode seconds per output token)."""
    import math

    from therasim._internal.rundir import read_jsonl

    t = max(turns, 1)
    out_tok = int(metrics.get("completion_tokens") or 0)
    decode_per_tok = float(metrics.get("decode_busy_s") or 0.0) / out_tok if out_tok else 0.0
    per: dict[str, list[float]] = {}
    for e in read_jsonl(events_path):
        if e.get("event") != "node_call":
            continue
        acc = per.setdefault(e.get("node") or "?", [0, 0, 0])
        acc[0] += 1
        acc[1] += int(e.get("input_tokens") or 0) - int(e.get("cached_tokens") or 0)
        acc[2] += int(e.get("output_tokens") or 0)
    prefill = (lambda n: n / prefill_tok_s) if math.isfinite(prefill_tok_s) else (lambda n: 0.0)
    by_node = {
        k: {
            "calls_per_turn": round(c / t, 3),
            "uncached_prompt_tokens_per_turn": round(u / t, 1),
            "output_tokens_per_turn": round(o / t, 1),
            "server_busy_s_per_turn": round((prefill(u) + o * decode_per_tok) / t, 5),
        }
        for k, (c, u, o) in sorted(per.items())
    }
    return {
        "uncached_prompt_tokens_per_turn": round((int(metrics.get("prompt_tokens") or 0) - int(metrics.get("cached_tokens") or 0)) / t, 1),
        "output_tokens_per_turn": round(out_tok / t, 1),
        "server_busy_s_per_turn": round(float(metrics.get("busy_s") or 0.0) / t, 5),
        "distinct_cached_tokens_per_course": metrics.get("distinct_prompt_tokens_per_course"),
        "cost_by_node": by_node,
    }


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))], 3)


async def _run_one_course_naive(cfg: Any, profile: Any, root: Path, run_id: str, store: Any, on_record: Any) -> None:
    """One course the naive way: its own plain AsyncSqliteSaver (no compression,
    LangGraph's default durability), recall straight from Chroma."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from therasim.context import SimContext
    from therasim.graphs.course import course_builder, initial_course_state
    from therasim.graphs.session import course_recursion_limit
    from therasim.providers import ModelPool

    pool = ModelPool(cfg.models)
    async with AsyncSqliteSaver.from_conn_string(str(root / f"{profile.id}.sqlite")) as saver:
        g = course_builder(cfg.course).compile(checkpointer=saver)
        ctx = SimContext.from_config(cfg, models=pool, memory=store, on_record=on_record)
        st = initial_course_state(profile, run_id=run_id, sessions=cfg.course.sessions, modality=cfg.course.modality)
        n = cfg.course.sessions
        await g.ainvoke(st, config={"configurable": {"thread_id": f"{run_id}/{profile.id}/course"}, "recursion_limit": course_recursion_limit(n)}, context=ctx)
    await pool.aclose()


def _naive_arm(cfg: Any, profiles: list[Any], workers: int, root: Path) -> dict[str, Any]:
    from therasim.memory import ChromaMemoryStore
    from therasim.memory.embeddings import make_embedding

    root.mkdir(parents=True, exist_ok=True)
    store = ChromaMemoryStore.persistent(str(root / "memory"), make_embedding(cfg.memory.embedding), cache=False)
    records: list[dict[str, Any]] = []

    def one(p: Any) -> None:
        asyncio.run(_run_one_course_naive(cfg, p, root, "bench", store, records.append))

    t0 = time.perf_counter()
    if workers == 1:
        for p in profiles:
            one(p)
    else:
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(one, profiles))
    wall = time.perf_counter() - t0
    from therasim.records import dataset_record

    with open(root / "transcripts.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(dataset_record(r), default=str) + "\n")
    return {"wall_s": wall, "records": records}


async def _send_streams(url: str, streams: list[list[str]], concurrency: int) -> float:
    """Send request bodies with raw aiohttp: ``concurrency`` workers, each taking the
    next stream and sending its requests one after another. Returns wall seconds."""
    import aiohttp

    q: asyncio.Queue[list[str]] = asyncio.Queue()
    for st in streams:
        q.put_nowait(st)
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 8)) as s:

        async def worker() -> None:
            while True:
                try:
                    reqs = q.get_nowait()
                except asyncio.QueueEmpty:
                    return
                for b in reqs:
                    try:
                        async with s.post(url + "/v1/chat/completions", data=b, headers={"content-type": "application/json"}) as r:
                            await r.read()
                    except aiohttp.ClientError:
                        pass  # counted by the stub; a replay measures throughput only

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0


def _trace_lines(trace_path: Path) -> list[str]:
    return [line for line in trace_path.read_text().splitlines() if line.strip()]


async def _replay(url: str, trace_path: Path, concurrency: int) -> float:
    """The captured requests in arrival order at ``concurrency``, no dependencies kept."""
    return await _send_streams(url, [[b] for b in _trace_lines(trace_path)], concurrency)


async def _replay_courses(url: str, trace_path: Path, concurrency: int) -> float:
    """The dependency-respecting ideal: each course's requests in order, one at a time,
    ``concurrency`` courses at once (raw aiohttp, no orchestration)."""
    courses: dict[str, list[str]] = {}
    for line in _trace_lines(trace_path):
        courses.setdefault(json.loads(line).get("user") or "?", []).append(line)
    return await _send_streams(url, list(courses.values()), concurrency)


def checkpoint_bytes_per_turn(turns: int, preset: str = "full") -> float:
    """Stored checkpoint bytes per turn of one session (course + session graph, the
    run's compressed AsyncSqliteSaver, sync durability), scripted model."""
    import sqlite3

    from therasim._internal.checkpoint import open_checkpointer
    from therasim.config import CourseSpec
    from therasim.context import SimContext
    from therasim.graphs import CourseGraphBuilder, initial_course_state, run_course
    from therasim.graphs import preset as get_preset
    from therasim.profiles import example_profiles
    from therasim.providers import ModelPool
    from therasim.testing import FunctionChatModel, SchemaFakeChatModel

    fake = SchemaFakeChatModel(seed=1)

    def reply(messages: Any, kw: Any) -> str:
        out = fake._reply(messages, kw)
        if "YOUR TURN, as" in str(messages[-1].content):
            d = json.loads(out)
            d["wants_to_end"] = False
            out = json.dumps(d)
        return out

    path = Path(tempfile.mkdtemp(prefix="therasim-ckpt-")) / "c.sqlite"

    async def go() -> int:
        async with open_checkpointer(str(path)) as saver:
            g = CourseGraphBuilder(get_preset(preset)).without("memory").compile(checkpointer=saver)
            ctx = SimContext(models=ModelPool({"default": FunctionChatModel(fn=reply)}), course=CourseSpec(preset=preset, sessions=1, max_turns=turns, memory=False))
            out = await run_course(g, initial_course_state(example_profiles()[0], sessions=1), ctx, thread_id="b/course")
        return sum(1 for t in out["records"][0]["turns"] if t["speaker"] == "client")

    n = asyncio.run(go())
    con = sqlite3.connect(path)
    b = con.execute("select coalesce(sum(length(checkpoint)) + sum(length(metadata)), 0) from checkpoints where thread_id like '%/s1'").fetchone()[0]
    b += con.execute("select coalesce(sum(length(value)), 0) from writes where thread_id like '%/s1'").fetchone()[0]
    con.close()
    return float(b) / max(n, 1)


def _run_loop() -> Any:
    """How ``therasim run`` runs a cohort's coroutine (``therasim.runner.run_loop``: uvloop
    when installed); ``asyncio.run`` for an orchestrator from before it
    (``benchmarks/before_after.py`` runs this harness over older revisions)."""
    from therasim import runner

    return getattr(runner, "run_loop", asyncio.run)


def bench(
    *,
    profile: str = "h100-8b",
    clients: int = 100,
    sessions: int = 6,
    turns: int = 10,
    concurrency: int = 64,
    arms: tuple[str, ...] = ARMS,
    preset: str = "lean",
    seed: int = 0,
    seq_clients: int = 2,
    threads_clients: int | None = None,
    faults: float = 0.0,
    fault: list[str] | None = None,
    time_scale: float = 1.0,
    out_dir: str | Path | None = None,
    checkpoint_sizes: bool = True,
    echo: Any = print,
) -> dict[str, Any]:
    """Run the arms and return the result (the keys ``--json`` writes)."""
    from therasim.config import RunConfig
    from therasim.profiles import sample_profiles
    from therasim.runner import arun_dir, start_run

    bad = [a for a in arms if a not in ARMS]
    if bad:
        raise TherasimError(f"unknown arm(s) {bad}; arms are {', '.join(ARMS)}")
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    cores = None
    if ncpu >= 2 and hasattr(os, "sched_setaffinity"):
        mine = sorted(os.sched_getaffinity(0))
        cores = ({mine[0]}, {mine[1]})
    root = Path(out_dir or tempfile.mkdtemp(prefix="therasim-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    stub = _Stub(profile, faults=faults, fault=fault, time_scale=time_scale, cores=cores, trace_dir=root)
    prev_aff = os.sched_getaffinity(0) if cores else None
    if cores:
        os.sched_setaffinity(0, cores[0])
    result: dict[str, Any] = {
        "profile": profile,
        "preset": preset,
        "clients": clients,
        "sessions": sessions,
        "turns": turns,
        "concurrency": concurrency,
        "time_scale": time_scale,
        "pinned": bool(cores),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "arms": {},
    }
    try:
        timeout_s = 5.0 if profile == "zero" else 120.0  # a hung request is abandoned and retried after this
        cfg_d = _cfg(stub.url, preset, sessions, turns, seed, concurrency, timeout_s)
        cfg = RunConfig.model_validate(cfg_d)
        cohort = sample_profiles(clients, seed=seed)
        hashes: dict[str, tuple[str, set[str]]] = {}

        if "therasim" in arms:
            echo(f"[therasim] {clients} courses x {sessions} sessions x {turns} turns, {concurrency} in flight ...")
            stub.reset()
            trace = root / "trace.jsonl"
            trace.unlink(missing_ok=True)
            stub.trace("trace")
            rd, _ = start_run(cfg, profiles=cohort, out=root / "therasim", run_id="bench")  # same ids in every arm
            cpu0, scpu0, t0, e0 = time.process_time(), stub.cpu_s(), time.perf_counter(), time.time()
            res = _run_loop()(arun_dir(rd, concurrency=concurrency))
            wall = time.perf_counter() - t0
            e1 = time.time()
            cpu = time.process_time() - cpu0
            stub_cpu = stub.cpu_s() - scpu0
            stub.trace(None)
            m = stub.metrics()
            served = set(_get_list(stub.url + "/served"))
            tokens = m["prompt_tokens"] + m["completion_tokens"]
            lat = _turn_latencies(rd.events)
            recs = rd.records()
            hashes["therasim"] = (_transcript_hash(recs), {r["client_id"] for r in recs})
            result["arms"]["therasim"] = {
                "wall_s": round(wall, 2),
                "calls": m["requests"],
                "tokens": tokens,
                "tokens_per_s": round(tokens / wall, 1),
                "turns": res.turns,
                "turns_per_s": round(res.turns / wall, 2),
                "cpu_s": round(cpu, 2),
                "stub_cpu_fraction": round(stub_cpu / wall, 3),
                "in_flight_peak": m["in_flight_peak"],
                "courses_completed": len(res.completed),
                "courses_failed": len(res.failed),
            }
            result.update(
                cpu_ms_per_call=round(1000 * cpu / max(m["requests"], 1), 3),
                prefix_hit_ratio=m["prefix_hit_ratio"],
                p50_turn_s=_pct(lat, 50),
                p95_turn_s=_pct(lat, 95),
                **_hit_ratios(rd.events),
                **cost_accounting(m, rd.events, res.turns, _stub_profile(profile).prefill_tok_s),
                errors=res.errors,
                retries=res.retries,
                slot_time=slot_time(rd.events, e0, e1, concurrency),
                run_dir=str(rd.root),
            )
            # the ideal: the same requests, no orchestration, same concurrency
            echo(f"[replay] {m['requests']} captured requests at concurrency {concurrency} ...")
            stub.reset()
            _post(stub.url + "/faults", {"faults": {}})  # the ideal has no faults
            rwall = asyncio.run(_replay(stub.url, trace, concurrency))
            rm = stub.metrics()
            rtokens = rm["prompt_tokens"] + rm["completion_tokens"]
            result["arms"]["replay"] = {"wall_s": round(rwall, 2), "calls": rm["requests"], "tokens": rtokens, "tokens_per_s": round(rtokens / rwall, 1), "in_flight_peak": rm["in_flight_peak"]}
            result["E"] = round((tokens / wall) / (rtokens / rwall), 4) if rwall > 0 and rtokens else None
            # the same, but keeping each course's calls in order (the cohort's own tail)
            stub.reset()
            cwall = asyncio.run(_replay_courses(stub.url, trace, concurrency))
            cm = stub.metrics()
            ctokens = cm["prompt_tokens"] + cm["completion_tokens"]
            result["arms"]["replay_courses"] = {"wall_s": round(cwall, 2), "calls": cm["requests"], "tokens_per_s": round(ctokens / cwall, 1) if cwall else None, "in_flight_peak": cm["in_flight_peak"]}
            result["E_courses"] = round((tokens / wall) / (ctokens / cwall), 4) if cwall > 0 and ctokens else None
            result.update(_integrity(recs, cohort_ids=[p.id for p in cohort], sessions=sessions, served=served, status=rd.course_status()))
            result["fault_counts"] = m.get("faults")

        if "threads" in arms:
            n = min(clients, threads_clients or clients)
            echo(f"[threads] {n} courses on a 16-thread pool ...")
            stub.reset()
            out = _naive_arm(cfg, cohort[:n], 16, root / "threads")
            m = stub.metrics()
            hashes["threads"] = (_transcript_hash(out["records"]), {r["client_id"] for r in out["records"]})
            result["arms"]["threads"] = {"wall_s": round(out["wall_s"], 2), "courses": n, "calls": m["requests"], "tokens_per_s": round((m["prompt_tokens"] + m["completion_tokens"]) / out["wall_s"], 1), "wall_s_extrapolated": round(out["wall_s"] * clients / n, 1)}

        if "sequential" in arms:
            n = min(clients, seq_clients)
            echo(f"[sequential] {n} course(s), one request in flight ...")
            stub.reset()
            out = _naive_arm(cfg, cohort[:n], 1, root / "sequential")
            m = stub.metrics()
            hashes["sequential"] = (_transcript_hash(out["records"]), {r["client_id"] for r in out["records"]})
            ext = out["wall_s"] * clients / n
            result["arms"]["sequential"] = {"wall_s": round(out["wall_s"], 2), "courses": n, "calls": m["requests"], "wall_s_extrapolated": round(ext, 1)}
            if "therasim" in result["arms"]:
                result["speedup_vs_sequential"] = round(ext / result["arms"]["therasim"]["wall_s"], 2)

        # transcripts must match across arms on the courses they share
        if "therasim" in hashes and "therasim" in arms:
            rd_recs = [json.loads(x) for x in (Path(result["run_dir"]) / "transcripts.jsonl").read_text().splitlines()]
            checks = {}
            for arm, (h, ids) in hashes.items():
                if arm == "therasim":
                    continue
                checks[arm] = h == _transcript_hash(rd_recs, ids)
            result["transcripts_match"] = checks
        if checkpoint_sizes:
            result["bytes_per_turn_10"] = round(checkpoint_bytes_per_turn(10, preset))
            result["bytes_per_turn_40"] = round(checkpoint_bytes_per_turn(40, preset))
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        therasim_arm = result["arms"].get("therasim")
        if therasim_arm:
            result["valid"] = therasim_arm["stub_cpu_fraction"] < 0.9
            if not result["valid"]:
                result["invalid_reason"] = f"the stub used {therasim_arm['stub_cpu_fraction']:.0%} of its core: it, not therasim, was the bottleneck"
        result["stub_metrics"] = stub.metrics()
    finally:
        stub.close()
        if prev_aff:
            os.sched_setaffinity(0, prev_aff)
    return result


def summarise(result: dict[str, Any]) -> str:
    keys = ("E", "E_courses", "cpu_ms_per_call", "speedup_vs_sequential", "concurrency", "prefix_hit_ratio", "prefix_hit_ratio_steady", "uncached_prompt_tokens_per_turn", "output_tokens_per_turn", "server_busy_s_per_turn", "distinct_cached_tokens_per_course", "courses_total", "courses_completed", "turns_lost", "turns_duplicated", "bytes_per_turn_10", "bytes_per_turn_40", "peak_rss_mb", "p50_turn_s", "p95_turn_s", "errors", "retries", "transcripts_match", "valid")
    lines = [f"{k}: {result.get(k)}" for k in keys if k in result]
    for arm, a in result.get("arms", {}).items():
        lines.append(f"arm {arm}: " + ", ".join(f"{k}={v}" for k, v in a.items()))
    return "\n".join(lines)

