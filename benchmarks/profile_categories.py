"""Where the orchestrator's CPU goes: sort a py-spy profile's samples into the
parts of the stack that own them. Record with ``--gil`` (samples of the thread
holding the GIL: Python work, not waiting) and ``-f raw``:

    therasim stub --profile zero --port 8011 &
    py-spy record -r 200 --gil --full-filenames -f raw -o prof.txt -- \\
        python benchmarks/cohort_scaling.py --one 64 --concurrency 64 --url http://127.0.0.1:8011 --root /tmp/x --bucket-s 10
    python benchmarks/profile_categories.py prof.txt

Each sample goes to the first category met walking from the innermost frame
outwards, skipping generic frames (json, re, copy, ...) so that their time counts
for the caller that asked for them. Import-time samples are left out.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

CATEGORIES = (
    ("checkpoints: serialise, compress, SQLite", r"therasim/_internal/checkpoint\.py|langgraph/checkpoint/|sqlite3|aiosqlite|zlib|zstandard|compression/zstd|ormsgpack"),
    ("checkpoints: LangGraph assembles them", r"langgraph/pregel/_checkpoint\.py|_put_checkpoint|create_checkpoint|_checkpointer_put"),
    ("memory: Chroma", r"site-packages/chromadb/"),
    ("memory: mirror, recall, embedding", r"/memory/|nodes/recall\.py|HashEmbedding"),
    ("HTTP transport", r"site-packages/(aiohttp|yarl|multidict)/|therasim/_internal/http\.py|therasim/providers\.py"),
    ("run files: events, transcripts, prompt log", r"site-packages/structlog/|therasim/_internal/rundir\.py|therasim/runner\.py|therasim/records\.py|therasim/redact\.py"),
    ("langchain-core", r"site-packages/langchain_core/"),
    ("the lean executor's own code", r"graphs/executor\.py"),
    ("nodes, prompts, policies, structured output", r"/(nodes|policies|graphs)/|therasim/(prompts|contract|state|context|structured)\.py|site-packages/pydantic"),
    ("LangGraph supersteps", r"site-packages/langgraph/"),
    ("asyncio event loop", r"asyncio/|selectors\.py"),
)
GENERIC = re.compile(r"/json/|/re/|/copy\.py|/dataclasses\.py|/typing\.py|<frozen abc>|/enum\.py|/functools\.py|/uuid\.py|/threading\.py|/contextlib\.py|/weakref")
IMPORT = re.compile(r"importlib|_bootstrap")


def categorise(path: str) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    total = 0
    pats = [(name, re.compile(p)) for name, p in CATEGORIES]
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            if not stack.strip():  # the GIL holder had no Python frame (native code, the collector)
                counts["no Python frame (native code, garbage collector)"] += int(n)
                total += int(n)
                continue
            frames = stack.split(";")
            if any(IMPORT.search(fr) for fr in frames):
                continue
            total += int(n)
            for fr in reversed(frames):
                if GENERIC.search(fr):
                    continue
                hit = next((name for name, p in pats if p.search(fr)), None)
                if hit:
                    counts[hit] += int(n)
                    break
            else:
                counts["other"] += int(n)
    return counts, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", help="py-spy raw output (-f raw)")
    a = ap.parse_args()
    counts, total = categorise(a.profile)
    print(f"| part of the stack | share of orchestrator CPU ({total:,} samples) |")
    print("|---|---|")
    for name, n in counts.most_common():
        print(f"| {name} | {100 * n / max(total, 1):.1f}% |")


if __name__ == "__main__":
    main()
