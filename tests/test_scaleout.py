"""Scale-out (issue 18): the Ray executor over Postgres checkpoints and a Chroma
server, against a real local Ray cluster (a head and a worker node), a throw-away
PostgreSQL 15 cluster, `chroma run` and the stub model server, all on 127.0.0.1.

- 16 courses across 2 Ray workers give the same transcripts (by hash) as the local
  executor;
- kill -9 of a Ray worker mid-run, then of the driver, then --resume: every
  (client, session) exactly once, every session's turns whole;
- a Postgres restart mid-run is ridden out; the compressed serializer is used;
- bad setups fail with errors that name the field and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from scaleout_services import pg_missing, ray_missing, services, stub_server  # type: ignore[import-not-found]

from therasim.config import load_config
from therasim.errors import ConfigError
from therasim.rundir import RunDir, read_jsonl

DSN_ENV = "THERASIM_TEST_PG_DSN"
# courses in the local-vs-Ray comparison: enough that both workers run several at once
# (was 40: the same checks at 2.5 times the run time)
N_CMP = 16


# --------------------------------------------------------------------------- no services


def test_postgres_checkpointer_needs_dsn_env() -> None:
    with pytest.raises(ConfigError) as e:
        load_config({"checkpointer": {"backend": "postgres"}})
    assert "checkpointer" in str(e.value) and "dsn_env" in str(e.value)


def test_unset_dsn_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from therasim.checkpoint import postgres_dsn

    monkeypatch.delenv("NO_SUCH_PG_DSN", raising=False)
    cfg = load_config({"checkpointer": {"backend": "postgres", "dsn_env": "NO_SUCH_PG_DSN"}})
    with pytest.raises(ConfigError, match=r"NO_SUCH_PG_DSN.*export NO_SUCH_PG_DSN=postgresql://"):
        postgres_dsn(cfg.checkpointer)


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from therasim.ray_executor import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"therasim\[ray\]"):
        RayExecutor().check(load_config(None))


def test_local_executor_never_imports_ray(tmp_path: Path) -> None:
    code = "import sys, therasim, therasim.runner, therasim.cli, therasim.ray_executor; assert 'ray' not in sys.modules; print('ok')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.stdout.strip() == "ok", r.stderr[-2000:]


@pytest.mark.skipif(ray_missing() is not None, reason=str(ray_missing()))
def test_ray_executor_refuses_state_workers_cannot_share() -> None:
    from therasim.ray_executor import RayExecutor

    ex = RayExecutor(workers=2)
    with pytest.raises(ConfigError, match=r"checkpointer\.backend.*postgres"):
        ex.check(load_config(None))
    with pytest.raises(ConfigError, match=r"memory\.backend.*chroma-http"):
        ex.check(load_config({"checkpointer": {"backend": "postgres", "dsn_env": DSN_ENV}}))
    ex.check(load_config({"checkpointer": {"backend": "postgres", "dsn_env": DSN_ENV}, "memory": {"backend": "chroma-http"}}))
    with pytest.raises(ConfigError, match="--workers"):
        RayExecutor(workers=0)


def test_cli_address_needs_ray_executor(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from therasim.cli import app

    r = CliRunner().invoke(app, ["run", "--address", "auto", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--executor ray" in r.output
    r = CliRunner().invoke(app, ["run", "--executor", "spark", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "'local' or 'ray'" in r.output


# --------------------------------------------------------------------------- services

needs_pg = pytest.mark.skipif(pg_missing() is not None, reason=str(pg_missing()))
needs_ray = pytest.mark.skipif(ray_missing() is not None, reason=str(ray_missing()))


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory):
    if pg_missing() or ray_missing():
        pytest.skip(pg_missing() or ray_missing() or "")
    with services(tmp_path_factory.mktemp("svc")) as s:
        os.environ[DSN_ENV] = s["pg"].dsn  # type: ignore[attr-defined]
        yield s
        os.environ.pop(DSN_ENV, None)


def _config(tmp: Path, base_url: str, chroma_port: int, *, sessions: int = 2, concurrency: int = 8, dsn_env: str = DSN_ENV) -> Path:
    cfg = {
        "models": {"default": {"provider": "openai", "model": "stub", "base_url": base_url, "max_retries": 4, "timeout_s": 20}},
        "course": {"preset": "minimal", "sessions": sessions, "max_turns": 2},
        "memory": {"backend": "chroma-http", "port": chroma_port, "embedding": "hash"},
        "checkpointer": {"backend": "postgres", "dsn_env": dsn_env},
        "concurrency": concurrency,
        "seed": 11,
    }
    p = tmp / f"config-{dsn_env}.yaml"
    p.write_text(json.dumps(cfg))
    return p


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "therasim.cli", *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


def _hashes(rd: Path) -> Counter[str]:
    """One hash per session record (line of transcripts.jsonl)."""
    return Counter(hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest() for r in read_jsonl(rd / "transcripts.jsonl"))


def _wipe_chroma(port: int) -> None:
    import chromadb
    from chromadb.config import Settings

    c = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False))
    for col in c.list_collections():
        c.delete_collection(col.name)


def _check_whole(rd: Path, n_clients: int, sessions: int) -> None:
    recs = list(read_jsonl(rd / "transcripts.jsonl"))
    keys = Counter((r["client_id"], r["session"]) for r in recs)
    assert len(keys) == n_clients * sessions, f"{len(keys)} sessions, expected {n_clients * sessions}"
    assert max(keys.values()) == 1, [k for k, v in keys.items() if v > 1]
    for r in recs:
        idx = [t["index"] for t in r["turns"]]
        assert idx == list(range(len(idx))) or idx == list(range(1, len(idx) + 1)), (r["client_id"], r["session"], idx)
        assert r["end_reason"], (r["client_id"], r["session"])
        ex = Counter(t["exchange"] for t in r["turns"])
        assert all(v >= 2 for v in ex.values()), (r["client_id"], r["session"], ex)  # counselor and client in each exchange
    status = RunDir(rd).course_status()
    assert len(status) == n_clients and all(s["status"] == "completed" for s in status.values())


@needs_pg
@needs_ray
def test_ray_run_matches_local_run(svc: dict[str, Any], tmp_path: Path) -> None:
    """16 courses on the stub across 2 Ray workers (head + worker node), Postgres
    checkpoints, Chroma server: the same transcripts, by hash, as the local executor.
    Both runs have the same run id (memory ids and recall tie-breaks derive from it),
    so each gets its own Postgres database and starts from an empty Chroma."""
    import psycopg

    from therasim.runner import start_run

    pg, chroma, stub, rc = svc["pg"], svc["chroma"], svc["stub"], svc["ray"]
    with psycopg.connect(pg.dsn, autocommit=True) as c:
        c.execute("create database second")
    os.environ[DSN_ENV + "_2"] = pg.dsn.rsplit("/", 1)[0] + "/second"
    url = f"http://127.0.0.1:{stub.port}/v1"
    rid = f"cmp-{int(time.time())}"
    a, _ = start_run(load_config(_config(tmp_path, url, chroma.port)), sample=N_CMP, out=tmp_path / "local", run_id=rid)
    b, _ = start_run(load_config(_config(tmp_path, url, chroma.port, dsn_env=DSN_ENV + "_2")), sample=N_CMP, out=tmp_path / "ray", run_id=rid)
    local = _cli("run", "--resume", str(a.root), "--no-progress")
    assert local.returncode == 0, local.stderr[-3000:]
    _wipe_chroma(chroma.port)  # memory is per client: the second run starts from an empty store as the first did
    dist = _cli("run", "--resume", str(b.root), "--no-progress", "--executor", "ray", "--address", rc.address, "--workers", "2")
    assert dist.returncode == 0, dist.stderr[-3000:]
    a, b = a.root, b.root
    ha, hb = _hashes(a), _hashes(b)
    assert sum(ha.values()) == 2 * N_CMP and ha == hb
    _check_whole(b, N_CMP, 2)
    assert {p.name for p in a.iterdir()} - {"checkpoints.sqlite", "checkpoints.sqlite-wal", "checkpoints.sqlite-shm"} == {p.name for p in b.iterdir()}
    ev = Counter(e["event"] for e in read_jsonl(b / "events.jsonl"))
    ev_local = Counter(e["event"] for e in read_jsonl(a / "events.jsonl"))
    assert ev == ev_local  # every node call, session and course event, once


@needs_pg
@needs_ray
def test_worker_kill_then_driver_kill_then_resume(svc: dict[str, Any], tmp_path: Path) -> None:
    """kill -9 a Ray worker mid-run (its courses continue on another actor), then the
    driver; --resume finishes: every (client, session) exactly once, turns whole."""
    chroma, rc = svc["chroma"], svc["ray"]
    slow = stub_server("--profile", "api-like", "--time-scale", "0.1")  # long enough to kill things mid-run
    try:
        n, sessions = 16, 3
        cfg = _config(tmp_path, f"http://127.0.0.1:{slow.port}/v1", chroma.port, sessions=sessions, concurrency=4)
        args = [sys.executable, "-m", "therasim.cli", "run", str(cfg), "--sample", str(n), "--out", str(tmp_path / "runs"), "--no-progress", "--executor", "ray", "--address", rc.address, "--workers", "2"]
        drv = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        runs = tmp_path / "runs"

        def sessions_done() -> int:
            ds = list(runs.glob("*/transcripts.jsonl")) if runs.exists() else []
            return len(list(read_jsonl(ds[0]))) if ds else 0

        def wait(cond: Any, what: str, timeout: float = 120) -> None:
            t = time.monotonic()
            while not cond():
                assert drv.poll() is None, f"driver exited before {what}: {drv.stderr.read()[-3000:] if drv.stderr else ''}"  # type: ignore[union-attr]
                assert time.monotonic() - t < timeout, f"timed out waiting for {what}"
                time.sleep(0.1)

        wait(lambda: sessions_done() >= 3 and len(rc.worker_pids()) >= 2, "the first sessions")
        victim = rc.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        at_worker_kill = sessions_done()
        wait(lambda: sessions_done() >= at_worker_kill + 6, "sessions after the worker kill")
        at_driver_kill = sessions_done()
        assert at_driver_kill < n * sessions, "the run ended before the driver kill; slow the stub down"
        drv.kill()
        drv.wait(30)
        rd = next(runs.iterdir())
        moved = [e for e in read_jsonl(rd / "events.jsonl") if e["event"] == "course_moved"]
        assert moved, "no course was moved off the killed worker"
        res = _cli("run", "--resume", str(rd), "--no-progress", "--executor", "ray", "--address", rc.address, "--workers", "2")
        assert res.returncode == 0, res.stderr[-3000:]
        _check_whole(rd, n, sessions)
        resumed = [e for e in read_jsonl(rd / "events.jsonl") if e["event"] == "course_resumed"]
        assert resumed  # courses continued from their Postgres checkpoints
    finally:
        slow.close()


@needs_pg
def test_postgres_restart_mid_run_is_survived(svc: dict[str, Any], tmp_path: Path) -> None:
    """Local executor on Postgres checkpoints: the server restarts while courses are
    mid-session; checkpoint reads and writes are retried and the run completes whole.
    Checkpoint blobs go through therasim's compressed serializer."""
    from therasim.runner import resume, start_run

    pg, chroma = svc["pg"], svc["chroma"]
    slow = stub_server("--profile", "api-like", "--time-scale", "0.1")
    try:
        cfg = load_config(_config(tmp_path, f"http://127.0.0.1:{slow.port}/v1", chroma.port, sessions=3, concurrency=6))
        rd, _ = start_run(cfg, sample=6, out=tmp_path / "runs")
        box: dict[str, Any] = {}
        t = threading.Thread(target=lambda: box.setdefault("res", resume(rd.root)))
        t.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(read_jsonl(rd.transcripts))) < 2:
            time.sleep(0.05)
        before = len(list(read_jsonl(rd.transcripts)))
        assert 2 <= before < 18
        pg.stop("fast")
        time.sleep(1.5)
        pg.start()
        t.join(240)
        res = box["res"]
        assert res.ok and len(res.completed) == 6, res.summary()
        _check_whole(rd.root, 6, 3)
        import psycopg

        with psycopg.connect(pg.dsn) as c:
            types = dict(c.execute("select type, count(*) from checkpoint_blobs where thread_id like %s group by type", (f"{res.run_id}/%",)).fetchall())
        assert any(k.startswith("zs:") for k in types), types  # compressed blobs (zstd, the default since session 16 of #17)
    finally:
        slow.close()

