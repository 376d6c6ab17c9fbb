"""A course's first start in its run: its memories start empty in the recall mirror
(``ChromaMemoryStore.fresh``, called by the runner) instead of being read from Chroma,
where nothing of it can be yet (memories are scoped by the run id). The runs'
transcripts and recalls are the same either way; a course that started before (a
status line in courses.jsonl) and a run without a memory scope still read."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from therasim.memory.chroma import ChromaMemoryStore
from therasim.runner import arun_dir, start_run
from therasim.testing import FunctionChatModel, HashEmbedding

sys.path.insert(0, str(Path(__file__).parent))
from _run_target import reply

CFG = {"course": {"preset": "minimal", "sessions": 3, "max_turns": 2}, "memory": {"embedding": "hash"}, "seed": 3}


def _fast_reply(messages: Any, kw: Any) -> str:
    import time

    real_sleep = time.sleep
    time.sleep = lambda s: None  # _run_target's reply waits 30 ms a call (for the kill test)
    try:
        return str(reply(messages, kw))
    finally:
        time.sleep = real_sleep


def test_fresh_client_searches_without_reading_chroma(tmp_path: Path) -> None:
    store = ChromaMemoryStore.persistent(str(tmp_path / "m"), HashEmbedding(), scope="run1")
    store.fresh("c1")
    assert store.search("c1", "counselor", "sleep") == [] and store.search("c1", "client", "sleep") == []
    assert store.reads == 0
    store.add("c1", "counselor", [{"text": "sleeps badly after night shifts", "kind": "fact", "session": 1}])
    assert store.search("c1", "counselor", "night shifts", k=1)[0]["text"] == "sleeps badly after night shifts"  # its own write seen
    assert store.reads == 0
    # another client, not marked: read from Chroma once (and found empty)
    assert store.search("c2", "counselor", "sleep") == [] and store.reads == 1
    # marking a client whose mirror entry exists keeps what it holds
    store.fresh("c1")
    assert len(store.search("c1", "counselor", "x", k=5)) == 1


def test_fresh_is_a_no_op_without_a_scope(tmp_path: Path) -> None:
    """Unscoped collections (runs made before memory_scope) may hold another run's memories
    of the same client id: they are always read."""
    store = ChromaMemoryStore.persistent(str(tmp_path / "m"), HashEmbedding())
    store.add("c1", "counselor", [{"text": "an older run's memory", "kind": "fact", "session": 1}])
    other = ChromaMemoryStore.persistent(str(tmp_path / "m"), HashEmbedding())
    other.fresh("c1")
    assert other.search("c1", "counselor", "older run", k=1)[0]["text"] == "an older run's memory"
    assert other.reads == 1


def _run(out: Path, monkeypatch: pytest.MonkeyPatch, *, fresh: bool, running: tuple[str, ...] = ()) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """A new run of 4 courses x 3 sessions; its transcripts (lines sorted), the Chroma
    reads it made (client, role) and the clients marked fresh."""
    reads: list[tuple[str, str]] = []
    marked: list[str] = []
    get, mark = ChromaMemoryStore._get, ChromaMemoryStore.fresh

    def counted_get(self: ChromaMemoryStore, client_id: str, role: str, where: Any, include: Any) -> Any:
        reads.append((client_id, role))
        return get(self, client_id, role, where, include)

    def counted_fresh(self: ChromaMemoryStore, client_id: str) -> None:
        marked.append(client_id)
        if fresh:
            mark(self, client_id)

    monkeypatch.setattr(ChromaMemoryStore, "_get", counted_get)
    monkeypatch.setattr(ChromaMemoryStore, "fresh", counted_fresh)
    rd, _ = start_run(CFG, sample=4, out=out, run_id="r")
    ids = [json.loads(x)["id"] for x in rd.profiles.read_text().splitlines()]
    for i in running:  # a course started by an earlier process of this run (killed)
        with open(rd.courses, "a") as f:
            f.write(json.dumps({"client_id": ids[int(i)], "status": "running"}) + "\n")
    res = asyncio.run(arun_dir(rd, concurrency=4, models={"default": FunctionChatModel(fn=_fast_reply)}))
    assert len(res.completed) == 4, res.failed
    monkeypatch.undo()
    return sorted(rd.transcripts.read_text().splitlines()), reads, marked


def test_runner_marks_new_courses_fresh_and_the_transcripts_do_not_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_fresh, reads, marked = _run(tmp_path / "a", monkeypatch, fresh=True)
    without, reads_before, _ = _run(tmp_path / "b", monkeypatch, fresh=False)
    assert len(marked) == 4
    assert reads == [] and len(reads_before) >= 4  # sessions 2 and 3 recall both roles: read once each before
    assert with_fresh == without and len(with_fresh) == 12  # same sessions, recalls and all


def test_a_course_started_before_is_not_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, reads, marked = _run(tmp_path / "a", monkeypatch, fresh=True, running=("1",))
    rd_ids = [json.loads(x)["id"] for x in (tmp_path / "a" / "r" / "profiles.jsonl").read_text().splitlines()]
    assert len(marked) == 3 and rd_ids[1] not in marked
    assert reads and {c for c, _ in reads} == {rd_ids[1]}  # only its memories are read from Chroma
