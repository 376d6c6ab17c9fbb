"""What grows with finished courses? One cohort in this process on the ``zero``
stub (the course shape of ``cohort_scaling.py``), sampled every ``--every``
completed courses: RSS before and after ``malloc_trim`` (what the allocator holds
but nothing uses), anonymous memory (/proc/self/smaps_rollup), the Python heap
(``sys.getallocatedblocks``, objects the collector tracks) and, with ``--trace``,
tracemalloc's largest differences from the first sample. At the end it drops
Chroma's cached Systems and reports RSS again (what embedded Chroma still held).

    python benchmarks/memory_growth.py --n 1280 --every 256                      # memory on
    python benchmarks/memory_growth.py --n 1280 --every 256 --no-memory          # the rest
    python benchmarks/memory_growth.py --n 1280 --every 256 --layout shared      # before blocks
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cohort_scaling as cs


def _smaps() -> dict[str, float]:
    out = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Rss", "Anonymous"):
                out[k.lower() + "_mb"] = round(int(v.split()[0]) / 1024, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1280, help="courses")
    ap.add_argument("--every", type=int, default=256, help="sample every this many completed courses")
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--turns", type=int, default=1)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--layout", default=None, help="the run's memory layout (default: what new runs get)")
    ap.add_argument("--trace", action="store_true", help="tracemalloc (slow)")
    ap.add_argument("--max-wall-s", type=float, default=1500)
    ap.add_argument("--out", default="memory_growth.jsonl")
    a = ap.parse_args()

    from chromadb.api.shared_system_client import SharedSystemClient

    from therasim.profiles import sample_profiles
    from therasim.runner import arun_dir, start_run
    from therasim.tools.bench import _get, _Stub

    stub = _Stub("zero")
    root = Path(tempfile.mkdtemp(prefix="therasim-growth-"))
    shape, memory = (a.sessions, a.turns), not a.no_memory
    cs._warm_up(stub.url, root, memory, "w", shape, a.layout)
    rd, _ = start_run(cs._config(stub.url, a.concurrency, memory, shape), profiles=sample_profiles(a.n, seed=0), out=root, run_id="growth")
    cs._set_layout(rd, a.layout)
    libc = ctypes.CDLL("libc.so.6")
    if a.trace:
        tracemalloc.start(8)
    first: list[Any] = []
    out = open(a.out, "w", encoding="utf-8")
    r0 = int(_get(stub.url + "/metrics")["requests"])
    t0, c0 = time.perf_counter(), time.process_time()

    def sample() -> None:
        d: dict[str, Any] = {"done": cs._completed(rd), "t": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1)}
        d["calls"] = int(_get(stub.url + "/metrics")["requests"]) - r0
        d["rss_mb"] = cs._rss_mb()
        libc.malloc_trim(0)
        d["rss_after_trim_mb"] = cs._rss_mb()
        d.update(_smaps())
        d["py_blocks"] = sys.getallocatedblocks()
        d["gc_objects"] = len(gc.get_objects())
        if a.trace:
            snap = tracemalloc.take_snapshot()
            if not first:
                first.append(snap)
            else:
                d["top"] = [(round(x.size_diff / 2**20, 2), x.count_diff, [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in x.traceback][-4:]) for x in snap.compare_to(first[0], "traceback")[:12]]
        print(json.dumps({k: v for k, v in d.items() if k != "top"}), flush=True)
        out.write(json.dumps(d) + "\n")
        out.flush()

    async def sampler() -> None:
        nxt = a.every
        while True:
            await asyncio.sleep(2)
            if cs._completed(rd) >= nxt:
                nxt += a.every
                sample()

    async def go() -> None:
        task = asyncio.get_running_loop().create_task(sampler())
        try:
            await asyncio.wait_for(arun_dir(rd, concurrency=a.concurrency), a.max_wall_s)
        except asyncio.TimeoutError:
            pass  # stopped at --max-wall-s: the samples so far stand
        finally:
            task.cancel()

    sample()
    asyncio.run(go())
    sample()
    stub.close()
    gc.collect()
    libc.malloc_trim(0)
    held = cs._rss_mb()
    SharedSystemClient.clear_system_cache()  # what embedded Chroma still held after the run
    gc.collect()
    libc.malloc_trim(0)
    end = {"end_rss_after_trim_mb": held, "after_dropping_chroma_mb": cs._rss_mb()}
    print(json.dumps(end))
    out.write(json.dumps(end) + "\n")
    out.close()


if __name__ == "__main__":
    main()
