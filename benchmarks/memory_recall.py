"""Memory recall latency at scale: therasim's memory layouts (one collection per
client and role; one per role with the client in metadata) vs one global index
queried with a client filter on every recall (no mirror).

    python benchmarks/memory_recall.py --clients 1000 --per-client 100 --queries 2000

Vectors are random unit vectors of the MiniLM width (384), passed to Chroma
directly, so the figure is the store's recall cost; the MiniLM query embedding
is timed separately (--embed) because a run pays it once per query either way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]


def summary(name: str, ms: list[float]) -> dict[str, float | str | int]:
    return {"layout": name, "queries": len(ms), "p50_ms": round(pct(ms, 50), 3), "p95_ms": round(pct(ms, 95), 3), "p99_ms": round(pct(ms, 99), 3), "mean_ms": round(statistics.fmean(ms), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--per-client", type=int, default=100)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--global-queries", type=int, default=200, help="queries against the filtered global index (slow)")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--embed", action="store_true", help="also time MiniLM query embedding")
    ap.add_argument("--no-global", action="store_true")
    ap.add_argument("--layouts", default="per-client,shared", help="therasim memory layouts to build and query (comma-separated)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--dir", default=None, help="where to build the stores (default: a temp folder, removed after)")
    args = ap.parse_args()

    import chromadb
    from chromadb.config import Settings

    from therasim.memory import ChromaMemoryStore

    rng = np.random.default_rng(0)
    root = args.dir or tempfile.mkdtemp(prefix="therasim-recall-")
    os.makedirs(root, exist_ok=True)
    n = args.clients * args.per_client
    kinds = ["summary", "fact", "homework", "event", "risk", "plan"]

    def vecs(m: int) -> np.ndarray:
        v = rng.standard_normal((m, args.dim)).astype("float32")
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    results = []
    qs = vecs(args.queries)
    where = {"session": {"$lt": 8}}

    def run(st: ChromaMemoryStore, cids: list[str]) -> list[float]:
        ms = []
        for j, cid in enumerate(cids):
            t = time.perf_counter()
            out = st.search(cid, "counselor", "", k=args.k, where=where, embedding=qs[j % len(qs)])
            ms.append((time.perf_counter() - t) * 1000)
            assert len(out) == args.k
        return ms

    for layout in args.layouts.split(","):
        t0 = time.perf_counter()
        path = os.path.join(root, layout)
        store = ChromaMemoryStore(chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False)), embedding=None, layout=layout)
        for c in range(args.clients):
            items = [{"text": f"memory {i} of client {c}", "kind": kinds[i % 6], "session": i // 10, "id": f"c{c}-{i}"} for i in range(args.per_client)]
            store.add(f"client-{c:05d}", "counselor", items, embeddings=list(vecs(args.per_client)))
        build_s = time.perf_counter() - t0
        print(f"built {layout} store: {n} memories, {args.clients} clients, {build_s:.1f} s", file=sys.stderr)
        # A fresh store object: the first recall of each client loads its mirror from Chroma.
        fresh = ChromaMemoryStore(store.client, embedding=None, layout=layout)
        all_clients = [f"client-{c:05d}" for c in range(args.clients)]
        cold = run(fresh, all_clients)
        warm = run(fresh, [f"client-{int(rng.integers(args.clients)):05d}" for _ in range(args.queries)])
        direct = ChromaMemoryStore(fresh.client, embedding=None, cache=False, layout=layout)
        off = run(direct, [f"client-{int(rng.integers(args.clients)):05d}" for _ in range(min(args.queries, 1000))])
        meta = {"memories": n, "clients": args.clients, "build_s": round(build_s, 1)}
        results.append({**summary(f"therasim: {layout} layout, recall mirror warm (every recall after a client's first)", warm), **meta})
        results.append({**summary(f"therasim: {layout} layout, first recall of each client (loads its mirror)", cold), **meta})
        results.append({**summary(f"{layout} layout, Chroma query per recall (cache=False)", off), **meta})

    if not args.no_global:
        t0 = time.perf_counter()
        gc = chromadb.PersistentClient(path=os.path.join(root, "global"), settings=Settings(anonymized_telemetry=False))
        col = gc.get_or_create_collection("all", embedding_function=None, metadata={"hnsw:space": "cosine"})
        batch = 5000
        ids = [f"c{c}-{i}" for c in range(args.clients) for i in range(args.per_client)]
        for s in range(0, n, batch):
            e = min(n, s + batch)
            col.add(ids=ids[s:e], embeddings=vecs(e - s), metadatas=[{"client_id": f"client-{int(x.split('-')[0][1:]):05d}", "role": "counselor"} for x in ids[s:e]], documents=[f"m{x}" for x in ids[s:e]])
        gbuild = time.perf_counter() - t0
        print(f"built global index: {n} memories, {gbuild:.1f} s", file=sys.stderr)
        ms = []
        for j in range(args.global_queries):
            cid = f"client-{int(rng.integers(args.clients)):05d}"
            t = time.perf_counter()
            col.query(query_embeddings=[qs[j]], n_results=args.k, where={"$and": [{"client_id": cid}, {"role": "counselor"}]})
            ms.append((time.perf_counter() - t) * 1000)
        results.append({**summary("one global index, where client_id=...", ms), "memories": n, "clients": args.clients, "build_s": round(gbuild, 1)})

    if args.embed:
        from therasim.memory import MiniLMEmbedding

        emb = MiniLMEmbedding()
        emb(["warm up"])
        ms = []
        for j in range(200):
            t = time.perf_counter()
            emb([f"I could not sleep again after the night shift, number {j}"])
            ms.append((time.perf_counter() - t) * 1000)
        results.append({**summary("MiniLM query embedding (CPU), not part of recall", ms), "memories": 0, "clients": 0, "build_s": 0})

    print("| layout | memories | clients | queries | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['layout']} | {r['memories']} | {r['clients']} | {r['queries']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "machine": {"cpus": os.cpu_count()}}, f, indent=2)
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
