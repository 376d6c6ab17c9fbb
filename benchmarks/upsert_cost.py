"""What one Chroma upsert costs, as the memory store makes them (embedded Chroma, blocks
layout, hash embedding, explicit embeddings, one client's batch of ``--sizes`` items
into a block collection already holding ``--prefill`` items), for two values of the
block collections' ``hnsw:sync_threshold`` (``--arms``: Chroma's default 1000, the
store's ``HNSW_SYNC``), each arm its own store and folder, alternated upsert by upsert
in one process (the first arm of a round rotates): CPU per upsert (all threads), split
by thread (the caller's Python thread, Chroma's tokio workers, its SQLite worker),
bytes written to disk per upsert, and the rows left in Chroma's log.

    python benchmarks/upsert_cost.py --sizes 1,4,16,64 --rounds 150 --json out.json

Why the threshold: embedded Chroma re-reads, on every upsert, the collection's log
since its HNSW index was last persisted, and persists it every ``sync_threshold``
items written, so at 1000 an upsert decodes ~500 log records on average
(docs/benchmarks.md, "the fixed cost of a Chroma upsert").
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _threads() -> dict[str, tuple[str, int]]:
    """CPU ticks so far of each thread of this process, with its group."""
    out: dict[str, tuple[str, int]] = {}
    for t in glob.glob(f"/proc/{os.getpid()}/task/*"):
        try:
            with open(t + "/comm") as f:
                comm = f.read().strip()
            with open(t + "/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        group = "tokio" if "tokio" in comm else "sqlite" if "sqlx" in comm else "python"
        out[t] = (group, int(fields[11]) + int(fields[12]))
    return out


def _written() -> int:
    try:
        with open(f"/proc/{os.getpid()}/io") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("write_bytes"))
    except (OSError, StopIteration):
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arms", default="1000,100", help="comma-separated hnsw:sync_threshold values, one store each (the first is the ratios' base)")
    ap.add_argument("--sizes", default="1,4,16,64", help="items per upsert")
    ap.add_argument("--rounds", type=int, default=150, help="upserts of each size per arm")
    ap.add_argument("--prefill", type=int, default=4500, help="items in the block collection before timing (a 256-client block holds ~450-9,450)")
    ap.add_argument("--settle-ms", type=float, default=5.0, help="pause after each upsert, inside its timing (Chroma's background work after the call is its own)")
    ap.add_argument("--json")
    a = ap.parse_args()

    from therasim.memory.chroma import ChromaMemoryStore
    from therasim.testing import HashEmbedding

    arms = [int(x) for x in a.arms.split(",")]
    sizes = [int(x) for x in a.sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="therasim-upsert-"))
    stores: dict[int, Any] = {}
    counter = {s: 0 for s in arms}
    clients = [f"c{i}" for i in range(256)]
    emb = HashEmbedding()

    def items(sync: int, n: int) -> tuple[str, list[dict[str, Any]], Any]:
        k = counter[sync]
        counter[sync] += n
        cid = clients[(k // 9) % len(clients)]
        its = [{"text": f'Client in session {1 + k % 2}: "I keep lying awake before work, note {k + i}"', "kind": "fact", "session": 1 + k % 2, "course": cid, "id": f"n{k + i}"} for i in range(n)]
        return cid, its, emb([it["text"] for it in its])

    for sync in arms:
        s = ChromaMemoryStore.persistent(str(root / f"s{sync}"), HashEmbedding(), layout="blocks", scope="bench")
        s.hnsw_sync = sync
        s.gather_s = 0.0  # each add is its own upsert at once (no wait for other clients' writes)
        s.assign_blocks(clients, 256)
        stores[sync] = s
        for _ in range(a.prefill // 9):
            cid, its, e = items(sync, 9)
            s.add(cid, "counselor", its, e)
    hz = os.sysconf("SC_CLK_TCK")
    res: dict[tuple[int, int], dict[str, Any]] = {(s, n): {"cpu": [], "threads": {}, "written": 0} for s in arms for n in sizes}
    # CPU per upsert by where it falls between two HNSW persists of its collection (fifths
    # of the arm's sync_threshold, from the items written to the collection before it)
    cycle: dict[int, dict[int, list[float]]] = {s: {} for s in arms}
    load0 = os.getloadavg()
    for r in range(a.rounds):
        for n in sizes:
            order = arms[r % len(arms) :] + arms[: r % len(arms)]
            for sync in order:
                fifth = (counter[sync] % sync) * 5 // sync
                cid, its, e = items(sync, n)
                t0, w0, c0 = _threads(), _written(), time.process_time()
                stores[sync].add(cid, "counselor", its, e)
                time.sleep(a.settle_ms / 1000)
                cpu = time.process_time() - c0
                t1, w1 = _threads(), _written()
                row = res[(sync, n)]
                row["cpu"].append(cpu)
                cycle[sync].setdefault(fifth, []).append(cpu)
                row["written"] += w1 - w0
                for tid, (g, v) in t1.items():
                    row["threads"][g] = row["threads"].get(g, 0) + v - t0.get(tid, (g, 0))[1]
    load1 = os.getloadavg()
    log_rows = {}
    for sync, s in stores.items():
        s.close()
        assert s._path is not None
        db = glob.glob(os.path.join(s._path, "blocks-*", "*", "chroma.sqlite3"))[0]
        cx = sqlite3.connect(db)
        log_rows[sync] = cx.execute("SELECT COUNT(*) FROM embeddings_queue").fetchone()[0]
        cx.close()
    out: dict[str, Any] = {"load_avg_start": load0, "load_avg_end": load1, "rounds": a.rounds, "prefill": a.prefill, "log_rows_at_end": log_rows, "results": []}
    base = arms[0]
    print(f"load average {load0[0]:.2f} -> {load1[0]:.2f}; {a.rounds} upserts of each size per arm, alternated; block collection prefilled with {a.prefill} items")
    print("| items per upsert | hnsw:sync_threshold | CPU ms per upsert (mean) | median | vs first arm (mean) | Python / tokio / SQLite thread ms | KB written per upsert |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        for sync in arms:
            row = res[(sync, n)]
            mean, med = statistics.fmean(row["cpu"]), statistics.median(row["cpu"])
            ratio = mean / statistics.fmean(res[(base, n)]["cpu"])
            th = {g: round(1000 * v / hz / a.rounds, 2) for g, v in row["threads"].items()}
            kb = row["written"] / a.rounds / 1024
            out["results"].append({"items": n, "sync_threshold": sync, "cpu_ms_mean": round(1000 * mean, 2), "cpu_ms_median": round(1000 * med, 2), "ratio_mean": round(ratio, 3), "thread_ms": th, "kb_written": round(kb, 1)})
            print(f"| {n} | {sync} | {1000 * mean:.2f} | {1000 * med:.2f} | {ratio:.2f} | {th.get('python', 0)} / {th.get('tokio', 0)} / {th.get('sqlite', 0)} | {kb:.0f} |")
    print(f"log rows at the end: {log_rows}")
    out["cpu_ms_median_by_fifth_of_sync_cycle"] = {s: {f: round(1000 * statistics.median(v), 2) for f, v in sorted(c.items())} for s, c in cycle.items()}
    for s_, c in out["cpu_ms_median_by_fifth_of_sync_cycle"].items():
        print(f"sync_threshold {s_}: CPU ms per upsert (median, all sizes) by fifth of the persist cycle: {c}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
