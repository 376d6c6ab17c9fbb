"""Per-thread CPU per model call, a baseline revision against this tree, alternated
in one invocation (issue #17, session 17, mem). Each run is
``benchmarks/thread_cpu.py COURSES CONCURRENCY ROUNDS`` (the integrator's per-thread
/proc census over the measured run only) in a fresh process; the baseline's package
is ``REV``'s tree (benchmarks/before_after.py's ``baseline_package``), put first on
``PYTHONPATH``. Needs a ``zero`` stub (``STUB_URL``, default http://127.0.0.1:8011).

    python benchmarks/thread_cpu_ab.py --base 8cbad25 --repeat 4 --json out.json -- 64 64 2
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from before_after import baseline_package  # noqa: E402

GROUPS = {"MAIN": "event loop thread", "python": "other Python threads (memory pool, census)", "tokio-rt-worker": "Chroma Rust (tokio)", "sqlx-sqlite-wor": "Chroma Rust (sqlite)"}


def one(env: dict[str, str], args: list[str]) -> list[dict[str, float]]:
    import tempfile

    tmp = tempfile.mkdtemp(prefix="thread-cpu-")  # the runs' folders, removed after
    try:
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "thread_cpu.py"), *args], cwd=ROOT, env={**env, "THR_TMP": tmp}, capture_output=True, text=True, check=True).stdout
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    runs: list[dict[str, float]] = []
    for line in out.splitlines():
        m = re.match(r"calls (\d+) cpu_ms_per_call ([\d.]+)", line)
        if m:
            runs.append({"calls": float(m.group(1)), "all": float(m.group(2))})
            continue
        m = re.match(r"\s+(\S+)\s+n=\s*(\d+) user ([\d.]+) sys ([\d.]+)", line)
        if m and runs:
            runs[-1][m.group(1)] = float(m.group(3)) + float(m.group(4))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--json", default=None)
    ap.add_argument("args", nargs=argparse.REMAINDER, help="after --: thread_cpu.py's COURSES CONCURRENCY ROUNDS")
    a = ap.parse_args()
    args = [x for x in a.args if x != "--"] or ["64", "64", "2"]
    pkg = baseline_package(a.base)
    try:
        res: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
        loads = [os.getloadavg()[0]]
        for i in range(a.repeat):
            for arm in (("base", "new") if i % 2 == 0 else ("new", "base")):
                env = dict(os.environ)
                if arm == "base":
                    env["PYTHONPATH"] = str(pkg) + os.pathsep + env.get("PYTHONPATH", "")
                res[arm] += one(env, args)
                loads.append(os.getloadavg()[0])
        out: dict[str, object] = {"base": a.base, "args": args, "repeat": a.repeat, "load1": loads, "memory": os.environ.get("MEM", "1")}
        table = {}
        for key in ("all", *GROUPS):
            b = statistics.median(r.get(key, 0.0) for r in res["base"])
            n = statistics.median(r.get(key, 0.0) for r in res["new"])
            table[key] = {"base": round(b, 3), "new": round(n, 3), "ratio": round(n / b, 3) if b else None}
            print(f"{GROUPS.get(key, 'all threads'):45s} base {b:.3f}  new {n:.3f} ms/call  x{n / b if b else float('nan'):.3f}")
        out["median_ms_per_call"] = table
        out["runs"] = res
        print("load1", [round(x, 2) for x in loads])
        if a.json:
            Path(a.json).write_text(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(pkg.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
