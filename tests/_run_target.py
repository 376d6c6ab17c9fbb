"""A real run process for the kill test: the therasim runner over a run directory,
with a deterministic, slightly slow scripted model (so a kill lands mid-session)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from therasim.runner import arun_dir, run_loop
from therasim.testing import FunctionChatModel, client_turn_json


def kill_at_pause(root, exchanges, env, pause, why=""):
    """Run this script on the run folder ``root`` (``exchanges`` before its pause) with
    ``env`` and the pause file ``pause``; once it writes that file (it has paused where
    the test asked), kill it with SIGKILL, as a crash would."""
    import signal
    import subprocess

    proc = subprocess.Popen([sys.executable, __file__, str(root), str(exchanges)], env={**env, "THERASIM_TEST_PAUSE_FILE": str(pause)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not pause.exists():
        time.sleep(0.02)
    assert pause.exists(), proc.stderr.read().decode()[-2000:] if proc.stderr else why
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def reply(messages, kw):
    """``reply_now`` after 30 ms (a model call that takes a while: the kill test's)."""
    time.sleep(0.03)
    return reply_now(messages, kw)


def reply_now(messages, kw):
    """The scripted answers, at once."""
    system = "\n".join(str(m.content) for m in messages)
    if "filling in two questionnaires" in system:
        keys = ("phq_interest", "phq_down", "phq_sleep", "phq_tired", "phq_appetite", "phq_failure", "phq_concentration", "phq_psychomotor", "phq_self_harm", "gad_nervous", "gad_cant_stop_worry", "gad_worry_too_much", "gad_trouble_relaxing", "gad_restless", "gad_irritable", "gad_afraid")
        return json.dumps(dict.fromkeys(keys, 1))
    if "private notes after session" in system:
        return json.dumps({"themes": ["sleep"], "progress": "talked about sleep", "homework": "sleep diary", "risk": "none observed", "plan": "review the diary", "facts": ["works nights"]})
    if "thinking back on counseling session" in system:
        return json.dumps({"remembers": "we talked about sleep", "feels": "a bit lighter", "homework": "sleep diary"})
    if "clinical supervisor" in system:
        return json.dumps({"efficacy": "unclear", "decision": "keep", "modality": "cbt", "reason": "too early to tell", "goals": ["review the sleep diary"]})
    if "role-playing a CLIENT" in system:
        n = str(messages[-1].content).count("Counselor")
        return client_turn_json(f"I slept badly again, that is the {n} time I say it.", wants_to_end=False)
    return "What did you notice about your sleep this week?"


def pausing_reply(messages, kw, info):
    """``reply``; with THERASIM_TEST_PAUSE_FILE set, the client's call of exchange 2 (two
    exchanges recorded and checkpointed) creates that file and hangs there, so a kill
    lands mid-session whatever the machine's load (a kill timed on the event log could
    land after the session had ended). With THERASIM_TEST_RELEASE_FILE set too, it hangs
    only until that file exists (a run held mid-session while a test looks at it, then
    let finish). ``THERASIM_TEST_PAUSE_NODE`` names another node to hang in (default
    ``client``); ``THERASIM_TEST_CALLS_FILE`` gets one line per finished call."""
    pause = os.environ.get("THERASIM_TEST_PAUSE_FILE")
    if pause and info is not None and info.node == os.environ.get("THERASIM_TEST_PAUSE_NODE", "client") and info.ids.get("exchange") == 2:
        Path(pause).touch()
        release = os.environ.get("THERASIM_TEST_RELEASE_FILE")
        if not release:
            time.sleep(600)
        deadline = time.monotonic() + 120  # with THERASIM_TEST_RELEASE_FILE: hang until that file exists
        while not Path(release or "").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    out = reply(messages, kw)
    calls = os.environ.get("THERASIM_TEST_CALLS_FILE")
    if calls and info is not None:  # each finished call, one line (the kill tests count them)
        with open(calls, "a") as f:
            f.write(json.dumps([info.node, info.ids.get("client_id"), info.ids.get("session"), info.ids.get("exchange")]) + "\n")
    return out


if __name__ == "__main__":
    run_loop(arun_dir(sys.argv[1], models={"default": FunctionChatModel(fn=pausing_reply)}, concurrency=int(sys.argv[2]) if len(sys.argv) > 2 else 2))
