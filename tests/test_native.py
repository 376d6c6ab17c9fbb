"""A run opened with plain LangGraph: stock SqliteSaver with the documented serde,
open_run's graphs (get_state_history, update_state, astream, aget_state), the
manifest's record of the serializer and of user-supplied models, and a plain
chromadb client querying a run's memory."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

import therasim
from therasim.runner import run
from therasim.testing import FunctionChatModel

sys.path.insert(0, str(Path(__file__).parent))
from _run_target import reply

CFG = {"course": {"preset": "minimal", "sessions": 2, "max_turns": 3, "memory": False}, "seed": 5}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    res = run(CFG, sample=1, out=tmp_path_factory.mktemp("runs"), models={"default": FunctionChatModel(fn=reply)})
    assert res.ok
    return Path(res.run_dir)


def test_stock_sqlite_saver_reads_a_run_with_the_documented_serde(run_dir):
    from langgraph.checkpoint.sqlite import SqliteSaver

    from therasim.graphs import preset
    from therasim.native import run_serde

    man = json.loads((run_dir / "manifest.json").read_text())
    assert man["checkpoint"]["serde"] == "therasim.checkpoint.CompressedSerializer"
    cid = man["cohort"]["ids"][0]
    cfg = {"configurable": {"thread_id": f"{man['run_id']}/{cid}/s1"}}
    conn = sqlite3.connect(str(run_dir / "checkpoints.sqlite"), check_same_thread=False)
    try:
        # without the serde, LangGraph cannot decode the compressed blobs
        with pytest.raises(Exception, match=r"zs?:"):
            list(preset("minimal").compile(checkpointer=SqliteSaver(conn)).get_state_history(cfg))
        graph = preset("minimal").compile(checkpointer=SqliteSaver(conn, serde=run_serde()))
        history = list(graph.get_state_history(cfg))
        final = graph.get_state(cfg)
    finally:
        conn.close()
    # input, start, then per exchange: one superstep (the default layout, recorded in the
    # manifest); per model call (course.fold_calls: false): client, then counselor with
    # record and termination folded in
    from therasim.graphs.builder import fold_calls_default

    fold_calls = man["config"]["course"]["fold_calls"]
    assert fold_calls is fold_calls_default()
    assert len(history) == 2 + (1 if fold_calls else 2) * 3
    assert final.values["ended"] and len(final.values["transcript"]) == 6
    assert [t["speaker"] for t in final.values["transcript"][:2]] == ["client", "counselor"]
    # the oldest snapshot is the session input, before any turn
    assert history[-1].values.get("transcript", []) == [] or history[-1].values == {}


def test_open_run_history_update_state_and_astream(run_dir):
    man = json.loads((run_dir / "manifest.json").read_text())
    cid = man["cohort"]["ids"][0]
    other = FunctionChatModel(fn=lambda m, kw: "Tell me more about the nights.")
    with therasim.open_run(run_dir, models={"default": FunctionChatModel(fn=reply), "counselor": other}) as r:
        assert {f"{man['run_id']}/{cid}/s1", f"{man['run_id']}/{cid}/s2", f"{man['run_id']}/{cid}/course"} <= set(r.threads())
        cfg = r.session_config(cid, 1)
        snaps = list(r.session.get_state_history(cfg))
        before_2 = next(s for s in reversed(snaps) if s.values.get("exchange") == 1 and s.next == ("client",))
        course = r.course.get_state(r.course_config(cid))
        assert course.values["done"] and len(course.values["records"]) == 2

        async def go() -> tuple[Any, list[Any]]:
            snap = await r.session.aget_state(cfg)
            assert snap.values["exchange"] == 3
            new = r.session_config(cid, 1, branch="nb")
            await r.session.aupdate_state(new, {**before_2.values, "current": {}}, as_node="termination")
            chunks = [c async for c in r.session.astream(None, new, context=r.context, stream_mode="updates")]
            return await r.session.aget_state(new), chunks

        final, chunks = asyncio.run(go())
    # one updates chunk per superstep, the folded node's writes in order under its first node:
    # the exchange's (client's) in the default layout, the counselor's step per call
    head = "client" if man["config"]["course"]["fold_calls"] else "counselor"
    assert any(isinstance(c.get(head), list) and any("transcript" in w for w in c[head]) for c in chunks), chunks[:2]
    turns = final.values["transcript"]
    assert len(turns) == 6 and turns[1]["text"] == "What did you notice about your sleep this week?"
    assert turns[3]["text"] == "Tell me more about the nights."  # continued with the other counselor
    # the original thread is untouched
    with therasim.open_run(run_dir) as r:
        assert r.session.get_state(r.session_config(cid, 1)).values["transcript"][3]["text"] == turns[1]["text"]


def test_open_run_refuses_a_custom_graph_without_its_builder(tmp_path):
    from therasim.graphs import preset

    b = preset("minimal")
    b.add_node("echo", lambda v, c: {}, side="system", after="counselor")
    res = run(CFG, sample=1, out=tmp_path, models={"default": FunctionChatModel(fn=reply)}, session_builder=b)
    with pytest.raises(therasim.RunDirError, match="session_builder"):
        therasim.open_run(res.run_dir)
    with therasim.open_run(res.run_dir, session_builder=b) as r:
        assert "echo" in r.session.get_graph().nodes


def test_manifest_records_user_models_and_replaced_nodes(tmp_path):
    from langchain_openai import ChatOpenAI

    from therasim.graphs import preset
    from therasim.runner import start_run

    chat = ChatOpenAI(model="my-counselor-8b", base_url="http://10.0.0.5:8000/v1", api_key="sk-not-recorded", temperature=0.3, max_tokens=77, top_p=0.9)  # type: ignore[arg-type]
    b = preset("minimal").replace_node("counselor", chat)
    rd, _ = start_run(CFG, sample=1, out=tmp_path, models={"default": FunctionChatModel(fn=reply), "client": chat}, session_builder=b)
    text = (rd.root / "manifest.json").read_text()
    assert "sk-not-recorded" not in text
    man = json.loads(text)
    client = man["models"]["client"]
    assert client["class"] == "langchain_openai.chat_models.base.ChatOpenAI" and client["model"] == "my-counselor-8b"
    assert client["base_url"] == "http://10.0.0.5:8000/v1"
    assert client["sampling"]["temperature"] == 0.3 and client["sampling"]["max_tokens"] == 77 and client["sampling"]["top_p"] == 0.9
    assert client["max_tokens_source"] == "model"
    node = man["node_models"]["counselor"]
    assert node["kind"] == "chat_model" and node["model"] == "my-counselor-8b" and node["replaced"].endswith("counselor")
    assert man["graph"]["course"]["session"]["nodes"]["counselor"]["impl"]["class"].endswith("ChatOpenAI")


def test_a_models_own_max_tokens_is_respected(tmp_path):
    from therasim.context import NodeContext, SimContext
    from therasim.nodes.counselor import SPEC as COUNSELOR
    from therasim.providers import ModelPool

    class Capped(FunctionChatModel):
        max_tokens: int | None = 33

    own, plain = Capped(fn=lambda m, kw: "fine words here"), FunctionChatModel(fn=lambda m, kw: "fine words here")
    sim = SimContext(models=ModelPool({"default": plain, "counselor": own}))
    from langchain_core.messages import HumanMessage

    for role, model, want in (("counselor", own, None), ("client", plain, 120)):
        ctx = NodeContext(sim, "counselor", "counselor", {}, spec=COUNSELOR)  # the node's cap comes from its spec
        asyncio.run(ctx.text(role, [HumanMessage(content="hi")]))
        assert model.calls[-1]["kwargs"].get("max_tokens") == want
    asyncio.run(NodeContext(sim, "counselor", "counselor", {}).text("counselor", [HumanMessage(content="hi")], max_tokens=9))
    assert own.calls[-1]["kwargs"]["max_tokens"] == 9  # an explicit cap still wins


def test_plain_chromadb_client_queries_a_run_memory(tmp_path, monkeypatch):
    """The run's memory collections name therasim's embedding function; once
    therasim.memory is imported (which registers it) a plain client queries by text."""
    import subprocess

    from therasim import memory
    from therasim.testing import HashEmbedding

    monkeypatch.setattr(memory, "make_embedding", lambda spec: HashEmbedding())
    cfg = {**CFG, "course": {**CFG["course"], "memory": True}}
    res = run(cfg, sample=1, out=tmp_path, models={"default": FunctionChatModel(fn=reply)})
    assert res.ok
    code = (
        "import sys, chromadb, therasim.memory\n"
        "from chromadb.config import Settings\n"
        "c = chromadb.PersistentClient(path=sys.argv[1], settings=Settings(anonymized_telemetry=False))\n"
        "cols = c.list_collections()\n"
        "col = c.get_collection(cols[0].name)\n"
        "print(type(col.configuration['embedding_function']).__name__, col.count())\n"
        "r = col.query(query_texts=['sleep diary'], n_results=1)\n"
        "print(r['documents'][0][0])\n"
    )
    (block,) = (Path(res.run_dir) / "memory").glob("blocks-*/00000")  # embedded runs: one Chroma folder per block of clients
    out = subprocess.run([sys.executable, "-c", code, str(block)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    first, doc = out.stdout.strip().splitlines()[:2]
    assert first.split()[0] == "HashEmbedding" and int(first.split()[1]) > 0
    assert doc
