"""Dataset export: SFT rows hold exactly the messages each role's model was given,
DPO pairs from a fork ranked by evals/ scores, MindEval-shaped sessions; the
datasets load with datasets.load_from_disk and separate runs concatenate."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from therasim.errors import RunDirError
from therasim.export import export_run
from therasim.runner import run
from therasim.testing import FunctionChatModel
from therasim.traces import fork

sys.path.insert(0, str(Path(__file__).parent))
from _run_target import reply

datasets = pytest.importorskip("datasets")

CFG = {"course": {"preset": "minimal", "sessions": 2, "max_turns": 3, "memory": False}, "seed": 9}


def _run(tmp: Path, n: int = 2) -> tuple[Path, FunctionChatModel]:
    model = FunctionChatModel(fn=reply)
    res = run(CFG, sample=n, out=tmp, models={"default": model})
    assert res.ok
    return Path(res.run_dir), model


def _key(msgs: list[Any]) -> str:
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    return json.dumps([{"role": roles[m.type], "content": m.content} for m in msgs])


def test_sft_rows_are_the_exact_messages_each_role_saw(tmp_path):
    rd, model = _run(tmp_path / "a")
    seen = {_key(c["messages"]) for c in model.calls}
    for role, n_rows in (("counselor", 2 * 2 * 3), ("client", 2 * 2 * 3)):
        out = tmp_path / f"sft-{role}"
        info = export_run(rd, "sft", out, role=role)
        assert info["rows"] == n_rows and info["turns_without_prompt"] == 0
        ds = datasets.load_from_disk(str(out))
        assert ds.num_rows == n_rows
        for row in ds:
            prompt, answer = row["messages"][:-1], row["messages"][-1]
            # the prompt is exactly a call the model received, and the answer what the role said
            assert json.dumps(prompt) in seen
            assert answer["role"] == "assistant" and row["role"] == role
        transcript_texts = [t["text"] for r in (json.loads(x) for x in (rd / "transcripts.jsonl").read_text().splitlines()) for t in r["turns"] if t["speaker"] == role]
        assert sorted(r["messages"][-1]["content"] for r in ds) == sorted(transcript_texts)
        card = (out / "README.md").read_text()
        assert f"rows: **{n_rows}**" in card and "## Models" in card and "## Limits" in card
    client_row = datasets.load_from_disk(str(tmp_path / "sft-client"))[0]
    assert client_row["kind"] == "structured" and client_row["schema"] == "ClientTurn"
    assert json.loads(client_row["completion_raw"])["utterance"] == client_row["messages"][-1]["content"]


def test_separate_runs_concatenate(tmp_path):
    a, _ = _run(tmp_path / "a", 1)
    b, _ = _run(tmp_path / "b", 1)
    parts = []
    for i, rd in enumerate((a, b)):
        export_run(rd, "sft", tmp_path / f"o{i}")
        parts.append(datasets.load_from_disk(str(tmp_path / f"o{i}")))
    assert parts[0].features == parts[1].features
    both = datasets.concatenate_datasets(parts)
    assert both.num_rows == parts[0].num_rows + parts[1].num_rows
    assert both.features["branch"].dtype == "string"  # all-null column still typed


def test_dpo_pairs_from_a_fork_ranked_by_evals(tmp_path):
    rd, _ = _run(tmp_path / "a", 1)
    cid = json.loads((rd / "manifest.json").read_text())["cohort"]["ids"][0]
    other = FunctionChatModel(fn=lambda m, kw: "That sounds exhausting; what happens on the worst nights?")
    fork(rd, cid, 1, 2, counselor_model=other, branch="alt", models={"default": FunctionChatModel(fn=reply)})
    with pytest.raises(RunDirError, match="therasim eval"):
        export_run(rd, "dpo", tmp_path / "none")
    (rd / "evals").mkdir()
    # the shape `therasim eval` writes: one line per judge sample, scores per criterion; invalid samples have none
    lines = [
        {"client_id": cid, "session": 1, "branch": None, "rubric": "mindeval", "sample": 0, "valid": True, "scores": {"alliance": {"score": 3, "evidence": [2]}, "accuracy": {"score": 4, "evidence": [4]}}},
        {"client_id": cid, "session": 1, "branch": "alt", "rubric": "mindeval", "sample": 0, "valid": True, "scores": {"alliance": {"score": 5, "evidence": [2]}, "accuracy": {"score": 5, "evidence": [4]}}},
        {"client_id": cid, "session": 1, "branch": "alt", "rubric": "mindeval", "sample": 1, "valid": False, "scores": None, "error": "invalid after 3 attempts"},
    ]
    (rd / "evals" / "judgments.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    info = export_run(rd, "dpo", tmp_path / "dpo")
    assert info["pairs"] == 1, info
    row = datasets.load_from_disk(str(tmp_path / "dpo"))[0]
    assert row["branch_chosen"] == "alt" and row["branch_rejected"] is None
    assert row["chosen"][0]["content"].startswith("That sounds exhausting")
    assert row["rejected"][0]["content"] == "What did you notice about your sleep this week?"
    assert row["score_chosen"] == 5.0 and row["score_rejected"] == 3.5 and row["exchange"] == 1
    assert row["prompt"][0]["role"] == "system" and "counselor" in row["prompt"][0]["content"]
    # the fork's own turns are SFT rows too (branch column set)
    export_run(rd, "sft", tmp_path / "sft")
    branches = {r["branch"] for r in datasets.load_from_disk(str(tmp_path / "sft"))}
    assert branches == {None, "alt"}


def test_mindeval_shape_and_bad_output_folder(tmp_path):
    rd, _ = _run(tmp_path / "a", 1)
    info = export_run(rd, "mindeval", tmp_path / "me")
    ds = datasets.load_from_disk(str(tmp_path / "me"))
    assert info["rows"] == ds.num_rows == 2
    conv = ds[0]["conversation"]
    assert [m["role"] for m in conv[:2]] == ["user", "assistant"] and json.loads(ds[0]["member_attributes"])["name"]
    from therasim.errors import ConfigError

    with pytest.raises(ConfigError, match="not empty"):
        export_run(rd, "sft", tmp_path / "me")


def test_cli_export(tmp_path):
    from typer.testing import CliRunner

    from therasim.cli import app

    rd, _ = _run(tmp_path / "a", 1)
    r = CliRunner().invoke(app, ["export", str(rd), "--to", "sft", "--role", "client", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["rows"] == 6 and datasets.load_from_disk(str(tmp_path / "out")).num_rows == 6
    r = CliRunner().invoke(app, ["export", str(rd), "--to", "dpo", "-o", str(tmp_path / "dpo")])
    assert r.exit_code == 2 and "therasim eval" in r.output
