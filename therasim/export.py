"""Datasets from a run: chat-format SFT, DPO pairs from forks and replays, and a
MindEval-style conversation set, saved with ``datasets`` (``load_from_disk``).

The messages are the ones each role's model was actually given: the runner keeps
every client/counselor call in ``prompts.jsonl`` (messages and answer), so an
SFT row is exactly that prompt plus what the role said. Column types are fixed
(:data:`SFT_FEATURES`, :data:`DPO_FEATURES`, :data:`MINDEVAL_FEATURES`), so
exports of separate runs concatenate with ``datasets.concatenate_datasets``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from therasim._internal.rundir import RunDir, read_jsonl
from therasim.errors import ConfigError, MissingExtraError, RunDirError

__all__ = ["export_run", "load_scores", "rows_dpo", "rows_mindeval", "rows_sft"]

Kind = Literal["sft", "dpo", "mindeval"]
ExportRole = Literal["counselor", "client"]


def _features(kind: Kind) -> Any:
    try:
        from datasets import Features, Value
    except ModuleNotFoundError:
        raise MissingExtraError("datasets", "export", "Dataset export") from None
    msg = [{"role": Value("string"), "content": Value("string")}]
    ids = {
        "run_id": Value("string"),
        "client_id": Value("string"),
        "session": Value("int32"),
        "exchange": Value("int32"),
        "branch": Value("string"),
    }
    if kind == "sft":
        return Features({
            **ids,
            "role": Value("string"),
            "node": Value("string"),
            "kind": Value("string"),
            "schema": Value("string"),
            "modality": Value("string"),
            "model": Value("string"),
            "messages": msg,
            "completion_raw": Value("string"),
        })
    if kind == "dpo":
        return Features({
            **ids,
            "role": Value("string"),
            "branch_chosen": Value("string"),
            "branch_rejected": Value("string"),
            "prompt": msg,
            "chosen": msg,
            "rejected": msg,
            "score_chosen": Value("float64"),
            "score_rejected": Value("float64"),
            "ranked_by": Value("string"),
        })
    return Features({
        "run_id": Value("string"),
        "client_id": Value("string"),
        "session": Value("int32"),
        "branch": Value("string"),
        "modality": Value("string"),
        "end_reason": Value("string"),
        "member_attributes": Value("string"),
        "member_narrative": Value("string"),
        "conversation": [{"role": Value("string"), "content": Value("string")}],
    })


# --------------------------------------------------------------------------- reading


def _calls(rd: RunDir) -> dict[tuple[str, int, str | None, int], list[dict[str, Any]]]:
    """prompts.jsonl grouped by (client, session, branch, exchange); a call re-run after a
    resume replaces the earlier copy (same node, role, kind and messages)."""
    if not rd.prompts.exists():
        raise RunDirError(
            f"{rd.root}: no prompts.jsonl, so the messages each role saw are not known; "
            "runs made before therasim kept prompts cannot be exported as chat data (re-run them)"
        )
    out: dict[tuple[str, int, str | None, int], list[dict[str, Any]]] = {}
    for r in read_jsonl(rd.prompts):
        key = (str(r["client_id"]), int(r["session"]), r.get("branch"), int(r.get("exchange") or 0))
        lst = out.setdefault(key, [])
        sig = (r["node"], r["role"], r["kind"], json.dumps(r["messages"]))
        lst[:] = [c for c in lst if (c["node"], c["role"], c["kind"], json.dumps(c["messages"])) != sig]
        lst.append(r)
    return out


def _spoken(call: dict[str, Any]) -> str:
    """What the role said in a call: the text, or the utterance of a structured reply."""
    if call["kind"] == "structured":
        try:
            obj = json.loads(call["output"])
        except json.JSONDecodeError:
            return str(call["output"])
        if isinstance(obj, dict) and isinstance(obj.get("utterance"), str):
            return str(obj["utterance"])
    return str(call["output"])


def _match(calls: list[dict[str, Any]], role: str, text: str) -> dict[str, Any] | None:
    """The call whose answer became the turn's text (the last one if several, e.g. a
    draft and its revision; the one whose answer matches wins)."""
    mine = [c for c in calls if c["role"] == role]
    for c in reversed(mine):
        if _spoken(c).strip() == (text or "").strip():
            return c
    return None


def _sessions(rd: RunDir) -> list[dict[str, Any]]:
    return [*rd.records(), *rd.branch_records()]


def _model_desc(man: dict[str, Any], role: str, rec: dict[str, Any]) -> str:
    changes = rec.get("changes") or {}
    if role == "counselor" and changes.get("counselor_model") is not None:
        return json.dumps(changes["counselor_model"], sort_keys=True, default=str)
    node = (man.get("node_models") or {}).get(role)
    m = node or (man.get("models") or {}).get(role) or {}
    return json.dumps(m, sort_keys=True, default=str)


def rows_sft(run_dir: str | Path | RunDir, role: ExportRole = "counselor") -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One row per turn of ``role`` (original sessions and branches): the messages its
    model was given, then its reply as an assistant message. Returns (rows, counts)."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    man = rd.manifest()
    calls = _calls(rd)
    rows: list[dict[str, Any]] = []
    counts = {"turns": 0, "rows": 0, "turns_without_prompt": 0}
    for rec in _sessions(rd):
        branch = rec.get("branch")
        from_turn = int(rec.get("from_turn") or 1)
        for t in rec.get("turns") or []:
            if t.get("speaker") != role:
                continue
            ex = int(t.get("exchange") or 0)
            if branch is not None and ex < from_turn - 1:
                continue  # copied from the parent before the branch point: exported with the original
            counts["turns"] += 1
            c = _match(calls.get((rec["client_id"], int(rec["session"]), branch, ex), []), role, t.get("text") or "")
            if c is None:
                counts["turns_without_prompt"] += 1
                continue
            rows.append({
                "run_id": rec["run_id"],
                "client_id": rec["client_id"],
                "session": int(rec["session"]),
                "exchange": ex,
                "branch": branch,
                "role": role,
                "node": c["node"],
                "kind": c["kind"],
                "schema": c.get("schema"),
                "modality": rec.get("modality"),
                "model": _model_desc(man, role, rec),
                "messages": [*c["messages"], {"role": "assistant", "content": t["text"]}],
                "completion_raw": c.get("raw") or c["output"],
            })
    counts["rows"] = len(rows)
    return rows, counts


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    if isinstance(v, dict):
        for k in ("median", "score", "mean", "value"):
            if k in v:
                return _num(v[k])
    return None


def _score_of(r: dict[str, Any]) -> float | None:
    for k in ("score", "overall", "mean"):
        if k in r and _num(r[k]) is not None:
            return _num(r[k])
    sc = r.get("scores")
    if isinstance(sc, dict):
        vals = [x for x in (_num(v) for v in sc.values()) if x is not None]
        if vals:
            return sum(vals) / len(vals)
    return None


def load_scores(run_dir: str | Path | RunDir) -> tuple[dict[tuple[str, int, str | None], float], str]:
    """Session scores from ``evals/*.jsonl``: records with ``client_id``, ``session``,
    ``branch`` (absent or null for the original) and ``score``/``overall``/``mean`` or a
    ``scores`` mapping (averaged; a value may be ``{"median": x}``). Several records
    for one session (rubrics) are averaged. Returns (scores, description)."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    folder = rd.root / "evals"
    acc: dict[tuple[str, int, str | None], list[float]] = {}
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    for f in files:
        for r in read_jsonl(f):
            if "client_id" not in r or "session" not in r:
                continue
            s = _score_of(r)
            if s is None:
                continue
            try:
                key = (str(r["client_id"]), int(r["session"]), r.get("branch") or None)
            except (TypeError, ValueError):
                continue
            acc.setdefault(key, []).append(s)
    scores = {k: sum(v) / len(v) for k, v in acc.items()}
    return scores, "mean session score from " + ", ".join(f"evals/{f.name}" for f in files)


def rows_dpo(run_dir: str | Path | RunDir, role: ExportRole = "counselor") -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Preference pairs from forks and replays: at a branch's first exchange, the
    original and each branch of the same session are candidates; two candidates
    whose ``role`` prompts are identical and whose replies differ form a pair, the
    one whose session scored higher in ``evals/`` chosen."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    rd.manifest()
    scores, ranked_by = load_scores(rd)
    if not scores:
        raise RunDirError(
            f"{rd.root}: no session scores in {rd.root / 'evals'}; DPO pairs are ranked by evaluation "
            f"scores: run `therasim eval {rd.root}` first (or write evals/*.jsonl with client_id, session, branch, score)"
        )
    calls = _calls(rd)
    originals = {(r["client_id"], int(r["session"])): r for r in rd.records()}
    by_point: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for b in rd.branch_records():
        by_point.setdefault((b["client_id"], int(b["session"]), int(b["from_turn"]) - 1), []).append(b)
    rows: list[dict[str, Any]] = []
    counts = {"branch_points": len(by_point), "pairs": 0, "skipped_prompts_differ": 0, "skipped_same_reply": 0, "skipped_unscored_or_tied": 0}
    for (cid, sess, ex), branches in sorted(by_point.items()):
        cands: list[tuple[str | None, dict[str, Any]]] = []
        for rec in [originals.get((cid, sess)), *branches]:
            if rec is None:
                continue
            turn = next((t for t in rec.get("turns") or [] if t.get("speaker") == role and int(t.get("exchange") or 0) == ex), None)
            if turn is None:
                continue
            c = _match(calls.get((cid, sess, rec.get("branch"), ex), []), role, turn.get("text") or "")
            if c is not None:
                cands.append((rec.get("branch"), {"call": c, "text": turn["text"], "rec": rec}))
        for i in range(len(cands)):
            for j in range(i + 1, len(cands)):
                (ba, a), (bb, b) = cands[i], cands[j]
                if a["call"]["messages"] != b["call"]["messages"]:
                    counts["skipped_prompts_differ"] += 1
                    continue
                if a["text"].strip() == b["text"].strip():
                    counts["skipped_same_reply"] += 1
                    continue
                sa, sb = scores.get((cid, sess, ba)), scores.get((cid, sess, bb))
                if sa is None or sb is None or sa == sb:
                    counts["skipped_unscored_or_tied"] += 1
                    continue
                (bw, w, sw), (bl, lo, sl) = sorted([(ba, a, sa), (bb, b, sb)], key=lambda x: -x[2])
                rows.append({
                    "run_id": a["rec"]["run_id"],
                    "client_id": cid,
                    "session": sess,
                    "exchange": ex,
                    "branch": bl if bw is None else bw,
                    "role": role,
                    "branch_chosen": bw,
                    "branch_rejected": bl,
                    "prompt": a["call"]["messages"],
                    "chosen": [{"role": "assistant", "content": w["text"]}],
                    "rejected": [{"role": "assistant", "content": lo["text"]}],
                    "score_chosen": sw,
                    "score_rejected": sl,
                    "ranked_by": ranked_by,
                })
    counts["pairs"] = len(rows)
    return rows, counts


def rows_mindeval(run_dir: str | Path | RunDir) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One row per session in MindEval's interaction shape: the member's attributes and
    narrative (from the profile) and the conversation as user (member) / assistant
    (therapist) messages, ready for MindEval's judge prompts."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    rd.manifest()
    profiles = {p["id"]: p for p in read_jsonl(rd.profiles)}
    rows = []
    for rec in _sessions(rd):
        p = profiles.get(rec["client_id"]) or {}
        intake, hidden = p.get("intake") or {}, p.get("hidden") or {}
        attrs = {**{k: v for k, v in intake.items() if k not in ("presenting_problem", "goals")}, **(p.get("extra") or {})}
        narrative = "\n\n".join(str(x) for x in (intake.get("presenting_problem"), hidden.get("backstory") or hidden.get("narrative"), hidden.get("core_beliefs")) if x)
        rows.append({
            "run_id": rec["run_id"],
            "client_id": rec["client_id"],
            "session": int(rec["session"]),
            "branch": rec.get("branch"),
            "modality": rec.get("modality"),
            "end_reason": rec.get("end_reason"),
            "member_attributes": json.dumps(attrs, ensure_ascii=False, default=str),
            "member_narrative": narrative,
            "conversation": [{"role": "user" if t["speaker"] == "client" else "assistant", "content": t["text"]} for t in rec.get("turns") or []],
        })
    return rows, {"sessions": len(rows)}


# --------------------------------------------------------------------------- writing


def _card(kind: Kind, role: str | None, man: dict[str, Any], counts: dict[str, int], n: int, out: Path, features: Any) -> str:
    cfg = man.get("config") or {}
    course = cfg.get("course") or {}
    lines = [
        "---",
        "license: other",
        "task_categories: [text-generation]",
        f"tags: [therasim, synthetic, counseling-simulation, {kind}]",
        "---",
        f"# therasim {kind} export of run {man['run_id']}",
        "",
        "Synthetic counseling conversations simulated by therasim: every line was",
        "written by language models role-playing a client and a counselor. It is not",
        "clinical data and no real person is described.",
        "",
        f"- kind: **{kind}**" + (f", role: **{role}**" if role else ""),
        f"- rows: **{n}**",
        f"- run: `{man['run_id']}` made {man.get('created')} with therasim {man.get('therasim_version')}",
        f"- exported: {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}",
        f"- course: preset {course.get('preset')}, modality {course.get('modality')}, {course.get('sessions')} sessions of at most {course.get('max_turns')} exchanges",
        f"- cohort: {(man.get('cohort') or {}).get('n')} clients ({(man.get('cohort') or {}).get('source')})",
        f"- seed: {man.get('seed')}",
        "",
        "## Models",
        "",
        "| role | model |",
        "|---|---|",
        *[f"| {r} | `{json.dumps(m, sort_keys=True, default=str)[:200]}` |" for r, m in (man.get("models") or {}).items()],
        *[f"| node {r} | `{json.dumps(m, sort_keys=True, default=str)[:200]}` |" for r, m in (man.get("node_models") or {}).items()],
        "",
        "## Counts",
        "",
        *[f"- {k}: {v}" for k, v in counts.items()],
        "",
        "## Columns",
        "",
        *[f"- `{k}`: {v}" for k, v in features.items()],
        "",
        "## Limits",
        "",
        "- Simulated clients and counselors; quality is that of the models above.",
        "- `messages`/`prompt` are the messages the role's model was given (prompts.jsonl);",
        "  for structured calls whose backend needs the JSON schema in the prompt, therasim",
        "  appended it to the last message at call time, and the reply was JSON: the",
        "  assistant message holds the spoken utterance, `completion_raw` the model's output.",
        "- DPO pairs are ranked by whole-session evaluation scores, not per-reply judgments.",
        "",
        "## Config",
        "",
        "```json",
        json.dumps(cfg, indent=2, sort_keys=True, default=str),
        "```",
        "",
        f"Load with `datasets.load_from_disk({str(out)!r})`.",
    ]
    return "\n".join(lines) + "\n"


def export_run(
    run_dir: str | Path | RunDir,
    to: Kind,
    out: str | Path,
    *,
    role: ExportRole = "counselor",
) -> dict[str, Any]:
    """Write a dataset of kind ``to`` (sft, dpo, mindeval) from a run into ``out`` with
    ``Dataset.save_to_disk`` and a dataset card (README.md). Returns counts and paths."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    man = rd.manifest()
    if to not in ("sft", "dpo", "mindeval"):
        raise ConfigError(f"--to must be sft, dpo or mindeval, got {to!r}")
    if role not in ("counselor", "client"):
        raise ConfigError(f"--role must be counselor or client, got {role!r}")
    outp = Path(out)
    if outp.exists() and any(outp.iterdir()):
        raise ConfigError(f"{outp} exists and is not empty; give a new folder with -o")
    features = _features(to)
    from datasets import Dataset

    rows: Iterable[dict[str, Any]]
    if to == "sft":
        rows, counts = rows_sft(rd, role)
    elif to == "dpo":
        rows, counts = rows_dpo(rd, role)
    else:
        rows, counts = rows_mindeval(rd)
    rows = list(rows)
    ds = Dataset.from_list(rows, features=features)
    ds.save_to_disk(str(outp))
    (outp / "README.md").write_text(_card(to, role if to != "mindeval" else None, man, counts, len(rows), outp, features), encoding="utf-8")
    return {"out": str(outp), "kind": to, "role": role if to != "mindeval" else None, "rows": len(rows), **counts}
