"""``slot_time`` (therasim bench): where a run's request slots went, checked against
values computed by hand from a small events file."""

from __future__ import annotations

import json
from pathlib import Path

from therasim.tools.bench import slot_time


def test_slot_time_by_hand(tmp_path: Path) -> None:
    # 2 slots, wall 0..10 s. Course a: calls 1-3 s and 3.5-5 s (a 0.5 s gap between them);
    # course b: calls 2-6 s and 6-9 s (no gap). Course c starts after a in a's slot: 6-8 s.
    calls = [("a", 3, 2), ("a", 5, 1.5), ("b", 6, 4), ("b", 9, 3), ("c", 8, 2)]
    ev = tmp_path / "events.jsonl"
    import datetime as dt

    def iso(t: float) -> str:  # how the run's event log stamps a record
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat().replace("+00:00", "Z")

    lines = [{"event": "node_call", "client_id": c, "timestamp": iso(1000 + end), "latency_s": lat} for c, end, lat in calls]
    lines.insert(2, {"event": "exchange", "client_id": "a", "ts": 1004})  # not a call
    ev.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    got = slot_time(ev, 1000.0, 1010.0, 2)
    busy = 2 + 1.5 + 4 + 3 + 2  # 12.5 request-seconds
    spans = (5 - 1) + (9 - 2) + (8 - 6)  # 13 course-seconds
    assert got["in_calls"] == round(busy / 20, 4)
    assert got["between_calls"] == round(0.5 / 20, 4)
    assert got["no_course"] == round((20 - spans) / 20, 4)
    assert got["startup_s"] == 1.0 and got["tail_s"] == 4.0  # first call at 1 s; last course's first call at 6 s
    assert got["mean_in_flight"] == 1.2  # 12.5 / 10, rounded
    assert got["mean_gap_ms_per_call"] == 100.0  # 0.5 s over 5 calls
