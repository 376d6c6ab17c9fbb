"""The group-committing checkpointer: many sessions on one saver, batched commits,
and what it stored reads back identically through the stock saver."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from therasim.checkpoint import CompressedSerializer, GroupCommitSaver, open_checkpointer
from therasim.config import CourseSpec
from therasim.context import SimContext
from therasim.graphs import preset
from therasim.graphs.session import initial_session_state, run_session
from therasim.profiles import example_profiles
from therasim.providers import ModelPool
from therasim.testing import FunctionChatModel


def _reply(msgs, kw):  # type: ignore[no-untyped-def]
    if "YOUR TURN" in str(msgs[-1].content):
        return json.dumps({"utterance": "I have been sleeping badly and worrying about work.", "distress": 5, "trust": 5, "disclosure": 1, "wants_to_end": False})
    return "That sounds hard; tell me more about how the nights have been."


def test_group_commit_batches_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    n, turns = 8, 3

    async def run() -> list[dict]:
        async with open_checkpointer(str(path), group_commit=True) as saver:
            assert isinstance(saver, GroupCommitSaver)
            g = preset("minimal").compile(checkpointer=saver)
            ctx = SimContext(models=ModelPool({"default": FunctionChatModel(fn=_reply)}), course=CourseSpec(max_turns=turns))
            outs = await asyncio.gather(*(run_session(g, initial_session_state(example_profiles()[0]), ctx, thread_id=f"t{i}") for i in range(n)))
            # sessions ran concurrently: some transactions carried several courses' rows
            assert saver.commits < saver.statements
        return list(outs)

    outs = asyncio.run(run())
    assert all(len(o["transcript"]) == 2 * turns for o in outs)

    async def read() -> None:
        async with AsyncSqliteSaver.from_conn_string(str(path)) as plain:
            plain.serde = CompressedSerializer()
            g = preset("minimal").compile(checkpointer=plain)
            for i, o in enumerate(outs):
                snap = await g.aget_state({"configurable": {"thread_id": f"t{i}"}})
                assert snap.values["transcript"] == o["transcript"] and snap.values["ended"]

    asyncio.run(read())
