"""The stub server is safe to leave running: no body-controlled file paths, JSON
only, no cross-origin browser requests, bounded schema sampling and bodies, 400
for malformed and 413 for oversized requests, clean CLI errors (issue #12)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from therasim.stub import StubServer, create_app

JSON_H = {"Content-Type": "application/json"}


async def _client(server: StubServer) -> TestClient:
    c = TestClient(TestServer(create_app(server)))
    await c.start_server()
    return c


def _chat(schema: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "stub", "messages": [{"role": "user", "content": "hi"}], **kw}
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    return body


async def test_trace_takes_no_path_from_the_body(tmp_path: Path) -> None:
    victim = tmp_path / "victim.sh"
    victim.write_text("echo hello\n")
    c = await _client(StubServer("zero"))
    try:
        # the old API: {"path": FILE} appended every later request body to FILE
        r = await c.post("/trace", json={"path": str(victim)})
        assert r.status == 400
        r = await c.post("/trace", json={"name": "x"})
        assert r.status == 403  # no --trace-dir: tracing over HTTP is off
        await c.post("/v1/chat/completions", json=_chat(), headers=JSON_H)
        assert victim.read_text() == "echo hello\n"
    finally:
        await c.close()
    traces = tmp_path / "traces"
    traces.mkdir()
    c = await _client(StubServer("zero", trace_dir=traces))
    try:
        for bad in ("../victim", "/etc/passwd", "a/b", "", "x" * 65, 3):
            r = await c.post("/trace", json={"name": bad})
            assert r.status == 400, bad
        r = await c.post("/trace", json={"name": "run1"})
        assert r.status == 200 and (await r.json())["file"] == "run1.jsonl"
        await c.post("/v1/chat/completions", json=_chat())
        await c.post("/trace", json={"name": None})
        assert len((traces / "run1.jsonl").read_text().splitlines()) == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == ["traces", "victim.sh"]
    finally:
        await c.close()


async def test_cross_origin_and_non_json_requests_are_refused(tmp_path: Path) -> None:
    c = await _client(StubServer("zero", trace_dir=tmp_path))
    try:
        body = json.dumps(_chat())
        # what a web page can send without a CORS preflight: text/plain, forms
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            r = await c.post("/v1/chat/completions", data=body, headers={"Content-Type": ctype})
            assert r.status == 415, ctype
        r = await c.post("/trace", data='{"name": "x"}', headers={"Content-Type": "text/plain"})
        assert r.status == 415 and not list(tmp_path.iterdir())
        for h in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
            r = await c.post("/v1/chat/completions", json=_chat(), headers=h)
            assert r.status == 403, h
            r = await c.get("/metrics", headers=h)
            assert r.status == 403, h
        host = f"{c.server.host}:{c.server.port}"
        r = await c.post("/v1/chat/completions", json=_chat(), headers={"Origin": f"http://{host}"})
        assert r.status == 200  # same origin is fine
        r = await c.post("/v1/chat/completions", json=_chat(), headers={"Content-Type": "application/json; charset=utf-8"})
        assert r.status == 200
    finally:
        await c.close()


async def test_huge_schema_lengths_are_refused_fast() -> None:
    c = await _client(StubServer("zero"))
    try:
        t0 = time.monotonic()
        for schema in (
            {"type": "string", "minLength": 10_000_000},
            {"type": "array", "minItems": 10_000_000, "items": {"type": "string"}},
            {"type": "object", "properties": {"a": {"type": "string", "minLength": 1e300}}},
            {"type": "string", "minLength": "many"},
            {"enum": []},
            {"$defs": {"a": {"type": "object", "properties": {"x": {"$ref": "#/$defs/a"}}}}, "$ref": "#/$defs/a"},
            # each level doubles: 2^25 nodes if expanded
            {"$defs": {f"d{i}": {"type": "array", "prefixItems": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(25)} | {"d25": {"type": "string"}}, "$ref": "#/$defs/d0"},
        ):
            r = await c.post("/v1/chat/completions", json=_chat(schema))
            assert r.status == 400, schema
            assert "response_format" in (await r.json())["error"]["message"]
        assert time.monotonic() - t0 < 10
        r = await c.post("/v1/chat/completions", json=_chat({"type": "string", "minLength": 5000, "maxLength": 6000}))
        text = json.loads((await r.json())["choices"][0]["message"]["content"])
        assert 5000 <= len(text) <= 6000
        r = await c.post("/v1/embeddings", json={"input": "x", "dimensions": 10_000_000})
        assert r.status == 400
        r = await c.post("/v1/embeddings", json={"input": ["x"] * 5000})
        assert r.status == 400
        r = await c.post("/v1/embeddings", json={"input": ["a", "b"], "dimensions": 16})
        assert r.status == 200 and len((await r.json())["data"][1]["embedding"]) == 16
    finally:
        await c.close()


async def test_malformed_bodies_get_400_and_oversized_413() -> None:
    c = await _client(StubServer("zero", max_body=64 * 1024))
    try:
        for raw in (b"not json", b"[1, 2]", b'"s"', b"\xff\xfe", b"[" * 100_00, b'{"messages": "x"}', b'{"messages": [1]}',
                    b'{"messages": [], "response_format": "json"}', b'{"messages": [], "max_tokens": "many"}', b'{"messages": [], "response_format": {"json_schema": []}}'):
            r = await c.post("/v1/chat/completions", data=raw, headers=JSON_H)
            assert r.status == 400, raw[:40]
        for path in ("/v1/embeddings", "/faults", "/trace"):
            r = await c.post(path, data=b"{bad", headers=JSON_H)
            assert r.status == 400, path
        r = await c.post("/faults", json={"faults": {"http_500": "all"}})
        assert r.status == 400
        big = json.dumps(_chat(pad="x" * 100_000))
        r = await c.post("/v1/chat/completions", data=big, headers=JSON_H)
        assert r.status == 413

        async def chunks() -> Any:  # no Content-Length: the limit still holds
            for _ in range(40):
                yield b" " * 4096

        r = await c.post("/v1/chat/completions", data=chunks(), headers=JSON_H)
        assert r.status == 413
        r = await c.get("/health")
        assert r.status == 200  # still serving
    finally:
        await c.close()


@settings(max_examples=60, deadline=None)
@given(body=st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["messages", "response_format", "json_schema", "schema", "type", "minLength", "maxItems", "minItems", "items", "properties", "enum", "max_tokens", "seed", "input", "dimensions", "role", "content"]), inner, max_size=5)),
    max_leaves=20,
))
def test_fuzzed_request_bodies_never_crash_the_stub(body: Any) -> None:
    import asyncio

    async def go() -> None:
        c = await _client(StubServer("zero"))
        try:
            for path in ("/v1/chat/completions", "/v1/embeddings"):
                r = await c.post(path, data=json.dumps(body), headers=JSON_H)
                assert r.status in (200, 400), (path, r.status, await r.text())
        finally:
            await c.close()

    asyncio.run(go())


def test_stub_cli_rejects_a_bad_port_and_listens_on_loopback() -> None:
    p = subprocess.run([sys.executable, "-m", "therasim.cli", "stub", "--port", "99999"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "--port 99999" in p.stderr
    p = subprocess.run([sys.executable, "-m", "therasim.cli", "stub", "--trace-dir", "/nonexistent/x"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "--trace-dir" in p.stderr
    import inspect

    from therasim.stub import run_stub

    assert inspect.signature(run_stub).parameters["host"].default == "127.0.0.1"


def test_long_strings_sample_in_linear_time() -> None:
    import random

    from therasim.schema_sampling import MAX_STRING, instance_from_schema

    t0 = time.monotonic()
    s = instance_from_schema({"type": "string", "minLength": MAX_STRING}, random.Random(1))
    assert len(s) >= MAX_STRING and time.monotonic() - t0 < 2
