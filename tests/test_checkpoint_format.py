"""The checkpoint blobs' codec (session 16 of #17): new runs write zstd (``zs:``) and
record it in the manifest; a run in the older format (zlib ``z:`` blobs, no codec in
its manifest) is resumed after a SIGKILL, inspected, replayed and forked by this
therasim, and keeps writing zlib, so the therasim that made it can still open it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from therasim.config import RunConfig
from therasim.rundir import RunDir
from therasim.runner import run, start_run
from therasim.testing import FunctionChatModel

sys.path.insert(0, str(Path(__file__).parent))
from _run_target import kill_at_pause, reply

CFG = {"course": {"preset": "minimal", "sessions": 2, "max_turns": 4}, "memory": {"embedding": "hash"}, "seed": 3}


@pytest.fixture(autouse=True)
def _hash_embedding(monkeypatch):
    from therasim import memory
    from therasim.testing import HashEmbedding

    monkeypatch.setattr(memory, "make_embedding", lambda spec: HashEmbedding())
    monkeypatch.delenv("THERASIM_CHECKPOINT_CODEC", raising=False)


def _models() -> dict[str, Any]:
    return {"default": FunctionChatModel(fn=reply)}


def _tags(root: Path) -> set[str]:
    """The compression tags of every stored blob: ``zs``, ``z`` or ``plain``."""
    con = sqlite3.connect(root / "checkpoints.sqlite")
    try:
        types = [t for (t,) in con.execute("select type from checkpoints union all select type from writes") if t]
    finally:
        con.close()
    return {t.split(":")[0] if t.startswith(("z:", "zs:")) else "plain" for t in types}


def _transcripts(root: Path) -> list[Any]:
    return sorted(((r["client_id"], r["session"]), [(t["speaker"], t["text"]) for t in r["turns"]]) for r in RunDir(root).records())


def test_a_new_run_writes_zstd_and_records_the_codec(tmp_path) -> None:
    res = run(CFG, sample=1, out=tmp_path / "new", models=_models())
    assert res.ok
    man = json.loads((Path(res.run_dir) / "manifest.json").read_text())
    assert man["checkpoint"]["codec"] == "zstd" and man["checkpoint"]["serde"] == "therasim.checkpoint.CompressedSerializer"
    assert "zs" in _tags(Path(res.run_dir)) and "z" not in _tags(Path(res.run_dir))


def test_a_run_in_the_older_zlib_format_resumes_after_sigkill_and_is_inspected_replayed_and_forked(tmp_path) -> None:
    """A run made as a therasim before session 16 made it (``z:`` blobs, a manifest
    without ``checkpoint.codec``), killed mid-session, then finished by this therasim
    with no variable set: the interrupted session resumes from its zlib checkpoint, the
    transcripts equal an uninterrupted run's in the new format, and every blob written
    meanwhile is zlib too (the run keeps its codec). ``turn_state``, replay and fork
    read it and their branches add zlib blobs only."""
    from therasim.errors import RunDirError
    from therasim.traces import fork, replay, turn_state

    cfg = RunConfig.model_validate(CFG)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("THERASIM_CHECKPOINT_CODEC", None)
    target = str(Path(__file__).parent / "_run_target.py")

    def finish(root: Path, extra: dict[str, str]) -> list[Any]:
        proc = subprocess.run([sys.executable, target, str(root), "2"], env={**env, **extra}, capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        return _transcripts(root)

    ref_dir, _ = start_run(cfg, sample=2, out=tmp_path / "ref")
    reference = finish(ref_dir.root, {})
    assert _tags(ref_dir.root) >= {"zs"} and "z" not in _tags(ref_dir.root)

    os.environ["THERASIM_CHECKPOINT_CODEC"] = "zlib"  # the run made, and started, as an older therasim wrote it
    try:
        rd, _ = start_run(cfg, sample=2, out=tmp_path / "old")
    finally:
        del os.environ["THERASIM_CHECKPOINT_CODEC"]
    man = json.loads(rd.manifest_path.read_text())
    assert man["checkpoint"].pop("codec") == "zlib"
    rd.manifest_path.write_text(json.dumps(man))  # an older manifest: no codec recorded
    pause = tmp_path / "paused"
    kill_at_pause(rd.root, 2, {**env, "THERASIM_CHECKPOINT_CODEC": "zlib"}, pause)
    assert _tags(rd.root) == {"z", "plain"}  # what an older therasim wrote
    assert finish(rd.root, {}) == reference  # this therasim, its default (zstd) in force
    assert any(int(e.get("exchange") or 0) >= 2 for e in map(json.loads, rd.events.read_text().splitlines()) if e.get("event") == "session_resumed")
    assert _tags(rd.root) == {"z", "plain"}, "the resumed run wrote blobs its maker cannot read"

    cid = rd.records()[0]["client_id"]
    st = turn_state(rd.root, cid, 1, 2)
    assert [t["exchange"] for t in st["exchange"]] == [1, 1] and st["checkpoint_id"]  # read from the zlib checkpoints
    rep = replay(rd.root, cid, 1, 2, models=_models(), branch="again")
    original = [(t["speaker"], t["text"]) for t in next(r for r in rd.records() if r["client_id"] == cid and r["session"] == 1)["turns"]]
    assert [(t["speaker"], t["text"]) for t in rep["turns"]] == original
    other = FunctionChatModel(fn=lambda m, kw: "That sounds exhausting; what happens on the worst nights?")
    fk = fork(rd.root, cid, 1, 2, counselor_model=other, models=_models(), branch="alt")
    assert fk["turns"][3]["text"].startswith("That sounds exhausting")
    assert _tags(rd.root) == {"z", "plain"}

    man["checkpoint"]["codec"] = "brotli"  # a codec this therasim does not write: a clear error naming the field
    rd.manifest_path.write_text(json.dumps(man))
    with pytest.raises(RunDirError, match=r"checkpoint.codec 'brotli'"):
        turn_state(rd.root, cid, 1, 2)


def test_zstd_blobs_stay_readable_next_to_zlib_ones_in_one_thread(tmp_path) -> None:
    """A thread whose first checkpoints are zlib and later ones zstd (a run resumed by
    a therasim writing the other codec) reads back whole with either writer."""
    import asyncio

    from therasim._internal.checkpoint import open_checkpointer
    from therasim.config import CourseSpec
    from therasim.context import SimContext
    from therasim.graphs import preset
    from therasim.graphs.session import initial_session_state, run_session
    from therasim.profiles import example_profiles
    from therasim.providers import ModelPool

    path = str(tmp_path / "c.sqlite")

    async def go(codec: str, turns: int) -> Any:
        async with open_checkpointer(path, codec=codec) as saver:
            g = preset("minimal").compile(checkpointer=saver)
            ctx = SimContext(models=ModelPool(_models()), course=CourseSpec(max_turns=turns))
            st = await run_session(g, initial_session_state(example_profiles()[0]), ctx, thread_id="t")
            return st, (await g.aget_state({"configurable": {"thread_id": "t"}})).values

    st, snap = asyncio.run(go("zlib", 2))
    assert snap["transcript"] == st["transcript"]
    for codec in ("zstd", "zlib"):
        st2, snap2 = asyncio.run(go(codec, 2))
        assert snap2["transcript"] == st2["transcript"]
    con = sqlite3.connect(path)
    tags = {t.split(":")[0] for (t,) in con.execute("select type from checkpoints union all select type from writes") if t and ":" in t}
    con.close()
    assert {"z", "zs"} <= tags
