"""Pieces of the nodes' per-call Python (issue #17, session 18, nodes), each timed
in one process with the earlier code (inlined here) and the current code alternated,
CPU time of this thread, best of ``--rounds``:

- the appraisal's move lexicons (``policies.appraisal._text_moves``, once per
  counselor reply): the earlier code searched one alternation per move over the
  whole lowered text, trying it at every position; the current one looks for a
  move's phrases only at the text's start and after each non-word character the
  text holds (``_AfterBoundary``: a pattern that starts with that character, which
  the regex engine finds by scanning for it); the same moves and quotes (checked);
- the risk cue test of a client utterance (``has_risk_cue``), with the same search
  after separators against the one alternation it keeps (shown: slower on short
  utterances, so not used there);
- the inner-state dynamics' expected changes of one appraisal
  (``policies.dynamics.expected_changes``, once per exchange): the earlier code
  looped over the variables, then the moves, looking up every pair and building an
  empty dict for each missing one, and built the archetype's default record on every
  lookup (``policies.archetypes.archetype``); the current one walks each move's
  effects once; the same result, types and order included (checked);
- the call's record and ``node_call`` event (``NodeContext._record`` with
  ``SimContext.emit`` inside a lean-executor runtime, whose stream writer drops what
  it gets): the earlier code imported LangGraph's ``get_stream_writer`` per event,
  copied the event for that writer, and built the ids with a comprehension; the
  events are checked to be equal, key order included.

The inputs are a small ``zero`` bench run's, captured in this process: every reply
the appraisal read and every utterance the cue test read.

    python benchmarks/node_pieces_s18.py --clients 16 --rounds 9 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any


def capture(clients: int) -> tuple[int, list[str], list[str], list[tuple[Any, ...]]]:
    """The model calls of a small in-process bench run and the texts the appraisal's
    lexicons were run on (counselor replies, client utterances)."""
    import therasim.policies.appraisal as A
    import therasim.policies.dynamics as D
    from therasim.tools.bench import bench

    expected: list[tuple[Any, ...]] = []
    real_expected = D.expected_changes

    def exp(moves: Any, inner: Any, archetype_name: Any = None) -> Any:
        expected.append((dict(moves), dict(inner), archetype_name))
        return real_expected(moves, inner, archetype_name)

    replies: list[str] = []
    said: list[str] = []
    real_moves, real_cue = A._text_moves, A.has_risk_cue

    def moves(text: str) -> Any:
        replies.append(text)
        return real_moves(text)

    def cue(text: str) -> bool:
        said.append(text)
        return real_cue(text)

    A._text_moves, A.has_risk_cue, D.expected_changes = moves, cue, exp  # type: ignore[assignment]
    try:
        res = bench(profile="zero", clients=clients, sessions=2, turns=4, concurrency=clients, arms=("therasim",), echo=lambda *a: None)
    finally:
        A._text_moves, A.has_risk_cue, D.expected_changes = real_moves, real_cue, real_expected  # type: ignore[assignment]
    return int(res["arms"]["therasim"]["calls"]), replies, said, expected


def pieces(replies: list[str], said: list[str], expected: list[tuple[Any, ...]]) -> list[tuple[str, int, Callable[[], Any], Callable[[], Any]]]:
    from langchain_core.runnables.config import var_child_runnable_config
    from langgraph._internal._constants import CONF, CONFIG_KEY_RUNTIME
    from langgraph.runtime import Runtime

    import therasim.policies.appraisal as A
    import therasim.policies.dynamics as D
    from therasim.context import NodeContext, SimContext
    from therasim.graphs.executor import _no_stream
    from therasim.policies.archetypes import ARCHETYPES, Archetype, archetype
    from therasim.structured import CallStats

    def moves_before(text: str) -> dict[str, str]:
        if text.isascii():
            hay, anys, compiled = text.lower(), A._ANY_LOWER, A._COMPILED_LOWER
        else:
            hay, anys, compiled = text, A._ANY, A._COMPILED
        out: dict[str, str] = {}
        for move, pats in compiled.items():
            if anys[move].search(hay) is None:
                continue
            for p in pats:
                m = p.search(hay)
                if m:
                    out[move] = text[m.start() : m.end()]
                    break
        return out

    risk = A._AfterBoundary(A.RISK_CUES)

    def cue_after_separators(text: str) -> bool:
        if text.isascii():
            hay = text.lower()
            return risk(hay, set(hay) - A._WORD_LOWER)
        return A._RISK_ANY.search(text) is not None

    assert [moves_before(t) for t in replies] == [A._text_moves(t) for t in replies]
    assert [cue_after_separators(t) for t in said] == [A.has_risk_cue(t) for t in said]

    def archetype_before(name: str | None) -> Archetype:
        return ARCHETYPES.get(name or "", Archetype(name or "unspecified", "speaks plainly"))

    def expected_before(moves: Any, inner: Any, archetype_name: str | None = None) -> dict[str, tuple[float, list[tuple[str, float]]]]:
        arch = archetype_before(archetype_name)
        alliance_scale = 0.5 + float(inner.get("alliance", 4)) / 10.0
        out: dict[str, tuple[float, list[tuple[str, float]]]] = {}
        for v in D.VARIABLES:
            parts: list[tuple[str, float]] = []
            for move, strength in moves.items():
                c = D.EFFECTS.get(move, {}).get(v, 0.0) * float(strength)
                if not c:
                    continue
                if (v in D.SYMPTOMS and c < 0) or (v == "self_efficacy" and c > 0):
                    c *= alliance_scale
                if v in ("alliance", "wish_to_continue"):
                    c *= arch.alliance_gain if c > 0 else arch.rupture_sensitivity
                parts.append((move, round(c, 4)))
            parts.sort(key=lambda p: -abs(p[1]))
            out[v] = (round(sum(c for _, c in parts), 4), parts)
        return out

    assert archetype_before("sceptic") is archetype("sceptic") and archetype_before("nobody") == archetype("nobody") and archetype_before(None) == archetype(None)
    assert repr([expected_before(*x) for x in expected]) == repr([D.expected_changes(*x) for x in expected])

    var_child_runnable_config.set({CONF: {CONFIG_KEY_RUNTIME: Runtime(context=None, store=None, stream_writer=_no_stream, previous=None)}})  # type: ignore[typeddict-unknown-key]
    got: list[dict[str, Any]] = []
    sim = SimContext(on_event=got.append)
    nc = NodeContext(sim, "client", "client", {"run_id": "t", "client_id": "c0001", "session": 1, "exchange": 3, "course_key": "t/c0001"})
    st = CallStats(attempts=1, input_tokens=1200, output_tokens=60, latency_s=0.00123, cached_tokens=1100)

    def emit_before(self: SimContext, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)
        try:
            from langgraph.config import get_stream_writer

            writer = get_stream_writer()
        except RuntimeError:
            return
        writer(dict(event))

    def record_before() -> None:
        rec = {"node": nc.node, "role": "client", "kind": "structured", **st.as_dict()}
        nc.calls.append(rec)
        emit_before(sim, {"event": "node_call", **{k: nc.ids.get(k) for k in ("run_id", "client_id", "session", "exchange")}, **rec, "ts": time.time()})
        nc.calls.clear()
        got.clear()

    def record_after() -> None:
        nc._record("client", "structured", st)
        nc.calls.clear()
        got.clear()

    got_b: list[dict[str, Any]] = []
    got_a: list[dict[str, Any]] = []
    sim.on_event = got_b.append
    record_before()
    sim.on_event = got_a.append
    record_after()
    sim.on_event = got.append
    for e in (*got_a, *got_b):
        e.pop("ts")
    assert got_a == got_b and [list(e) for e in got_a] == [list(e) for e in got_b], (got_a, got_b)
    return [
        ("appraisal: moves in one counselor reply", len(replies), lambda: [moves_before(t) for t in replies], lambda: [A._text_moves(t) for t in replies]),
        ("(not used) risk cue after separators, one client utterance", len(said), lambda: [A.has_risk_cue(t) for t in said], lambda: [cue_after_separators(t) for t in said]),
        ("dynamics: expected changes of one appraisal", len(expected), lambda: [expected_before(*x) for x in expected], lambda: [D.expected_changes(*x) for x in expected]),
        ("archetype lookup, a registered name (one)", 1, lambda: archetype_before("sceptic"), lambda: archetype("sceptic")),
        ("call record and node_call event (one call)", 1, record_before, record_after),
    ]


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--inner", type=int, default=2000, help="repetitions of the one-item pieces per round")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    calls, replies, said, expected = capture(a.clients)
    print(f"captured: {calls} model calls, {len(replies)} counselor replies appraised, {len(said)} client utterances scanned")
    print("| piece | before us | after us | after / before | saved us per model call |")
    print("|---|---|---|---|---|")
    rows = []
    per_call = {
        "appraisal: moves in one counselor reply": len(replies) / calls,
        "(not used) risk cue after separators, one client utterance": len(said) / calls,
        "dynamics: expected changes of one appraisal": len(expected) / calls,
        "archetype lookup, a registered name (one)": 1.16,  # client node, dynamics, client header, disclosure (cProfile of a 32-course run)
        "call record and node_call event (one call)": 1.0,  # about one logical call per model call (retries are rare)
    }
    for name, n, before, after in pieces(replies, said, expected):
        reps = a.inner if n == 1 else 1

        def loop(f: Callable[[], Any], reps: int = reps) -> Callable[[], None]:
            def run() -> None:
                for _ in range(reps):
                    f()

            return run

        tb = ta = float("inf")
        for _ in range(a.rounds):  # alternated
            tb = min(tb, _timed(loop(before)))
            ta = min(ta, _timed(loop(after)))
        b_us, a_us = 1e6 * tb / (n * reps), 1e6 * ta / (n * reps)
        saved = (b_us - a_us) * per_call[name]
        rows.append({"piece": name, "items": n, "before_us": round(b_us, 3), "after_us": round(a_us, 3), "ratio": round(a_us / b_us, 3), "per_model_call": round(per_call[name], 4), "saved_us_per_model_call": round(saved, 3)})
        print(f"| {name} | {b_us:.2f} | {a_us:.2f} | {a_us / b_us:.2f} | {saved:.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"calls": calls, "replies_appraised": len(replies), "utterances_scanned": len(said), "appraisals": len(expected), "rows": rows, "load": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
    main()
