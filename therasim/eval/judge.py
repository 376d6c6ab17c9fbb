"""LLM judges: score session transcripts with rubrics (therasim/eval/rubrics).

One structured call per rubric per session (``mode: rubric``) or one per
criterion (``mode: criterion``); ``samples`` calls per judgment, each with its
own seed, kept with their median and spread. Every score cites evidence lines
of the numbered transcript; the lines are checked to exist (and, for counted
counselor behaviours, to be counselor lines). An invalid answer is retried
with the problem fed back, then recorded invalid, never replaced by a default.

The judge sees what the counselor saw (intake form, modality, goals, the
counselor's recalled memories) and the transcript, never the hidden profile,
inner state or client-side memories, unless the rubric says ``sees_profile``
(rubrics about client realism).

Judgments are appended to ``RUN_DIR/evals/judgments.jsonl`` (fsync'd, one line
per sample) as they finish, so a kill loses only calls in flight and
``resume=True`` neither loses nor repeats one. Tokens and latency of every
call go to ``RUN_DIR/events.jsonl`` (``judge_call``).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field, ValidationInfo, create_model, model_validator

from therasim._internal.rundir import JsonlWriter, RunDir, read_jsonl, repair_jsonl
from therasim.errors import RunDirError, StructuredOutputError, TherasimError
from therasim.eval.rubrics import Criterion, Rubric
from therasim.eval.stats import describe, mean_ci

__all__ = ["JudgeTask", "aggregate_judgments", "ajudge_run", "judge_messages", "judge_session", "judgment_model", "number_transcript"]

_TEXT_PATTERN = r'^[^ \t\n{}\[\]"\\<>][^{}\[\]"\\<>\n]{1,199}$'


@dataclass(frozen=True)
class JudgeTask:
    """One sample of one judgment: a session (client, session, branch), a rubric,
    a unit (``all`` criteria or one criterion id) and a sample number."""

    client_id: str
    session: int
    branch: str | None
    rubric: str
    unit: str
    sample: int

    @property
    def key(self) -> str:
        return f"{self.client_id}|{self.session}|{self.branch or ''}|{self.rubric}|{self.unit}|{self.sample}"


# --------------------------------------------------------------------------- what the judge sees


def number_transcript(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The session's turns as numbered lines (1-based): ``{"line", "speaker", "text"}``."""
    return [{"line": i + 1, "speaker": t.get("speaker"), "text": t.get("text") or ""} for i, t in enumerate(record.get("turns") or [])]


def _context(record: Mapping[str, Any], profile: Mapping[str, Any] | None, rubric: Rubric) -> str:
    intake = dict((profile or {}).get("intake") or {})
    parts = [f"INTAKE FORM (what the counselor was given): {json.dumps(intake, ensure_ascii=False) if intake else '(not available)'}"]
    parts.append(f"MODALITY: {record.get('modality') or 'unspecified'}; SESSION {record.get('session')}; GOALS: {'; '.join(record.get('goals') or []) or '(none set)'}")
    recall = ((record.get("recall") or {}).get("counselor") or {}).get("items") or []
    if recall:
        parts.append("COUNSELOR'S NOTES FROM EARLIER SESSIONS:\n" + "\n".join(f"- {m.get('text', '')}" for m in recall))
    if rubric.sees_profile and profile:
        parts.append(f"CLIENT'S HIDDEN PROFILE (this rubric is about client realism): {json.dumps(profile.get('hidden') or {}, ensure_ascii=False)}")
    return "\n".join(parts)


def _criterion_text(rubric: Rubric, c: Criterion) -> str:
    head = f"- {c.id} ({c.name})" + (f": {c.description}" if c.description else "")
    if c.kind == "count":
        return head + "\n    list the counselor line number of every occurrence (repeat a line for several; [] for none)"
    anchors = "\n".join(f"    {k} = {v}" for k, v in rubric.anchors_for(c).items())
    na = "\n    null = not applicable in this session (say why)" if c.allow_na else ""
    return f"{head}\n{anchors}{na}"


def judge_messages(record: Mapping[str, Any], profile: Mapping[str, Any] | None, rubric: Rubric, criteria: list[Criterion]) -> list[BaseMessage]:
    lo, hi = rubric.scale
    system = (
        f"You are an experienced clinical supervisor rating a counseling session with the {rubric.title} rubric "
        f"({rubric.source}). Rate only what the transcript shows. {rubric.instructions}\n"
        f"Scores run from {lo} to {hi}.\nCRITERIA:\n" + "\n".join(_criterion_text(rubric, c) for c in criteria)
    )
    lines = "\n".join(f"[{ln['line']}] {str(ln['speaker']).upper()}: {ln['text']}" for ln in number_transcript(record))
    ask = (
        "For every criterion give the score" + (" (or count)" if any(c.kind == "count" for c in criteria) else "")
        + ", the numbers of the transcript lines that are your evidence"
        + ", and a one-sentence rationale. Reply as JSON."
    )
    return [SystemMessage(content=system), HumanMessage(content=f"{_context(record, profile, rubric)}\n\nTRANSCRIPT:\n{lines}\n\n{ask}")]


# --------------------------------------------------------------------------- the answer schema

_MODELS: dict[tuple[Any, ...], type[BaseModel]] = {}


def _check_answer(obj: BaseModel, info: ValidationInfo, rubric: Rubric, criteria: list[Criterion]) -> None:
    ctx = info.context or {}
    n = int(ctx.get("n_lines", 0))
    counselor_lines = set(ctx.get("counselor_lines") or [])
    for c in criteria:
        item = getattr(obj, c.id)
        ev = list(item.evidence)
        missing = [e for e in ev if not 1 <= e <= n]
        if missing:
            raise ValueError(f"{c.id}: evidence lines {missing} do not exist; the transcript has lines 1..{n}")
        if c.kind == "count":
            wrong = [e for e in ev if counselor_lines and e not in counselor_lines]
            if wrong:
                raise ValueError(f"{c.id}: lines {wrong} are not counselor lines; cite the counselor's own lines")
        elif item.score is None:
            if not c.allow_na:
                raise ValueError(f"{c.id}: a score is required (null is allowed only for criteria that may not apply)")
        elif rubric.evidence_required and not ev:
            raise ValueError(f"{c.id}: cite at least one evidence line for the score")


def judgment_model(rubric: Rubric, criteria: list[Criterion], n_lines: int, counselor_lines: tuple[int, ...] = ()) -> type[BaseModel]:
    """The answer schema for ``criteria`` of ``rubric`` on a transcript of ``n_lines``
    lines: per criterion a score in the scale (or a count), evidence line numbers
    within 1..n_lines, and a rationale."""
    key = (rubric.name, rubric.model_dump_json(), tuple(c.id for c in criteria), n_lines, counselor_lines)
    if key in _MODELS:
        return _MODELS[key]
    lo, hi = rubric.scale
    n = max(n_lines, 1)
    line = int
    fields: dict[str, Any] = {}
    for c in criteria:
        need = 1 if (c.kind == "score" and rubric.evidence_required) else 0
        # counted counselor behaviours cite counselor lines (an enum, so grammar backends cannot cite others)
        items: dict[str, Any] = {"enum": list(counselor_lines)} if (c.kind == "count" and counselor_lines) else {"type": "integer", "minimum": 1, "maximum": n}
        ev: tuple[Any, Any] = (list[line], Field(default_factory=list, min_length=need, max_length=3 * n if c.kind == "count" else 6, json_schema_extra={"items": items}))
        rationale = (str, Field(max_length=200, json_schema_extra={"pattern": _TEXT_PATTERN}))
        if c.kind == "count":  # the count is the number of cited occurrences (a line may repeat)
            value: dict[str, Any] = {}
        elif c.allow_na:
            value = {"score": (int | None, Field(ge=lo, le=hi))}
        else:
            value = {"score": (int, Field(ge=lo, le=hi))}
        sub = create_model(f"{c.id}_{c.kind}", **value, evidence=ev, rationale=rationale)
        fields[c.id] = (sub, ...)

    crit = list(criteria)

    class _Base(BaseModel):
        @model_validator(mode="after")
        def _evidence(self, info: ValidationInfo) -> _Base:
            _check_answer(self, info, rubric, crit)
            return self

    model = create_model(f"Judgment_{rubric.name.replace('-', '_')}", __base__=_Base, **fields)
    _MODELS[key] = model
    return model


# --------------------------------------------------------------------------- one judgment


async def judge_session(
    model: BaseChatModel,
    record: Mapping[str, Any],
    rubric: Rubric,
    *,
    profile: Mapping[str, Any] | None = None,
    unit: str = "all",
    sample: int = 0,
    seed: int = 0,
    attempts: int = 3,
    max_tokens: int | None = None,
) -> dict[str, Any]:
    """One judge call (with its retries): a result dict, ``valid`` False with the
    problem and raw text when every attempt was invalid (nothing defaulted)."""
    from therasim.context import derive_seed
    from therasim.providers import as_provider, dialect_for
    from therasim.structured import CallStats, agenerate_structured

    criteria = rubric.criteria if unit == "all" else [c for c in rubric.criteria if c.id == unit]
    if not criteria:
        raise TherasimError(f"rubric {rubric.name!r} has no criterion {unit!r}")
    lines = number_transcript(record)
    schema = judgment_model(rubric, criteria, len(lines), tuple(ln["line"] for ln in lines if ln["speaker"] == "counselor"))
    msgs = judge_messages(record, profile, rubric, criteria)
    kw: dict[str, Any] = {"max_tokens": max_tokens or (90 * len(criteria) + 60)}
    p = as_provider(model)
    if p is not None:
        kw.update(p.call_kwargs(cache_slot="judge", course_key=None))
    context = {"n_lines": len(lines), "counselor_lines": [ln["line"] for ln in lines if ln["speaker"] == "counselor"]}
    s = derive_seed(seed, record.get("client_id"), record.get("session"), record.get("branch"), rubric.name, unit, sample)
    out: dict[str, Any] = {"valid": False, "scores": None, "error": None}
    try:
        obj, stats = await agenerate_structured(model, schema, msgs, dialect=dialect_for(model), max_attempts=attempts, seed=s, validation_context=context, **kw)
        scores = obj.model_dump()
        for c in criteria:
            if c.kind == "count":
                scores[c.id]["count"] = len(scores[c.id]["evidence"])
        out.update(valid=True, scores=scores)
    except StructuredOutputError as e:
        stats = e.stats if isinstance(e.stats, CallStats) else CallStats(attempts=e.attempts, errors=list(e.errors))
        out.update(error=f"invalid after {e.attempts} attempts: {'; '.join(e.errors[-2:])}"[:600], raw=str(e.raw)[:2000])
    out.update(stats.as_dict())
    return out


# --------------------------------------------------------------------------- a run


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def session_records(rd: RunDir, *, branches: bool = True) -> list[dict[str, Any]]:
    """Original sessions, then branch sessions (forks/replays)."""
    recs = rd.records()
    if branches:
        recs += rd.branch_records()
    return recs


def profiles_by_id(rd: RunDir) -> dict[str, dict[str, Any]]:
    return {str(p.get("id")): p for p in read_jsonl(rd.profiles)}


def tasks_for(records: Iterable[Mapping[str, Any]], rubrics: list[Rubric], samples: int) -> list[tuple[JudgeTask, Mapping[str, Any], Rubric]]:
    out = []
    for r in records:
        for rb in rubrics:
            units = ["all"] if rb.mode == "rubric" else [c.id for c in rb.criteria]
            for u in units:
                for k in range(samples):
                    out.append((JudgeTask(str(r["client_id"]), int(r["session"]), r.get("branch"), rb.name, u, k), r, rb))
    return out


async def ajudge_run(
    run_dir: str | Path | RunDir,
    rubrics: list[Rubric],
    *,
    model: BaseChatModel | None = None,
    judge: str | None = None,
    samples: int = 1,
    concurrency: int | None = None,
    resume: bool = False,
    attempts: int | None = None,
    records: list[dict[str, Any]] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Judge every session of a run with ``rubrics``; append to evals/judgments.jsonl.

    ``model``: a chat model (tests); else ``judge`` (``embedded``,
    ``openai:MODEL@URL``, ...) else the run config's ``judge`` role. Returns
    counts: done now, skipped (already judged), invalid.
    """
    from therasim.config import RunConfig
    from therasim.providers import ModelPool
    from therasim.traces import parse_model_spec

    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    man = rd.manifest()
    cfg = RunConfig.model_validate(man["config"])
    if samples < 1:
        raise TherasimError(f"samples must be at least 1, got {samples}")
    evals = rd.root / "evals"
    evals.mkdir(exist_ok=True)
    path = evals / "judgments.jsonl"
    if path.exists() and path.stat().st_size and not resume:
        raise RunDirError(f"{path} already holds judgments; pass --resume to continue them (nothing is redone), or move the file away to start over")
    repair_jsonl(path)
    repair_jsonl(rd.events)
    done = {j["key"] for j in read_jsonl(path)}
    recs = records if records is not None else session_records(rd)
    profiles = profiles_by_id(rd)
    todo = [t for t in tasks_for(recs, rubrics, samples) if t[0].key not in done]
    pool = None
    if model is None:
        pool = ModelPool({"judge": parse_model_spec(judge)} if judge else cfg.models)
        model = pool.get("judge")
        desc = parse_model_spec(judge).describe() if judge else cfg.models.for_role("judge").describe()
    else:
        desc = {"custom": type(model).__name__}
    n_conc = concurrency or (1 if desc.get("provider") == "embedded" else 16)
    writer = JsonlWriter(path)
    events = JsonlWriter(rd.events, fsync=False)
    sem = asyncio.Semaphore(n_conc)
    counts = {"done": 0, "skipped": len(done), "invalid": 0, "total": len(done) + len(todo)}

    async def one(task: JudgeTask, rec: Mapping[str, Any], rb: Rubric) -> None:
        async with sem:
            res = await judge_session(model, rec, rb, profile=profiles.get(task.client_id), unit=task.unit, sample=task.sample, seed=cfg.seed, attempts=attempts or cfg.structured_attempts)
        line = {"key": task.key, "client_id": task.client_id, "session": task.session, "branch": task.branch, "rubric": task.rubric, "unit": task.unit, "sample": task.sample, "model": desc, "ts": _now(), **res}
        events.write({"event": "judge_call", "timestamp": _now(), "run_id": man["run_id"], "client_id": task.client_id, "session": task.session, "branch": task.branch, "rubric": task.rubric, "unit": task.unit, "sample": task.sample, "valid": res["valid"], **{k: res.get(k) for k in ("attempts", "retries", "input_tokens", "output_tokens", "cached_tokens", "latency_s")}, "error": res.get("error")})
        writer.write(line)  # after the event: a kill between the two leaves a call logged and redone, never a judgment without its call
        counts["done"] += 1
        counts["invalid"] += 0 if res["valid"] else 1
        if on_result is not None:
            on_result(line)

    try:
        await asyncio.gather(*(one(*t) for t in todo))
    finally:
        writer.close()
        events.close()
        if pool is not None:
            await pool.aclose()
    return counts


# --------------------------------------------------------------------------- aggregation


def _combine(values: list[float], how: str) -> float | None:
    if not values:
        return None
    return statistics.fmean(values) if how == "mean" else float(sum(values))


def _session_scores(rubric: Rubric, lines: list[dict[str, Any]]) -> dict[str, Any]:
    valid = [ln for ln in lines if ln.get("valid")]
    crit: dict[str, Any] = {}
    for c in rubric.criteria:
        field = "count" if c.kind == "count" else "score"
        vals = []
        na = 0
        for ln in valid:
            item = (ln.get("scores") or {}).get(c.id)
            if item is None:
                continue
            v = item.get(field)
            if v is None:
                na += 1
            else:
                vals.append(float(v))
        crit[c.id] = {**describe(vals), "na": na}
    medians = {k: v["median"] for k, v in crit.items()}
    scored = [c for c in rubric.scored]
    overall = None
    complete = all(crit[c.id]["n"] or crit[c.id]["na"] for c in rubric.criteria)
    if rubric.overall != "none" and complete:
        overall = _combine([medians[c.id] for c in scored if medians[c.id] is not None], rubric.overall)
    derived: dict[str, float | None] = {}
    for name, d in rubric.derived.items():
        if d.ratio:
            num = [medians[i] for i in d.ratio[0]]
            den = [medians[i] for i in d.ratio[1]]
            derived[name] = None if None in num or None in den or sum(den) == 0 else sum(num) / sum(den)  # type: ignore[arg-type]
        else:
            ids = d.mean or d.sum or []
            vals = [medians[i] for i in ids]
            derived[name] = None if None in vals else _combine(vals, "mean" if d.mean else "sum")  # type: ignore[arg-type]
    return {"criteria": crit, "overall": overall, "derived": derived, "valid_samples": len(valid), "invalid_samples": len(lines) - len(valid), "complete": complete}


def aggregate_judgments(judgments: Iterable[Mapping[str, Any]], rubrics: list[Rubric], *, seed: int = 0) -> dict[str, Any]:
    """Per-session scores (criterion medians and spreads over samples, overall,
    derived summaries) and per-rubric cohort means with bootstrap 95% intervals
    over courses (each course's mean over its sessions)."""
    by_name = {r.name: r for r in rubrics}
    groups: dict[tuple[str, int, str | None, str], list[dict[str, Any]]] = {}
    for j in judgments:
        if j.get("rubric") in by_name:
            groups.setdefault((str(j["client_id"]), int(j["session"]), j.get("branch"), str(j["rubric"])), []).append(dict(j))
    sessions = []
    for (cid, s, br, rn), lines in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "", kv[0][3])):
        sessions.append({"client_id": cid, "session": s, "branch": br, "rubric": rn, **_session_scores(by_name[rn], lines)})
    cohort: dict[str, Any] = {}
    for rb in rubrics:
        rows = [x for x in sessions if x["rubric"] == rb.name and x["branch"] is None]
        per_course: dict[str, dict[str, list[float]]] = {}
        for x in rows:
            d = per_course.setdefault(x["client_id"], {})
            for k, v in [("overall", x["overall"]), *[(c, x["criteria"][c]["median"]) for c in x["criteria"]], *x["derived"].items()]:
                if v is not None:
                    d.setdefault(k, []).append(v)
        keys = ["overall", *[c.id for c in rb.criteria], *rb.derived]
        cohort[rb.name] = {k: mean_ci([statistics.fmean(d[k]) for d in per_course.values() if d.get(k)], seed=seed) for k in keys}
        cohort[rb.name]["invalid_samples"] = sum(x["invalid_samples"] for x in rows)
        cohort[rb.name]["sessions"] = len(rows)
    return {"sessions": sessions, "cohort": cohort}
