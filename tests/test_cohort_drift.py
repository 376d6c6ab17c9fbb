"""The drift figures of benchmarks/cohort_scaling.py and benchmarks/checkpoint_replay.py
(docs/benchmarks.md, "why cost rose within a long run"), against hand-computed values."""

from __future__ import annotations

import datetime
import importlib.util
import json
import sqlite3
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _ts(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_session_end_groups_measure_synchronisation(tmp_path: Path) -> None:
    cs = _load("cohort_scaling")
    t0 = 1_000_000.0
    # window 1 (t0, t0+10]: 6 ends in two bursts (3 within 50 ms each) -> 3 per group
    # window 2 (t0+10, t0+20]: 4 ends 1 s apart -> 1 per group; window 3: none
    ends = [t0 + 1, t0 + 1.01, t0 + 1.03, t0 + 5, t0 + 5.04, t0 + 5.08, t0 + 11, t0 + 12, t0 + 13, t0 + 14]
    lines = [{"event": "node_call", "timestamp": _ts(t0 + 1.02)}]  # not a session end
    lines += [{"client_id": f"c{i}", "event": "session_done", "timestamp": _ts(t)} for i, t in enumerate(ends)]
    ev = tmp_path / "events.jsonl"
    ev.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert cs._session_end_groups(ev, [t0, t0 + 10, t0 + 20, t0 + 30]) == [3.0, 1.0, None]
    assert cs._session_end_groups(tmp_path / "missing.jsonl", [t0, t0 + 10]) == []


def test_drift_first_against_last_windows() -> None:
    cs = _load("cohort_scaling")
    per_min = [12000.0, 12000.0, 12000.0, 9000.0, 6000.0, 6000.0, 6000.0]
    cpu = [4.0, 5.0, 6.0, 7.0, 8.0, 8.0, 8.0]
    d = cs._drift(per_min, cpu)
    assert d["calls_per_min_first_last"] == [12000, 6000, 0.5]
    assert d["cpu_ms_per_call_first_last"] == [5.0, 8.0, 1.6]
    assert cs._drift(per_min[:5], cpu[:5]) == {"calls_per_min_first_last": None, "cpu_ms_per_call_first_last": None}
    assert cs._slope([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == 2.0
    assert cs._first_last([None, 9.0, 6.0, 3.0, None, 2.0, 2.0, 5.0]) == [6.0, 3.0]
    assert cs._first_last([1.0, None, 2.0]) is None


def test_checkpoint_replay_copies_every_row_in_order(tmp_path: Path) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    cr = _load("checkpoint_replay")
    src = tmp_path / "src.sqlite"
    con = sqlite3.connect(src)
    SqliteSaver(con).setup()
    n = 0
    for course in range(6):
        for thread in ("course", "s1"):
            tid = f"run/c{course}/{thread}"
            for k in range(3):
                cid = f"{n:04d}"
                n += 1
                con.execute("INSERT INTO checkpoints VALUES (?, '', ?, NULL, 'msgpack', ?, ?)", (tid, cid, b"x" * 300, b"{}"))
                con.execute("INSERT INTO writes VALUES (?, '', ?, 't', '', ?, 'ch', 'msgpack', ?)", (tid, cid, k, b"y" * 50))
    con.commit()
    con.close()
    out = tmp_path / "out.sqlite"
    res = cr.replay(src, out, every=2)
    assert [w["courses"] for w in res["windows"]] == [2, 4]  # a window closes when the next course starts
    got = sqlite3.connect(out)
    assert got.execute("SELECT count(*) FROM checkpoints").fetchone() == (36,)
    assert got.execute("SELECT count(*) FROM writes").fetchone() == (36,)
    src_rows = sqlite3.connect(src).execute("SELECT thread_id, checkpoint_id FROM checkpoints ORDER BY rowid").fetchall()
    assert got.execute("SELECT thread_id, checkpoint_id FROM checkpoints ORDER BY rowid").fetchall() == src_rows
    assert cr.replay(src, out, every=2, limit=3)["windows"][-1]["courses"] == 2
    assert sqlite3.connect(out).execute("SELECT count(DISTINCT thread_id) FROM checkpoints").fetchone() == (6,)
