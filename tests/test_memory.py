"""Memory round trips on embedded Chroma and on a real `chroma run` server on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port, wait_port

from therasim.memory import ChromaMemoryStore, MemoryStore, MiniLMEmbedding
from therasim.memory.base import BufferedMemoryStore

pytestmark = pytest.mark.embedded


def _round_trip(store: ChromaMemoryStore) -> None:
    assert isinstance(store, MemoryStore) and isinstance(store, BufferedMemoryStore)
    store.add("c1", "counselor", [
        {"text": "Client sleeps badly after night shifts", "kind": "fact", "session": 1, "course": "r"},
        {"text": "Homework: write down three automatic thoughts each evening", "kind": "homework", "session": 1, "course": "r"},
        {"text": "Client's sister visited and they argued", "kind": "event", "session": 2, "course": "r"},
    ])
    store.add("c1", "client", [{"text": "I finally told the counselor about the pills", "kind": "summary", "session": 2}])
    store.add("c2", "counselor", [{"text": "Client worries about exams", "kind": "fact", "session": 1}])
    hits = store.search("c1", "counselor", "insomnia and trouble sleeping", k=2)
    assert hits[0]["text"].startswith("Client sleeps badly") and hits[0]["score"] > hits[1]["score"]
    assert all(h["role"] == "counselor" and h["client_id"] == "c1" for h in store.search("c1", "counselor", "pills", k=5))
    assert [h["kind"] for h in store.search("c1", "counselor", "anything", k=5, where={"kind": "homework"})] == ["homework"]
    assert len(store.list("c1", "counselor", where={"session": 1})) == 2
    # idempotent adds (resume-safe)
    store.add("c1", "counselor", [{"text": "Client sleeps badly after night shifts", "kind": "fact", "session": 1, "course": "r"}])
    assert len(store.list("c1", "counselor")) == 3
    store.delete_client("c1")
    assert store.list("c1", "counselor") == [] and store.list("c1", "client") == []
    assert len(store.list("c2", "counselor")) == 1
    with pytest.raises(Exception, match="kind"):
        store.add("c2", "counselor", [{"text": "x", "kind": "gossip"}])


def test_embedded_chroma(tmp_path: Path) -> None:
    _round_trip(ChromaMemoryStore.persistent(str(tmp_path / "mem"), MiniLMEmbedding()))


def test_chroma_server(tmp_path: Path) -> None:
    exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = free_port()
    proc = subprocess.Popen([exe, "run", "--path", str(tmp_path / "srv"), "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin"})
    try:
        wait_port(port, proc, 60, "/api/v2/heartbeat")
        _round_trip(ChromaMemoryStore.http("127.0.0.1", port, MiniLMEmbedding()))
    finally:
        proc.terminate()
        proc.wait(10)
