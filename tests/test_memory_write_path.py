"""How new Chroma collections are set up so that an upsert's fixed cost stays small
(docs/benchmarks.md, "the fixed cost of a Chroma upsert"): they persist their HNSW
index every ``HNSW_SYNC`` items, so the log each upsert re-reads stays short; what a
writer was told is stored survives a kill and reads back the same."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from therasim.errors import TherasimError
from therasim.memory import chroma
from therasim.memory.chroma import HNSW_SYNC, ChromaMemoryStore
from therasim.testing import HashEmbedding

IDS = [f"k{i}" for i in range(8)]


def _store(path: Path, **kw: object) -> ChromaMemoryStore:
    s = ChromaMemoryStore.persistent(str(path), HashEmbedding(), layout="blocks", scope="s", **kw)  # type: ignore[arg-type]
    s.assign_blocks(IDS, 4)
    return s


def _db(store: ChromaMemoryStore, cid: str) -> str:
    assert store._path is not None
    return os.path.join(chroma._block_dir(store._path, store.scope, store._block_key(cid)), "chroma.sqlite3")


def _log_rows(db: str) -> int:
    cx = sqlite3.connect(db)
    try:
        return int(cx.execute("SELECT COUNT(*) FROM embeddings_queue").fetchone()[0])
    finally:
        cx.close()


def _write(store: ChromaMemoryStore, cid: str, n: int, per: int = 9) -> None:
    for u in range(n // per):
        store.add(cid, "counselor", [{"text": f"{cid} note {u}-{i} about sleep and work", "kind": "fact", "session": 1 + u % 3} for i in range(per)])


def test_new_collections_persist_their_index_every_hnsw_sync_items(tmp_path: Path) -> None:
    s = _store(tmp_path / "m")
    s.add("k0", "counselor", [{"text": "k0 sleeps badly", "kind": "fact", "session": 1}])
    assert s._col("k0", "counselor").configuration["hnsw"]["sync_threshold"] == HNSW_SYNC
    s.close()
    assert [x["text"] for x in s.list("k0", "counselor")] == ["k0 sleeps badly"]  # reopened
    s.close()


def test_the_log_an_upsert_rereads_stays_short(tmp_path: Path) -> None:
    """Chroma purges its log only up to the last HNSW persist; every upsert re-reads what
    is left. 297 items in 33 upserts: with a persist every 100 items at most ~100 log
    records remain, with Chroma's default (1000) all 297 would."""
    s = _store(tmp_path / "m")
    _write(s, "k0", 297)
    s.close()
    assert _log_rows(_db(s, "k0")) <= HNSW_SYNC + 9
    assert len(s.list("k0", "counselor")) == 297
    s.close()


def test_the_chroma_default_arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``THERASIM_CHROMA_HNSW_SYNC=1000``: Chroma's own setting (the benchmarks' "before"
    arm); the log then keeps every record written since no persist."""
    monkeypatch.setenv("THERASIM_CHROMA_HNSW_SYNC", "1000")
    s = _store(tmp_path / "m")
    _write(s, "k0", 297)
    assert s._col("k0", "counselor").configuration["hnsw"]["sync_threshold"] == 1000
    s.close()
    assert _log_rows(_db(s, "k0")) == 297


@pytest.mark.parametrize(("name", "value", "says"), [("THERASIM_CHROMA_HNSW_SYNC", "50", "at least 100"), ("THERASIM_CHROMA_HNSW_SYNC", "often", "whole number")])
def test_bad_settings_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(TherasimError, match=f"{name}.*{says}"):
        _store(tmp_path / "m")


def test_what_a_writer_was_told_is_stored_survives_a_kill(tmp_path: Path) -> None:
    """A process writes upserts (each ``add`` returns once stored) and is killed with
    SIGKILL, its block still open (its index not persisted since the last 100 items):
    every acknowledged item is there when the block is reopened."""
    path = tmp_path / "m"
    code = textwrap.dedent(
        f"""
        import sys
        from therasim.memory.chroma import ChromaMemoryStore
        from therasim.testing import HashEmbedding
        s = ChromaMemoryStore.persistent({str(path)!r}, HashEmbedding(), layout="blocks", scope="s")
        s.assign_blocks({IDS!r}, 4)
        for u in range(23):
            s.add("k0", "counselor", [{{"text": f"k0 note {{u}}-{{i}}", "kind": "fact", "session": 1}} for i in range(7)])
            print(u, flush=True)
        print("done", flush=True)
        import time
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "done":
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    s = _store(path, cache=False)
    got = sorted(x["text"] for x in s.list("k0", "counselor"))
    assert got == sorted(f"k0 note {u}-{i}" for u in range(23) for i in range(7))
    # Chroma's own query (cache=False: no mirror) finds the last item, written after the
    # index's last persist: the log was replayed into the index when the block reopened
    q = s.search("k0", "counselor", "k0 note 22-6", k=3)
    assert q[0]["text"] == "k0 note 22-6" and q[0]["score"] == pytest.approx(1.0) and len(q) == 3
    s.close()
