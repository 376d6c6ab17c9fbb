"""Does orchestration cost stay flat as the cohort grows? The same course shape
(lean preset, 2 sessions x 4 turns, embedded Chroma memory with the hash
embedding, SQLite checkpoints) for cohorts of increasing size on the ``zero``
stub (answers at once: pure orchestration), ``--concurrency`` courses in flight.

Each cohort runs in its own process (so peak RSS is that cohort's), with the stub
in another process pinned to its own core when there are two. Reported per
cohort: orchestrator CPU ms per model call (all-in), peak RSS, model calls per
minute over the run (min, median, max of ``--bucket-s`` windows scaled to a
minute) and the slowest window against the median (a stall shows as a ratio
far below 1), and the on-disk size of checkpoints and memory.

    python benchmarks/cohort_scaling.py --cohorts 64,1000 --concurrency 256
    python benchmarks/cohort_scaling.py --cohorts 64,1000,10000 --json out.json
    python benchmarks/cohort_scaling.py --cohorts 64,1000 --layouts per-client,shared,blocks

``--layouts`` runs every cohort under each memory layout (the run's manifest is
set to it before the run starts: ``per-client`` is how runs were laid out before
``memory_layout`` was recorded, ``shared`` before ``blocks``), one after the other
in one invocation.

Each window also records the courses completed, RSS and CPU per model call, and
the result gives their slopes against courses completed after the first
``--concurrency`` courses (``rss_mb_per_1k_courses``, ``cpu_ms_per_call_per_1k_courses``,
least squares): flat cost shows as slopes near zero, also for a cohort stopped at
``--max-wall-s``. The drift within a run is also given as the first three of those
windows against the last three (``cpu_ms_per_call_first_last``,
``calls_per_min_first_last``: first, last, last/first) and as the slope of calls
per minute (``calls_per_min_per_1k_courses``).

To say where a drift comes from, each window also records, per model call: the
event loop's own thread's CPU (``main_thread_cpu_ms_per_call_by_window``; the rest
is the memory pool's threads) and kernel CPU (``system_cpu_ms_per_call_by_window``),
event-loop iterations, checkpoint commits and the statements each carried, collector
runs, Chroma upserts (the memory layer's group commit) and the memory pool's
threads; and, from the run's events.jsonl, how many sessions ended together
(``session_ends_per_group_by_window``: ends less than 50 ms apart), which measures
how synchronised the courses in flight still are. Arms in one invocation:
``--memory on,off`` (``memory.backend none``) and ``--checkpoints sqlite,memory``
(the same saver on an in-memory SQLite database instead of the run folder's file):

    python benchmarks/cohort_scaling.py --cohorts 3000 --sessions 2 --turns 1 --memory on,off --checkpoints sqlite,memory

``--gather-ms 0,500`` runs each cohort with memory writes that never wait to share a
Chroma upsert, then with the default wait (``THERASIM_MEMORY_GATHER_MS``): the
before/after of ``ChromaMemoryStore.gather_wait`` in one invocation.

``--hnsw-sync 1000,100`` runs each cohort with the block collections'
``hnsw:sync_threshold`` at Chroma's default, then at the store's (``HNSW_SYNC``;
``THERASIM_CHROMA_HNSW_SYNC``): the before/after of the upsert's fixed cost
(docs/benchmarks.md, "the fixed cost of a Chroma upsert"). With ``--repeat 2`` the
whole list of runs is made twice, so the arms alternate (A B A B).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _dir_mb(p: Path) -> float:
    if p.is_file():
        return round(p.stat().st_size / 2**20, 1)
    return round(sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20, 1) if p.exists() else 0.0


def _warm_up(url: str, root: Path, memory: bool, tag: str, shape: tuple[int, int], layout: str | None) -> None:
    """Two courses first, so that imports and one-time set-up (paid once per
    process, not per call) are not counted in the cohort's CPU per call."""
    from therasim.runner import arun_dir, start_run

    rd, _ = start_run(_config(url, 2, memory, shape), sample=2, out=root / f"warmup{tag}", run_id="warmup")
    _set_layout(rd, layout)
    asyncio.run(arun_dir(rd, concurrency=2))


def _set_layout(rd: Any, layout: str | None) -> None:
    """Lay the run's memory out as ``layout`` (as a run made before the layout was
    recorded, for ``per-client``)."""
    if layout is None:
        return
    man = json.loads(rd.manifest_path.read_text())
    if layout == "per-client":
        man.pop("memory_layout", None)
    else:
        man["memory_layout"] = layout
    if layout != "blocks":
        man.pop("memory_block_size", None)
    rd.manifest_path.write_text(json.dumps(man))


def _checkpoints_in_memory() -> None:
    """``--checkpoints memory``: the run's checkpointer on an in-memory SQLite database
    instead of the run folder's file (the same saver and statements; nothing durable:
    an arm that isolates what the checkpoint file costs as it grows)."""
    from contextlib import asynccontextmanager

    import therasim._internal.checkpoint as ck

    @asynccontextmanager
    async def in_memory(spec: Any, sqlite_path: str, **kw: Any) -> Any:
        async with ck.open_checkpointer(":memory:") as saver:
            yield saver

    ck.open_run_checkpointer = in_memory  # type: ignore[assignment]


class _Counters:
    """What else each window did, per model call: event-loop iterations (asyncio's loop
    only: under uvloop, the loop ``therasim run`` starts when installed, they read 0), checkpoint
    commits and the statements they carried, collector runs; and the memory pool's
    threads at the window's end (a batching or thread-count drift shows here)."""

    def __init__(self) -> None:
        import gc

        from therasim._internal import checkpoint as ck

        self.loops = 0
        self.savers: list[Any] = []
        self.rows: list[tuple[int, int, int, int, int, int]] = []
        counters = self
        base = asyncio.BaseEventLoop
        run_once = base._run_once  # type: ignore[attr-defined]

        def counted(loop: Any) -> None:
            counters.loops += 1
            run_once(loop)

        base._run_once = counted  # type: ignore[attr-defined]
        init = ck.GroupCommitSaver.__init__

        def register(saver: Any, *a: Any, **kw: Any) -> None:
            init(saver, *a, **kw)
            counters.savers.append(saver)

        ck.GroupCommitSaver.__init__ = register  # type: ignore[method-assign,assignment]
        from therasim.memory.chroma import ChromaMemoryStore

        self.stores: list[Any] = []
        sinit = ChromaMemoryStore.__init__

        def register_store(store: Any, *a: Any, **kw: Any) -> None:
            sinit(store, *a, **kw)
            counters.stores.append(store)

        ChromaMemoryStore.__init__ = register_store  # type: ignore[method-assign,assignment]
        self._gc = lambda: sum(st["collections"] for st in gc.get_stats())

    def sample(self) -> None:
        from therasim.memory.pool import memory_pool

        s = self.savers[-1] if self.savers else None
        m = self.stores[-1] if self.stores else None
        self.rows.append((self.loops, s.commits if s else 0, s.statements if s else 0, self._gc(), memory_pool().threads, m.upserts if m else 0))

    def by_window(self, calls: list[int]) -> dict[str, Any]:
        out: dict[str, list[float]] = {"loop_iterations_per_call_by_window": [], "commits_per_call_by_window": [], "statements_per_commit_by_window": [], "gc_runs_per_1k_calls_by_window": [], "memory_threads_by_window": [], "memory_upserts_per_1k_calls_by_window": []}
        prev, pc = (0, 0, 0, 0, 0, 0), 0
        for row, c in zip(self.rows, calls, strict=False):
            n = max(c - pc, 1)
            out["loop_iterations_per_call_by_window"].append(round((row[0] - prev[0]) / n, 2))
            out["commits_per_call_by_window"].append(round((row[1] - prev[1]) / n, 3))
            out["statements_per_commit_by_window"].append(round((row[2] - prev[2]) / max(row[1] - prev[1], 1), 2))
            out["gc_runs_per_1k_calls_by_window"].append(round(1000 * (row[3] - prev[3]) / n, 1))
            out["memory_threads_by_window"].append(row[4])
            out["memory_upserts_per_1k_calls_by_window"].append(round(1000 * (row[5] - prev[5]) / n, 1))
            prev, pc = row, c
        return out


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except OSError:
        return 0.0


_MALLINFO2 = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")


def _mallinfo() -> dict[str, float]:
    """The C allocator's heap (glibc ``mallinfo2``, all arenas): bytes held from the OS
    in arenas (``arena``: sbrk heap + thread arenas), in use (``uordblks``), free but
    held (``fordblks``), and in large mmapped chunks (``hblkhd``), in MB. Empty where
    the C library is not glibc 2.33+."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return {}

    class M(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in _MALLINFO2]

    fn.restype = M
    m = fn()
    return {f"malloc_{k}_mb": round(getattr(m, k) / 2**20, 1) for k in ("arena", "uordblks", "fordblks", "hblkhd")}


def _native() -> dict[str, float]:
    """Resident memory by kind (/proc/self/smaps): the brk heap, other anonymous
    mappings (glibc's thread arenas, pymalloc's arenas, Rust/numpy buffers, thread
    stacks), file-backed mappings (libraries, SQLite or HNSW files mapped); the C
    allocator's view (:func:`_mallinfo`); threads and open files; Python's allocated
    blocks. What grows with finished courses shows in one of these."""
    heap = anon = files = 0
    n_maps = 0
    cur = ""
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                    parts = line.split()
                    cur = parts[5] if len(parts) > 5 else ""
                    n_maps += 1
                elif line.startswith("Rss:"):
                    kb = int(line.split()[1])
                    if cur == "[heap]":
                        heap += kb
                    elif cur.startswith("/"):
                        files += kb
                    else:
                        anon += kb
    except OSError:
        return {}
    out: dict[str, float] = {"brk_heap_mb": round(heap / 1024, 1), "anon_mb": round(anon / 1024, 1), "file_mb": round(files / 1024, 1), "mappings": n_maps}
    out.update(_mallinfo())
    try:
        out["threads"] = len(os.listdir("/proc/self/task"))
        out["fds"] = len(os.listdir("/proc/self/fd"))
    except OSError:
        pass
    out["py_blocks_k"] = round(sys.getallocatedblocks() / 1000, 1)
    return out


class _ThreadCPU:
    """CPU by thread kind (/proc/self/task/*: the event loop's thread, the other Python
    threads (the memory pool's), Chroma's worker threads, the rest), accumulated from samples: a thread that ends
    between two samples keeps what it had at the last one (the remainder of the
    process's CPU is reported as ``unattributed``)."""

    def __init__(self) -> None:
        self.main = threading.get_native_id()  # the event loop's thread (the caller's)
        self.last: dict[int, tuple[str, float]] = {}
        self.gone: dict[str, float] = {}
        self.tick = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _kind(tid: int, comm: str, main: int) -> str:
        if tid == main:
            return "loop"
        if comm.startswith(("therasim-memor", "python")):  # Python < 3.14 names no OS thread: the memory pool's threads (and a malloc_trim thread)
            return "python_threads"
        if comm.startswith(("tokio", "chroma")) or "tokio" in comm:
            return "chroma_rust"
        return "other:" + comm

    def sample(self) -> dict[str, float]:
        seen: dict[int, tuple[str, float]] = {}
        try:
            tids = [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:
            return {}
        for tid in tids:
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    raw = f.read()
            except OSError:
                continue
            comm = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw[raw.rindex(")") + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / self.tick
            seen[tid] = (self._kind(tid, comm, self.main), cpu)
        for tid, (k, c) in self.last.items():
            if tid not in seen:
                self.gone[k] = self.gone.get(k, 0.0) + c
        self.last = seen
        out = dict(self.gone)
        for k, c in seen.values():
            out[k] = out.get(k, 0.0) + c
        return out


def _per_call_by_kind(a: dict[str, float], b: dict[str, float], total: float | None, calls: int) -> dict[str, float]:
    """CPU ms per model call by thread kind between two :class:`_ThreadCPU` samples
    (``other:`` kinds summed; with ``total``, what no thread sample caught)."""
    out: dict[str, float] = {}
    for k in b:
        kk = "other" if k.startswith("other:") else k
        out[kk] = out.get(kk, 0.0) + b[k] - a.get(k, 0.0)
    if total is not None:
        out["unattributed"] = total - sum(out.values())
    return {k: round(1000 * v / max(calls, 1), 3) for k, v in sorted(out.items())}


def _completed(rd: Any) -> int:
    """Courses completed so far (status lines in courses.jsonl)."""
    try:
        with open(rd.courses, encoding="utf-8") as f:
            return sum(1 for line in f if '"completed"' in line)
    except OSError:
        return 0


def _slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys against xs (None with fewer than 3 distinct points)."""
    if len(set(xs)) < 3:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def _session_end_groups(events: Path, bounds: list[float], gap_s: float = 0.05) -> list[float | None]:
    """How synchronised the courses in flight are, per window: the mean number of
    sessions ending together (``session_done`` events less than ``gap_s`` apart, from
    the run's events.jsonl). Work done once per group (a memory upsert, a checkpoint
    commit, an event-loop iteration) is shared by the group, so its cost per call
    rises as the courses' phases spread over a long run."""
    import datetime
    from bisect import bisect_right

    ends: list[float] = []
    try:
        with open(events, encoding="utf-8") as f:
            for line in f:
                if '"session_done"' in line:
                    ts = json.loads(line)["timestamp"].replace("Z", "+00:00")
                    ends.append(datetime.datetime.fromisoformat(ts).timestamp())
    except (OSError, ValueError, KeyError):
        return []
    ends.sort()
    out: list[float | None] = []
    for a, b in itertools.pairwise(bounds):
        w = ends[bisect_right(ends, a) : bisect_right(ends, b)]
        groups = 1 + sum(1 for x, y in itertools.pairwise(w) if y - x > gap_s)
        out.append(round(len(w) / groups, 2) if w else None)
    return out


def _first_last(xs: list[float | None], k: int = 3) -> list[float] | None:
    """Mean of the first ``k`` and of the last ``k`` values present (None with fewer than 2k)."""
    v = [x for x in xs if x is not None]
    if len(v) < 2 * k:
        return None
    return [round(statistics.fmean(v[:k]), 2), round(statistics.fmean(v[-k:]), 2)]


def _round(x: float | None, nd: int) -> float | None:
    return round(x, nd) if x is not None else None


def _drift(per_min: list[float], cpu: list[float], k: int = 3) -> dict[str, Any]:
    """Throughput and CPU per call of the first ``k`` windows against the last ``k``
    (of the windows after the first wave of courses): a run whose cost is flat in the
    courses done has ratios near 1."""
    if len(per_min) < 2 * k:
        return {"calls_per_min_first_last": None, "cpu_ms_per_call_first_last": None}
    first, last = statistics.fmean(per_min[:k]), statistics.fmean(per_min[-k:])
    cfirst, clast = statistics.fmean(cpu[:k]), statistics.fmean(cpu[-k:])
    return {
        "calls_per_min_first_last": [round(first), round(last), round(last / first, 3)],
        "cpu_ms_per_call_first_last": [round(cfirst, 2), round(clast, 2), round(clast / cfirst, 3)],
    }


def _config(url: str, concurrency: int, memory: bool, shape: tuple[int, int] = (2, 4)) -> Any:
    from therasim.config import RunConfig

    return RunConfig.model_validate(
        {
            "models": {"default": {"provider": "openai", "model": "stub", "base_url": url + "/v1", "max_retries": 8, "timeout_s": 30}},
            "course": {"preset": "lean", "sessions": shape[0], "max_turns": shape[1], "memory": memory},
            "memory": {"embedding": "hash"},
            "seed": 0,
            "concurrency": concurrency,
        }
    )


def one(n: int, concurrency: int, url: str, bucket_s: float, root: Path, memory: bool, warmup: bool = True, shape: tuple[int, int] = (2, 4), layout: str | None = None, max_wall_s: float | None = None, checkpoints: str = "sqlite") -> dict[str, Any]:
    """One cohort in this process (called in a child process)."""
    import gc

    if checkpoints == "memory":
        _checkpoints_in_memory()

    from therasim.runner import arun_dir, start_run
    from therasim.tools.bench import _get

    tag = f"{n}-{layout or 'default'}" + ("" if memory else "-nomem") + ("" if checkpoints == "sqlite" else f"-{checkpoints}") + (f"-g{os.environ['THERASIM_MEMORY_GATHER_MS']}" if os.environ.get("THERASIM_MEMORY_GATHER_MS") else "") + (f"-h{os.environ['THERASIM_CHROMA_HNSW_SYNC']}" if os.environ.get("THERASIM_CHROMA_HNSW_SYNC") else "") + f"-p{os.getpid()}"
    if warmup:
        _warm_up(url, root, memory, tag, shape, layout)
    cfg = _config(url, concurrency, memory, shape)
    pauses: list[float] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:  # the collector's pauses (a stall suspect)
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses.append(time.perf_counter() - started.pop())

    gc.callbacks.append(on_gc)
    counters = _Counters()
    # sampled inside start_run (the config's seed is 0) and not kept here: this process's
    # memory is the runner's, which reads the profiles from the run folder as courses start
    rd, _ = start_run(cfg, sample=n, out=root / f"run{tag}", run_id=f"scale{n}")
    _set_layout(rd, layout)
    r0 = int(_get(url + "/metrics")["requests"])
    calls_at: list[tuple[float, int]] = []
    rss_at: list[float] = []
    done_at: list[int] = []
    cpu_at: list[float] = []
    main_at: list[float] = []  # the event loop's thread (graphs, checkpoints, run files); the rest is the memory pool's threads
    wall_at: list[float] = []
    sys_at: list[float] = []  # kernel time (system calls, page faults), all threads
    native_at: list[dict[str, float]] = []  # resident memory by kind (_native)
    tcpu = _ThreadCPU()
    tcpu_at: list[dict[str, float]] = []  # CPU seconds by thread kind (_ThreadCPU), cumulative

    async def sample_calls(t0: float) -> None:
        while True:
            await asyncio.sleep(bucket_s)
            calls_at.append((time.perf_counter() - t0, int(_get(url + "/metrics")["requests"]) - r0))
            rss_at.append(_rss_mb())
            done_at.append(_completed(rd))
            cpu_at.append(time.process_time() - c0)
            main_at.append(time.thread_time() - m0)
            sys_at.append(os.times().system - s0)
            counters.sample()
            native_at.append(_native())
            tcpu_at.append(tcpu.sample())
            wall_at.append(time.time())

    async def go() -> Any:
        t0 = time.perf_counter()
        sampler = asyncio.get_running_loop().create_task(sample_calls(t0))
        try:
            return await asyncio.wait_for(arun_dir(rd, concurrency=concurrency), max_wall_s)
        except asyncio.TimeoutError:
            return None  # stopped at --max-wall-s: what was done is reported
        finally:
            sampler.cancel()

    c0, t0, m0, s0, w0 = time.process_time(), time.perf_counter(), time.thread_time(), os.times().system, time.time()
    native0 = _native()
    tcpu0 = tcpu.sample()
    from therasim import runner as _runner

    res = getattr(_runner, "run_loop", asyncio.run)(go())  # the loop `therasim run` starts (uvloop when installed); asyncio's for a revision from before
    wall, cpu, main_cpu = time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - m0
    native_end = _native()
    tcpu_end = tcpu.sample()
    calls = int(_get(url + "/metrics")["requests"]) - r0
    gc.callbacks.remove(on_gc)
    per_min, cpu_per_call, main_per_call, sys_per_call = [], [], [], []
    prev_t, prev_c, prev_cpu, prev_main, prev_sys = 0.0, 0, 0.0, 0.0, 0.0
    for (t, c), u, mu, su in zip(calls_at, cpu_at, main_at, sys_at, strict=True):
        if t - prev_t > 0:
            per_min.append((c - prev_c) * 60.0 / (t - prev_t))
            cpu_per_call.append(round(1000 * (u - prev_cpu) / max(c - prev_c, 1), 2))
            main_per_call.append(round(1000 * (mu - prev_main) / max(c - prev_c, 1), 2))
            sys_per_call.append(round(1000 * (su - prev_sys) / max(c - prev_c, 1), 2))
        prev_t, prev_c, prev_cpu, prev_main, prev_sys = t, c, u, mu, su
    med = statistics.median(per_min) if per_min else None
    # slopes against courses done, once the first wave of courses in flight has ended
    steady = [i for i, d in enumerate(done_at) if d >= min(concurrency, n)]
    rss_slope = _slope([done_at[i] / 1000 for i in steady], [rss_at[i] for i in steady])
    cpu_slope = _slope([done_at[i] / 1000 for i in steady], [cpu_per_call[i] for i in steady])
    cpm_slope = _slope([done_at[i] / 1000 for i in steady], [per_min[i] for i in steady])
    drift = _drift([per_min[i] for i in steady], [cpu_per_call[i] for i in steady])
    return {
        "courses": n,
        "concurrency": concurrency,
        "memory": memory,
        "layout": layout or rd.manifest().get("memory_layout", "per-client"),
        "sessions": shape[0],
        "turns": shape[1],
        "completed": len(res.completed) if res is not None else sum(1 for v in rd.course_status().values() if v.get("status") == "completed"),
        "failed": len(res.failed) if res is not None else None,
        "stopped_at_max_wall_s": res is None,
        "calls": calls,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "cpu_ms_per_call": round(1000 * cpu / max(calls, 1), 3),
        "main_thread_cpu_ms_per_call": round(1000 * main_cpu / max(calls, 1), 3),
        "cpu_ms_per_call_by_thread": _per_call_by_kind(tcpu0, tcpu_end, cpu, calls),
        "memory_upserts_per_1k_calls": round(1000 * (counters.stores[-1].upserts if counters.stores else 0) / max(calls, 1), 1),
        "memory_reads_per_1k_calls": round(1000 * (getattr(counters.stores[-1], "reads", 0) if counters.stores else 0) / max(calls, 1), 1),
        "memory_blocks_opened": counters.stores[-1].blocks_opened if counters.stores else 0,
        "calls_per_s": round(calls / wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "calls_per_min": {"min": round(min(per_min)), "median": round(med or 0), "max": round(max(per_min))} if per_min else None,
        "slowest_window_vs_median": round(min(per_min) / med, 3) if per_min and med else None,
        "windows": len(per_min),
        "gc_pause_s": round(sum(pauses), 2),
        "gc_max_pause_ms": round(1000 * max(pauses, default=0.0), 1),
        "checkpoints_mb": _dir_mb(rd.checkpoints) + _dir_mb(Path(str(rd.checkpoints) + "-wal")),
        "memory_mb": _dir_mb(rd.memory),
        "rss_mb_by_window": rss_at,
        "native_start": native0,
        "native_end": native_end,
        "native_by_window": native_at,
        "cpu_ms_per_call_by_thread_by_window": [_per_call_by_kind(a, b, None, c1 - c0_) for a, b, c0_, c1 in zip([tcpu0, *tcpu_at], tcpu_at, [0, *[c for _, c in calls_at]], [c for _, c in calls_at], strict=False)],
        "completed_by_window": done_at,
        "cpu_ms_per_call_by_window": cpu_per_call,
        "calls_per_min_by_window": [round(x) for x in per_min],
        "main_thread_cpu_ms_per_call_by_window": main_per_call,
        "system_cpu_ms_per_call_by_window": sys_per_call,
        **counters.by_window([c for _, c in calls_at]),
        "session_ends_per_group_by_window": (groups := _session_end_groups(rd.events, [w0, *wall_at])),
        "session_ends_per_group_first_last": _first_last(groups),
        "memory_upserts_per_1k_calls_first_last": _first_last(counters.by_window([c for _, c in calls_at])["memory_upserts_per_1k_calls_by_window"]),
        "main_thread_cpu_ms_per_call_per_1k_courses": _round(_slope([done_at[i] / 1000 for i in steady], [main_per_call[i] for i in steady]), 3),
        "rss_mb_per_1k_courses": round(rss_slope, 1) if rss_slope is not None else None,
        "cpu_ms_per_call_per_1k_courses": round(cpu_slope, 3) if cpu_slope is not None else None,
        "calls_per_min_per_1k_courses": round(cpm_slope) if cpm_slope is not None else None,
        "checkpoints": checkpoints,
        **drift,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohorts", default="64,1000", help="comma-separated cohort sizes")
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--bucket-s", type=float, default=60.0, help="throughput window (the issue asks per minute)")
    ap.add_argument("--no-memory", action="store_true", help="memory.backend none (to isolate the memory layer)")
    ap.add_argument("--memory", default=None, help="comma-separated: on and/or off (memory.backend none); one run of each cohort per value")
    ap.add_argument("--layouts", default=None, help="comma-separated memory layouts to run each cohort under (default: the one new runs get)")
    ap.add_argument("--checkpoints", default="sqlite", help="comma-separated: sqlite (the run folder's file) and/or memory (an in-memory SQLite database: isolates the file's cost); one run of each cohort per value")
    ap.add_argument("--gather-ms", default=None, help="comma-separated THERASIM_MEMORY_GATHER_MS values (0: memory writes never wait to share an upsert); one run of each cohort per value")
    ap.add_argument("--hnsw-sync", default=None, help="comma-separated THERASIM_CHROMA_HNSW_SYNC values (the block collections' hnsw:sync_threshold; Chroma's default is 1000); one run of each cohort per value")
    ap.add_argument("--arena-max", default=None, help="comma-separated THERASIM_MALLOC_ARENA_MAX values (0: glibc's default arenas; the runner's default caps them, therasim.runner.MALLOC_ARENA_MAX); one run of each cohort per value")
    ap.add_argument("--base", default=None, help="a git revision: each cohort also runs on that revision's orchestrator (before_after.baseline_package), just before this tree's, in one invocation")
    ap.add_argument("--repeat", type=int, default=1, help="make the whole list of runs this many times (arms alternate)")
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--max-wall-s", type=float, default=None, help="stop each cohort after this long and report what it did (a cohort too large for the machine's time)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--layout", help=argparse.SUPPRESS)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.concurrency, a.url, a.bucket_s, Path(a.root), not a.no_memory, shape=(a.sessions, a.turns), layout=a.layout, max_wall_s=a.max_wall_s, checkpoints=a.checkpoints)))
        return

    from therasim.tools.bench import _Stub

    cores = None
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2:
        mine = sorted(os.sched_getaffinity(0))
        cores = ({mine[0]}, {mine[1]})
    stub = _Stub("zero", cores=cores)
    results = []
    try:
        root = Path(tempfile.mkdtemp(prefix="therasim-scale-"))
        mems = ["off"] if a.no_memory else (a.memory or "on").split(",")
        gathers: list[str | None] = list(a.gather_ms.split(",")) if a.gather_ms else [None]
        syncs: list[str | None] = list(a.hnsw_sync.split(",")) if a.hnsw_sync else [None]
        arenas: list[str | None] = list(a.arena_max.split(",")) if a.arena_max else [None]
        revs: list[str | None] = [a.base, None] if a.base else [None]
        runs = [(n, lay, m, ck, g, hs, am, rev) for lay in (a.layouts.split(",") if a.layouts else [None]) for m in mems for ck in a.checkpoints.split(",") for g in gathers for n in (int(x) for x in a.cohorts.split(",")) for hs in syncs for am in arenas for rev in revs] * a.repeat
        base_pkg = None
        if a.base:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from before_after import baseline_package

            base_pkg = str(baseline_package(a.base))
        for n, lay, m, ck, g, hs, am, rev in runs:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(n), "--concurrency", str(a.concurrency), "--url", stub.url, "--root", str(root), "--bucket-s", str(a.bucket_s)]
            cmd += ["--sessions", str(a.sessions), "--turns", str(a.turns)] + (["--layout", lay] if lay else [])
            cmd += ["--max-wall-s", str(a.max_wall_s)] if a.max_wall_s else []
            cmd += ["--checkpoints", ck] + (["--no-memory"] if m == "off" else [])

            def pin(c: Any = cores) -> None:
                if c:
                    os.sched_setaffinity(0, c[0])

            env = dict(os.environ)
            if g is not None:
                env["THERASIM_MEMORY_GATHER_MS"] = g
            if hs is not None:
                env["THERASIM_CHROMA_HNSW_SYNC"] = hs
            if am is not None:
                env["THERASIM_MALLOC_ARENA_MAX"] = am
            if rev is not None and base_pkg is not None:
                env["PYTHONPATH"] = base_pkg + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            out = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=pin, check=False, env=env, cwd=tempfile.gettempdir())
            if out.returncode != 0:
                raise SystemExit(f"cohort {n} failed:\n{out.stderr[-3000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if g is not None:
                r["gather_ms"] = float(g)
            if hs is not None:
                r["hnsw_sync"] = int(hs)
            if am is not None:
                r["arena_max"] = int(am)
            if a.base:
                r["revision"] = rev or "this tree"
            r["load_avg"] = list(os.getloadavg())
            results.append(r)
            print(json.dumps(r), flush=True)
    finally:
        stub.close()
    first: dict[str, float] = {}

    def arm(r: dict[str, Any]) -> str:
        g = f", gather {r['gather_ms']:g} ms" if "gather_ms" in r else ""
        g += f", hnsw sync {r['hnsw_sync']}" if "hnsw_sync" in r else ""
        g += f", arena max {r['arena_max']}" if "arena_max" in r else ""
        g += f", {r['revision']}" if "revision" in r else ""
        return f"{r['layout'] if r['memory'] else 'no memory'}, {r.get('checkpoints', 'sqlite')} checkpoints{g}"

    for r in results:
        first.setdefault(arm(r), r["cpu_ms_per_call"])
    print("\n| arm | courses (completed) | calls | wall s | CPU ms/call | vs first of its arm | peak RSS MB | RSS MB per 1k courses | CPU ms/call per 1k courses | CPU ms/call first / last windows | calls/min first / last windows (ratio) | sessions ending together first / last | Chroma upserts per 1k calls first / last | calls/min min / median / max | slowest window / median | checkpoints MB | memory MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        cpm = r["calls_per_min"] or {}
        cfl, mfl = r.get("cpu_ms_per_call_first_last"), r.get("calls_per_min_first_last")
        print(
            f"| {arm(r)} | {r['courses']:,} ({r['completed']:,}) | {r['calls']:,} | {r['wall_s']} | {r['cpu_ms_per_call']} | {r['cpu_ms_per_call'] / first[arm(r)]:.2f}x | {r['peak_rss_mb']} | "
            f"{r.get('rss_mb_per_1k_courses')} | {r.get('cpu_ms_per_call_per_1k_courses')} | "
            f"{f'{cfl[0]} / {cfl[1]}' if cfl else '-'} | {f'{mfl[0]:,} / {mfl[1]:,} ({mfl[2]})' if mfl else '-'} | "
            f"{' / '.join(map(str, r.get('session_ends_per_group_first_last') or ['-']))} | {' / '.join(map(str, r.get('memory_upserts_per_1k_calls_first_last') or ['-']))} | "
            f"{cpm.get('min', '-')} / {cpm.get('median', '-')} / {cpm.get('max', '-')} | {r['slowest_window_vs_median']} | {r['checkpoints_mb']} | {r['memory_mb']} |"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
