"""The runner and run directory: outputs, manifest, datasets loading, bad input with
nothing lost, failures isolated, resume after a real SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from therasim.config import RunConfig
from therasim.errors import ConfigError, RunDirError, TherasimError
from therasim.rundir import RunDir, read_jsonl
from therasim.runner import resume, run, start_run
from therasim.testing import FunctionChatModel

sys.path.insert(0, str(Path(__file__).parent))
from _run_target import kill_at_pause, reply

CFG = {"course": {"preset": "minimal", "sessions": 2, "max_turns": 3}, "memory": {"embedding": "minilm"}, "seed": 3}


def _models(fail_for: str | None = None) -> dict[str, Any]:
    def fn(messages: list[Any], kw: dict[str, Any]) -> str:
        if fail_for and any(fail_for in str(m.content) for m in messages):
            raise ConnectionError("model server unreachable (simulated)")
        return reply(messages, kw)

    return {"default": FunctionChatModel(fn=fn)}


@pytest.fixture(autouse=True)
def _hash_embedding(monkeypatch):
    """Fast deterministic embedding in these tests (MiniLM is exercised elsewhere)."""
    from therasim import memory
    from therasim.testing import HashEmbedding

    monkeypatch.setattr(memory, "make_embedding", lambda spec: HashEmbedding())


def test_run_writes_a_complete_run_directory(tmp_path):
    res = run(CFG, sample=3, out=tmp_path, models=_models())
    assert res.ok and len(res.completed) == 3 and res.sessions_written == 6
    rd = RunDir(res.run_dir)
    man = rd.manifest()
    for key in ("therasim_version", "versions", "models", "seed", "prompts", "graph", "config", "cohort", "run_format_version"):
        assert key in man
    assert man["prompts"]["counselor"] and len(man["prompts"]["counselor"]) == 16
    assert "flowchart" in man["graph"]["session_mermaid"] or "graph" in man["graph"]["session_mermaid"]
    assert man["config"]["course"]["preset"] == "minimal"
    recs = rd.records()
    assert sorted((r["client_id"], r["session"]) for r in recs) == sorted((c, s) for c in man["cohort"]["ids"] for s in (1, 2))
    r = recs[0]
    assert r["thread_id"] == f"{res.run_id}/{r['client_id']}/s{r['session']}"
    assert r["turns"][0]["speaker"] == "client" and r["measures"]["phq9"]["total"] == sum(r["measures"]["phq9"]["items"].values())
    events = list(read_jsonl(rd.events))
    calls = [e for e in events if e["event"] == "node_call"]
    assert calls and all({"latency_s", "input_tokens", "output_tokens", "retries", "timestamp"} <= set(e) for e in calls)
    assert rd.checkpoints.stat().st_size > 0 and list(rd.memory.glob("blocks-*/00000/chroma.sqlite3"))  # memory in blocks of clients
    assert {s["status"] for s in rd.course_status().values()} == {"completed"}
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("json", data_files=str(rd.transcripts), split="train")
    assert ds.num_rows == 6 and ds[0]["turns"][0]["speaker"] == "client"


def test_bad_profile_is_reported_and_the_others_run(tmp_path):
    from therasim.profiles import example_profiles

    good = [p.model_dump(mode="json") for p in example_profiles()[:2]]
    bad = json.loads(json.dumps(good[0]))
    bad["id"] = "broken"
    del bad["intake"]["presenting_problem"]
    f = tmp_path / "cohort.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in [good[0], bad, good[1]]) + "\n")
    rd, problems = start_run(CFG, profiles=f, out=tmp_path / "runs")
    assert len(problems) == 1 and "broken" in problems[0] and "intake.presenting_problem" in problems[0]
    res = resume(rd.root, models=_models())
    assert sorted(res.completed) == sorted(p["id"] for p in good)
    assert res.problems and "presenting_problem" in res.problems[0]
    from therasim.traces import overview

    assert "presenting_problem" in overview(rd.root)["bad_profiles"][0]


def test_unknown_preset_and_unwritable_out_fail_before_writing(tmp_path):
    with pytest.raises(TherasimError, match="unknown preset 'fulll'"):
        start_run({**CFG, "course": {"preset": "fulll"}}, sample=1, out=tmp_path / "a")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(RunDirError, match="not writable"):
            start_run(CFG, sample=1, out=locked / "runs")
    finally:
        locked.chmod(0o700)


def test_unwritable_out_as_root_is_still_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunDirError, match="not writable"):
        start_run(CFG, sample=1, out=blocker / "runs")


def test_incompatible_run_dir_is_refused(tmp_path):
    res = run(CFG, sample=1, out=tmp_path, models=_models())
    man = json.loads((res.run_dir / "manifest.json").read_text())
    man["run_format_version"] = 99
    man["therasim_version"] = "9.0.0"
    (res.run_dir / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(RunDirError, match=r"format version 99 \(made by therasim 9.0.0\)"):
        resume(res.run_dir, models=_models())
    with pytest.raises(RunDirError, match="not a therasim run directory"):
        resume(tmp_path, models=_models())
    from therasim.traces import overview

    with pytest.raises(RunDirError, match="format version 99"):
        overview(res.run_dir)


def test_a_failing_course_is_isolated_and_retried_on_resume(tmp_path):
    from therasim.profiles import example_profiles

    profs = example_profiles()
    res = run(CFG, profiles=profs, out=tmp_path, models=_models(fail_for=profs[1].intake.name))
    assert set(res.completed) == {profs[0].id, profs[2].id}
    assert list(res.failed) == [profs[1].id] and "ConnectionError" in res.failed[profs[1].id]
    rd = RunDir(res.run_dir)
    assert rd.course_status()[profs[1].id]["status"] == "failed"
    again = resume(res.run_dir, models=_models())
    assert again.completed == [profs[1].id] and sorted(again.skipped) == sorted([profs[0].id, profs[2].id])
    keys = [(r["client_id"], r["session"]) for r in rd.records()]
    assert len(keys) == len(set(keys)) == 6


def test_config_and_profiles_together_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="either profiles or sample"):
        start_run(CFG, profiles=[], sample=2, out=tmp_path)


def test_resume_after_sigkill_at_several_moments(tmp_path):
    """Kill a real run process with SIGKILL mid-session, twice, resume each time: every
    session is on disk exactly once and the interrupted session continued."""
    # the "hash" embedding in the run processes too (loading MiniLM three times made this the slowest test)
    cfg = RunConfig.model_validate({**CFG, "course": {"preset": "minimal", "sessions": 3, "max_turns": 4}, "memory": {"embedding": "hash"}})
    rd, _ = start_run(cfg, sample=3, out=tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    target = str(Path(__file__).parent / "_run_target.py")

    def exchanges() -> list[dict[str, Any]]:
        return [e for e in read_jsonl(rd.events) if e.get("event") == "exchange"]

    killed_mid = []
    # first kill: mid-session, while the client's turn of exchange 2 is being generated
    # (the target hangs there and says so with a file: a kill timed on the event log
    # could land after the session ended on a loaded machine); second: at an arbitrary
    # moment (after the Nth event line, whatever the run is doing then)
    pause = tmp_path / "paused"
    for mode, threshold in (("mid", 0), ("any", 40)):
        n0 = len(list(read_jsonl(rd.events)))
        penv = {**env, "THERASIM_TEST_PAUSE_FILE": str(pause)} if mode == "mid" else env
        proc = subprocess.Popen([sys.executable, target, str(rd.root), "2"], env=penv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if mode == "mid" and pause.exists():
                break
            if mode == "any" and len(list(read_jsonl(rd.events))) >= n0 + threshold:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert mode != "mid" or pause.exists(), "the run never reached exchange 2 of a session"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        last = exchanges()[-1]
        killed_mid.append((last["client_id"], last["session"]))
    # finish
    proc = subprocess.run([sys.executable, target, str(rd.root), "2"], env=env, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    recs = rd.records()
    keys = [(r["client_id"], r["session"]) for r in recs]
    assert len(keys) == len(set(keys)) == 9, sorted(keys)
    assert {s["status"] for s in rd.course_status().values()} == {"completed"}
    # every session's turns are whole and in order: no exchange lost or doubled
    for r in recs:
        ex = [t["exchange"] for t in r["turns"] if t["speaker"] == "client"]
        assert ex == list(range(len(ex))) and len(ex) == 4
    # at least one interrupted session resumed from its checkpoint rather than restarting
    resumed = [e for e in read_jsonl(rd.events) if e.get("event") == "session_resumed"]
    assert resumed and any(int(e.get("exchange") or 0) >= 2 for e in resumed)
    assert killed_mid


def test_a_run_killed_under_the_lean_executor_resumes_the_same_under_either(tmp_path):
    """SIGKILL mid-session with the lean executor (the default), then finish one copy of the
    run directory under Pregel (``THERASIM_EXECUTOR=pregel``) and one under the lean
    executor: both resume the interrupted session from its checkpoint, and every session's
    transcript equals an uninterrupted Pregel run's."""
    import shutil

    cfg = RunConfig.model_validate({**CFG, "course": {"preset": "minimal", "sessions": 2, "max_turns": 4}, "memory": {"embedding": "hash"}})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("THERASIM_EXECUTOR", None)
    target = str(Path(__file__).parent / "_run_target.py")

    def finish(root: Path, executor: str) -> list[Any]:
        proc = subprocess.run([sys.executable, target, str(root), "2"], env={**env, "THERASIM_EXECUTOR": executor}, capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        recs = RunDir(root).records()
        return sorted(((r["client_id"], r["session"]), [(t["speaker"], t["text"]) for t in r["turns"]]) for r in recs)

    ref_dir, _ = start_run(cfg, sample=2, out=tmp_path / "ref")
    reference = finish(ref_dir.root, "pregel")
    rd, _ = start_run(cfg, sample=2, out=tmp_path / "killed")
    pause = tmp_path / "paused"
    kill_at_pause(rd.root, 2, env, pause)
    copy = tmp_path / "copy" / rd.root.name
    shutil.copytree(rd.root, copy)
    for root, executor in ((rd.root, "pregel"), (copy, "lean")):
        assert finish(root, executor) == reference, executor
        resumed = [e for e in read_jsonl(RunDir(root).events) if e.get("event") == "session_resumed"]
        assert any(int(e.get("exchange") or 0) >= 2 for e in resumed), executor
    assert len(reference) == 4 and all(len(turns) == 8 for _, turns in reference)


def test_sigkill_between_two_calls_of_a_folded_exchange_repeats_no_finished_call(tmp_path):
    """One superstep per exchange (``THERASIM_FOLD_CALLS=1``): a real run process killed
    with SIGKILL while the counselor's call of exchange 2 hangs (the client's call of that
    exchange finished and was journalled, no checkpoint since the exchange started)
    resumes without calling the model again for any finished call (counted by the
    process), and every session's transcript equals an uninterrupted run's in the default
    layout. The layout is the manifest's (``course.fold_calls``, recorded when the run is
    made); a copy of the killed run whose manifest says the default layout repeats the
    client's call (its steps do not read the journal) and ends with the same transcripts."""
    import shutil
    from collections import Counter

    cfg = RunConfig.model_validate({**CFG, "course": {"preset": "minimal", "sessions": 2, "max_turns": 4}, "memory": {"embedding": "hash"}})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("THERASIM_EXECUTOR", None)
    target = str(Path(__file__).parent / "_run_target.py")

    def finish(root: Path, fold: str, calls: Path) -> list[Any]:
        proc = subprocess.run([sys.executable, target, str(root), "1"], env={**env, "THERASIM_FOLD_CALLS": fold, "THERASIM_TEST_CALLS_FILE": str(calls)}, capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        return sorted(((r["client_id"], r["session"]), [(t["speaker"], t["text"]) for t in r["turns"]]) for r in RunDir(root).records())

    def counted(*files: Path) -> Counter:
        return Counter(tuple(json.loads(ln)) for f in files if f.exists() for ln in f.read_text().splitlines())

    ref_dir, _ = start_run(cfg, sample=2, out=tmp_path / "ref")
    reference = finish(ref_dir.root, "0", tmp_path / "ref-calls")
    rd, _ = start_run(cfg.model_copy(update={"course": cfg.course.model_copy(update={"fold_calls": True})}), sample=2, out=tmp_path / "killed")
    pause, first = tmp_path / "paused", tmp_path / "calls-1"
    penv = {**env, "THERASIM_FOLD_CALLS": "1", "THERASIM_TEST_PAUSE_FILE": str(pause), "THERASIM_TEST_PAUSE_NODE": "counselor", "THERASIM_TEST_CALLS_FILE": str(first)}
    kill_at_pause(rd.root, 1, penv, pause)
    before = counted(first)
    (cid,) = {c for node, c, s, ex in before if node == "client" and ex == 2}
    assert before[("client", cid, 1, 2)] == 1 and ("counselor", cid, 1, 2) not in before  # killed between the two calls
    copy = tmp_path / "copy" / rd.root.name
    shutil.copytree(rd.root, copy)
    man = json.loads((copy / "manifest.json").read_text())  # the copy as a run of the default layout (an older therasim's view)
    man["config"]["course"]["fold_calls"] = False
    (copy / "manifest.json").write_text(json.dumps(man))
    assert finish(rd.root, "1", tmp_path / "calls-2") == reference
    every = counted(first, tmp_path / "calls-2")
    assert every == counted(tmp_path / "ref-calls"), "a finished call ran again, or one is missing"
    resumed = [e for e in read_jsonl(rd.events) if e.get("event") == "session_resumed"]
    assert any(int(e.get("exchange") or 0) == 2 for e in resumed)
    # the same killed run, finished in the default layout: same transcripts, the client's call of exchange 2 again
    assert finish(copy, "0", tmp_path / "calls-3") == reference
    assert counted(first, tmp_path / "calls-3")[("client", cid, 1, 2)] == 2
    assert len(reference) == 4 and all(len(turns) == 8 for _, turns in reference)


def test_a_run_from_before_the_layout_was_recorded_resumes_in_its_own_layout(tmp_path):
    """A run made before ``course.fold_calls`` went into manifests (the per-call layout,
    the manifest without the key), killed with SIGKILL mid-session, finishes in its own
    layout under today's default (one superstep per exchange): every session thread has
    one checkpoint per call (minimal: input, start, then the client's and the counselor's
    step of each exchange: 2 + 2 x 4, where one superstep per exchange would make 2 + 4),
    the interrupted session resumed from its checkpoint, and the transcripts equal an
    uninterrupted run's made in the default layout."""
    import sqlite3
    from collections import Counter

    cfg = RunConfig.model_validate({**CFG, "course": {"preset": "minimal", "sessions": 2, "max_turns": 4}, "memory": {"embedding": "hash"}})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("THERASIM_EXECUTOR", None)
    env.pop("THERASIM_FOLD_CALLS", None)
    target = str(Path(__file__).parent / "_run_target.py")

    def finish(root: Path) -> list[Any]:
        proc = subprocess.run([sys.executable, target, str(root), "1"], env=env, capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        return sorted(((r["client_id"], r["session"]), [(t["speaker"], t["text"]) for t in r["turns"]]) for r in RunDir(root).records())

    def checkpoints(root: Path) -> Counter:
        with sqlite3.connect(root / "checkpoints.sqlite") as c:
            return Counter(dict(c.execute("SELECT thread_id, count(*) FROM checkpoints WHERE checkpoint_ns = '' AND thread_id NOT LIKE '%/course' GROUP BY thread_id").fetchall()))

    ref_dir, _ = start_run(cfg, sample=2, out=tmp_path / "ref")
    assert ref_dir.manifest()["config"]["course"]["fold_calls"] is True  # today's default
    reference = finish(ref_dir.root)
    assert set(checkpoints(ref_dir.root).values()) == {2 + 4}
    rd, _ = start_run(cfg.model_copy(update={"course": cfg.course.model_copy(update={"fold_calls": False})}), sample=2, out=tmp_path / "old")
    pause = tmp_path / "paused"
    kill_at_pause(rd.root, 1, env, pause)
    man = json.loads(rd.manifest_path.read_text())
    del man["config"]["course"]["fold_calls"]  # the killed run as an older therasim left it
    rd.manifest_path.write_text(json.dumps(man))
    assert finish(rd.root) == reference
    resumed = [e for e in read_jsonl(rd.events) if e.get("event") == "session_resumed"]
    assert any(int(e.get("exchange") or 0) == 2 for e in resumed)
    counts = checkpoints(rd.root)
    assert len(counts) == 4 and set(counts.values()) == {2 + 2 * 4}, counts
    assert len(reference) == 4 and all(len(turns) == 8 for _, turns in reference)


def test_fork_and_replay_from_a_turn_of_a_run_made_with_one_superstep_per_exchange(tmp_path, monkeypatch):
    """A run made with ``THERASIM_FOLD_CALLS=1`` (one checkpoint per exchange): turn_state,
    replay and fork from turn 2 find the checkpoint before that turn, and their branches
    equal those of the same run made in the default layout (replay: the original session)."""
    from therasim.traces import fork, replay, turn_state

    other = FunctionChatModel(fn=lambda m, kw: "That sounds exhausting; what happens on the worst nights?")
    out = {}
    for fold in ("0", "1"):
        monkeypatch.setenv("THERASIM_FOLD_CALLS", fold)
        res = run(CFG, sample=1, out=tmp_path / fold, models=_models())
        assert res.ok
        rd = RunDir(res.run_dir)
        cid = rd.records()[0]["client_id"]
        st = turn_state(res.run_dir, cid, 1, 2)
        rep = replay(res.run_dir, cid, 1, 2, models=_models(), branch="again")
        fk = fork(res.run_dir, cid, 1, 2, counselor_model=other, models=_models(), branch="alt")
        original = [(t["speaker"], t["text"]) for t in rd.records()[0]["turns"]]
        assert [(t["speaker"], t["text"]) for t in rep["turns"]] == original
        out[fold] = (st["exchange"], [(t["speaker"], t["text"]) for t in rep["turns"]], [(t["speaker"], t["text"]) for t in fk["turns"]])
    assert _strip_latency(out["0"]) == _strip_latency(out["1"])
    assert out["1"][2][3][1].startswith("That sounds exhausting")  # the fork's counselor from turn 2 on


def _strip_latency(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip_latency(v) for k, v in x.items() if k not in ("latency_s",)}
    if isinstance(x, (list, tuple)):
        return [_strip_latency(v) for v in x]
    return x
