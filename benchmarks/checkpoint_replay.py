"""Does the SQLite checkpoint file get slower to write as it grows? Replays a
finished run's ``checkpoints.sqlite`` into a fresh file, in the order its rows were
written (checkpoints by rowid, each followed by its task writes), with the statements
and settings the run's saver uses (WAL, ``synchronous=NORMAL``, a commit every few
checkpoints), reading each thread's latest checkpoint and its writes before every
put (as LangGraph does when a graph resumes a thread). Prints the CPU per put for
every ``--every`` courses replayed and the file's size, then the least-squares slope
against courses: a file whose cost grows with its size shows a positive slope.
No orchestration, model or memory is involved: only the checkpoint file's cost.

    python benchmarks/cohort_scaling.py --cohorts 10000 ...   # leaves a run folder
    python benchmarks/checkpoint_replay.py RUN/checkpoints.sqlite --out /tmp/replay.sqlite

Course threads are named ``RUN_ID/CLIENT/...`` by the runner; rows are grouped into
courses by the client's order of first appearance.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import time
from pathlib import Path

from therasim._internal.checkpoint import _PUT, _WRITES

_GET = "SELECT thread_id, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? ORDER BY checkpoint_id DESC LIMIT 1"
_GET_WRITES = "SELECT task_id, channel, type, value FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ? ORDER BY task_id, idx"
_SRC_WRITES = "SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"


def replay(src: Path, out: Path, every: int = 250, commit_every: int = 8, limit: int | None = None) -> dict[str, object]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    for p in (out, Path(f"{out}-wal"), Path(f"{out}-shm")):
        p.unlink(missing_ok=True)
    s = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    d = sqlite3.connect(out)
    for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"):
        d.execute(pragma)
    SqliteSaver(d).setup()  # the saver's own tables
    write = _WRITES.format(verb="REPLACE")
    courses: dict[str, int] = {}
    rows: list[dict[str, float]] = []
    cpu, puts, mark = 0.0, 0, every
    for row in s.execute("SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata FROM checkpoints ORDER BY rowid"):
        tid = str(row[0])
        parts = tid.split("/")
        course = courses.setdefault(parts[1] if len(parts) > 2 else tid, len(courses))
        if limit is not None and course >= limit:
            break
        writes = s.execute(_SRC_WRITES, (tid, row[1], row[2])).fetchall()  # read outside the timing
        c = time.process_time()
        latest = d.execute(_GET, (tid, row[1])).fetchone()
        if latest is not None:
            d.execute(_GET_WRITES, (tid, row[1], latest[1])).fetchall()
        d.execute(_PUT, row)
        if writes:
            d.executemany(write, writes)
        puts += 1
        if puts % commit_every == 0:
            d.commit()
        cpu += time.process_time() - c
        if len(courses) > mark:
            rows.append({"courses": mark, "cpu_ms_per_put": round(1000 * cpu / puts, 4), "file_mb": round(sum(p.stat().st_size for p in (out, Path(f"{out}-wal")) if p.exists()) / 2**20, 1)})
            print(json.dumps(rows[-1]), flush=True)
            cpu, puts, mark = 0.0, 0, mark + every
    d.commit()
    d.close()
    xs = [r["courses"] / 1000 for r in rows[1:]]
    ys = [r["cpu_ms_per_put"] for r in rows[1:]]
    slope = None
    if len(set(xs)) >= 3:
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = round(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs), 5)
    return {"windows": rows, "cpu_ms_per_put_per_1k_courses": slope, "mean_cpu_ms_per_put": round(statistics.fmean(ys), 4) if ys else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="a finished run's checkpoints.sqlite (opened read-only)")
    ap.add_argument("--out", required=True, help="the fresh file to replay into (replaced)")
    ap.add_argument("--every", type=int, default=250, help="courses per reported window")
    ap.add_argument("--limit", type=int, default=None, help="stop after this many courses")
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args()
    res = replay(Path(a.src), Path(a.out), every=a.every, limit=a.limit)
    print(json.dumps({k: v for k, v in res.items() if k != "windows"}))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
