"""CPU per stored item in embedded Chroma by collection configuration and metadata
shape, arms interleaved in one process (issue #17, session 17, mem).

Each arm has its own embedded Chroma folder and one collection shaped like the
blocks layout's (cosine space, ``hnsw:sync_threshold`` 100), prefilled, then upserts
of ``--batch`` items (about what a 64-course run's grouped upserts hold) are timed
round-robin across the arms: process CPU (every thread: Chroma's Rust workers
included) and the calling thread's CPU, per item.

    python benchmarks/chroma_item_cost.py --rounds 12 --batch 64 --prefill 256 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from typing import Any

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

WORDS = "work sleep week worried tired breathing plan feel step okay maybe hopeful friend better today again small".split()


def _item(i: int, keys: str, rng: random.Random) -> tuple[str, dict[str, Any]]:
    doc = "Session 2: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
    cid = f"c0-{i // 13:04d}"
    m: dict[str, Any] = {"course": f"s/{cid}", "role": "counselor", "client_id": cid, "id": f"{i:024x}", "kind": "fact", "session": 1 + i % 3, "scope": "run-x"}
    if keys in ("3", "4"):
        m = {k: m[k] for k in ("course", "client_id", "kind", "session")[4 - int(keys) :]}
    return doc, m


def _schema(fts: bool, unindexed: tuple[str, ...] = ()) -> Any:
    from chromadb.api.types import (
        FtsIndexConfig,
        HnswIndexConfig,
        Schema,
        StringInvertedIndexConfig,
        VectorIndexConfig,
    )

    s = Schema()
    s.create_index(VectorIndexConfig(space="cosine", embedding_function=None, hnsw=HnswIndexConfig(sync_threshold=100, batch_size=100)))
    if not fts:
        s.delete_index(config=FtsIndexConfig(), key="#document")
    for k in unindexed:
        s.delete_index(config=StringInvertedIndexConfig(), key=k)
    return s


ARMS: dict[str, dict[str, Any]] = {
    "today (7 keys, hnsw metadata)": {"meta": {"hnsw:space": "cosine", "hnsw:sync_threshold": 100}, "keys": "7"},
    "4 keys (no role/scope/id)": {"meta": {"hnsw:space": "cosine", "hnsw:sync_threshold": 100}, "keys": "4"},
    "schema, FTS on, 7 keys": {"schema": (True, ()), "keys": "7"},
    "schema, no FTS, 7 keys": {"schema": (False, ()), "keys": "7"},
    "schema, no FTS, 4 keys": {"schema": (False, ()), "keys": "4"},
    "schema, no FTS, role/scope/id unindexed": {"schema": (False, ("role", "scope", "id")), "keys": "7"},
    "sync_threshold 1000 (Chroma default)": {"meta": {"hnsw:space": "cosine"}, "keys": "7"},
    "3 keys (client_id, kind, session)": {"meta": {"hnsw:space": "cosine", "hnsw:sync_threshold": 100}, "keys": "3"},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prefill", type=int, default=256)
    ap.add_argument("--dim", type=int, default=64, help="64: the hash embedding the #17 benchmarks use; 384: MiniLM")
    ap.add_argument("--arms", default=",".join(str(i) for i in range(len(ARMS))), help="indexes into ARMS")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    import chromadb
    import numpy as np
    from chromadb.config import Settings

    names = [list(ARMS)[int(i)] for i in a.arms.split(",")]
    root = tempfile.mkdtemp(prefix="chroma-item-")
    arms: dict[str, Any] = {}
    try:
        for n, name in enumerate(names):
            spec = ARMS[name]
            c = chromadb.PersistentClient(path=os.path.join(root, str(n)), settings=Settings(anonymized_telemetry=False))
            kw: dict[str, Any] = {"metadata": spec.get("meta")}
            if "schema" in spec:
                kw = {"metadata": {"layout": "blocks"}, "schema": _schema(*spec["schema"])}
            try:
                col = c.get_or_create_collection("xcol", embedding_function=None, **kw)
            except Exception as e:  # this Chroma refuses the configuration
                print(f"{name}: refused: {e!r}"[:300])
                continue
            arms[name] = {"client": c, "col": col, "keys": spec["keys"], "k": 0, "rng": random.Random(1), "nrng": np.random.default_rng(0), "cpu": [], "thread": []}
        for st in arms.values():
            st["col"].upsert(**_batch(st, a.prefill, np, a.dim))
        for _ in range(a.rounds):
            for st in arms.values():
                b = _batch(st, a.batch, np, a.dim)
                t0, c0 = time.thread_time(), time.process_time()
                st["col"].upsert(**b)
                time.sleep(0.02)  # Chroma's workers finish what the upsert started
                st["cpu"].append((time.process_time() - c0) * 1000 / a.batch)
                st["thread"].append((time.thread_time() - t0) * 1000 / a.batch)
        base = statistics.median(next(iter(arms.values()))["cpu"])
        out = {"dim": a.dim, "rounds": a.rounds, "batch": a.batch, "prefill": a.prefill, "load": os.getloadavg(), "arms": {}}
        for name, st in arms.items():
            med, thr = statistics.median(st["cpu"]), statistics.median(st["thread"])
            out["arms"][name] = {"cpu_ms_per_item": round(med, 4), "caller_thread_ms_per_item": round(thr, 4), "ratio": round(med / base, 3)}
            print(f"{name:42s} {med:.3f} ms/item (caller thread {thr:.3f})  x{med / base:.3f}")
        print("load", os.getloadavg())
        if a.json:
            with open(a.json, "w") as f:
                json.dump(out, f, indent=1)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _batch(st: dict[str, Any], n: int, np: Any, dim: int) -> dict[str, Any]:
    ids, docs, metas = [], [], []
    for _ in range(n):
        d, m = _item(st["k"], st["keys"], st["rng"])
        ids.append(f"p{st['k']:024x}")
        docs.append(d)
        metas.append(m)
        st["k"] += 1
    return {"ids": ids, "documents": docs, "metadatas": metas, "embeddings": st["nrng"].standard_normal((n, dim)).astype("float32")}


if __name__ == "__main__":
    main()
