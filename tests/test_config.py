"""Run configuration: validation errors name the field; the CLI prints no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from therasim import ConfigError, ModelSpec, load_config
from therasim.config import example_config_yaml


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "therasim.cli", *args], capture_output=True, text=True)


def test_example_validates(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(example_config_yaml())
    cfg = load_config(p)
    assert cfg.course.preset == "full" and cfg.models.default.provider == "embedded"
    r = _cli("config", "validate", str(p))
    assert r.returncode == 0 and "valid" in r.stdout


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("models: [1,\n  b", "malformed YAML at line"),
        ("course: {sessions: 3, sesions: 4}", "course.sesions: unknown field"),
        ("course: {sessions: many}", "course.sessions: Input should be a valid integer"),
        ("models: {default: {provider: openai}}", "needs base_url"),
        ("models: {default: {provider: gpt}}", "models.default.provider"),
        ("models: {default: {provider: openai, model: m, base_url: x}}", "must start with http"),
        ("models: {default: {provider: openai, model: m, base_url: 'http://h/v1', api_key_env: sk-abc}}", "api_key_env"),
        ("- 1\n- 2", "top level must be a mapping"),
    ],
)
def test_config_errors_are_one_paragraph(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert needle in str(ei.value)
    r = _cli("config", "validate", str(p))
    assert r.returncode == 2
    assert needle in r.stderr.replace("\n", " ") or needle in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml").seed == 0


def test_missing_model_package_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['llama_cpp'] = None\n"
        "from therasim import make_chat_model, ModelSpec, MissingExtraError\n"
        "try:\n    make_chat_model(ModelSpec())\nexcept MissingExtraError as e:\n    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "pip install 'therasim[embedded]'" in r.stdout, r.stdout + r.stderr


def test_api_key_never_in_description(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-secret-123")
    spec = ModelSpec(provider="openai", model="m", base_url="http://127.0.0.1:1/v1", api_key_env="MY_KEY")
    assert "sk-secret-123" not in str(spec.describe())
    assert spec.describe()["api_key_env"] == "MY_KEY"
