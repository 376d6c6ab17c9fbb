"""Two reads the course graph makes, old and new way, per model call: lean courses
on a schema-faithful fake model (no server), the run's SQLite group-commit saver, in
one process on uvloop.

* The course's routers (``finish``'s loop test, ``events``' skip test): each fresh read
  made both ways on the same channels and writes, alternated, timed with
  ``time.thread_time`` (20 times each): the channels an unannotated router read (the
  whole course state, every channel copied and the task's writes applied to each) and
  the one channel the annotated router reads (``done`` / ``pending``).
* The check for an existing checkpoint before a course or a session starts, on new
  threads: ``graph.aget_state`` (a state snapshot) against
  ``graphs.course._has_checkpoint`` (the saver's ``aget_tuple``), alternated.

    python benchmarks/course_reads.py --courses 16 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--courses", type=int, default=16)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--threads", type=int, default=200, help="new threads the checkpoint check is timed on")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    import uvloop

    from therasim._internal import checkpoint as ck
    from therasim.config import CourseSpec
    from therasim.context import SimContext
    from therasim.graphs import CourseGraphBuilder, executor, initial_course_state, run_course
    from therasim.graphs.course import _has_checkpoint
    from therasim.profiles import sample_profiles
    from therasim.providers import ModelPool
    from therasim.state import CourseState
    from therasim.testing import SchemaFakeChatModel

    lean = executor._local_read
    tt = time.thread_time
    t = {"router_whole_state": 0.0, "router_one_channel": 0.0, "aget_state": 0.0, "has_checkpoint": 0.0}
    n = {"router_reads": 0, "calls": 0, "checks": 0}
    whole: list[str] = []

    def both(scratchpad: Any, channels: Any, managed: Any, task: Any, select: Any, fresh: bool = False) -> Any:
        if not fresh or select not in (["done"], ["pending"]):
            return lean(scratchpad, channels, managed, task, select, fresh)
        n["router_reads"] += 1
        arms = (("router_whole_state", whole), ("router_one_channel", select))
        out = None
        for name, sel in arms if n["router_reads"] % 2 else arms[::-1]:
            t0 = tt()
            for _ in range(20):
                out = lean(scratchpad, channels, managed, task, sel, fresh)
            t[name] += (tt() - t0) / 20
        return out

    model = SchemaFakeChatModel()
    agen = type(model)._agenerate

    async def counted(self: Any, *args: Any, **kw: Any) -> Any:
        n["calls"] += 1
        return await agen(self, *args, **kw)

    type(model)._agenerate = counted  # type: ignore[method-assign]
    spec = CourseSpec(preset="lean", sessions=2, max_turns=a.turns, memory=False)

    async def go() -> None:
        ctx = SimContext(models=ModelPool({"default": model}), course=spec)
        async with ck.open_checkpointer(str(Path(tempfile.mkdtemp()) / "c.sqlite")) as saver:
            g = CourseGraphBuilder("lean").without("memory").compile(checkpointer=saver)
            whole[:] = list(g.builder.schemas[CourseState])
            await asyncio.gather(*(run_course(g, initial_course_state(p, run_id="p", sessions=2), ctx, thread_id=f"p/{p.id}/course") for p in sample_profiles(a.courses, seed=1)))
            for i in range(a.threads):
                cfg = {"configurable": {"thread_id": f"new/{i}/course"}}
                arms = (("aget_state", lambda c=cfg: g.aget_state(c)), ("has_checkpoint", lambda c=cfg: _has_checkpoint(saver, c)))
                for name, fn in arms if i % 2 else arms[::-1]:
                    t0 = tt()
                    await fn()
                    t[name] += tt() - t0
                n["checks"] += 1

    executor._local_read = both  # type: ignore[assignment]
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(go())
    calls = max(n["calls"], 1)
    # per model call as a run makes them: one check per course and per session (2 sessions a course)
    checks_per_call = a.courses * 3 / calls
    res = {
        **n,
        "us_per_read_whole_state": 1e6 * t["router_whole_state"] / max(n["router_reads"], 1),
        "us_per_read_one_channel": 1e6 * t["router_one_channel"] / max(n["router_reads"], 1),
        "us_per_call_whole_state": 1e6 * t["router_whole_state"] / calls,
        "us_per_call_one_channel": 1e6 * t["router_one_channel"] / calls,
        "us_per_check_aget_state": 1e6 * t["aget_state"] / max(n["checks"], 1),
        "us_per_check_has_checkpoint": 1e6 * t["has_checkpoint"] / max(n["checks"], 1),
        "checks_per_call": checks_per_call,
    }
    res["us_per_call_aget_state"] = res["us_per_check_aget_state"] * checks_per_call
    res["us_per_call_has_checkpoint"] = res["us_per_check_has_checkpoint"] * checks_per_call
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), **res}, f, indent=1)


if __name__ == "__main__":
    main()
