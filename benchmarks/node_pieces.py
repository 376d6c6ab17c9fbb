"""Pieces of the nodes' own per-call Python (issue #17, session 16), each timed in
one process with the earlier code (inlined here) and the current code alternated,
CPU time of this thread, best of ``--rounds``:

- risk pattern scan of every client utterance (``policies.risk.pattern_scan``: one
  alternation first, the per-pattern loop only for a text it matches);
- the structured replies' JSON (``structured.parse_json_text``: one decoder instead of
  ``json.loads(..., strict=False)`` building one per call);
- the two-words test of speech (``context.two_words`` against ``len(re.findall(...))``);
- the closing-phrase test (``TerminationRules.is_closing``), cue quotes normalised
  (``risk_assessment._norm``), the client-side transcript projection, the views'
  hidden keys and the header's fixed-part lookup (``prompts._by_identity``).

The inputs are what a ``zero``-profile bench run hands these functions: the stub's
replies captured from a small in-process run (``--clients`` courses, lean, 2 sessions
x 4 turns). Every pair is checked to give the same result before it is timed.

    python benchmarks/node_pieces.py --clients 16 --rounds 7 --json out.json
"""

from __future__ import annotations

import argparse
import contextvars
import json
import operator
import re
import time
from collections.abc import Callable
from typing import Any


def capture(clients: int) -> dict[str, Any]:
    """Run a small bench in process and keep what the pieces take: each structured
    reply's raw text and schema name, the client utterances and counselor replies."""
    import therasim.context as C
    import therasim.structured as S
    from therasim.tools.bench import bench

    cv: contextvars.ContextVar[str | None] = contextvars.ContextVar("schema", default=None)
    raws: list[tuple[str | None, str]] = []
    real_parse, real_ag = S.parse_json_text, C.agenerate_structured

    def parse(text: str) -> Any:
        raws.append((cv.get(), text))
        return real_parse(text)

    async def ag(model: Any, schema_model: Any, messages: Any, **kw: Any) -> Any:
        cv.set(schema_model.__name__)
        return await real_ag(model, schema_model, messages, **kw)

    S.parse_json_text, C.agenerate_structured = parse, ag  # type: ignore[assignment]
    try:
        res = bench(profile="zero", clients=clients, sessions=2, turns=4, concurrency=clients, arms=("therasim",), echo=lambda *a: None)
    finally:
        S.parse_json_text, C.agenerate_structured = real_parse, real_ag  # type: ignore[assignment]
    calls = int(res["arms"]["therasim"]["calls"])
    utterances = [json.loads(t)["utterance"] for s, t in raws if s == "ClientTurn"]
    return {"raws": [t for _, t in raws], "utterances": utterances, "calls": calls, "schemas": [s for s, _ in raws]}


def _timed(fn: Callable[[], Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return best


def pieces(cap: dict[str, Any]) -> list[tuple[str, int, Callable[[], Any], Callable[[], Any]]]:
    """(name, items per run, before, after) for each piece, over the captured inputs."""
    from therasim.context import two_words
    from therasim.contract import builtin_contract
    from therasim.policies import risk
    from therasim.policies.risk_assessment import _norm
    from therasim.policies.termination import TerminationRules
    from therasim.prompts import _by_identity
    from therasim.structured import parse_json_text

    utter, raws = cap["utterances"], cap["raws"]
    always = re.compile("")

    def scan_before() -> list[Any]:
        saved = risk._ANY_CUE
        risk._ANY_CUE = always  # every text goes through the per-pattern loop, as before
        try:
            return [risk.pattern_scan(t) for t in utter]
        finally:
            risk._ANY_CUE = saved

    def json_before(t: str) -> Any:
        t = t.strip()
        try:
            return json.loads(t, strict=False)
        except json.JSONDecodeError:
            pass
        m = re.search(r"```(?:json)?\s*(.*?)```", t, re.S)
        if m:
            try:
                return json.loads(m.group(1), strict=False)
            except json.JSONDecodeError:
                pass
        start, end = t.find("{"), t.rfind("}")
        return json.loads(t[start : end + 1], strict=False)

    rules = TerminationRules()

    def closing_before(text: str) -> bool:
        return any(re.search(p, text, re.IGNORECASE) for p in rules.closing_phrases)

    def norm_before(s: str) -> str:
        return re.sub(r"\W+", " ", s.lower()).strip()

    c = builtin_contract()
    turns = [{"speaker": "client" if i % 2 == 0 else "counselor", "text": t, "exchange": i // 2, "index": i, "calls": {}} for i, t in enumerate(utter[:8])]

    def client_turns_before() -> list[Any]:
        shown = [s.name for s in c.slots.values() if s.record and not s.speech and "client" in (s.readers or ())]
        if not shown:
            return [{"speaker": t["speaker"], "text": t["text"]} for t in turns]
        return []

    state = dict.fromkeys(("run_id", "client_id", "course_key", "session", "exchange", "profile", "inner", "intake", "goals", "transcript", "current", "counselor_memory", "client_memory", "risk_register", "risk_notes", "modality", "done", "pending", "last"), 0)
    data = {k: 0 for k in ("run_id", "client_id", "course_key", "session", "exchange", "intake", "goals", "transcript", "current", "counselor_memory", "risk_register", "risk_notes", "modality")}
    objs = ("forms", object(), object())

    _static: dict[Any, Any] = {}

    def by_identity_before(o: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        key = tuple(x if isinstance(x, str) else id(x) for x in o)
        hit = _static.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], o, strict=True)):
            return hit[1]
        value = make()
        _static[key] = (o, value)
        return value

    checks = [
        (scan_before(), [risk.pattern_scan(t) for t in utter]),
        ([json_before(t) for t in raws], [parse_json_text(t) for t in raws]),
        ([len(re.findall(r"[^\W\d_]{2,}", t)) >= 2 for t in utter], [two_words(t) for t in utter]),
        ([closing_before(t) for t in utter], [rules.is_closing(t) for t in utter]),
        ([norm_before(t) for t in utter], [_norm(t) for t in utter]),
        (client_turns_before(), c.transcript_for("client", turns)),
        (frozenset(set(state.keys()) - set(data.keys())), frozenset(state.keys() - data.keys())),
        (by_identity_before(objs, lambda: "x"), _by_identity(objs, lambda: "x")),
    ]
    for before, after in checks:
        same = before == after if isinstance(before, frozenset) else repr(before) == repr(after)  # repr: 1 and 1.0 differ
        assert same, (before, after)
    assert operator.is_(_by_identity(objs, lambda: "y"), "x")  # a hit
    return [
        ("risk pattern scan (one client utterance)", len(utter), scan_before, lambda: [risk.pattern_scan(t) for t in utter]),
        ("structured reply JSON (one reply)", len(raws), lambda: [json_before(t) for t in raws], lambda: [parse_json_text(t) for t in raws]),
        ("two-words test (one utterance)", len(utter), lambda: [len(re.findall(r"[^\W\d_]{2,}", t)) >= 2 for t in utter], lambda: [two_words(t) for t in utter]),
        ("closing-phrase test (one text)", len(utter), lambda: [closing_before(t) for t in utter], lambda: [rules.is_closing(t) for t in utter]),
        ("cue-quote normalisation (one text)", len(utter), lambda: [norm_before(t) for t in utter], lambda: [_norm(t) for t in utter]),
        ("client-side transcript, 8 turns (one view)", 1, client_turns_before, lambda: c.transcript_for("client", turns)),
        ("a view's hidden keys (one view)", 1, lambda: frozenset(set(state.keys()) - set(data.keys())), lambda: frozenset(state.keys() - data.keys())),
        ("header fixed-part lookup (one lookup)", 1, lambda: by_identity_before(objs, lambda: "x"), lambda: _by_identity(objs, lambda: "x")),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--inner", type=int, default=200, help="repetitions of the one-item pieces per round")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    cap = capture(a.clients)
    rows = []
    print(f"captured: {cap['calls']} model calls, {len(cap['raws'])} structured replies, {len(cap['utterances'])} client utterances")
    print("| piece | before us | after us | after / before |")
    print("|---|---|---|---|")
    for name, n, before, after in pieces(cap):
        reps = a.inner if n == 1 else 1

        def loop(f: Callable[[], Any], reps: int = reps) -> Callable[[], None]:
            def run() -> None:
                for _ in range(reps):
                    f()

            return run

        tb = ta = float("inf")
        for _ in range(a.rounds):  # alternated
            tb = min(tb, _timed(loop(before), 1))
            ta = min(ta, _timed(loop(after), 1))
        b_us, a_us = 1e6 * tb / (n * reps), 1e6 * ta / (n * reps)
        rows.append({"piece": name, "items": n, "before_us": round(b_us, 3), "after_us": round(a_us, 3), "ratio": round(a_us / b_us, 3)})
        print(f"| {name} | {b_us:.2f} | {a_us:.2f} | {a_us / b_us:.2f} |")
    per_call = {
        "utterances_per_call": round(len(cap["utterances"]) / cap["calls"], 4),
        "structured_per_call": round(sum(1 for x in cap["schemas"] if x is not None) / cap["calls"], 4),
    }
    print(per_call)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"calls": cap["calls"], **per_call, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
