"""What a lean task's fresh read (a router's ``CONFIG_KEY_READ``) costs, per model
call: lean sessions on a schema-faithful fake model (no server), each read made both
ways on the same channels and writes, alternated, timed with ``time.thread_time``:
LangGraph's ``local_read`` (copies every channel, applies the task's writes to each)
and the lean executor's ``_local_read`` (only the selected channels).

    python benchmarks/read_cost.py --sessions 16 --turns 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--preset", default="lean")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.pregel._algo import local_read

    from therasim.config import CourseSpec
    from therasim.context import SimContext
    from therasim.graphs import executor, preset
    from therasim.graphs.session import initial_session_state, session_recursion_limit
    from therasim.profiles import example_profiles
    from therasim.providers import ModelPool
    from therasim.testing import SchemaFakeChatModel

    lean = executor._local_read
    t = {"langgraph": 0.0, "lean": 0.0}
    n = {"reads": 0, "fresh": 0, "calls": 0}
    tt = time.thread_time

    def both(scratchpad: Any, channels: Any, managed: Any, task: Any, select: Any, fresh: bool = False) -> Any:
        n["reads"] += 1
        n["fresh"] += bool(fresh)
        order = (("langgraph", local_read), ("lean", lean)) if n["reads"] % 2 else (("lean", lean), ("langgraph", local_read))
        out = None
        for name, fn in order:
            t0 = tt()
            for _ in range(20):
                out = fn(scratchpad, channels, managed, task, select, fresh)
            t[name] += (tt() - t0) / 20
        return out

    executor._local_read = both  # type: ignore[assignment]
    model = SchemaFakeChatModel()
    agen = type(model)._agenerate

    async def counted(self: Any, *args: Any, **kw: Any) -> Any:
        n["calls"] += 1
        return await agen(self, *args, **kw)

    type(model)._agenerate = counted  # type: ignore[method-assign]
    ctx = SimContext(models=ModelPool({"default": model}), course=CourseSpec(max_turns=a.turns))
    g = preset(a.preset).compile(checkpointer=InMemorySaver())

    async def go() -> None:
        for i in range(a.sessions):
            cfg = {"configurable": {"thread_id": f"t{i}"}, "recursion_limit": session_recursion_limit(a.turns)}
            await executor.ainvoke(g, initial_session_state(example_profiles()[i % len(example_profiles())]), cfg, context=ctx, durability="sync")

    asyncio.run(go())
    calls = max(n["calls"], 1)
    res = {**n, "us_per_call_langgraph": 1e6 * t["langgraph"] / calls, "us_per_call_lean": 1e6 * t["lean"] / calls, "us_per_read_langgraph": 1e6 * t["langgraph"] / max(n["reads"], 1), "us_per_read_lean": 1e6 * t["lean"] / max(n["reads"], 1)}
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), **res}, f, indent=1)


if __name__ == "__main__":
    main()
