"""Where the per-step machinery's CPU goes, per model call: lean courses on a
schema-faithful fake model (no server), SQLite group-commit checkpoints, in one
process on uvloop inside the runner's collector settings; LangGraph's loop methods,
the saver's methods and the serializer wrapped in thread-CPU timers (an ``async``
method is timed over every slice it runs, not the time it waits). Nested rows
(indented) are part of the row above them; the timers' own cost (~1 us each) is in
the figures, so read them as shares and orders of magnitude.

    python benchmarks/step_pieces.py --courses 16 --fold 1 --json out.json
    python benchmarks/step_pieces.py --courses 16 --fold 0
    THERASIM_CHECKPOINT_CODEC=zlib python benchmarks/step_pieces.py --courses 16
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

T: dict[str, float] = defaultdict(float)
N: dict[str, int] = defaultdict(int)
tt = time.thread_time


def timed(name: str, f: Any) -> Any:
    @functools.wraps(f)
    def w(*a: Any, **k: Any) -> Any:
        t0 = tt()
        try:
            return f(*a, **k)
        finally:
            T[name] += tt() - t0
            N[name] += 1

    return w


class _Slices:
    """A coroutine driven step by step, each step's thread CPU added to ``name``."""

    def __init__(self, name: str, coro: Any) -> None:
        self.name, self.coro = name, coro

    def __await__(self) -> Any:
        coro, name = self.coro, self.name
        send: Any = None
        exc: BaseException | None = None
        while True:
            t0 = tt()
            try:
                y = coro.throw(exc) if exc is not None else coro.send(send)
            except StopIteration as e:
                T[name] += tt() - t0
                N[name] += 1
                return e.value
            except BaseException:
                T[name] += tt() - t0
                N[name] += 1
                raise
            T[name] += tt() - t0
            exc = None
            try:
                send = yield y
            except BaseException as e:  # handed to the coroutine
                exc, send = e, None


def timed_async(name: str, f: Any) -> Any:
    @functools.wraps(f)
    def w(*a: Any, **k: Any) -> Any:
        return _Slices(name, f(*a, **k))

    return w


def install() -> None:
    import zlib

    import langgraph.checkpoint.serde.jsonplus as jp
    from langgraph.pregel import _loop

    from therasim._internal import checkpoint as ck
    from therasim.graphs import executor as ex

    loop_cls = _loop.AsyncPregelLoop
    lean = ex._lean_loop_class()
    lean.tick = timed("loop.tick (the step's tasks prepared)", lean.tick)
    loop_cls.after_tick = timed("loop.after_tick (writes applied, checkpoint made and submitted)", loop_cls.after_tick)
    _loop.apply_writes = timed("  apply_writes", _loop.apply_writes)
    _loop.create_checkpoint = timed("  create_checkpoint", _loop.create_checkpoint)
    loop_cls.put_writes = timed("loop.put_writes (a task's writes kept and submitted)", loop_cls.put_writes)
    loop_cls._checkpointer_put_after_previous = timed_async("loop._checkpointer_put_after_previous (includes saver.aput)", loop_cls._checkpointer_put_after_previous)
    loop_cls.__aenter__ = timed_async("loop.__aenter__ (a graph call's start: checkpoint loaded)", loop_cls.__aenter__)
    saver = ck.GroupCommitSaver
    saver.aput = timed_async("saver.aput (checkpoint serialised and inserted)", saver.aput)
    saver.aput_writes = timed_async("saver.aput_writes (writes and journal rows serialised and inserted)", saver.aput_writes)
    saver._write = timed("  saver._write (SQLite executemany)", saver._write)
    saver._commit = timed("saver._commit (SQLite commit)", saver._commit)
    saver.get_tuple = timed("saver.get_tuple", saver.get_tuple)
    ck.CompressedSerializer.dumps_typed = timed("  serde.dumps_typed (msgpack + zlib)", ck.CompressedSerializer.dumps_typed)
    jp.JsonPlusSerializer.dumps_typed = timed("    msgpack (JsonPlusSerializer.dumps_typed)", jp.JsonPlusSerializer.dumps_typed)
    if hasattr(ck, "_Zstd"):  # zstd blobs (the default since session 16; THERASIM_CHECKPOINT_CODEC picks)
        ck._Zstd.compress = timed("    zstd compress", ck._Zstd.compress)

    class _Z:
        def __getattr__(self, k: str) -> Any:
            return getattr(zlib, k)

        compress = staticmethod(timed("    zlib.compress", zlib.compress))

    ck.zlib = _Z()  # type: ignore[assignment]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--courses", type=int, default=16)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--fold", choices=("0", "1"), default=None, help="THERASIM_FOLD_CALLS for the courses (default: the environment's)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.fold is not None:
        os.environ["THERASIM_FOLD_CALLS"] = a.fold
    import uvloop

    from therasim._internal import checkpoint as ck
    from therasim.config import CourseSpec
    from therasim.context import SimContext
    from therasim.graphs import CourseGraphBuilder, initial_course_state, run_course
    from therasim.profiles import sample_profiles
    from therasim.providers import ModelPool
    from therasim.runner import _gc_for_run
    from therasim.testing import SchemaFakeChatModel

    calls = [0]

    def log(node: str, side: str, msgs: Any) -> None:
        calls[0] += 1

    spec = CourseSpec(preset="lean", sessions=2, max_turns=a.turns)
    stats: dict[str, int] = {}

    async def go(n: int) -> None:
        ctx = SimContext(models=ModelPool({"default": SchemaFakeChatModel(seed=1)}), course=spec, on_prompt=log)
        async with ck.open_checkpointer(str(Path(tempfile.mkdtemp()) / "c.sqlite")) as saver:
            g = CourseGraphBuilder("lean").compile(checkpointer=saver)
            await asyncio.gather(*(run_course(g, initial_course_state(p, run_id="p", sessions=2), ctx, thread_id=f"p/{p.id}/course") for p in sample_profiles(n, seed=1)))
            stats.update(commits=saver.commits, statements=saver.statements)

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(go(2))  # imports warm
    install()
    asyncio.run(go(2))
    T.clear()
    N.clear()
    calls[0] = 0
    with _gc_for_run():
        t0 = tt()
        asyncio.run(go(a.courses))
        total = tt() - t0
    n = max(calls[0], 1)
    rows = [{"piece": k, "us_per_call": 1e6 * T[k] / n, "share": T[k] / total, "per_call": N[k] / n} for k in sorted(T, key=lambda k: -T[k])]
    print(f"THERASIM_FOLD_CALLS={os.environ.get('THERASIM_FOLD_CALLS', '')!r} THERASIM_CHECKPOINT_CODEC={os.environ.get('THERASIM_CHECKPOINT_CODEC', '')!r}: {n} model calls, thread CPU {1e6 * total / n:.0f} us per call (timers included); commits {stats['commits'] / n:.2f}, statements {stats['statements'] / n:.2f} per call")
    print("| piece | us per model call | share | times per call |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['piece']} | {r['us_per_call']:.0f} | {100 * r['share']:.1f}% | {r['per_call']:.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"fold_calls": os.environ.get("THERASIM_FOLD_CALLS"), "codec": os.environ.get("THERASIM_CHECKPOINT_CODEC") or "default", "calls": n, "us_per_call": 1e6 * total / n, **{k: v / n for k, v in stats.items()}, "pieces": rows}, indent=1))


if __name__ == "__main__":
    main()
