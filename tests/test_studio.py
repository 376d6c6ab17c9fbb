"""LangGraph Studio: the graphs of langgraph.json build schemas LangGraph accepts,
take their context as JSON, and run under `langgraph dev` (in-memory server):
assistants listed with langgraph_sdk, a session thread run on the stub, its history
read back. The server part skips only when langgraph-cli is not installed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_studio_graphs_have_json_schemas_and_json_context(stub_url):
    import asyncio

    from therasim.graphs.session import initial_session_state
    from therasim.profiles import example_profiles
    from therasim.studio import StudioContext, studio_course, studio_session

    g = studio_session("minimal")
    for schema in (g.get_input_jsonschema(), g.get_output_jsonschema(), g.get_context_jsonschema(), studio_course("minimal").get_input_jsonschema()):
        json.dumps(schema)
    ctx_schema = g.get_context_jsonschema()
    assert "models" in ctx_schema["properties"] and "max_turns" in ctx_schema["properties"]
    assert "transcript" in g.get_input_jsonschema()["properties"]
    # the context arrives as plain JSON: model specs as strings or objects
    context = {"models": {"default": f"openai:stub@{stub_url}", "counselor": {"provider": "openai", "model": "stub", "base_url": stub_url}}, "max_turns": 2}
    state = json.loads(json.dumps(initial_session_state(example_profiles()[0])))
    async def go() -> dict:
        try:
            return await g.ainvoke(state, context=context, config={"recursion_limit": 100})
        finally:
            await StudioContext.model_validate(context).to_sim().models.aclose()

    final = asyncio.run(go())
    assert final["ended"] and len(final["transcript"]) == 4
    assert StudioContext.model_validate(context).to_sim() is StudioContext.model_validate(context).to_sim()  # models reused


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def langgraph_dev(tmp_path):
    pytest.importorskip("langgraph_cli", reason="langgraph-cli[inmem] is not installed (.ci/run installs it)")
    pytest.importorskip("langgraph_api", reason="langgraph-cli's inmem extra is not installed")
    port = _free_port()
    env = {**os.environ, "THERASIM_PRESET": "minimal", "LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false", "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_API_KEY": ""}
    exe = Path(sys.executable).with_name("langgraph")
    # the repo's langgraph.json with its paths made absolute, served from a scratch folder
    # (the server keeps its in-memory state files in its working directory)
    conf = json.loads((REPO / "langgraph.json").read_text())
    conf["dependencies"] = [str(REPO)]
    conf["graphs"] = {k: str(REPO / v.removeprefix("./")) for k, v in conf["graphs"].items()}
    (tmp_path / "langgraph.json").write_text(json.dumps(conf))
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([str(exe), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port), "--config", str(tmp_path / "langgraph.json")], cwd=str(tmp_path), env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/ok", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("langgraph dev did not start:\n" + (tmp_path / "server.log").read_text()[-3000:]) from None
            time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_langgraph_dev_runs_a_session_thread(langgraph_dev, stub_url):
    from langgraph_sdk import get_sync_client

    from therasim.graphs.session import initial_session_state
    from therasim.profiles import example_profiles

    client = get_sync_client(url=langgraph_dev)
    graphs = {a["graph_id"] for a in client.assistants.search()}
    assert {"session", "course"} <= graphs
    thread = client.threads.create()
    state = json.loads(json.dumps(initial_session_state(example_profiles()[0])))
    final = client.runs.wait(thread["thread_id"], "session", input=state, context={"models": {"default": f"openai:stub@{stub_url}"}, "max_turns": 2})
    assert final["ended"] and len(final["transcript"]) == 4, final
    history = client.threads.get_history(thread["thread_id"], limit=100)
    assert len(history) > 6
    assert [t["speaker"] for t in history[0]["values"]["transcript"]] == ["client", "counselor", "client", "counselor"]
    assert any(h["next"] == ["counselor"] for h in history)
