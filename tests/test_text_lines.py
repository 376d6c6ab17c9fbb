"""The prompt log's fast encoder writes the same bytes as dumps_strict for records
of text, and falls back to it for what orjson refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from therasim._internal.rundir import JsonlWriter, dumps_strict, dumps_text_line


def test_text_records_are_byte_identical_to_dumps_strict(tmp_path: Path) -> None:
    recs = [
        {"run_id": "r", "client_id": "c-1", "session": 2, "exchange": 0, "node": "counselor", "role": "counselor", "kind": "text", "schema": None,
         "messages": [{"role": "system", "content": 'Say "hi".\n\tTabs, \\ slashes, \x01\x1f controls, é ü 中文, emoji \U0001f642, \u2028 separators'}], "output": "ok", "raw": None},
        {"nested": [[1, -2, 10**15], {"a": [None, True, False, ""]}], "big": 2**63 - 1},
        {"surrogate": "\ud800 lone"},  # orjson refuses it: the dumps_strict way (which cannot encode it either)
        {1: "non-string key"},  # likewise
    ]
    for r in recs[:2]:
        assert dumps_text_line(r) == (dumps_strict(r, separators=(",", ":")) + "\n").encode("utf-8")
    assert dumps_text_line(recs[3]) == (dumps_strict(recs[3], separators=(",", ":")) + "\n").encode("utf-8")
    w = JsonlWriter(tmp_path / "p.jsonl", fsync=False, text_only=True)
    for r in recs[:2]:
        w.write(r)
    w.close()
    lines = (tmp_path / "p.jsonl").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and [json.loads(x) for x in lines[:-1]] == recs[:2]
    with pytest.raises(UnicodeEncodeError):
        dumps_text_line(recs[2])
    with pytest.raises(UnicodeEncodeError):
        (dumps_strict(recs[2]) + "\n").encode("utf-8")


class _Str:
    def __str__(self) -> str:
        return "as str"


class _IntSub(int):
    pass


_RECORDS = [
    {"run_id": "r", "client_id": "c1", "session": 1, "exchange": None, "node": "measures", "attempts": 1, "latency_s": 0.022, "errors": [], "repairs": [], "event": "node_call", "timestamp": "2026-11-28T10:06:21.143033Z"},
    {"text": 'quote " back \\ nl \n tab \t ctl \x01 del \x7f é 中文 \U0001f642 \u2028', "t": (1, (2, [3])), "f": [0.1, 1e16, -3e-7, 1e-5, 2.5, -0.0, 1e308]},
    {"big": 10**30, "neg": -(2**70), "b": [True, False, None], "sub": _IntSub(7), "obj": _Str(), "path": Path("/tmp/x"), "set": {1}},
    {1: "int key", 2.5: "float key", False: "bool key", None: "none key", "nested": {3: [{"x": {}}]}},
    {"nan": float("nan"), "inf": [float("-inf")], "deep": {"x": float("nan")}},
    {},
]


@pytest.mark.parametrize("seps", [None, (",", ":")])
def test_dumps_strict_writes_what_json_dumps_writes(seps: tuple[str, str] | None) -> None:
    """The cached C encoders (session 18 of #17) write json.dumps' bytes for every record,
    NaN and the other fallbacks included; what json.dumps refuses, dumps_strict refuses alike."""
    from therasim._internal import rundir

    assert rundir._ENCODERS is not None  # CPython's json has its C encoder: the fast path is tested
    kw = {} if seps is None else {"separators": seps}
    for r in _RECORDS:
        if r.get("nan") is not None:
            want = json.dumps(rundir._finite(r), default=str, ensure_ascii=False, allow_nan=False, **kw)
            assert '"nan"' in want
        else:
            want = json.dumps(r, default=str, ensure_ascii=False, allow_nan=False, **kw)
        assert dumps_strict(r, **kw) == want
    assert dumps_strict({"a": 1}, indent=2) == '{\n  "a": 1\n}'  # other arguments: json.dumps itself
    assert dumps_strict([1, {"a": 2}], **kw) == json.dumps([1, {"a": 2}], **kw)
    with pytest.raises(TypeError):
        dumps_strict({(1, 2): "tuple key"}, **kw)
    circular: dict[str, object] = {}
    circular["self"] = circular
    with pytest.raises((ValueError, RecursionError)):
        dumps_strict(circular, **kw)


def test_iso_now_formats_each_instant_as_datetime_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """iso_now's per-second cache: the date and time of the instant given, microseconds
    only when not zero (datetime.isoformat's rule), across second and day boundaries."""
    import datetime
    import time

    from therasim._internal import rundir

    base = 1_795_910_399 * 10**9  # 23:59:59 UTC
    for ns in (base, base + 999_999_999, base + 10**9, base + 10**9 + 1_000, base + 10**9 + 999, base + 86_400 * 10**9 + 123_456_789, base):
        monkeypatch.setattr(time, "time_ns", lambda ns=ns: ns)
        dt = datetime.datetime.fromtimestamp(ns // 10**9, datetime.timezone.utc) + datetime.timedelta(microseconds=ns % 10**9 // 1000)
        assert rundir.iso_now() == dt.isoformat().replace("+00:00", "Z")


def test_dumps_loose_writes_what_json_dumps_writes() -> None:
    """The dataset export's JSON-string fields (a turn's ``extra``) through a C encoder made
    once (session 18 of #17): json.dumps(v, default=str, ensure_ascii=False)'s text for every
    value, NaN as NaN; what json.dumps refuses is refused alike."""
    from therasim._internal import rundir
    from therasim._internal.rundir import dumps_loose

    assert rundir._LOOSE is not None
    values: list[object] = [*_RECORDS, "text é \U0001f642 \x01", 3, -2.5, float("nan"), float("inf"), None, True, [1, (2, "x")], Path("/p"), _Str(), 10**40]
    for v in values:
        assert dumps_loose(v) == json.dumps(v, default=str, ensure_ascii=False), v
    with pytest.raises(TypeError):
        dumps_loose({(1, 2): "tuple key"})
    circular: list[object] = []
    circular.append(circular)
    with pytest.raises((ValueError, RecursionError)):
        dumps_loose(circular)


def test_export_turn_is_what_it_was() -> None:
    """export_turn with the built-in slots' projections and the ``extra`` set made once
    (session 18 of #17): the same fields, order and JSON strings as computed per turn."""
    from therasim.contract import BUILTIN_SLOTS, TURN_CORE, ExchangeContract
    from therasim.records import export_turn

    def before(t: dict[str, object], contract: ExchangeContract | None = None) -> dict[str, object]:
        calls: dict[str, list[dict[str, object]]] = t.get("calls") or {}  # type: ignore[assignment]
        out: dict[str, object] = {k: t.get(k) for k in ("index", "exchange", "speaker", "text")}
        for s in BUILTIN_SLOTS.values():
            if callable(s.export):
                out[s.name] = s.export(t.get(s.name))
        out["n_calls"] = sum(len(v) for v in calls.values())
        out["call_errors"] = sum(1 for v in calls.values() for c in v if c.get("error"))
        builtin = {s.name for s in BUILTIN_SLOTS.values()} | set(TURN_CORE)
        if contract is not None:
            builtin |= {s.name for s in contract.slots.values() if s.export is None}
        extra = {k: json.dumps(v, default=str, ensure_ascii=False) for k, v in t.items() if k not in builtin}
        if extra:
            out["extra"] = extra
        return out

    turns: list[dict[str, object]] = [
        {"index": 0, "exchange": 0, "speaker": "client", "text": "hi", "emotion": {"main": "sad", "intensity": 0.5, "other": 1}, "risk": None,
         "calls": {"client": [{"error": None}, {"error": "x"}]}, "custom": {"score": float("nan"), "why": "é"}, "tags": ("a", Path("/p"))},
        {"index": 1, "exchange": 0, "speaker": "counselor", "text": "hello", "strategy": {"stage": 1, "strategy": "reflect"}, "calls": {}},
        {},
    ]
    for t in turns:
        assert export_turn(t) == before(t) and list(export_turn(t)) == list(before(t))
