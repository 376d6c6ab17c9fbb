"""Checkpoint bytes per turn at 10 and 40 turns, per preset, through a real course
(course graph + session graph, the run's compressed AsyncSqliteSaver, sync
durability), with a scripted model so only orchestration is measured.

    python benchmarks/checkpoint_growth.py [--json out.json] [--presets minimal,lean,full]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from therasim.tools.bench import checkpoint_bytes_per_turn


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--presets", default="minimal,lean,full")
    a = ap.parse_args()
    rows = []
    for name in a.presets.split(","):
        b10, b40 = checkpoint_bytes_per_turn(10, name), checkpoint_bytes_per_turn(40, name)
        rows.append({"preset": name, "bytes_per_turn_10": round(b10), "bytes_per_turn_40": round(b40), "ratio_40_10": round(b40 / b10, 3)})
    print("| preset | bytes/turn at 10 turns | at 40 turns | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['bytes_per_turn_10']} | {r['bytes_per_turn_40']} | {r['ratio_40_10']} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
