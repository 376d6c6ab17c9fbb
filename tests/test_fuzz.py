"""Fuzzed bad input: configs, profiles (YAML/JSONL) and CLI arguments always give a
clear error naming the record and field, never a traceback, and never stop the
valid records. Run with HYPOTHESIS_PROFILE=slow for 1,200 examples per test."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from therasim.cli import app
from therasim.config import RunConfig, load_config
from therasim.errors import ConfigError, ProfileError, TherasimError
from therasim.profiles import ClientProfile, example_profiles, load_profiles

GOOD = [p.model_dump(mode="json") for p in example_profiles()]
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
HUGE = st.text(alphabet=string.ascii_letters, min_size=5000, max_size=20000)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True), TEXT, HUGE)
JSONISH = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)

CONFIG_PATHS = [
    ("seed",), ("concurrency",), ("out_dir",), ("structured_attempts",), ("course", "preset"), ("course", "sessions"), ("course", "max_turns"),
    ("course", "modality"), ("course", "emotion_taxonomy"), ("memory", "backend"), ("memory", "port"), ("memory", "embedding"), ("memory", "recall_k"),
    ("models", "default", "provider"), ("models", "default", "base_url"), ("models", "default", "api_key_env"), ("models", "default", "sampling", "temperature"),
    ("models", "counselor"), ("models", "default", "n_ctx"), ("bogus",), ("course", "bogus"),
]


def _set(d: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for p in path[:-1]:
        if not isinstance(d.get(p), dict):
            d[p] = {}
        d = d[p]
    d[path[-1]] = value


@given(edits=st.lists(st.tuples(st.sampled_from(CONFIG_PATHS), JSONISH), max_size=5))
def test_configs_validate_or_fail_clearly(edits: list[tuple[tuple[str, ...], Any]]) -> None:
    data: dict[str, Any] = {}
    for path, value in edits:
        _set(data, path, value)
    try:
        cfg = load_config(data)
    except ConfigError as e:
        msg = str(e)
        assert "problem(s)" in msg or "top level" in msg
        # every problem names a field path from the input
        assert e.problems or "top level" in msg
        for path, _ in e.problems:
            assert path and "function-" not in path
        return
    assert isinstance(cfg, RunConfig)


@given(doc=st.one_of(JSONISH, st.text(max_size=200)))
def test_config_files_of_any_shape(tmp_path_factory, doc: Any) -> None:
    f = tmp_path_factory.mktemp("cfg") / "c.yaml"
    f.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    try:
        load_config(f)
    except ConfigError as e:
        assert str(e).startswith(str(f)) or "problem(s)" in str(e)


PROFILE_PATHS = [("id",), ("intake",), ("intake", "name"), ("intake", "age"), ("intake", "presenting_problem"), ("intake", "goals"), ("hidden", "backstory"), ("hidden", "archetype"), ("hidden", "core_beliefs"), ("initial_state", "distress"), ("initial_state", "disclosure"), ("extra_field",), ("hidden", "unknown")]


@st.composite
def profile_records(draw: Any) -> Any:
    kind = draw(st.sampled_from(["good", "edited", "dropped", "junk", "duplicate"]))
    base = json.loads(json.dumps(draw(st.sampled_from(GOOD))))
    if kind == "good":
        base["id"] = f"ok-{draw(st.integers(0, 10**6))}"
        return base
    if kind == "junk":
        return draw(JSONISH)
    if kind == "duplicate":
        return base  # same id as a shipped example, possibly twice
    path = draw(st.sampled_from(PROFILE_PATHS))
    if kind == "dropped":
        d = base
        for p in path[:-1]:
            d = d.get(p, {}) if isinstance(d, dict) else {}
        if isinstance(d, dict):
            d.pop(path[-1], None)
        return base
    _set(base, path, draw(JSONISH))
    return base


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(records=st.lists(profile_records(), max_size=8), fmt=st.sampled_from(["jsonl", "yaml"]), blank=st.booleans())
def test_profile_files_report_bad_records_and_keep_good_ones(tmp_path_factory, records: list[Any], fmt: str, blank: bool) -> None:
    d = tmp_path_factory.mktemp("p")
    f = d / f"cohort.{fmt}"
    if blank:
        f.write_text("", encoding="utf-8")
    elif fmt == "jsonl":
        f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    else:
        f.write_text(yaml.safe_dump(records, allow_unicode=True), encoding="utf-8")
    try:
        valid, problems = load_profiles(f)
    except ProfileError as e:
        assert str(f) in str(e) or "profile" in str(e)
        return
    assert all(isinstance(p, ClientProfile) for p in valid)
    assert len({p.id for p in valid}) == len(valid)
    for pr in problems:
        assert pr.record and str(pr).startswith("profile ")
        if "field" in str(pr):
            assert pr.field is not None
    # every record is either valid or reported (nothing silently dropped)
    n = len([r for r in records]) if not blank else 0
    if fmt == "jsonl":
        assert len(valid) + len(problems) == n
    else:
        assert len(valid) + len(problems) == n or not records


COMMANDS = [
    ["config", "validate"],
    ["inspect"],
    ["plot"],
    ["graph", "--preset"],
    ["run", "--resume"],
    ["fork"],
    ["replay"],
    ["stub", "--profile"],
    ["bench", "--profile"],
]


@given(cmd=st.sampled_from(COMMANDS), args=st.lists(st.one_of(TEXT, st.sampled_from(["--client", "--session", "--turn", "--set", "x=1", "-1", "0", "99999999999", "--json"])), max_size=5))
def test_cli_never_shows_a_traceback(tmp_path_factory, cmd: list[str], args: list[str]) -> None:
    argv = [*cmd, *[a for a in args if a not in ("--help",)]]
    if cmd[0] in ("stub", "bench") and not args:
        argv.append("no-such-profile")
    if cmd[0] in ("stub", "bench"):
        argv = argv[:3]  # never start a server or a benchmark from the fuzzer
        if len(argv) > 2 and argv[2] in ("zero", "h100-8b", "api-like"):
            return
    if cmd[0] == "graph" and len(argv) > 2 and argv[2] in ("full", "unified", "lean", "minimal"):
        argv = argv[:3]
    res = CliRunner().invoke(app, argv, catch_exceptions=True)
    assert res.exit_code in (0, 1, 2), (argv, res.output, res.exception)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"{argv}: unhandled {type(res.exception).__name__}: {res.exception}")
    assert "Traceback" not in res.output


def test_errors_are_therasim_errors() -> None:
    assert issubclass(ConfigError, TherasimError) and issubclass(ProfileError, TherasimError)
    p = Path("/nonexistent/x.yaml")
    try:
        load_profiles(p)
    except ProfileError as e:
        assert "no such profiles file" in str(e)
