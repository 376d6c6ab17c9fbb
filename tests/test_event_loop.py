"""The event loop therasim starts for a cohort (``therasim.runner.event_loop_factory``,
``run_loop``): uvloop's when installed, asyncio's on request or without it, a bad
``THERASIM_EVENT_LOOP`` named with the fix; a run gives the same transcripts on both."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from therasim import runner
from therasim.errors import ConfigError
from therasim.runner import event_loop_factory, run_loop
from therasim.testing import FunctionChatModel

sys.path.insert(0, str(Path(__file__).parent))
from _run_target import reply_now

CFG = {"course": {"preset": "minimal", "sessions": 2, "max_turns": 2, "memory": False}, "seed": 5}


def test_uvloop_by_default_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.delenv("THERASIM_EVENT_LOOP", raising=False)
    assert event_loop_factory() is uvloop.new_event_loop
    monkeypatch.setenv("THERASIM_EVENT_LOOP", " UVLOOP ")
    assert event_loop_factory() is uvloop.new_event_loop


def test_asyncio_on_request_or_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THERASIM_EVENT_LOOP", "asyncio")
    assert event_loop_factory() is asyncio.new_event_loop
    monkeypatch.setitem(sys.modules, "uvloop", None)  # not installed: importing it fails
    monkeypatch.setenv("THERASIM_EVENT_LOOP", "auto")
    assert event_loop_factory() is asyncio.new_event_loop
    monkeypatch.setenv("THERASIM_EVENT_LOOP", "uvloop")
    with pytest.raises(ConfigError, match=r"THERASIM_EVENT_LOOP=uvloop but uvloop is not installed; `pip install uvloop`"):
        event_loop_factory()


def test_a_bad_value_is_named_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THERASIM_EVENT_LOOP", "tokio")
    with pytest.raises(ConfigError, match=r"THERASIM_EVENT_LOOP='tokio': give one of auto, uvloop, asyncio"):
        event_loop_factory()

    async def never() -> None:
        raise AssertionError("ran on a loop of an unknown kind")

    coro = never()
    with pytest.raises(ConfigError):  # checked before any loop starts
        run_loop(coro)
    assert coro.cr_frame is None  # closed unstarted: no "never awaited" warning


def test_a_bad_value_leaves_no_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`therasim run` and run() refuse a bad THERASIM_EVENT_LOOP before they make a run
    directory, so a retry after fixing the variable leaves no never-started run behind."""
    from typer.testing import CliRunner

    from therasim.cli import app

    monkeypatch.setenv("THERASIM_EVENT_LOOP", "tokio")
    with pytest.raises(ConfigError, match="THERASIM_EVENT_LOOP='tokio'"):
        runner.run(CFG, sample=1, out=tmp_path / "api")
    res = CliRunner().invoke(app, ["run", "--sample", "1", "--out", str(tmp_path / "cli")])
    assert res.exit_code != 0 and "THERASIM_EVENT_LOOP='tokio'" in res.output, res.output
    assert not (tmp_path / "api").exists() or not any((tmp_path / "api").iterdir())
    assert not (tmp_path / "cli").exists() or not any((tmp_path / "cli").iterdir())


def test_run_loop_on_a_loop_it_makes_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The path Python 3.10 takes (no asyncio.Runner): the factory's loop runs the
    coroutine, is closed afterwards, and is no longer the thread's current loop."""
    monkeypatch.setenv("THERASIM_EVENT_LOOP", "asyncio")
    monkeypatch.setattr(runner.sys, "version_info", (3, 10, 14))
    seen: list[asyncio.AbstractEventLoop] = []

    async def kind() -> int:
        seen.append(asyncio.get_running_loop())
        return 7

    assert run_loop(kind()) == 7
    assert seen and seen[0].is_closed()


def test_run_loop_returns_the_result_and_runs_inside_a_running_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THERASIM_EVENT_LOOP", "asyncio")

    async def kind() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_loop(kind()).startswith("asyncio")
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.setenv("THERASIM_EVENT_LOOP", "uvloop")
    assert run_loop(kind()) == uvloop.Loop.__module__

    async def nested() -> str:  # a notebook's running loop: the run gets a thread and a loop of its own
        return str(runner._sync(kind()))

    assert asyncio.run(nested()) == uvloop.Loop.__module__


def _fast_reply(messages: Any, kw: Any, loops: list[str]) -> str:
    loops.append(type(asyncio.get_running_loop()).__module__)
    return str(reply_now(messages, kw))  # _run_target's reply waits 30 ms a call (for the kill test)


def _recording(loops: list[str]) -> Any:
    def fn(messages: Any, kw: Any) -> str:  # two arguments: FunctionChatModel passes no call info
        return _fast_reply(messages, kw, loops)

    return fn


@pytest.mark.parametrize("memory", [False, True])
def test_a_run_on_either_loop_writes_the_same_transcripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: bool) -> None:
    uvloop = pytest.importorskip("uvloop")
    cfg = {**CFG, "course": {**CFG["course"], "memory": memory}, "memory": {"embedding": "hash"}}
    out: dict[str, list[str]] = {}
    for kind in ("asyncio", "uvloop"):
        monkeypatch.setenv("THERASIM_EVENT_LOOP", kind)
        loops: list[str] = []
        rd, _ = runner.start_run(cfg, sample=3, out=tmp_path / kind, run_id="r")
        res = runner.resume(rd.root, models={"default": FunctionChatModel(fn=_recording(loops))}, concurrency=3)
        assert len(res.completed) == 3, res.failed
        assert loops and set(loops) == {uvloop.Loop.__module__ if kind == "uvloop" else "asyncio.unix_events"}
        out[kind] = sorted(rd.transcripts.read_text().splitlines())
    assert out["asyncio"] == out["uvloop"] and len(out["asyncio"]) == 6
