"""Two runs on one `chroma run` server never share memories: collections are scoped
by run id, so a course recalls only what its own earlier sessions wrote (issue #12)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import free_port, start_stub, wait_port  # type: ignore[import-not-found]


def test_two_runs_on_one_chroma_server_stay_apart(tmp_path: Path) -> None:
    from therasim.runner import resume, start_run

    exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = free_port()
    chroma = subprocess.Popen([exe, "run", "--path", str(tmp_path / "srv"), "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin"})
    stub, stub_port = start_stub()
    try:
        wait_port(port, chroma, 60, "/api/v2/heartbeat")
        cfg = {
            "models": {"default": {"provider": "openai", "model": "stub", "base_url": f"http://127.0.0.1:{stub_port}/v1", "timeout_s": 10}},
            "course": {"preset": "minimal", "sessions": 2, "max_turns": 2},
            "memory": {"backend": "chroma-http", "port": port, "embedding": "hash"},
            "concurrency": 2,
            "seed": 3,
        }
        runs: list[Any] = []
        for _ in range(2):  # the same config and clients twice: same client ids
            rd, _problems = start_run(cfg, sample=2, out=tmp_path / "runs")
            res = resume(rd.root)
            assert res.ok, res.summary()
            runs.append(rd)
        assert runs[0].manifest()["memory_scope"] != runs[1].manifest()["memory_scope"]
        for rd in runs:
            written = {i for r in rd.records() for ids in (r.get("memory_written") or {}).values() for i in ids}
            recalled = [it["id"] for r in rd.records() if r["session"] == 2 for side in (r.get("recall") or {}).values() if side for it in side["items"]]
            assert recalled, "session 2 recalled nothing: the test would prove nothing"
            assert set(recalled) <= written, "a course recalled another run's memory"
    finally:
        for p in (chroma, stub):
            p.terminate()
            p.wait(10)
