"""Checkpoint bytes per turn at 10 and 40 turns, per preset, through a real course
(course graph + session graph, AsyncSqliteSaver, sync durability), with a scripted
model so only orchestration is measured.

    python benchmarks/checkpoint_growth.py [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

from therasim.checkpoint import open_checkpointer
from therasim.config import CourseSpec
from therasim.context import SimContext
from therasim.graphs import CourseGraphBuilder, initial_course_state, preset, run_course
from therasim.profiles import example_profiles
from therasim.providers import ModelPool
from therasim.testing import FunctionChatModel, SchemaFakeChatModel


def stored_bytes(path: Path, like: str) -> int:
    con = sqlite3.connect(path)
    b = con.execute("select coalesce(sum(length(checkpoint)) + sum(length(metadata)), 0) from checkpoints where thread_id like ?", (like,)).fetchone()[0]
    b += con.execute("select coalesce(sum(length(value)), 0) from writes where thread_id like ?", (like,)).fetchone()[0]
    con.close()
    return int(b)


async def one(preset_name: str, turns: int, root: Path) -> dict[str, float]:
    path = root / f"{preset_name}-{turns}.sqlite"
    spec = CourseSpec(preset=preset_name, sessions=1, max_turns=turns, memory=False)
    async with open_checkpointer(str(path)) as saver:
        g = CourseGraphBuilder(preset(preset_name)).without("memory").compile(checkpointer=saver)
        fake = SchemaFakeChatModel(seed=1)

        def reply(messages, kw):  # type: ignore[no-untyped-def]
            out = fake._reply(messages, kw)
            if "role-playing a CLIENT in a counseling session" in str(messages[0].content):
                d = json.loads(out)
                d["wants_to_end"] = False  # run every session to max_turns
                out = json.dumps(d)
            return out

        model = FunctionChatModel(fn=reply)
        ctx = SimContext(models=ModelPool({"default": model}), course=spec)
        # the scripted client never asks to stop, so every session runs `turns` exchanges
        p = example_profiles()[0]
        st = initial_course_state(p, sessions=1)
        out = await run_course(g, st, ctx, thread_id="bench/course")
    n = sum(1 for t in out["records"][0]["turns"] if t["speaker"] == "client")
    sess = stored_bytes(path, "%/s1")
    course = stored_bytes(path, "%/course")
    return {"turns": n, "session_bytes": sess, "course_bytes": course, "session_bytes_per_turn": sess / max(n, 1), "file_bytes": path.stat().st_size}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--presets", default="minimal,lean,full")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="therasim-ckpt-"))
    rows = []
    for name in a.presets.split(","):
        r10 = asyncio.run(one(name, 10, root))
        r40 = asyncio.run(one(name, 40, root))
        rows.append({"preset": name, "bytes_per_turn_10": round(r10["session_bytes_per_turn"]), "bytes_per_turn_40": round(r40["session_bytes_per_turn"]), "turns_10": r10["turns"], "turns_40": r40["turns"], "ratio_40_10": round(r40["session_bytes_per_turn"] / r10["session_bytes_per_turn"], 3), "course_overhead_bytes": r10["course_bytes"]})
    print("| preset | turns | bytes/turn at 10 | turns | bytes/turn at 40 | ratio 40/10 | course steps (bytes/session) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['turns_10']} | {r['bytes_per_turn_10']} | {r['turns_40']} | {r['bytes_per_turn_40']} | {r['ratio_40_10']} | {r['course_overhead_bytes']} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
