"""The durable write's pieces, offline: what a cohort's saver was asked, captured from
lean courses on a schema-faithful fake model (SQLite group commit, the default layout
of the tree), then replayed in one process with the variants alternated, thread CPU:

1. compression of the blobs the saver is given (msgpack, before compression), each
   arm compressing those of its threshold and up: zlib level 3 from 256 B (the default
   before session 16 of #17), zstd level 3 from 256 B (session 16's default), level 1
   from 512 B (the default since session 17), and others;
2. SQLite: the captured statements and commits replayed into a fresh database with
   the settings before session 17 (4 KB pages, WAL, ``synchronous=NORMAL``) and with
   one setting changed: ``wal_autocheckpoint=10000``, 8 or 16 KB pages, one
   ``executemany`` per statement kind per commit (the rows of every writer of the
   transaction together), LangGraph's tables made ``WITHOUT ROWID``; ``--prefill N``
   writes N renamed copies first (a database late in a cohort N + 1 times as large),
   ``--commit-every K`` commits every K statements (a real run's rate, not the
   lockstep harness's);
3. the checkpoint blob with LangGraph's string channel versions (what SqliteSaver's
   ``get_next_version`` writes: 32 digits and a random fraction) against integers.

    python benchmarks/store_pieces.py --courses 64 --rounds 3 --json out.json
    python benchmarks/store_pieces.py --courses 64 --rounds 4 --prefill 15 --commit-every 13
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
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
    w0, c0, p0, d0 = ck.GroupCommitSaver._write, ck.GroupCommitSaver._commit, ck.GroupCommitSaver.put_rows, JsonPlusSerializer.dumps_typed

    def write(self: Any, sql: str, rows: Any) -> Any:
        ops.append((sql, rows))
        return w0(self, sql, rows)

    def commit(self: Any) -> None:
        if self._batch is not None:
            ops.append(None)
        c0(self)

    def put_rows(self: Any, config: Any, checkpoint: Any, metadata: Any) -> Any:  # aput's statement, and the lean executor's saves
        ckpts.append(checkpoint)
        return p0(self, config, checkpoint, metadata)

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

    ck.GroupCommitSaver._write, ck.GroupCommitSaver._commit, ck.GroupCommitSaver.put_rows = write, commit, put_rows  # type: ignore[method-assign]
    JsonPlusSerializer.dumps_typed = dumps  # type: ignore[method-assign]
    try:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.run(go())
    finally:
        ck.GroupCommitSaver._write, ck.GroupCommitSaver._commit, ck.GroupCommitSaver.put_rows = w0, c0, p0  # type: ignore[method-assign]
        JsonPlusSerializer.dumps_typed = d0  # type: ignore[method-assign]
    return {"calls": calls[0], "ops": ops, "ckpts": ckpts, "raw": raw}


def compression(cap: dict[str, Any], rounds: int) -> list[dict[str, Any]]:
    import zstandard

    raw = cap["raw"]
    n = cap["calls"]
    arms: dict[str, tuple[Any, int]] = {"zlib 3 from 256 B": (lambda b: zlib.compress(b, 3), 256)}
    for lv, least in ((3, 256), (3, 512), (1, 256), (1, 512), (1, 1024), (-1, 256), (-3, 256)):
        arms[f"zstd {lv} from {least} B"] = (zstandard.ZstdCompressor(level=lv).compress, least)
    cpu: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for name, (f, least) in arms.items():
            blobs = [b for b in raw if len(b) >= least]
            t0 = tt()
            for b in blobs:
                f(b)
            cpu[name].append(1e6 * (tt() - t0) / n)
    return [
        {"codec": k, "us_per_call": statistics.median(cpu[k]), "bytes_per_call": sum(len(f(b)) if len(b) >= least else len(b) for b in raw) / n, "raw_bytes_per_call": sum(map(len, raw)) / n, "blobs_per_call": sum(len(b) >= least for b in raw) / n}
        for k, (f, least) in arms.items()
    ]


_WITHOUT_ROWID = (
    "CREATE TABLE checkpoints (thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL DEFAULT '', checkpoint_id TEXT NOT NULL, parent_checkpoint_id TEXT, type TEXT, checkpoint BLOB, metadata BLOB, PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)) WITHOUT ROWID",
    "CREATE TABLE writes (thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL DEFAULT '', checkpoint_id TEXT NOT NULL, task_id TEXT NOT NULL, task_path TEXT NOT NULL DEFAULT '', idx INTEGER NOT NULL, channel TEXT NOT NULL, type TEXT, value BLOB, PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)) WITHOUT ROWID",
)


def sqlite_replay(cap: dict[str, Any], rounds: int, prefill: int = 0, commit_every: int = 0) -> list[dict[str, Any]]:
    """The captured statements replayed per variant (alternated, order reversed every
    other round). ``prefill``: copies of the capture (thread ids renamed) written first,
    untimed, so the timed copy lands in a database as large as a run ``prefill`` + 1
    times the cohort's; ``commit_every``: a commit every that many statements instead of
    the capture's (a real run at 64 in flight commits ~0.16 times per call, this lockstep
    harness ~0.03)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    n = cap["calls"]
    ops = cap["ops"]
    if commit_every:
        stmts = [o for o in ops if o is not None]
        ops = []
        for i, o in enumerate(stmts, 1):
            ops.append(o)
            if i % commit_every == 0:
                ops.append(None)
    variants: dict[str, dict[str, Any]] = {
        "the run's settings before session 17 (4 KB pages, WAL, synchronous=NORMAL)": {},
        "wal_autocheckpoint=10000": {"pragmas": ("PRAGMA wal_autocheckpoint=10000",)},
        "page_size=8192": {"pre": ("PRAGMA page_size=8192",)},
        "page_size=16384 (the default since session 17)": {"pre": ("PRAGMA page_size=16384",)},
        "page_size=16384, wal_autocheckpoint=10000": {"pre": ("PRAGMA page_size=16384",), "pragmas": ("PRAGMA wal_autocheckpoint=10000",)},
        "one executemany per kind per commit": {"group": True},
        "page_size=16384, one executemany per kind per commit": {"pre": ("PRAGMA page_size=16384",), "group": True},
        "WITHOUT ROWID tables, page_size=16384": {"pre": ("PRAGMA page_size=16384", *_WITHOUT_ROWID)},
    }

    def once(pragmas: tuple[str, ...] = (), pre: tuple[str, ...] = (), group: bool = False) -> tuple[float, float, int]:
        folder = tempfile.mkdtemp()
        path = os.path.join(folder, "c.sqlite")
        con = sqlite3.connect(path, check_same_thread=False)
        for q in (*pre, "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", *pragmas):
            con.execute(q)
        SqliteSaver(con).setup()
        for k in range(prefill):
            for op in ops:
                if op is None:
                    con.commit()
                else:
                    con.executemany(op[0], [(f"{k}:{r[0]}", *r[1:]) for r in op[1]])
        con.commit()
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
        size = os.path.getsize(path)
        shutil.rmtree(folder)
        return 1e6 * te / n, 1e6 * tc / n, size

    res: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for i in range(rounds):
        for k, v in variants.items() if i % 2 == 0 else reversed(variants.items()):
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
    ap.add_argument("--prefill", type=int, default=0, help="SQLite: copies of the capture written before the timed one (a larger database)")
    ap.add_argument("--commit-every", type=int, default=0, help="SQLite: a commit every N statements (default: the capture's)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    cap = capture(a.courses)
    n = cap["calls"]
    print(f"{a.courses} lean courses x 2 sessions x 4 turns: {n} model calls, {sum(o is not None for o in cap['ops']) / n:.2f} statements and {sum(o is None for o in cap['ops']) / n:.2f} commits per call; medians of {a.rounds} rounds")
    out = {"courses": a.courses, "calls": n, "prefill": a.prefill, "commit_every": a.commit_every, "compression": compression(cap, a.rounds), "sqlite": sqlite_replay(cap, a.rounds, a.prefill, a.commit_every), "versions": versions(cap, a.rounds)}
    print("| codec | blobs compressed per call | us per call | bytes stored per call (of raw) |\n|---|---|---|---|")
    for r in out["compression"]:
        print(f"| {r['codec']} | {r['blobs_per_call']:.2f} | {r['us_per_call']:.1f} | {r['bytes_per_call']:.0f} ({r['raw_bytes_per_call']:.0f}) |")
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
