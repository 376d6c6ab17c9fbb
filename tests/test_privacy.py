"""Privacy: no connection except to configured endpoints, no telemetry, and API keys
never written to manifests, logs or traces."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import start_stub  # type: ignore[import-not-found]


class Guard:
    """Fails any socket connection whose destination is not allowed: Python's sockets,
    and uvloop's (the loop a run starts when uvloop is installed: its connections are
    libuv's, made in C, so its ``create_connection`` is checked)."""

    def __init__(self, allowed: set[tuple[str, int]]) -> None:
        self.allowed = allowed
        self.seen: list[Any] = []
        self._uv_new: Any = None

    def __enter__(self) -> Guard:
        self._connect = socket.socket.connect
        self._connect_ex = socket.socket.connect_ex
        guard = self
        try:
            import uvloop
        except ImportError:
            uvloop = None  # type: ignore[assignment]
        if uvloop is not None:

            class GuardedLoop(uvloop.Loop):  # type: ignore[misc,name-defined]
                async def create_connection(self, protocol_factory: Any, host: Any = None, port: Any = None, *a: Any, **kw: Any) -> Any:
                    if kw.get("sock") is None:
                        guard.check(None, (host, port))
                    return await super().create_connection(protocol_factory, host, port, *a, **kw)

                async def sock_connect(self, sock: socket.socket, address: Any) -> Any:
                    guard.check(sock, address)
                    return await super().sock_connect(sock, address)

            self._uv_new = uvloop.new_event_loop
            uvloop.new_event_loop = GuardedLoop

        def connect(sock: socket.socket, address: Any) -> Any:
            guard.check(sock, address)
            return guard._connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> Any:
            guard.check(sock, address)
            return guard._connect_ex(sock, address)

        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        return self

    def check(self, sock: socket.socket | None, address: Any) -> None:
        if sock is not None and sock.family == socket.AF_UNIX:
            return
        self.seen.append(address)
        host, port = address[0], address[1]
        if (host, port) not in self.allowed:
            raise AssertionError(f"unexpected connection to {address}")

    def __exit__(self, *exc: object) -> None:
        socket.socket.connect = self._connect  # type: ignore[method-assign]
        socket.socket.connect_ex = self._connect_ex  # type: ignore[method-assign]
        if self._uv_new is not None:
            import uvloop

            uvloop.new_event_loop = self._uv_new


# Importing therasim and a course on the embedded defaults open no connection: the
# CLI demo in tests/test_cli_e2e.py runs in a fresh interpreter whose sockets refuse
# every destination.


def test_server_run_connects_only_to_the_configured_endpoint_and_keeps_keys_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-SECRET-4f1d9c"
    monkeypatch.setenv("THERASIM_TEST_KEY", secret)
    stub, port = start_stub()
    try:
        from therasim.runner import run

        cfg = {
            "models": {"default": {"provider": "openai", "model": "stub", "base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": "THERASIM_TEST_KEY"}},
            "course": {"preset": "lean", "sessions": 2, "max_turns": 2},
            "memory": {"embedding": "hash"},
            "concurrency": 2,
        }
        with Guard({("127.0.0.1", port)}) as g:
            res = run(cfg, sample=2, out=tmp_path)
        assert res.ok and g.seen and all(a[1] == port for a in g.seen)
        for f in res.run_dir.rglob("*"):
            if f.is_file() and f.suffix in (".json", ".jsonl", ".sqlite", ".log", ".txt"):
                assert secret.encode() not in f.read_bytes(), f
        man = json.loads((res.run_dir / "manifest.json").read_text())
        assert man["models"]["counselor"]["api_key_env"] == "THERASIM_TEST_KEY"
    finally:
        stub.terminate()
        stub.wait(10)


def test_telemetry_is_off() -> None:
    import tempfile

    from therasim.memory import ChromaMemoryStore
    from therasim.testing import HashEmbedding

    store = ChromaMemoryStore.persistent(tempfile.mkdtemp(), HashEmbedding())
    assert store.client.get_settings().anonymized_telemetry is False
    assert os.environ.get("LANGCHAIN_TRACING_V2", "").lower() not in ("true", "1") or pytest.skip("tracing turned on by the user")
