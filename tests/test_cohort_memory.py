"""What the runner and the memory store hold in process depends on the courses in
flight, not on the cohort (issue #17 item 4): profiles are read from the run folder
as courses start, and memory a closed memory block freed is handed back to the OS."""

from __future__ import annotations

import asyncio
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest

from therasim import runner
from therasim.errors import RunDirError
from therasim.memory import chroma
from therasim.memory.chroma import ChromaMemoryStore, release_freed_memory
from therasim.profiles import ClientProfile
from therasim.runner import arun_dir, start_run
from therasim.testing import FunctionChatModel, HashEmbedding

sys.path.insert(0, str(Path(__file__).parent))
from _run_target import reply_now
from conftest import slow_upsert_block_store  # type: ignore[import-not-found]

CFG = {"course": {"preset": "minimal", "sessions": 1, "max_turns": 1, "memory": False}, "seed": 3}


def _fast_reply(messages: Any, kw: Any) -> str:
    return str(reply_now(messages, kw))  # _run_target's reply waits 30 ms a call (for the kill test)


class _Counted:
    """Stands in for ClientProfile in the runner: every profile it validates is watched."""

    live = 0

    @classmethod
    def _gone(cls) -> None:
        cls.live -= 1

    @classmethod
    def model_validate(cls, obj: Any, **kw: Any) -> ClientProfile:
        p = ClientProfile.model_validate(obj, **kw)
        cls.live += 1
        weakref.finalize(p, cls._gone)
        return p


def test_the_runner_holds_the_profiles_of_courses_in_flight_not_the_cohort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """16 courses at 2 in flight: while courses run, at most a few profiles are alive
    in the process (the cohort's 16 were before: the runner kept them all in a list)."""
    monkeypatch.setattr(runner, "ClientProfile", _Counted)
    rd, _ = start_run(CFG, sample=16, out=tmp_path, run_id="r")
    seen: list[int] = []
    res = asyncio.run(arun_dir(rd, concurrency=2, models={"default": FunctionChatModel(fn=_fast_reply)}, on_record=lambda rec: seen.append(_Counted.live)))
    assert len(res.completed) == 16 and len(seen) == 16
    assert max(seen) <= 4, seen  # two in flight, and one the next worker may have read
    # a resume skips what is done, and reads only the rest
    assert asyncio.run(arun_dir(rd, concurrency=2, models={"default": FunctionChatModel(fn=_fast_reply)})).skipped == res.completed


def test_a_damaged_profile_stops_the_run_before_any_course(tmp_path: Path) -> None:
    """Profiles are streamed, but still all checked before the first course starts."""
    rd, _ = start_run(CFG, sample=4, out=tmp_path, run_id="r")
    lines = rd.profiles.read_text().splitlines()
    lines[3] = lines[3].replace('"id"', '"idx"')
    rd.profiles.write_text("\n".join(lines) + "\n")
    calls: list[int] = []

    def fn(m: Any, kw: Any) -> str:
        calls.append(1)
        return _fast_reply(m, kw)

    with pytest.raises(RunDirError, match=r"profiles\.jsonl"):
        asyncio.run(arun_dir(rd, concurrency=2, models={"default": FunctionChatModel(fn=fn)}))
    assert calls == []


def test_closing_a_block_hands_freed_memory_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each time blocks close, the store asks the allocator to return what they freed
    (once per closing, not per client)."""
    trims: list[int] = []
    monkeypatch.setattr(chroma, "release_freed_memory", lambda wait=False: trims.append(1) or True)
    ids = [f"c{i}" for i in range(9)]
    store = ChromaMemoryStore.persistent(str(tmp_path / "m"), HashEmbedding(), layout="blocks", scope="s", open_blocks=1)
    store.assign_blocks(ids, 3)
    for cid in ids:
        store.add(cid, "counselor", [{"text": f"{cid} sleeps badly", "kind": "fact"}])
        store.release(cid)
    assert store.blocks_closed == 2 and len(trims) == 2
    assert [x["text"] for x in store.list("c0", "counselor")] == ["c0 sleeps badly"]  # a closed block reopens
    store.close()


def test_release_freed_memory_is_glibc_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    glibc = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None
    assert release_freed_memory(wait=True) is glibc
    monkeypatch.setattr(chroma, "_malloc_trim", None)
    monkeypatch.setattr(chroma, "_glibc", lambda: False)
    assert release_freed_memory(wait=True) is False


def test_writes_of_courses_ending_together_share_one_upsert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve clients of one block write at once (threads): their writes go to Chroma in
    fewer upserts than writes (group commit), and each client's items are all there,
    in the mirror and in Chroma, exactly as written."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    ids = [f"c{i}" for i in range(12)]
    store, calls = slow_upsert_block_store(str(tmp_path / "m"), ids, monkeypatch, 0.2)
    go = threading.Barrier(12)

    def write(cid: str) -> list[str]:
        go.wait()
        return store.add(cid, "counselor", [{"text": f"{cid} sleeps badly", "kind": "fact", "id": "a"}, {"text": f"{cid} walks daily", "kind": "plan", "id": "b"}])

    with ThreadPoolExecutor(12) as ex:
        assert list(ex.map(write, ids)) == [["a", "b"]] * 12
    assert sum(calls) == 24 and len(calls) < 12 and store.upserts == len(calls)
    fresh = ChromaMemoryStore.persistent(str(tmp_path / "m"), HashEmbedding(), layout="blocks", scope="s", cache=False)
    fresh.assign_blocks(ids, 256)
    for cid in ids:
        want = sorted([f"{cid} sleeps badly", f"{cid} walks daily"])
        assert sorted(x["text"] for x in fresh.list(cid, "counselor")) == want
        assert sorted(x["text"] for x in store.search(cid, "counselor", "sleep", k=5)) == want  # the mirror
    # the same ids written twice at once never share a call (Chroma refuses duplicate ids)
    calls.clear()
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda i: store.add("c1", "counselor", [{"text": f"c1 take {i}", "kind": "fact", "id": "a"}]), range(4)))
    assert all(n == 1 for n in calls) and len(calls) == 4
    assert len([x for x in fresh.list("c1", "counselor") if x["id"] == "a"]) == 1
    store.close()
