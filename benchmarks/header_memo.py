"""The counselor and client headers rendered per call against once per session (the
memo in ``therasim/prompts.py``), in one process: the header calls of N lean courses
(fake model, no memory) are recorded with the views they were made from, then
replayed in order with the memo and without it, alternated; the headers each way
must be the same strings.

    python benchmarks/header_memo.py --courses 16 --rounds 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--courses", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    from therasim import prompts
    from therasim.config import CourseSpec
    from therasim.context import SimContext
    from therasim.graphs import CourseGraphBuilder, initial_course_state, run_course
    from therasim.profiles import sample_profiles
    from therasim.providers import ModelPool
    from therasim.testing import SchemaFakeChatModel

    calls: list[tuple[str, Any, Any]] = []
    counselor, client = prompts.counselor_header, prompts.client_header
    models: list[int] = [0]

    def rec_counselor(view: Any, sim: Any) -> str:
        calls.append(("counselor", view, sim))
        return counselor(view, sim)

    def rec_client(view: Any) -> str:
        calls.append(("client", view, None))
        return client(view)

    prompts.counselor_header, prompts.client_header = rec_counselor, rec_client  # type: ignore[assignment]
    fake = SchemaFakeChatModel()
    ctx = SimContext(models=ModelPool({"default": fake}), course=CourseSpec(max_turns=4, sessions=2), on_prompt=lambda *_: models.__setitem__(0, models[0] + 1))
    g = CourseGraphBuilder("lean").without("memory").compile()

    async def run() -> None:
        await asyncio.gather(*(run_course(g, initial_course_state(p, sessions=2), ctx) for p in sample_profiles(a.courses, seed=1)))

    asyncio.run(run())
    prompts.counselor_header, prompts.client_header = counselor, client  # type: ignore[assignment]
    hit = prompts._header_hit

    def replay(memo: bool) -> tuple[float, list[str]]:
        prompts._HEADERS.clear()
        if not memo:
            prompts._header_hit = lambda *_: None  # type: ignore[assignment]
        t = time.perf_counter()
        out = [counselor(v, s) if kind == "counselor" else client(v) for kind, v, s in calls]
        dt = time.perf_counter() - t
        prompts._header_hit = hit  # type: ignore[assignment]
        return dt, out

    times: dict[bool, list[float]] = {True: [], False: []}
    outs: dict[bool, list[str]] = {}
    for i in range(a.rounds):
        for memo in (False, True) if i % 2 == 0 else (True, False):
            dt, outs[memo] = replay(memo)
            times[memo].append(dt)
    same = outs[True] == outs[False]
    per = {memo: 1e6 * statistics.median(ts) / len(calls) for memo, ts in times.items()}
    res = {
        "courses": a.courses,
        "model_calls": models[0],
        "header_calls": len(calls),
        "us_per_header_call_rendered": per[False],
        "us_per_header_call_memo": per[True],
        "ratio": per[True] / per[False],
        "us_saved_per_model_call": (per[False] - per[True]) * len(calls) / max(models[0], 1),
        "headers_identical": same,
    }
    print(json.dumps(res, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    if not same:
        raise SystemExit("headers differ with and without the memo")


if __name__ == "__main__":
    main()
