"""What the course's ``remember`` step writes: one note per side and session (the
parts of one summary together), then facts, salient quotes and events as items of
their own (issue #17, session 18: fewer stored items, the same text)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from therasim.nodes.recall import client_note, counselor_note, remember

SUMMARY = {"session": 2, "themes": ["sleep", "work"], "progress": "Slept better most nights", "facts": ["works night shifts", " "], "homework": "sleep diary", "risk": "No ideation disclosed.", "risk_peak": "none", "plan": "keep the diary; review it next time"}
RECOLLECTION = {"session": 2, "remembers": "We talked about my shifts.", "feels": "a bit lighter", "homework": "a sleep diary"}


def test_the_notes_read_as_written_by_hand() -> None:
    assert counselor_note(2, SUMMARY) == (
        "Session 2 note: themes sleep, work. Slept better most nights. Risk (peak none): No ideation disclosed. "
        "Plan: keep the diary; review it next time. Homework set: sleep diary."
    )
    # no themes and no homework: those parts are left out, nothing invented
    assert counselor_note(1, {**SUMMARY, "themes": [], "homework": " ", "risk_peak": "moderate"}) == (
        "Session 1 note: Slept better most nights. Risk (peak moderate): No ideation disclosed. Plan: keep the diary; review it next time."
    )
    assert client_note(2, RECOLLECTION) == "Session 2: We talked about my shifts. How I felt after it: a bit lighter. My homework: a sleep diary."
    assert client_note(3, {**RECOLLECTION, "homework": ""}) == "Session 3: We talked about my shifts. How I felt after it: a bit lighter."


class _Store:
    def __init__(self) -> None:
        self.added: dict[str, list[dict[str, Any]]] = {}

    def embed(self, texts: list[str]) -> None:
        return None

    def add(self, client_id: str, role: str, items: list[dict[str, Any]], embeddings: Any = None) -> list[str]:
        self.added[role] = [dict(it) for it in items]
        return [it["id"] for it in items]


def test_remember_writes_one_note_per_side_then_the_items_of_their_own() -> None:
    transcript = [
        {"speaker": "client", "text": "I keep waking at four and lying there", "emotion": {"intensity": 4}},
        {"speaker": "counselor", "text": "That sounds exhausting."},
        {"speaker": "client", "text": "ok"},
    ]
    view = {
        "session": 2, "course_key": "k", "client_id": "c1",
        "summaries": [{**SUMMARY}, {**SUMMARY, "session": 1}],
        "recollections": [{**RECOLLECTION}],
        "last": {"transcript": transcript},
        "pending": {"client_memory_writes": [{"text": "My sister visited.", "kind": "event"}]},
    }
    store = _Store()
    out = asyncio.run(remember(view, SimpleNamespace(sim=SimpleNamespace(memory=store))))  # type: ignore[arg-type]
    c, cl = store.added["counselor"], store.added["client"]
    assert [(i["kind"], i["text"]) for i in c] == [
        ("summary", counselor_note(2, SUMMARY)),
        ("fact", "works night shifts"),
        ("fact", 'Client in session 2: "I keep waking at four and lying there"'),
    ]
    assert [(i["kind"], i["text"]) for i in cl] == [("summary", client_note(2, RECOLLECTION)), ("event", "My sister visited.")]
    assert all(i["session"] == 2 and i["course"] == "k" for i in c + cl)
    assert len({i["id"] for i in c + cl}) == 5 and out["pending"]["memory_written"] == {"counselor": [i["id"] for i in c], "client": [i["id"] for i in cl]}
    # a summary the model failed to write leaves no note, the client's words stay
    store2 = _Store()
    asyncio.run(remember({**view, "summaries": [{**SUMMARY, "error": "invalid"}]}, SimpleNamespace(sim=SimpleNamespace(memory=store2))))  # type: ignore[arg-type]
    assert [i["kind"] for i in store2.added["counselor"]] == ["fact"]
