"""Per-thread CPU per model call over the measured run only (a runner_arms-style
cohort; the integrator's /work/integ/s17/threads.py, kept here with the stub's URL
and the runs' folder settable). Threads are grouped by their /proc name: ``MAIN``
(the event loop's), ``python`` (other Python threads: the memory pool's, this
script's census thread), Chroma's ``tokio-rt-worker`` and ``sqlx-sqlite-wor``.

    STUB_URL=http://127.0.0.1:8011 python benchmarks/thread_cpu.py 64 64 2   # courses, in flight, rounds

``MEM=0``: memory off (``course.memory: false``); ``THR_TMP``: where the runs' folders go.
Each round is a fresh run in this process (the first pays one-time imports).
"""

from __future__ import annotations

import asyncio
import collections
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
import cohort_scaling as cs
import uvloop

from therasim.runner import arun_dir, start_run
from therasim.tools.bench import _get

TCK = os.sysconf("SC_CLK_TCK")


def snap() -> dict[str, tuple[str, float, float]]:
    """Each thread of this process: (name, user s, sys s)."""
    out = {}
    for t in os.listdir("/proc/self/task"):
        try:
            s = open(f"/proc/self/task/{t}/stat").read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2 :].split()
        out[t] = (s[s.index("(") + 1 : s.rindex(")")], int(f[11]) / TCK, int(f[12]) / TCK)
    return out


def one_round(url: str, n: int, conc: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="thr-", dir=os.environ.get("THR_TMP")))
    rd, _ = start_run(cs._config(url, conc, os.environ.get("MEM", "1") == "1", (2, 4)), sample=n, out=root, run_id="t")
    r0 = int(_get(url + "/metrics")["requests"])
    base = snap()
    last: dict[str, tuple[str, float, float]] = {}
    stop = threading.Event()

    def poll() -> None:  # threads that end before the run does keep their last reading
        while not stop.is_set():
            last.update(snap())
            time.sleep(0.05)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    c0 = time.process_time()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(arun_dir(rd, concurrency=conc))
    c = time.process_time() - c0
    stop.set()
    th.join()
    last.update(snap())
    calls = int(_get(url + "/metrics")["requests"]) - r0
    agg: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
    me = str(threading.get_native_id())
    for t, (name, u, s) in last.items():
        bu, bs = base.get(t, (name, 0.0, 0.0))[1:]
        k = "MAIN" if t == me else name.rstrip("0123456789_-")
        agg[k][0] += u - bu
        agg[k][1] += s - bs
        agg[k][2] += 1
    print(f"calls {calls} cpu_ms_per_call {1000 * c / calls:.3f}")
    for k, (u, s, cnt) in sorted(agg.items(), key=lambda x: -x[1][0] - x[1][1]):
        print(f"  {k:20s} n={int(cnt):3d} user {1000 * u / calls:.3f} sys {1000 * s / calls:.3f} ms/call")


def main() -> None:
    url = os.environ.get("STUB_URL", "http://127.0.0.1:8011")
    n, conc = int(sys.argv[1]), int(sys.argv[2])
    for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 else 1):
        one_round(url, n, conc)


if __name__ == "__main__":
    main()
