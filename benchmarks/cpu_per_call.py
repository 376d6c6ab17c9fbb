"""Where the orchestrator's CPU per model call goes: the same courses against the
zero-latency stub with parts of the stack switched off. Needs a running stub:

    therasim stub --port 8011 &
    python benchmarks/cpu_per_call.py --url http://127.0.0.1:8011
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import urllib.request

from therasim._internal.checkpoint import open_checkpointer
from therasim.config import RunConfig
from therasim.context import SimContext
from therasim.graphs.course import course_builder, initial_course_state, run_course
from therasim.memory import ChromaMemoryStore
from therasim.profiles import sample_profiles
from therasim.providers import ModelPool
from therasim.testing import HashEmbedding


def requests(url: str) -> int:
    with urllib.request.urlopen(url + "/metrics") as r:
        return int(json.loads(r.read())["requests"])


async def variant(url: str, cfg: RunConfig, *, checkpointer: bool, memory: bool, n: int) -> float:
    pool = ModelPool(cfg.models)
    store = ChromaMemoryStore.persistent(tempfile.mkdtemp(), HashEmbedding()) if memory else None
    course = course_builder(cfg.course.model_copy(update={"memory": memory}))
    profiles = sample_profiles(n, seed=1)
    r0, c0 = requests(url), time.process_time()

    async def go(saver: object) -> None:
        g = course.compile(checkpointer=saver)
        ctx = SimContext(models=pool, course=cfg.course, memory=store)
        await asyncio.gather(*(run_course(g, initial_course_state(p, run_id="x", sessions=cfg.course.sessions), ctx, thread_id=f"x/{p.id}/course" if saver else None) for p in profiles))

    if checkpointer:
        async with open_checkpointer(tempfile.mktemp(suffix=".sqlite")) as saver:
            await go(saver)
    else:
        await go(None)
    await pool.aclose()
    return 1000 * (time.process_time() - c0) / max(requests(url) - r0, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8011")
    ap.add_argument("--courses", type=int, default=16)
    a = ap.parse_args()
    cfg = RunConfig.model_validate({"models": {"default": {"provider": "openai", "model": "stub", "base_url": a.url + "/v1"}}, "course": {"preset": "lean", "sessions": 2, "max_turns": 8}, "memory": {"embedding": "hash"}})
    asyncio.run(variant(a.url, cfg, checkpointer=False, memory=False, n=2))  # warm imports
    print("| variant | orchestrator CPU ms per model call |")
    print("|---|---|")
    for name, ck, mem in (("graphs only (no checkpointer, no memory)", False, False), ("+ memory (Chroma + recall mirror)", False, True), ("+ checkpoints (SQLite, sync, compressed)", True, True)):
        print(f"| {name} | {asyncio.run(variant(a.url, cfg, checkpointer=ck, memory=mem, n=a.courses)):.2f} |")


if __name__ == "__main__":
    main()
