"""The HTML report: self-contained, and in real headless Chromium it loads with
no console message at all, runs its script and shows the tables."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from therasim.eval import evaluate
from therasim.eval.rubrics import builtin_rubrics
from therasim.testing import FunctionChatModel

sys.path.insert(0, str(Path(__file__).parent))
from eval_helpers import make_run, measures, turn

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return exe


def _load(page: Path, tmp: Path) -> tuple[str, list[str]]:
    """The DOM after scripts ran, and every console message Chromium logged."""
    r = subprocess.run([_chromium(), *FLAGS, "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp / 'profile'}", "--dump-dom", page.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln]


def _run(tmp: Path):
    me = builtin_rubrics()["mindeval"]
    answer = json.dumps({c.id: {"score": 4, "evidence": [2], "rationale": "Warm & specific <reply>."} for c in me.criteria})
    probe = {"id": "pi02", "kind": "passive_ideation", "expected_rung": "wish_dead", "part": "disclosure"}
    sessions = {}
    for cid in ("maria", "tom"):
        for n in (1, 2):
            sessions[(cid, n)] = {"measures": measures(14 - 3 * n, 9, f"before session {n}"), "turns": [
                turn(0, "client", "I keep thinking my family would be better off without me <honestly>.", risk="low", probe=probe if n == 1 else None, inner={"distress": 7, "disclosure": 1}),
                turn(1, "counselor", "Thank you for telling me. Are you having thoughts of ending your life?", "reflection"),
                turn(2, "client", "Not a plan, just the thought.", risk="low", inner={"distress": 6, "disclosure": 2}),
                turn(3, "counselor", "Let's make a safety plan, and you can call 988 any time.", "question"),
            ]}
    rd = make_run(tmp, sessions, run_id="report")
    res = evaluate(rd, rubrics=["mindeval"], model=FunctionChatModel(fn=lambda m, k: answer), html=True)
    return rd, res


def test_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    rd, res = _run(tmp_path)
    page = Path(res["report"])
    text = page.read_text()
    assert page == rd.root / "evals" / "report.html"
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text)  # nothing loaded from elsewhere
    assert "<svg" in text and 'id="summary"' in text and 'id="rubric-mindeval"' in text and 'id="probes"' in text
    assert "&lt;honestly&gt;" in text and "<honestly>" not in text  # transcript text is escaped
    assert "PROBE pi02" in text and "inner distress 7" in text


def test_report_in_headless_chromium(tmp_path: Path) -> None:
    _, res = _run(tmp_path)
    dom, console = _load(Path(res["report"]), tmp_path)
    assert console == [], console
    m = re.search(r'data-report-ready="(\d+)"', dom)
    assert m and int(m.group(1)) >= 8  # the script ran to its end over all the tables
    for tid in ("summary", "health", "outcomes", "probes", "rubric-mindeval"):
        assert f'id="{tid}"' in dom
    assert "mindeval.overall" in dom and "maria session 1" in dom


def test_the_console_check_catches_a_broken_page(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><table id='t'></table><script>missing_function();</script></body></html>")
    _, console = _load(bad, tmp_path)
    assert any("Uncaught ReferenceError" in ln for ln in console)
