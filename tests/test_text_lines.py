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
