"""Run `therasim bench` configurations N times and print medians as a markdown table.

    python benchmarks/medians.py --repeat 3 --out bench-results/
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CONFIGS = {
    "h100-8b c=64": ["--profile", "h100-8b", "--clients", "64", "--sessions", "1", "--turns", "6", "--concurrency", "64", "--arms", "therasim"],
    "h100-8b c=256": ["--profile", "h100-8b", "--clients", "256", "--sessions", "1", "--turns", "3", "--concurrency", "256", "--arms", "therasim"],
    "api-like c=64 vs sequential": ["--profile", "api-like", "--clients", "64", "--sessions", "1", "--turns", "3", "--concurrency", "64", "--arms", "sequential,therasim", "--seq-clients", "2"],
}
KEYS = ("E", "E_courses", "cpu_ms_per_call", "speedup_vs_sequential", "prefix_hit_ratio", "prefix_hit_ratio_steady", "peak_rss_mb", "p50_turn_s", "p95_turn_s", "errors", "retries", "bytes_per_turn_10", "bytes_per_turn_40")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--only", default=None, help="comma-separated config names")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, args in CONFIGS.items():
        if a.only and name not in a.only.split(","):
            continue
        runs = []
        for i in range(a.repeat):
            f = out / f"{name.replace(' ', '_').replace('=', '')}-{i}.json"
            cmd = [sys.executable, "-m", "therasim.cli", "bench", *args, "--json", str(f), *(["--no-checkpoint-sizes"] if i else [])]
            print("$", " ".join(cmd[2:]), file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            runs.append(json.loads(f.read_text()))
        rows[name] = {k: statistics.median([r[k] for r in runs if isinstance(r.get(k), (int, float))]) if any(isinstance(r.get(k), (int, float)) for r in runs) else None for k in KEYS}
        rows[name]["valid"] = all(r.get("valid", True) for r in runs)
    print("| config | " + " | ".join(KEYS) + " | valid |")
    print("|---" * (len(KEYS) + 2) + "|")
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join("" if r[k] is None else str(round(r[k], 3)) for k in KEYS) + f" | {r['valid']} |")
    (out / "medians.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
