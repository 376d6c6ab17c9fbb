"""Where the orchestrator's CPU per model call goes: the same courses against the
zero-latency stub with parts of the stack switched off. Needs a running stub:

    therasim stub --port 8011 &
    python benchmarks/cpu_per_call.py --url http://127.0.0.1:8011

Also reported: session checkpoints per exchange (one per LangGraph superstep, the
session's input and start included) and model calls per second one core sustains.

Before/after in one invocation (``--base REV``): a baseline revision's package
(built as in ``before_after.py``) and this tree's, rounds alternated, medians:

    python benchmarks/cpu_per_call.py --url http://127.0.0.1:8011 --base f00501d --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

VARIANTS = (
    ("graphs only (no checkpointer, no memory)", False, False),
    ("+ memory (Chroma + recall mirror)", False, True),
    ("+ checkpoints (SQLite, sync, compressed)", True, True),
)


def requests(url: str) -> int:
    with urllib.request.urlopen(url + "/metrics") as r:
        return int(json.loads(r.read())["requests"])


async def variant(url: str, cfg: object, *, checkpointer: bool, memory: bool, n: int) -> dict[str, float]:
    from therasim._internal.checkpoint import open_checkpointer
    from therasim.context import SimContext
    from therasim.graphs.course import course_builder, initial_course_state, run_course
    from therasim.memory import ChromaMemoryStore
    from therasim.profiles import sample_profiles
    from therasim.providers import ModelPool
    from therasim.testing import HashEmbedding

    pool = ModelPool(cfg.models)  # type: ignore[attr-defined]
    store = ChromaMemoryStore.persistent(tempfile.mkdtemp(), HashEmbedding()) if memory else None
    course = course_builder(cfg.course.model_copy(update={"memory": memory}))  # type: ignore[attr-defined]
    profiles = sample_profiles(n, seed=1)
    r0, c0 = requests(url), time.process_time()
    finals: list[dict] = []

    async def go(saver: object) -> None:
        g = course.compile(checkpointer=saver)
        ctx = SimContext(models=pool, course=cfg.course, memory=store)  # type: ignore[attr-defined]
        finals.extend(await asyncio.gather(*(run_course(g, initial_course_state(p, run_id="x", sessions=cfg.course.sessions), ctx, thread_id=f"x/{p.id}/course" if saver else None) for p in profiles)))  # type: ignore[attr-defined]

    path = tempfile.mktemp(suffix=".sqlite")
    if checkpointer:
        async with open_checkpointer(path) as saver:
            await go(saver)
    else:
        await go(None)
    await pool.aclose()
    calls = max(requests(url) - r0, 1)
    out = {"cpu_ms_per_call": 1000 * (time.process_time() - c0) / calls, "calls": calls}
    if checkpointer:
        exchanges = sum(1 for f in finals for r in f.get("records") or [] for t in r.get("turns") or [] if t.get("speaker") == "client")
        with sqlite3.connect(path) as con:
            (steps,) = con.execute("SELECT count(*) FROM checkpoints WHERE thread_id NOT LIKE '%/course'").fetchone()
        out["session_checkpoints_per_exchange"] = steps / max(exchanges, 1)
    return out


def measure(url: str, courses: int, preset: str) -> dict[str, dict[str, float]]:
    from therasim.config import RunConfig

    cfg = RunConfig.model_validate({"models": {"default": {"provider": "openai", "model": "stub", "base_url": url + "/v1"}}, "course": {"preset": preset, "sessions": 2, "max_turns": 8}, "memory": {"embedding": "hash"}})
    asyncio.run(variant(url, cfg, checkpointer=False, memory=False, n=2))  # warm imports
    return {name: asyncio.run(variant(url, cfg, checkpointer=ck, memory=mem, n=courses)) for name, ck, mem in VARIANTS}


def before_after(a: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from before_after import baseline_package

    pkg = str(baseline_package(a.base))
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(a.repeat):
        for arm, pp in (("before", pkg), ("after", None)):
            env = dict(os.environ)
            if pp:
                env["PYTHONPATH"] = pp + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            out = Path(tempfile.mktemp(suffix=".json"))
            cmd = [sys.executable, __file__, "--url", a.url, "--courses", str(a.courses), "--preset", a.preset, "--json", str(out)]
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())
            runs[arm].append(json.loads(out.read_text()))
    print(f"cpu_per_call: {a.courses} courses x 2 sessions x 8 turns, {a.preset}, median of {a.repeat} (alternated); base {a.base}")
    print("| variant | key | before | after | after / before |")
    print("|---|---|---|---|---|")
    for name, _, _ in VARIANTS:
        for key in ("cpu_ms_per_call", "calls_per_s_per_core", "session_checkpoints_per_exchange"):
            b = [r[name][key] for r in runs["before"] if key in r[name]]
            n = [r[name][key] for r in runs["after"] if key in r[name]]
            if b and n:
                mb, mn = statistics.median(b), statistics.median(n)
                print(f"| {name} | `{key}` | {mb:.2f} | {mn:.2f} | {mn / mb:.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(runs, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8011")
    ap.add_argument("--courses", type=int, default=16)
    ap.add_argument("--preset", default="lean")
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--base", default=None, help="baseline git revision: before/after in one invocation")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if a.base:
        before_after(a)
        return
    res = measure(a.url, a.courses, a.preset)
    for r in res.values():
        r["calls_per_s_per_core"] = 1000 / r["cpu_ms_per_call"]
    print("| variant | orchestrator CPU ms per model call | model calls/s per core | session checkpoints per exchange |")
    print("|---|---|---|---|")
    for name, r in res.items():
        per = r.get("session_checkpoints_per_exchange")
        print(f"| {name} | {r['cpu_ms_per_call']:.2f} | {r['calls_per_s_per_core']:.0f} | {'' if per is None else f'{per:.2f}'} |")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
