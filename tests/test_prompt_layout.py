"""The shared-prefix prompt layout (docs/architecture.md, "Prompt layout"): every
counselor-side call of an exchange starts with the same bytes (header + record), the
node's own part is a short task at the end, each side's record only grows across a
session, course-level calls start with their session's prefix, and the two sides'
prefixes never mix."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from therasim.config import CourseSpec
from therasim.context import SimContext
from therasim.graphs import CourseGraphBuilder, initial_course_state, run_course
from therasim.memory import ChromaMemoryStore
from therasim.profiles import example_profiles
from therasim.prompts import counselor_header, risk_note, with_recalled_notes
from therasim.providers import ModelPool
from therasim.testing import HashEmbedding, SchemaFakeChatModel

SPLIT = "\n\n"  # the record ends, the node's task begins
COURSE_CALLS = {"summarise_counselor", "planner", "summarise_client", "session_measures", "measures", "closing_measures"}


def _run(preset: str, tmp_path: Any, seed: int) -> list[tuple[str, str, str, str]]:
    calls: list[tuple[str, str, str, str]] = []  # node, side, system, user

    def log(node: str, side: str, msgs: list[Any]) -> None:
        calls.append((node, side, str(msgs[0].content), str(msgs[-1].content)))

    p = example_profiles()[0]
    p = p.model_copy(update={"initial_state": p.initial_state.model_copy(update={"wish_to_continue": 10.0})})
    store = ChromaMemoryStore.persistent(str(tmp_path / f"mem-{preset}"), HashEmbedding())
    ctx = SimContext(models=ModelPool({"default": SchemaFakeChatModel(seed=seed)}), course=CourseSpec(max_turns=4, sessions=2), memory=store, on_prompt=log)
    g = CourseGraphBuilder(preset).compile()
    asyncio.run(run_course(g, initial_course_state(p, sessions=2), ctx))
    return calls


def _split(user: str) -> tuple[str, str]:
    head, _, task = user.rpartition(SPLIT)
    return head, task


def _exchanges(calls: list[tuple[str, str, str, str]]) -> list[list[tuple[str, str, str, str]]]:
    """In-session counselor-side calls grouped by exchange (a client call starts one)."""
    out: list[list[tuple[str, str, str, str]]] = []
    for c in calls:
        if c[0] == "client":
            out.append([])
        elif c[1] == "counselor" and c[0] not in COURSE_CALLS and out:
            out[-1].append(c)
    return [x for x in out if x]


@pytest.mark.parametrize("preset", ["full", "lean"])
def test_counselor_side_calls_of_an_exchange_share_one_prefix(preset, tmp_path):
    calls = _run(preset, tmp_path, seed=5)
    exchanges = _exchanges(calls)
    assert len(exchanges) >= 6 and all(len(x) >= 2 for x in exchanges)  # analysts and the counselor: the check can fail
    recalled = False
    prev: tuple[str, str] | None = None
    for ex in exchanges:
        systems = {c[2] for c in ex}
        heads = {_split(c[3])[0] for c in ex}
        assert len(systems) == 1, [c[0] for c in ex]  # one header, byte for byte
        assert len(heads) == 1, [c[0] for c in ex]  # one record, byte for byte
        system, head = systems.pop(), heads.pop()
        recalled |= "notes recalled from earlier sessions" in head
        if prev is not None and prev[0] == system:  # same session: the record only grows
            assert head.startswith(prev[1]), "the record was rewritten, not appended to"
        prev = (system, head)
        for node, _side, _system, user in ex:
            task = _split(user)[1]
            assert task.startswith("TASK: "), (node, task[:80])
            # the node's own part is a short task: well under the shared part
            limit = 700 if node == "risk_review" else 420
            assert len(task) <= limit, (node, len(task), task)
            assert len(task) < 0.2 * (len(system) + len(head)), (node, len(task))
    assert recalled  # session 2 recalled session-1 notes into the record


def test_course_calls_reuse_their_session_prefix(tmp_path):
    calls = _run("lean", tmp_path, seed=7)
    # the last in-session counselor-side and client prompts of session 1
    i_summary = next(i for i, c in enumerate(calls) if c[0] == "summarise_counselor")
    last_c = next(c for c in reversed(calls[:i_summary]) if c[1] == "counselor" and c[0] not in COURSE_CALLS)
    last_k = next(c for c in reversed(calls[:i_summary]) if c[0] == "client")
    for node in ("summarise_counselor", "planner"):
        c = next(c for c in calls[i_summary:] if c[0] == node)
        assert c[2] == last_c[2] and c[3].startswith(_split(last_c[3])[0]), node
    c = next(c for c in calls[i_summary:] if c[0] == "summarise_client")
    assert c[2] == last_k[2] and c[3].startswith(_split(last_k[3])[0])
    # questionnaires refer to the items in the client header instead of listing them again
    m = next(c for c in calls if c[0] == "measures")
    assert "phq_self_harm" in m[2] and "phq_self_harm" not in m[3]


def test_the_two_sides_prefixes_never_mix(tmp_path):
    calls = _run("full", tmp_path, seed=9)
    counselor = [c for c in calls if c[1] == "counselor"]
    client = [c for c in calls if c[1] == "client"]
    assert counselor and client
    for _node, _side, system, user in counselor:
        assert system.startswith("COUNSELING SESSION RECORD")
        for marker in ("role-playing a CLIENT", "Your inner state now", "WHAT YOU ARE READY TO TALK ABOUT", "WHAT YOU REMEMBER"):
            assert marker not in system + user, marker
    for _node, _side, system, user in client:
        assert system.startswith("You are role-playing a CLIENT")
        for marker in ("COUNSELING SESSION RECORD", "notes recalled from earlier sessions", "RISK PROTOCOL", "Keyword screen", "Notes for this turn"):
            assert marker not in system + user, marker


def test_recalled_notes_enter_the_record_once():
    a = {"id": "a", "text": "Plan after session 1: sleep diary", "session": 1, "kind": "plan"}
    b = {"id": "b", "text": "Works night shifts", "session": 1, "kind": "fact"}
    turns = [
        {"speaker": "client", "text": "I slept badly.", "recalled": [a]},
        {"speaker": "counselor", "text": "Tell me more."},
        {"speaker": "client", "text": "The shifts again.", "recalled": [a, b]},
    ]
    out = with_recalled_notes(turns)
    assert out[0]["text"].count("sleep diary") == 1 and "night shifts" not in out[0]["text"]
    assert "sleep diary" not in out[2]["text"] and "night shifts" in out[2]["text"]
    assert out[1] == turns[1] and turns[0]["text"] == "I slept badly."  # the input is not changed


def test_risk_note_points_at_the_protocol_in_the_header():
    ctx = SimContext(models=ModelPool({"default": SchemaFakeChatModel()}), course=CourseSpec())
    protocol = ctx.risk_protocol
    header = counselor_header({"session": 1, "intake": {}}, ctx)
    for level in ("low", "moderate", "high", "imminent"):
        note = risk_note(protocol.directive(level), level, protocol)
        for step in protocol.steps_for(level):
            assert step.action in note and step.guidance in header  # named in the task, spelled out in the header
    assert risk_note("", "none", protocol) == "risk none."
    assert risk_note("CALL THE SUPERVISOR NOW.", "high", protocol).endswith("\nCALL THE SUPERVISOR NOW.")  # a custom directive, verbatim
