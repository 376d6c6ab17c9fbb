"""Bounded parsing and validation (issue #12): YAML alias bombs and deep nesting,
duplicate keys, per-line JSONL errors (bad UTF-8 included) with line numbers,
bounded error text, every registered name and only finite numbers in configs,
credentials in URLs never stored or printed, control characters never reaching
the terminal."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from therasim.config import load_config
from therasim.errors import ConfigError, ProfileError
from therasim.parsing import ParseError, load_json, load_yaml, short_repr
from therasim.profiles import example_profiles, load_profiles

# half the profile's examples (60 by default, 600 with HYPOTHESIS_PROFILE=slow)
_N = max(30, settings.default.max_examples // 2)
GOOD = [p.model_dump(mode="json") for p in example_profiles()]

BOMB = "\n".join(["a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]"] + [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)] + ["seed: *i"])


def test_yaml_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    assert len(BOMB) < 600
    f = tmp_path / "bomb.yaml"
    f.write_text(BOMB)
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="aliases are expanded"):
        load_config(f)
    p = tmp_path / "bomb_profiles.yaml"
    p.write_text(BOMB.replace("seed: *i", "profiles: *i"))
    with pytest.raises(ProfileError, match="aliases are expanded"):
        load_profiles(p)
    assert time.monotonic() - t0 < 5
    with pytest.raises(ParseError, match="levels deep"):
        load_yaml("&a [*a]")  # a cycle
    with pytest.raises(ParseError, match="more than 1000 aliases"):
        load_yaml("a: &x 1\nb: [" + ", ".join(["*x"] * 1001) + "]")
    # ordinary anchors still work
    assert load_yaml("base: &b {temperature: 0.5}\ncounselor: {sampling: *b}") == {"base": {"temperature": 0.5}, "counselor": {"sampling": {"temperature": 0.5}}}


def test_deep_documents_are_one_error_not_a_recursion_error(tmp_path: Path) -> None:
    for text in ("[" * 5000 + "]" * 5000, "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200)) + "  " * 200 + "x: 1"):
        f = tmp_path / "deep.yaml"
        f.write_text(text)
        with pytest.raises(ConfigError, match="deep"):
            load_config(f)
        with pytest.raises(ProfileError, match="deep"):
            load_profiles(f)
    with pytest.raises(ParseError, match="deep"):
        load_json("[" * 100_000 + "]" * 100_000)


def test_one_bad_jsonl_line_loses_only_itself(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    lines = [json.dumps(GOOD[0]).encode(), b"\xff\xfe not utf-8 \xc3", b"[" * 20_000 + b"]" * 20_000, json.dumps({**GOOD[1], "bogus_field": {"x": [[[[[[[[1]]]]]]]]}}).encode(), b"{\"id\": NaN}", json.dumps(GOOD[1]).encode()]
    f.write_bytes(b"\n".join(lines) + b"\n")
    ok, problems = load_profiles(f)
    assert [p.id for p in ok] == [GOOD[0]["id"], GOOD[1]["id"]]
    by_line = {p.record: str(p) for p in problems}
    assert "p.jsonl:2" in by_line and "not UTF-8" in by_line["p.jsonl:2"]
    assert "p.jsonl:3" in by_line and "deep" in by_line["p.jsonl:3"]
    assert any(r.startswith("p.jsonl:4") for r in by_line)
    assert "p.jsonl:5" in by_line and "NaN" in by_line["p.jsonl:5"]


def test_duplicate_keys_are_refused_with_both_lines(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("course:\n  sessions: 3\n  sessions: 30\n")
    with pytest.raises(ConfigError, match=r"line 3.*duplicate key 'sessions' \(first at line 2\)"):
        load_config(f)


def test_error_messages_are_bounded() -> None:
    huge = {"course": {"sessions": ["x" * 100_000] * 1000}}
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        load_config(huge)
    assert len(str(e.value)) < 2000 and time.monotonic() - t0 < 2
    deep: Any = 1
    for _ in range(10_000):
        deep = [deep]
    assert len(short_repr(deep)) <= 80


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"models": {"default": {"timeout_s": float("inf")}}}, "models.default.timeout_s"),
        ({"models": {"default": {"sampling": {"temperature": float("nan")}}}}, "models.default.sampling.temperature"),
        ({"course": {"modality": "astrology"}}, "course.modality"),
        ({"course": {"emotion_taxonomy": "moods"}}, "course.emotion_taxonomy"),
        ({"course": {"preset": "nope"}}, "course.preset"),
    ],
)
def test_config_names_and_numbers_are_checked_at_validate_time(doc: dict[str, Any], field: str) -> None:
    from therasim.runner import check_names

    with pytest.raises(ConfigError) as e:
        check_names(load_config(doc))  # what `config validate` and `run` do
    assert field in [p for p, _ in e.value.problems], e.value.problems


def test_config_validate_cli_on_yaml_infinity(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from therasim.cli import app

    f = tmp_path / "c.yaml"
    f.write_text("models:\n  default:\n    timeout_s: .inf\ncourse:\n  modality: astrology\n")
    r = CliRunner().invoke(app, ["config", "validate", str(f)])
    assert r.exit_code == 2 and "timeout_s" in r.output


# --------------------------------------------------------------------------- secrets, terminal


def test_redaction_of_urls() -> None:
    from therasim.redact import redact_text, redact_url, terminal_safe

    assert redact_url("https://user:sk-123@host:8000/v1") == "https://user:***@host:8000/v1"
    assert redact_url("https://sk-123@host/v1") == "https://***@host/v1"
    assert redact_url("http://h/v1?api_key=sk-123&x=1") == "http://h/v1?api_key=***&x=***"
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    t = redact_text("model call to http://u:sk-9@h/v1/chat?key=sk-8 failed")
    assert "sk-9" not in t and "sk-8" not in t and "http://u:***@h/v1/chat?key=***" in t
    assert terminal_safe("id\x1b[2J\x07x\r\nnext\tcol") == "id\\x1b[2J\\x07x\\x0d\nnext\tcol"


def test_a_key_in_base_url_is_never_stored_or_printed(tmp_path: Path) -> None:
    """A run against a stub whose base_url carries a key in user:key@ and in the query;
    the key is in no file of the run directory and in no console output."""
    import subprocess
    import sys

    from conftest import free_port, start_stub  # type: ignore[import-not-found]

    stub, port = start_stub()
    try:
        dead = free_port()  # a replica nobody listens on: its errors carry the URL too
        cfg = tmp_path / "c.yaml"
        cfg.write_text(json.dumps({
            "models": {"default": {"provider": "openai", "model": "stub", "timeout_s": 5, "max_retries": 1,
                                   "base_url": [f"http://user:SECRETKEY1@127.0.0.1:{port}/v1?api_key=SECRETKEY2", f"http://user:SECRETKEY1@127.0.0.1:{dead}/v1?api_key=SECRETKEY2"]}},
            "course": {"preset": "minimal", "sessions": 1, "max_turns": 1},
            "memory": {"embedding": "hash"},
        }))
        p = subprocess.run([sys.executable, "-m", "therasim.cli", "run", str(cfg), "--sample", "2", "--out", str(tmp_path / "runs"), "--no-progress"], capture_output=True, text=True, timeout=300)
        assert "SECRETKEY" not in p.stdout + p.stderr
        run_dir = next((tmp_path / "runs").iterdir())
        files = [f for f in run_dir.rglob("*") if f.is_file()]
        assert any(f.name == "manifest.json" for f in files)
        for f in files:
            assert b"SECRETKEY" not in f.read_bytes(), f
        assert "***" in (run_dir / "manifest.json").read_text()
        p2 = subprocess.run([sys.executable, "-m", "therasim.cli", "run", "--resume", str(run_dir)], capture_output=True, text=True, timeout=120)
        assert p2.returncode == 2 and "does not store" in p2.stderr and "Traceback" not in p2.stderr
    finally:
        stub.terminate()
        stub.wait(10)


def test_control_characters_never_reach_the_terminal(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from therasim.cli import app

    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({**GOOD[0], "id": "evil\x1b]0;pwned\x07\x1b[2J"}) + "\n")
    r = CliRunner().invoke(app, ["run", "--profiles", str(f), "--out", str(tmp_path / "runs"), "--no-progress"])
    assert r.exit_code == 2
    assert "\x1b" not in r.output and "\x07" not in r.output and "\\x1b" in r.output


# --------------------------------------------------------------------------- fuzz


@settings(max_examples=_N, deadline=None)
@given(value=st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20), st.booleans(), st.none(), st.text(max_size=30),
    st.lists(st.floats(allow_nan=True), max_size=3), st.dictionaries(st.text(max_size=5), st.floats(allow_nan=True), max_size=3),
), path=st.sampled_from(["inner.distress", "inner.trust", "inner.wants_to_end", "inner.homework", "inner.recent_events", "inner", "goals", "modality", "counselor_notes", "intake.age", "intake.name", "profile.hidden.archetype", "client_memory"]))
def test_fuzzed_fork_set_values_are_valid_or_a_clear_error(value: Any, path: str) -> None:
    """Every --set value either passes the same models profiles and inner state use
    (and so is finite JSON) or is a ConfigError naming the field."""
    import math

    from therasim.graphs.session import initial_session_state
    from therasim.traces import _apply, parse_sets

    state = dict(initial_session_state(example_profiles()[0]))
    raw = json.dumps(value) if not isinstance(value, str) else value
    try:
        sets = parse_sets([f"{path}={raw}"])
        out = _apply(state, sets)
    except ConfigError as e:
        assert path.split(".")[0] in str(e)
        return
    json.dumps(out, allow_nan=False, default=str)  # nothing non-finite got through
    leaf: Any = out
    for p in path.split("."):
        leaf = leaf[p]
    if isinstance(leaf, float):
        assert math.isfinite(leaf)


@settings(max_examples=_N, deadline=None)
@given(depth=st.integers(1, 3000), kind=st.sampled_from(["json-list", "json-dict", "yaml-flow", "yaml-block"]))
def test_fuzzed_nested_documents(tmp_path_factory: pytest.TempPathFactory, depth: int, kind: str) -> None:
    d = tmp_path_factory.mktemp("nest")
    if kind == "json-list":
        text, name = "[" * depth + "1" + "]" * depth, "p.jsonl"
    elif kind == "json-dict":
        text, name = '{"a":' * depth + "1" + "}" * depth, "p.jsonl"
    elif kind == "yaml-flow":
        text, name = "[" * depth + "1" + "]" * depth, "p.yaml"
    else:
        text, name = "".join("  " * i + "a:\n" for i in range(min(depth, 400))) + "  " * min(depth, 400) + "b: 1\n", "p.yaml"
    f = d / name
    f.write_text(json.dumps(GOOD[0]) + "\n" + text + "\n" if name.endswith(".jsonl") else text)
    try:
        ok, problems = load_profiles(f)
    except ProfileError as e:
        assert name.endswith(".yaml") and len(str(e)) < 500
        return
    if name.endswith(".jsonl"):
        assert [p.id for p in ok] == [GOOD[0]["id"]] and len(problems) == 1 and problems[0].record == "p.jsonl:2"
