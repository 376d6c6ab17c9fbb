"""End to end through the CLI on the embedded model: demo, inspect (overview,
timeline, turn state, JSON), fork, replay, plot, graph PNG; bad input is a clear
error, not a traceback. The demo also shows that importing therasim and running a
course on the embedded defaults (llama.cpp, Chroma, MiniLM) opens no connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.embedded

# Loaded by the demo's interpreter before anything else (a sitecustomize on PYTHONPATH):
# every socket connection except a Unix socket is refused, and said on stderr (a thread's
# SystemExit would otherwise end that thread without a word).
NO_CONNECT = """
import socket, sys
def refuse(self, address, *args):
    if self.family != socket.AF_UNIX:
        sys.stderr.write(f"CONNECT {address}\\n")
        raise SystemExit(f"CONNECT {address}")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
sys.stderr.write("no-connect guard on\\n")
"""


def cli(*args: str, ok: bool = True, timeout: int = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "therasim.cli", *args], capture_output=True, text=True, timeout=timeout, env=env)
    if ok:
        assert p.returncode == 0, f"{args}: rc {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


def test_demo_inspect_fork_plot(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    # The demo in a fresh interpreter whose sockets refuse any destination: importing
    # therasim and a real course on the embedded defaults open no connection
    # (docs/reliability.md, Privacy). The timeout only guards against a hang.
    guard = tmp_path_factory.mktemp("no-connect")
    (guard / "sitecustomize.py").write_text(NO_CONNECT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGCHAIN_", "LANGSMITH_"))}
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(guard), env.get("PYTHONPATH")) if x)
    p = cli("demo", "--out", str(tmp_path), "--clients", "1", "--sessions", "2", "--turns", "2", timeout=1800, env=env)
    assert "no-connect guard on" in p.stderr and "CONNECT" not in p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    runs = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert len(runs) == 1
    rd = runs[0]
    assert f"outputs: {rd}" in " ".join(p.stdout.split())
    for f in ("manifest.json", "transcripts.jsonl", "events.jsonl", "checkpoints.sqlite", "courses.jsonl", "profiles.jsonl"):
        assert (rd / f).exists(), f
    ov = json.loads(cli("inspect", str(rd), "--json").stdout)
    course = ov["courses"][0]
    cid = course["client_id"]
    assert course["status"] == "completed" and [s["session"] for s in course["sessions"]] == [1, 2]
    assert all(s["phq9"] is None or 0 <= s["phq9"] <= 27 for s in course["sessions"])
    timeline = json.loads(cli("inspect", str(rd), "--client", cid, "--session", "2", "--json").stdout)
    assert timeline[0]["speaker"] == "client" and "emotion" in timeline[0] and "recalled" in timeline[0]
    human = cli("inspect", str(rd), "--client", cid, "--session", "1").stdout
    assert "speaker" in human and "client" in human
    state = json.loads(cli("inspect", str(rd), "--client", cid, "--session", "1", "--turn", "1", "--json").stdout)
    assert state["thread_id"].endswith(f"/{cid}/s1") and state["exchange"] and "inner" in state["state"]
    assert any(t.get("calls") for t in state["exchange"])

    # Fork and replay from session 1's last turn: each re-runs only that turn on the
    # model (a fork before turn 1 of a session runs in notebook 02).
    last = str(course["sessions"][0]["turns"])
    f = cli("fork", str(rd), "--client", cid, "--session", "1", "--turn", last, "--set", "inner.distress=10", "--set", "modality=mi", "--branch", "distressed")
    assert "fork distressed" in f.stdout
    r = cli("replay", str(rd), "--client", cid, "--session", "1", "--turn", last, "--branch", "again")
    assert "replay again" in r.stdout
    branches = [json.loads(x) for x in (rd / "branches.jsonl").read_text().splitlines()]
    assert {b["branch"] for b in branches} == {"distressed", "again"}
    fork_rec = next(b for b in branches if b["branch"] == "distressed")
    assert fork_rec["modality"] == "mi" and fork_rec["changes"]["set"] == {"inner.distress": 10, "modality": "mi"}
    ov = json.loads(cli("inspect", str(rd), "--json").stdout)
    assert {b["branch"] for b in ov["courses"][0]["sessions"][0]["branches"]} == {"distressed", "again"}
    assert json.loads(cli("inspect", str(rd), "--client", cid, "--session", "1", "--branch", "distressed", "--json").stdout)
    # the original session is untouched
    orig = [json.loads(x) for x in (rd / "transcripts.jsonl").read_text().splitlines()]
    assert len(orig) == 2 and all(x["branch"] is None for x in orig)

    pngs = cli("plot", str(rd)).stdout.split()
    assert any(x.endswith(f"{cid}.png") for x in pngs) and all(Path(x).stat().st_size > 5000 for x in pngs)
    g = cli("graph", "--course", "--png", str(tmp_path / "course.png"))
    assert "session" in g.stdout and (tmp_path / "course.png").stat().st_size > 5000

    # bad input: one clear line, no traceback, exit code 2
    for args, msg in (
        (("inspect", str(rd), "--client", "nobody", "--session", "1"), "no client 'nobody'"),
        (("inspect", str(rd), "--client", cid, "--session", "1", "--turn", "99"), "--turn must be between"),
        (("fork", str(rd), "--client", cid, "--session", "1", "--turn", "1", "--set", "hidden=1"), "not a field you can change"),
        (("fork", str(rd), "--client", cid, "--session", "1", "--turn", "1", "--set", "modality=hypnosis"), "hypnosis"),
        (("inspect", str(tmp_path)), "not a therasim run directory"),
        (("run", "--resume", str(tmp_path / "missing")), "no such run directory"),
    ):
        p = cli(*args, ok=False)
        assert p.returncode == 2 and msg in " ".join(p.stderr.split()) and "Traceback" not in p.stderr, (args, p.stderr)
