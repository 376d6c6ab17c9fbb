"""Run directories under hostile conditions (issue #12): one writer at a time (a lock
naming its holder; a dead holder's lock taken over), forks that cannot double a
branch or write NaN, a full disk mid-run (courses marked failed, resume finishes
them, nothing lost or doubled), read-only folders and damaged files as one clear
line and exit 2."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from therasim.errors import ConfigError, RunDirError
from therasim.rundir import RunDir
from therasim.runner import resume, run, start_run
from therasim.testing import FunctionChatModel

sys.path.insert(0, str(Path(__file__).parent))
from _run_target import reply

HERE = Path(__file__).parent
CFG = {"course": {"preset": "minimal", "sessions": 2, "max_turns": 3}, "memory": {"embedding": "hash"}, "seed": 5}


@pytest.fixture(autouse=True)
def _hash_embedding(monkeypatch):
    from therasim import memory
    from therasim.testing import HashEmbedding

    monkeypatch.setattr(memory, "make_embedding", lambda spec: HashEmbedding())


def _models(fn: Any = reply) -> dict[str, Any]:
    return {"default": FunctionChatModel(fn=fn)}


def _cli(*args: str, prefix: tuple[str, ...] = (), env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "MPLCONFIGDIR": tempfile.gettempdir(), **(env or {})}
    return subprocess.run([*prefix, sys.executable, "-m", "therasim.cli", *args], capture_output=True, text=True, timeout=120, env=e)


def _main(*args: str) -> subprocess.CompletedProcess[str]:
    """``therasim ARGS`` in this process (the CLI's own ``main``): exit code, stdout, stderr."""
    import contextlib
    import io

    from therasim import cli

    o, e = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["therasim", *args]
    code: Any = 0
    try:
        with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
            try:
                cli.main()
            except SystemExit as ex:
                code = ex.code
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(args, code or 0, o.getvalue(), e.getvalue())


def _one_clear_line(p: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert lines and lines[-1].startswith("error:"), p.stderr
    for n in needles:
        assert n in p.stderr, (n, p.stderr)


# --------------------------------------------------------------------------- lock


def test_two_processes_on_one_run_directory(tmp_path: Path) -> None:
    # the first run holds at its first session's exchange 2 (lock taken, mid-session) until
    # the release file exists, so it is still running when the second starts, whatever the
    # machine's speed (timing it on the lock file alone let a fast first run finish first)
    rd, _ = start_run({**CFG, "course": {"preset": "minimal", "sessions": 3, "max_turns": 6}}, sample=4, out=tmp_path)
    paused, release = tmp_path / "paused", tmp_path / "release"
    env = {**os.environ, "THERASIM_TEST_PAUSE_FILE": str(paused), "THERASIM_TEST_RELEASE_FILE": str(release)}
    first = subprocess.Popen([sys.executable, str(HERE / "_run_target.py"), str(rd.root), "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 90
    while time.time() < deadline and not paused.exists() and first.poll() is None:
        time.sleep(0.05)
    assert paused.exists(), first.stderr.read() if first.stderr else "the first run never reached exchange 2"
    second = subprocess.run([sys.executable, str(HERE / "_run_target.py"), str(rd.root), "1"], capture_output=True, text=True, timeout=120)
    assert first.poll() is None, "the first run ended before the second started: the test proves nothing"
    assert second.returncode != 0
    assert f"is in use by pid {first.pid} on host {socket.gethostname()}" in second.stderr
    with pytest.raises(RunDirError, match=f"pid {first.pid}"):
        resume(rd.root, models=_models())
    release.touch()
    assert first.wait(300) == 0, first.stderr.read() if first.stderr else ""
    keys = [(r["client_id"], r["session"]) for r in rd.records()]
    assert len(keys) == len(set(keys)) == 12  # every session once: nothing run twice


def test_a_dead_holders_lock_is_taken_over(tmp_path: Path) -> None:
    rd, _ = start_run(CFG, sample=1, out=tmp_path)
    code = f"from therasim.rundir import RunLock; import time; RunLock({str(rd.root)!r}, 'run').acquire(); print('held', flush=True); time.sleep(600)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(RunDirError, match=f"pid {holder.pid}"):
        resume(rd.root, models=_models())
    os.kill(holder.pid, signal.SIGKILL)  # dies holding it: the lock file stays, naming a dead pid
    holder.wait(10)
    assert json.loads((rd.root / ".lock").read_text())["pid"] == holder.pid
    res = resume(rd.root, models=_models())
    assert res.ok and res.sessions_written == 2


# --------------------------------------------------------------------------- fork


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from therasim import memory
    from therasim.testing import HashEmbedding

    orig = memory.make_embedding
    memory.make_embedding = lambda spec: HashEmbedding()  # type: ignore[assignment]
    try:
        res = run(CFG, sample=1, out=tmp_path_factory.mktemp("runs"), models=_models())
    finally:
        memory.make_embedding = orig  # type: ignore[assignment]
    assert res.ok
    return Path(res.run_dir)


def _client(rd: Path) -> str:
    return RunDir(rd).records()[0]["client_id"]


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (["inner.distress=NaN"], "not a finite number"),
        (["inner.distress=Infinity"], "not a finite number"),
        (["inner.distress=-Infinity"], "not a finite number"),
        (["inner.distress=99"], "inner.distress"),
        (["inner.distress=high"], "inner.distress"),
        (["inner.distress=-0.5"], "inner.distress"),
        (["inner.disclosure=2.5"], "inner.disclosure"),
        (["inner.wants_to_end=[1]"], "inner.wants_to_end"),
        (["inner.bogus=1"], "not a field of the inner state"),
        (["inner=3"], "inner"),
        (["goals=7"], "goals"),
        (["modality=astrology"], "unknown modality"),
        (["intake.age=7"], "intake.age"),
        (["counselor_memory={\"a\": NaN}"], "not a finite number"),
    ],
)
def test_fork_set_values_are_validated_before_anything_is_written(finished_run: Path, sets: list[str], needle: str) -> None:
    from therasim.traces import fork

    before = RunDir(finished_run).branches.read_bytes() if RunDir(finished_run).branches.exists() else b""
    threads_before = _threads(finished_run)
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
        fork(finished_run, _client(finished_run), 1, 1, sets=sets, models=_models(), branch="bad")
    after = RunDir(finished_run).branches.read_bytes() if RunDir(finished_run).branches.exists() else b""
    assert after == before and _threads(finished_run) == threads_before


def _threads(rd: Path) -> set[str]:
    with sqlite3.connect(rd / "checkpoints.sqlite") as c:
        return {r[0] for r in c.execute("select distinct thread_id from checkpoints")}


def test_a_failed_fork_leaves_no_thread_and_its_name_can_be_reused(finished_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from therasim.traces import fork

    cid = _client(finished_run)
    calls = {"n": 0}

    def flaky(messages: list[Any], kw: dict[str, Any]) -> str:
        calls["n"] += 1
        if calls["n"] > 4:
            raise ConnectionError("model server went away (simulated)")
        return reply(messages, kw)

    with pytest.raises(ConnectionError):
        fork(finished_run, cid, 1, 1, sets=["inner.distress=9"], models=_models(flaky), branch="again")
    assert not any(t.endswith("@again") for t in _threads(finished_run))  # cleaned up

    # a fork killed before it could clean up: its thread stays behind ...
    from therasim.checkpoint import GroupCommitSaver  # the run's saver

    real_delete = GroupCommitSaver.adelete_thread
    calls["n"] = 0

    async def no_delete(self: Any, thread_id: str) -> None:
        return None

    monkeypatch.setattr(GroupCommitSaver, "adelete_thread", no_delete)
    with pytest.raises(ConnectionError):
        fork(finished_run, cid, 1, 1, sets=["inner.distress=9"], models=_models(flaky), branch="again")
    assert any(t.endswith("@again") for t in _threads(finished_run))
    monkeypatch.setattr(GroupCommitSaver, "adelete_thread", real_delete)

    # ... and the next fork of that name clears it: no doubled turns
    rec = fork(finished_run, cid, 1, 1, sets=["inner.distress=9"], models=_models(), branch="again")
    ref = fork(finished_run, cid, 1, 1, sets=["inner.distress=9"], models=_models(), branch="fresh")
    assert len(rec["turns"]) == len(ref["turns"])
    exchanges = [(t["exchange"], t["speaker"]) for t in rec["turns"]]
    assert len(exchanges) == len(set(exchanges))
    with pytest.raises(ConfigError, match="already exists"):
        fork(finished_run, cid, 1, 1, sets=["inner.distress=9"], models=_models(), branch="again")
    for line in RunDir(finished_run).branches.read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in branches.jsonl"))


def test_writers_never_write_nan(tmp_path: Path) -> None:
    from therasim.rundir import JsonlWriter, atomic_write_json

    w = JsonlWriter(tmp_path / "x.jsonl")
    w.write({"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": float("-inf")}})
    w.close()
    atomic_write_json(tmp_path / "m.json", {"x": float("nan")})
    for text in ((tmp_path / "x.jsonl").read_text(), (tmp_path / "m.json").read_text()):
        json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} written"))


# --------------------------------------------------------------------------- disk full


def test_disk_full_mid_run_marks_courses_failed_and_resume_finishes_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from therasim import rundir

    rd, _ = start_run(CFG, sample=3, out=tmp_path)
    real = rundir._os_write
    full = {"on": False, "records": 0}

    def write(fd: int, data: Any) -> int:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if name.endswith("transcripts.jsonl"):
            full["records"] += 1
            if full["records"] > 2:
                full["on"] = True
        if full["on"] and name.endswith(("transcripts.jsonl", "courses.jsonl")):
            n = real(fd, bytes(data)[:7])  # a partial line reaches the disk, then it is full
            assert n == 7
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(rundir, "_os_write", write)
    res = resume(rd.root, models=_models())  # returns: no exception out of the run
    assert not res.ok and res.failed
    assert all("No space left" in why for why in res.failed.values()), res.failed
    text = rd.transcripts.read_bytes()
    assert text.endswith(b"\n") and all(json.loads(x) for x in text.splitlines())  # no torn line kept
    kept = [(r["client_id"], r["session"]) for r in rd.records()]
    assert len(kept) == 2

    monkeypatch.setattr(rundir, "_os_write", real)  # space freed
    res2 = resume(rd.root, models=_models())
    assert res2.ok, res2.summary()
    keys = [(r["client_id"], r["session"]) for r in rd.records()]
    assert len(keys) == len(set(keys)) == 6 and set(kept) <= set(keys)
    assert {c: s["status"] for c, s in rd.course_status().items()} == dict.fromkeys(rd.manifest()["cohort"]["ids"], "completed")


def test_disk_full_at_the_start_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from therasim import cli, rundir

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir, "_os_write", full)
    monkeypatch.setattr(sys, "argv", ["therasim", "run", "--sample", "1", "--out", str(tmp_path), "--no-progress"])
    with pytest.raises(SystemExit) as ex:
        cli.main()
    assert ex.value.code == 2
    errline = capsys.readouterr().err.strip().splitlines()[-1]
    assert errline.startswith("error:") and "disk is full" in errline


# --------------------------------------------------------------------------- read-only, damaged


@pytest.fixture
def read_only_run(tmp_path: Path) -> Any:
    """A finished run whose folder is read-only (for root too: the command runs without
    the capabilities that let root write anywhere)."""
    import shutil

    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a folder read-only for root")
        prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--")
    res = run(CFG, sample=1, out=tmp_path, models=_models())
    assert res.ok
    root = Path(res.run_dir)
    for p in [*root.rglob("*"), root]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)
    yield root, prefix
    for p in [root, *root.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)


def test_read_only_run_directory(read_only_run: Any) -> None:
    root, prefix = read_only_run
    cid = _client(root)
    p = _cli("inspect", str(root), "--client", cid, "--session", "1", "--turn", "1", prefix=prefix)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr  # reading works on a read-only disk
    _one_clear_line(_cli("run", "--resume", str(root), "--no-progress", prefix=prefix), "cannot write")
    _one_clear_line(_cli("fork", str(root), "--client", cid, "--session", "1", "--turn", "1", "--set", "inner.distress=9", prefix=prefix), "cannot write")
    _one_clear_line(_cli("replay", str(root), "--client", cid, "--session", "1", "--turn", "1", prefix=prefix), "cannot write")
    _one_clear_line(_cli("plot", str(root), prefix=prefix), "cannot write the plots")


def test_damaged_files_are_one_clear_line(finished_run: Path, tmp_path: Path) -> None:
    import shutil

    def copy() -> Path:
        d = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(finished_run, d)
        return d

    cid = _client(finished_run)
    for content in (b"{not json", b"[]", b"\xff\xfe garbage", b'{"run_format_version": 1}', b"[" * 50_000):
        d = copy()
        man = json.loads((d / "manifest.json").read_text())
        if content == b'{"run_format_version": 1}':
            content = json.dumps({"run_format_version": man["run_format_version"]}).encode()
        (d / "manifest.json").write_bytes(content)
        _one_clear_line(_main("inspect", str(d)), "manifest")
    d = copy()
    (d / "checkpoints.sqlite").write_bytes(b"this is not a database" * 100)
    for f in d.glob("checkpoints.sqlite-*"):
        f.unlink()
    _one_clear_line(_main("inspect", str(d), "--client", cid, "--session", "1", "--turn", "1"), "checkpoint")
    # damaged JSONL lines: the other records still read, with no traceback
    d = copy()
    with open(d / "transcripts.jsonl", "ab") as f:
        f.write(b"\xff\xfe not utf-8\n1\n" + b"[" * 50_000 + b"\n{\"client_id\": \"x\"}\n")
    with open(d / "courses.jsonl", "ab") as f:
        f.write(b"{}\n\xc3\n")
    p = _main("inspect", str(d), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["courses"][0]["sessions"]
    d = copy()
    (d / "profiles.jsonl").write_text("{}\n")
    _one_clear_line(_main("run", "--resume", str(d), "--no-progress"), "profiles.jsonl")


def test_cli_argument_checks() -> None:
    _one_clear_line(_main("stub", "--port", "99999"), "--port 99999")
    p = _main("--log-level", "LOUD", "config", "example")
    assert p.returncode == 2 and "LOUD" in p.stderr and "Traceback" not in p.stderr
    p = _main("--log-level", "debug", "config", "example")
    assert p.returncode == 0
    _one_clear_line(_main("inspect", ".", "--turn", "1"), "--turn needs --client and --session")
    _one_clear_line(_main("inspect", ".", "--client", "x", "--turn", "1"), "--turn needs")
