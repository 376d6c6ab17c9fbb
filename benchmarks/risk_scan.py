"""Latency of ``therasim.policies.risk.scan`` per utterance: the patterns alone and
patterns + the MiniLM classifier (policies/risk_model.py), over every utterance of the labelled set
(policies/data/risk_utterances.jsonl), one call per utterance, after a warm-up.
Wall-clock and process-CPU milliseconds (p50, p95, max) in one run, with the
machine's load average, so a loaded machine is visible in the figures.

    python benchmarks/risk_scan.py [--json out.json] [--threads 1] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def measure(texts: list[str], model: bool, repeat: int) -> dict[str, float]:
    from therasim.policies.risk import scan

    for t in texts[:20]:  # warm-up: model load, first-call allocations
        scan(t, model=model)
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(repeat):
        for t in texts:
            w0, c0 = time.perf_counter(), time.process_time()
            scan(t, model=model)
            wall.append((time.perf_counter() - w0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
    return {
        "n": len(wall),
        "wall_p50_ms": round(_pct(wall, 0.5), 2),
        "wall_p95_ms": round(_pct(wall, 0.95), 2),
        "wall_max_ms": round(max(wall), 2),
        "cpu_p50_ms": round(_pct(cpu, 0.5), 2),
        "cpu_p95_ms": round(_pct(cpu, 0.95), 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the classifier (default 1)")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    from therasim.policies.risk_model import _data_dir

    data = [json.loads(line) for line in (_data_dir() / "risk_utterances.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [r["text"] for r in data]
    load0 = os.getloadavg()[0]
    rows = {"patterns": measure(texts, False, a.repeat), "patterns+classifier": measure(texts, True, a.repeat)}
    out = {"cpu_count": os.cpu_count(), "torch_threads": a.threads, "loadavg_1min_before": round(load0, 2), "loadavg_1min_after": round(os.getloadavg()[0], 2), **rows}
    print(f"| detector | utterances | p50 wall ms | p95 wall ms | max wall ms | p50 CPU ms | p95 CPU ms |  (load {load0:.1f} -> {out['loadavg_1min_after']:.1f} on {os.cpu_count()} cores)")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['n']} | {r['wall_p50_ms']} | {r['wall_p95_ms']} | {r['wall_max_ms']} | {r['cpu_p50_ms']} | {r['cpu_p95_ms']} |")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
