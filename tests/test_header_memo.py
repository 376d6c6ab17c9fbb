"""Each side's header is rendered once per course and session while what it is rendered
from is unchanged (therasim/prompts.py, ``_memo_header``), and the prompts are the same
bytes as when every call renders its own header: the memo checks its inputs by value
(type-exact ``pickle`` bytes) at every call, never by identity."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from therasim import prompts
from therasim.config import CourseSpec
from therasim.context import SimContext
from therasim.graphs import CourseGraphBuilder, initial_course_state, run_course
from therasim.policies.risk import RiskProtocol, Step
from therasim.profiles import example_profiles
from therasim.prompts import client_header, counselor_header
from therasim.providers import ModelPool
from therasim.testing import SchemaFakeChatModel


def _course_prompts(preset: str) -> list[tuple[str, str, list[str]]]:
    calls: list[tuple[str, str, list[str]]] = []

    def log(node: str, side: str, msgs: list[Any]) -> None:
        calls.append((node, side, [str(m.content) for m in msgs]))

    p = example_profiles()[0]
    p = p.model_copy(update={"initial_state": p.initial_state.model_copy(update={"wish_to_continue": 10.0})})
    ctx = SimContext(models=ModelPool({"default": SchemaFakeChatModel(seed=3)}), course=CourseSpec(max_turns=4, sessions=2), on_prompt=log)
    asyncio.run(run_course(CourseGraphBuilder(preset).compile(), initial_course_state(p, sessions=2, run_id="memo"), ctx))
    return calls


@pytest.mark.parametrize("preset", ["full", "lean"])
def test_a_course_sends_the_same_prompts_with_the_memo_and_renders_each_header_once_per_session(preset, monkeypatch):
    renders = {"counselor": 0, "client": 0}
    uses = {"counselor": 0, "client": 0}
    real = prompts._memo_header

    def counted(slot: Any, fixed: Any, exact: Any, render: Any) -> str:
        uses[slot[0]] += 1

        def r() -> str:
            renders[slot[0]] += 1
            return render()  # type: ignore[no-any-return]

        return real(slot, fixed, exact, r)

    prompts._HEADERS.clear()
    monkeypatch.setattr(prompts, "_memo_header", counted)
    memo = _course_prompts(preset)
    monkeypatch.setattr(prompts, "_memo_header", lambda slot, fixed, exact, render: render())
    per_call = _course_prompts(preset)
    assert memo == per_call  # every message of every call, byte for byte
    assert len(memo) >= 20 and uses["counselor"] >= 12 and uses["client"] >= 8
    # a session's counselor-side calls share one rendering (course-level calls between sessions render the course view's)
    assert renders["counselor"] < uses["counselor"] / 2, (renders, uses)
    # the client header changes with the disclosure level and recent events, else is reused
    assert renders["client"] < uses["client"], (renders, uses)


def _views() -> tuple[dict[str, Any], dict[str, Any]]:
    s = initial_course_state(example_profiles()[0], run_id="memo-unit")
    counselor = {k: s[k] for k in ("run_id", "client_id", "course_key", "session", "modality", "goals", "intake", "counselor_notes")}
    counselor["counselor_memory"] = [{"session": 1, "kind": "note", "text": "sleeps four hours", "id": "m1"}]
    client = {k: s[k] for k in ("run_id", "client_id", "course_key", "session", "profile", "inner", "client_memory")}
    return counselor, client


def test_inputs_changed_in_place_or_to_an_equal_value_of_another_type_render_anew():
    prompts._HEADERS.clear()
    sim = SimContext(risk_protocol=RiskProtocol())
    view, cview = _views()

    def fresh(f: Any, *a: Any) -> str:
        saved = dict(prompts._HEADERS)
        prompts._HEADERS.clear()
        try:
            return f(*a)  # type: ignore[no-any-return]
        finally:
            prompts._HEADERS.clear()
            prompts._HEADERS.update(saved)

    h1 = counselor_header(view, sim)
    assert counselor_header(view, sim) is h1  # reused
    view["intake"]["name"] = "Somebody Else"  # the same dict, changed in place
    h2 = counselor_header(view, sim)
    assert h2 != h1 and "Somebody Else" in h2 and h2 == fresh(counselor_header, view, sim)
    view["counselor_memory"][0]["session"] = 1.0  # equal to 1 (==), rendered differently
    h3 = counselor_header(view, sim)
    assert "[session 1.0, note]" in h3 and h3 == fresh(counselor_header, view, sim)
    view["counselor_memory"][0]["session"] = True  # equal to 1.0 as well
    assert "[session True, note]" in counselor_header(view, sim)
    sim.risk_protocol.steps["low"].append(Step("call_back", "Agree on a time to talk again."))  # run-level, in place
    assert "call_back: Agree on a time" in counselor_header(view, sim)

    c1 = client_header(cview)
    assert client_header(cview) is c1
    cview["inner"]["disclosure"] = 3  # more layers of the hidden profile shown
    c2 = client_header(cview)
    assert c2 != c1 and c2 == fresh(client_header, cview)
    cview["inner"]["homework"] = "a sleep diary"
    assert "YOUR HOMEWORK: a sleep diary" in client_header(cview)
    cview["profile"]["hidden"]["conversation_style"] = "terse, guarded"
    assert "Speak in this style: terse, guarded." in client_header(cview)


def test_values_pickle_cannot_write_are_rendered_per_call():
    prompts._HEADERS.clear()

    class Note(str):
        pass

    view, _ = _views()
    view["counselor_notes"] = Note("plan: behavioural activation")
    sim = SimContext()
    h = counselor_header(view, sim)
    assert "PLAN FROM LAST SESSION: plan: behavioural activation" in h
    assert not prompts._HEADERS  # nothing stored: a class local to a function cannot be pickled
    view["course_key"] = None
    view["counselor_notes"] = ""
    counselor_header(view, sim)
    assert not prompts._HEADERS  # no course to file it under


def test_values_equal_in_bytes_but_not_in_type_render_anew():
    """Review of session 14: marshal wrote a numpy value (any buffer) as its raw bytes,
    so np.float64(0.0) then np.int64(0), or a 2-d then a 1-d array, reused the header."""
    np = pytest.importorskip("numpy")
    prompts._HEADERS.clear()
    _, cview = _views()
    for events in ([np.float64(0.0)], [np.int64(0)], [np.array([[1.0, 2.0]])], [np.array([1.0, 2.0])], [bytearray(b"ab")], [b"ab"]):
        cview["inner"]["recent_events"] = events
        memo = client_header(cview)
        saved = dict(prompts._HEADERS)
        prompts._HEADERS.clear()
        assert memo == client_header(cview), events  # what a fresh rendering gives
        prompts._HEADERS.update(saved)


def test_the_header_table_is_safe_from_several_threads():
    """Review of session 14: evicting from the table while another thread evicted raised
    'dictionary changed size during iteration' once it was full."""
    import sys
    import threading

    prompts._HEADERS.clear()
    errors: list[BaseException] = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)

    def work(t: int) -> None:
        try:
            for i in range(3000):
                prompts._memo_header(("x", (t, i)), (), (i,), lambda: "h")
        except BaseException as e:
            errors.append(e)

    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[:1]
    assert len(prompts._HEADERS) <= prompts._HEADERS_MAX
