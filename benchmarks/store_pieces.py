"""The durable write's pieces, offline: what a cohort's saver was asked, captured from
lean courses on a schema-faithful fake model (SQLite group commit, the default layout
of the tree), then replayed in one process with the variants alternated, thread CPU:

1. compression of the blobs the saver compressed (256 B and up): zlib level 3 (the
   default before session 16 of #17), zstd levels 3 (the default since), 1, -1, -3;
2. SQLite: the captured statements and commits replayed into a fresh database with
   the run's settings (WAL, ``synchronous=NORMAL``) and with one setting changed:
   a 64 MB page cache, ``wal_autocheckpoint=10000``, 16 KB pages, ``mmap_size``, or
   one ``executemany`` per statement kind per commit (the rows of every writer of
   the transaction together);
3. the checkpoint blob with LangGraph's string channel versions (what SqliteSaver's
   ``get_next_version`` writes: 32 digits and a random fraction) against integers.

    python benchmarks/store_pieces.py --courses 64 --rounds 3 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

tt = time.thread_time


def capture(courses: int) -> dict[str, Any]:
    import uvloop
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from therasim._internal import checkpoint as ck
    from therasim.config import CourseSpec
    from therasim.context import SimContext
    from therasim.graphs import CourseGraphBuilder, initial_course_state, run_course
    from therasim.profiles import sample_profiles
    from therasim.providers import ModelPool
    from therasim.testing import SchemaFakeChatModel

    ops: list[Any] = []
    ckpts: list[Any] = []
    raw: list[bytes] = []
    calls = [0]
    w0, c0, p0, d0 = ck.GroupCommitSaver._write, ck.GroupCommitSaver._commit, ck.GroupCommitSaver.aput, JsonPlusSerializer.dumps_typed

    def write(self: Any, sql: str, rows: Any) -> Any:
        ops.append((sql, rows))
        return w0(self, sql, rows)

    def commit(self: Any) -> None:
        if self._waiters is not None:
            ops.append(None)
        c0(self)

    async def aput(self: Any, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        ckpts.append(checkpoint)
        return await p0(self, config, checkpoint, metadata, new_versions)

    def dumps(self: Any, obj: Any) -> Any:
        t, d = d0(self, obj)
        raw.append(d)
        return t, d

    def log(*a: Any) -> None:
        calls[0] += 1

    spec = CourseSpec(preset="lean", sessions=2, max_turns=4)

    async def go() -> None:
        ctx = SimContext(models=ModelPool({"default": SchemaFakeChatModel(seed=1)}), course=spec, on_prompt=log)
        async with ck.open_checkpointer(str(Path(tempfile.mkdtemp()) / "c.sqlite")) as saver:
            g = CourseGraphBuilder("lean").compile(checkpointer=saver)
            await asyncio.gather(*(run_course(g, initial_course_state(p, run_id="p", sessions=2), ctx, thread_id=f"p/{p.id}/course") for p in sample_profiles(courses, seed=1)))

    ck.GroupCommitSaver._write, ck.GroupCommitSaver._commit, ck.GroupCommitSaver.aput = write, commit, aput  # type: ignore[method-assign]
    JsonPlusSerializer.dumps_typed = dumps  # type: ignore[method-assign]
    try:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.run(go())
    finally:
        ck.GroupCommitSaver._write, ck.GroupCommitSaver._commit, ck.GroupCommitSaver.aput = w0, c0, p0  # type: ignore[method-assign]
        JsonPlusSerializer.dumps_typed = d0  # type: ignore[method-assign]
    return {"calls": calls[0], "ops": ops, "ckpts": ckpts, "raw": raw}


def compression(cap: dict[str, Any], rounds: int) -> list[dict[str, Any]]:
    import zstandard

    blobs = [b for b in cap["raw"] if len(b) >= 256]
    n = cap["calls"]
    arms: dict[str, Any] = {"zlib 3": lambda b: zlib.compress(b, 3)}
    for lv in (3, 1, -1, -3):
        arms[f"zstd {lv}"] = zstandard.ZstdCompressor(level=lv).compress
    cpu: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for name, f in arms.items():
            t0 = tt()
            for b in blobs:
                f(b)
            cpu[name].append(1e6 * (tt() - t0) / n)
    return [{"codec": k, "us_per_call": statistics.median(v), "bytes_per_call": sum(len(f(b)) for b in blobs) / n, "raw_bytes_per_call": sum(map(len, blobs)) / n, "blobs_per_call": len(blobs) / n} for k, f in arms.items() for v in [cpu[k]]]


def sqlite_replay(cap: dict[str, Any], rounds: int) -> list[dict[str, Any]]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    ops, n = cap["ops"], cap["calls"]
    variants: dict[str, dict[str, Any]] = {
        "the run's settings (WAL, synchronous=NORMAL)": {},
        "cache_size=-65536": {"pragmas": ("PRAGMA cache_size=-65536",)},
        "wal_autocheckpoint=10000": {"pragmas": ("PRAGMA wal_autocheckpoint=10000",)},
        "page_size=16384": {"pre": ("PRAGMA page_size=16384",)},
        "mmap_size=256 MB": {"pragmas": ("PRAGMA mmap_size=268435456",)},
        "one executemany per kind per commit": {"group": True},
    }

    def once(pragmas: tuple[str, ...] = (), pre: tuple[str, ...] = (), group: bool = False) -> tuple[float, float, int]:
        path = os.path.join(tempfile.mkdtemp(), "c.sqlite")
        con = sqlite3.connect(path, check_same_thread=False)
        for q in (*pre, "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", *pragmas):
            con.execute(q)
        SqliteSaver(con).setup()
        te = tc = 0.0
        pend: dict[str, list[Any]] = defaultdict(list)
        for op in ops:
            if op is None:
                t0 = tt()
                for sql, rows in pend.items():
                    con.executemany(sql, rows)
                pend.clear()
                t1 = tt()
                con.commit()
                te, tc = te + t1 - t0, tc + tt() - t1
            elif group:
                pend[op[0]].extend(op[1])
            else:
                t0 = tt()
                con.executemany(*op)
                te += tt() - t0
        con.commit()
        con.close()
        return 1e6 * te / n, 1e6 * tc / n, os.path.getsize(path)

    res: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for _ in range(rounds):
        for k, v in variants.items():
            res[k].append(once(**v))
    return [
        {"variant": k, "executemany_us_per_call": statistics.median(x[0] for x in v), "commit_us_per_call": statistics.median(x[1] for x in v), "total_us_per_call": statistics.median(x[0] + x[1] for x in v), "db_bytes": v[0][2]}
        for k, v in res.items()
    ]


def versions(cap: dict[str, Any], rounds: int) -> list[dict[str, Any]]:
    import zstandard
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    s, z, n = JsonPlusSerializer(), zstandard.ZstdCompressor(level=3), cap["calls"]

    def as_int(cp: dict[str, Any]) -> dict[str, Any]:
        def conv(v: Any) -> Any:
            return int(v.split(".")[0]) if isinstance(v, str) else v

        return {**cp, "channel_versions": {k: conv(v) for k, v in cp["channel_versions"].items()}, "versions_seen": {node: {k: conv(v) for k, v in d.items()} for node, d in cp["versions_seen"].items()}}

    out = []
    for name, cps in (("string versions (SqliteSaver's)", cap["ckpts"]), ("integer versions", [as_int(c) for c in cap["ckpts"]])):
        cpu = []
        for _ in range(rounds):
            t0 = tt()
            for c in cps:
                z.compress(s.dumps_typed(c)[1])
            cpu.append(1e6 * (tt() - t0) / n)
        out.append({"versions": name, "msgpack_bytes": statistics.mean(len(s.dumps_typed(c)[1]) for c in cps), "zstd_bytes": statistics.mean(len(z.compress(s.dumps_typed(c)[1])) for c in cps), "msgpack_and_zstd_us_per_call": statistics.median(cpu), "checkpoints_per_call": len(cps) / n})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--courses", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    cap = capture(a.courses)
    n = cap["calls"]
    print(f"{a.courses} lean courses x 2 sessions x 4 turns: {n} model calls, {sum(o is not None for o in cap['ops']) / n:.2f} statements and {sum(o is None for o in cap['ops']) / n:.2f} commits per call; medians of {a.rounds} rounds")
    out = {"courses": a.courses, "calls": n, "compression": compression(cap, a.rounds), "sqlite": sqlite_replay(cap, a.rounds), "versions": versions(cap, a.rounds)}
    print("| codec | us per call | bytes per call (of raw) |\n|---|---|---|")
    for r in out["compression"]:
        print(f"| {r['codec']} | {r['us_per_call']:.1f} | {r['bytes_per_call']:.0f} ({r['raw_bytes_per_call']:.0f}) |")
    print("| SQLite variant | executemany us/call | commit us/call | total | database bytes |\n|---|---|---|---|---|")
    for r in out["sqlite"]:
        print(f"| {r['variant']} | {r['executemany_us_per_call']:.1f} | {r['commit_us_per_call']:.1f} | {r['total_us_per_call']:.1f} | {r['db_bytes']:,} |")
    print("| checkpoint blob | msgpack bytes | zstd bytes | msgpack + zstd us/call |\n|---|---|---|---|")
    for r in out["versions"]:
        print(f"| {r['versions']} | {r['msgpack_bytes']:.0f} | {r['zstd_bytes']:.0f} | {r['msgpack_and_zstd_us_per_call']:.1f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
