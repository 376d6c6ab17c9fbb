"""A session-end burst of memory writes: ``--courses`` courses run ``remember`` at once
(real embedded Chroma, blocks layout, hash embedding), on a 6-thread pool (what
``asyncio.to_thread`` had on 2 cores) and on a pool sized to the courses, alternated
``--repeat`` times in one process: wall time until every write is stored, the median
course's wait and the Chroma upserts taken.

    python benchmarks/memory_burst.py --courses 64 --repeat 2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_memory_pool import _view

from therasim.memory import pool as mpool
from therasim.memory.chroma import ChromaMemoryStore
from therasim.memory.pool import MemoryPool
from therasim.nodes.recall import remember
from therasim.testing import HashEmbedding


async def _burst(ids: list[str], ctx: object) -> tuple[float, list[float]]:
    done: list[float] = []

    async def one(cid: str) -> None:
        await remember(_view(cid), ctx)  # type: ignore[arg-type]
        done.append(time.perf_counter())

    t = time.perf_counter()
    await asyncio.gather(*(one(c) for c in ids))
    return t, sorted(done)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--courses", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    n = a.courses
    for rep in range(a.repeat):
        for workers in (6, n):
            ids = [f"c{i}" for i in range(n)]
            store = ChromaMemoryStore.persistent(tempfile.mkdtemp(), HashEmbedding(), layout="blocks", scope="s")
            store.assign_blocks(ids, 256)
            store._col("c0", "counselor")  # the block opened outside the timing
            store._col("c0", "client")
            mpool._POOL = MemoryPool(workers)
            t, done = asyncio.run(_burst(ids, SimpleNamespace(sim=SimpleNamespace(memory=store))))
            print(f"rep {rep} pool {workers:3d}: all {n} stored in {done[-1] - t:.2f} s, median course waited {done[n // 2] - t:.2f} s, upserts {store.upserts}", flush=True)
            mpool._POOL.shutdown()
            store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
