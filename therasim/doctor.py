"""`therasim doctor`: load each configured model and the memory backend, do one real
generation and one structured output per model, and say what works and what to fix."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from therasim.config import ROLES, RunConfig
from therasim.errors import TherasimError
from therasim.providers import dialect_for, make_chat_model
from therasim.structured import agenerate_structured, agenerate_text

__all__ = ["Check", "run_doctor"]


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


class _Mood(BaseModel):
    mood: Literal["low", "neutral", "good"]
    intensity: int = Field(ge=0, le=4)


async def _check_model(label: str, spec, attempts: int) -> list[Check]:  # type: ignore[no-untyped-def]
    out = []
    try:
        model = make_chat_model(spec)
    except TherasimError as e:
        return [Check(f"{label}: load", False, str(e), "see the message above")]
    try:
        t0 = time.perf_counter()
        text, st = await agenerate_text(model, [HumanMessage(content="Say hello to a new client in one sentence.")], seed=1, max_tokens=30)
        out.append(Check(f"{label}: generation", bool(text.strip()), f"{st.output_tokens} tokens in {time.perf_counter() - t0:.2f}s: {text.strip()[:60]!r}"))
    except Exception as e:
        out.append(Check(f"{label}: generation", False, f"{type(e).__name__}: {e}", "check base_url, model name and that the server is up"))
        return out
    try:
        obj, st = await agenerate_structured(
            model, _Mood, [SystemMessage(content="Classify the mood."), HumanMessage(content="'I can't sleep and nothing helps.' Reply as JSON.")], max_attempts=attempts, seed=1
        )
        out.append(Check(f"{label}: structured output ({dialect_for(model)})", True, f"{obj.model_dump()} in {st.attempts} attempt(s)"))
    except Exception as e:
        out.append(Check(f"{label}: structured output ({dialect_for(model)})", False, f"{type(e).__name__}: {str(e)[:200]}", "set models.*.structured_output to a dialect your server supports"))
    return out


async def _run(cfg: RunConfig) -> list[Check]:
    checks: list[Check] = []
    seen: dict[str, str] = {}
    for role in ROLES:
        spec = cfg.models.for_role(role)
        key = spec.model_dump_json()
        if key in seen:
            checks.append(Check(f"{role}: model", True, f"same as {seen[key]}"))
            continue
        seen[key] = role
        checks += await _check_model(f"{role} ({spec.provider}:{spec.model or 'SmolLM2-135M'})", spec, cfg.structured_attempts)
    checks.append(_check_memory(cfg))
    return checks


def _check_scaleout(cfg: RunConfig, ray_address: str | None) -> list[Check]:
    out = []
    if cfg.checkpointer.backend == "postgres":
        from therasim._internal.checkpoint import check_postgres

        out.append(Check(f"checkpoints (postgres, ${cfg.checkpointer.dsn_env})", *check_postgres(cfg.checkpointer)))
    if ray_address is not None:
        from therasim.ray_executor import check_ray

        out.append(Check(f"ray ({ray_address})", *check_ray(ray_address)))
    return out


def _check_memory(cfg: RunConfig) -> Check:
    if cfg.memory.backend == "none" or not cfg.course.memory:
        return Check("memory", True, "disabled in config")
    try:
        import tempfile

        from therasim.memory import open_store

        with tempfile.TemporaryDirectory() as d:
            store = open_store(cfg.memory, default_path=d)
            store.add("doctor", "counselor", [{"text": "client sleeps badly", "kind": "fact", "session": 1}])
            hits = store.search("doctor", "counselor", "sleep problems", k=1)
            store.delete_client("doctor")
        return Check(f"memory ({cfg.memory.backend}, {cfg.memory.embedding})", bool(hits), f"round trip ok, score {hits[0]['score']:.2f}" if hits else "no hit")
    except Exception as e:
        fix = f"start the server: `chroma run --host {cfg.memory.host} --port {cfg.memory.port} --path DIR`" if cfg.memory.backend == "chroma-http" else "pip install 'therasim[embedded]' or fix the memory section"
        return Check(f"memory ({cfg.memory.backend})", False, f"{type(e).__name__}: {str(e)[:200]}", fix)


def run_doctor(cfg: RunConfig, ray_address: str | None = None) -> list[Check]:
    return asyncio.run(_run(cfg)) + _check_scaleout(cfg, ray_address)
