"""Ask a chat model for an instance of a pydantic model, with the strongest
constraint its backend offers, then validate; repair or retry when invalid.

Grammars (llama.cpp, xgrammar) constrain shape, not every bound: SmolLM2 was
seen returning 10 for a 0..4 field under a llama.cpp grammar. So for grammar
backends small integer ranges are also turned into enums, and every output is
validated by pydantic. An invalid output is retried with the validation error
fed back; after ``max_attempts`` a :class:`StructuredOutputError` names the
schema and carries the raw text. Nothing is ever silently replaced by a default.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.globals import get_llm_cache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableBinding
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tracers.context import _tracing_v2_is_enabled
from pydantic import BaseModel, ValidationError

from therasim.config import StructuredDialect
from therasim.errors import StructuredOutputError
from therasim.providers import ChatReply, OpenAICompatChatModel, dialect_for

__all__ = [
    "CallStats",
    "agenerate_structured",
    "agenerate_text",
    "grammar_schema",
    "inline_refs",
    "parse_json_text",
    "response_format_for",
]

T = TypeVar("T", bound=BaseModel)


@dataclass(slots=True)
class CallStats:
    """What one logical model call cost: attempts, retries, tokens, latency, errors."""

    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    cached_tokens: int = 0
    transport_retries: int = 0

    @property
    def retries(self) -> int:
        return max(0, self.attempts - 1) + self.transport_retries

    def add_usage(self, msg: BaseMessage | ChatReply) -> None:
        um = getattr(msg, "usage_metadata", None) or {}
        self.input_tokens += int(um.get("input_tokens", 0) or 0)
        self.output_tokens += int(um.get("output_tokens", 0) or 0)
        self.cached_tokens += int((um.get("input_token_details") or {}).get("cache_read", 0) or 0)
        tr = (getattr(msg, "response_metadata", None) or {}).get("transport") or {}
        if tr.get("retries"):
            self.transport_retries += int(tr["retries"])
            self.errors.extend(f"transport: {e}" for e in tr.get("errors") or [])

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "retries": self.retries,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "latency_s": round(self.latency_s, 4),
            "cached_tokens": self.cached_tokens,
            "transport_retries": self.transport_retries,
            "errors": list(self.errors),
            "repairs": list(self.repairs),
        }


def inline_refs(schema: dict[str, Any], max_nodes: int = 200_000) -> dict[str, Any]:
    """Resolve local ``$ref``s into one self-contained schema (grammar compilers prefer it)."""
    defs = schema.get("$defs", {})
    budget = [max_nodes]

    def walk(node: Any, depth: int = 0) -> Any:
        if depth > 30:
            raise ValueError("schema nests too deeply or is recursive")
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError(f"schema expands to more than {max_nodes} nodes")
        if isinstance(node, dict):
            if "$ref" in node and node["$ref"].startswith("#/$defs/"):
                target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
                rest = {k: v for k, v in node.items() if k != "$ref"}
                target.update(rest)
                return walk(target, depth + 1)
            return {k: walk(v, depth + 1) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v, depth + 1) for v in node]
        return node

    return walk(schema)


def grammar_schema(schema: dict[str, Any], max_enum: int = 21) -> dict[str, Any]:
    """A schema for grammar backends: refs inlined, small integer ranges as enums,
    titles and descriptions dropped (they only cost grammar size)."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items() if k not in ("title", "description", "default")}
            if out.get("type") == "integer" and "minimum" in out and "maximum" in out:
                lo, hi = int(out["minimum"]), int(out["maximum"])
                if 0 <= hi - lo < max_enum:
                    return {"enum": list(range(lo, hi + 1))}
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(inline_refs(schema))


@functools.lru_cache(maxsize=512)
def response_format_for(schema_model: type[BaseModel], dialect: StructuredDialect) -> dict[str, Any] | None:
    """The ``response_format`` request field for a dialect (None for ``prompt``);
    cached per (model, dialect): schemas are fixed, and building one costs ms."""
    js = schema_model.model_json_schema()
    if dialect == "json_schema":
        # OpenAI / vLLM (xgrammar or guidance honour numeric bounds themselves).
        return {"type": "json_schema", "json_schema": {"name": schema_model.__name__, "schema": inline_refs(js), "strict": True}}
    if dialect == "json_object_schema":
        # llama.cpp (in process or llama-cpp-python's server).
        return {"type": "json_object", "schema": grammar_schema(js)}
    if dialect == "json_object":
        return {"type": "json_object"}
    return None


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
# ``json.loads(s, strict=False)`` is ``JSONDecoder(strict=False).decode(s)`` for a str,
# with the decoder (its scanner and memo) built on every call; one does for all.
_DECODER = json.JSONDecoder(strict=False)


def _loads(s: str) -> Any:
    return _DECODER.decode(s) if type(s) is str else json.loads(s, strict=False)


def parse_json_text(text: str) -> Any:
    """Parse JSON from model text: plain, fenced in ```json, or the outermost {...}."""
    t = text.strip()
    try:
        return _loads(t)
    except json.JSONDecodeError:
        pass
    m = _FENCE.search(t)
    if m:
        try:
            return _loads(m.group(1))
        except json.JSONDecodeError:
            pass
    start, end = t.find("{"), t.rfind("}")
    if start != -1 and end > start:
        return _loads(t[start : end + 1])
    raise json.JSONDecodeError("no JSON object found", t, 0)


def _short_errors(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:6]:
        loc = ".".join(str(p) for p in e["loc"]) or "(object)"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def _schema_hint(schema_model: type[BaseModel]) -> str:
    return json.dumps(grammar_schema(schema_model.model_json_schema()), separators=(",", ":"))


def _direct(model: Any) -> OpenAICompatChatModel | None:
    """Whether a call may skip langchain-core's invoke path (callback managers, run
    ids, metadata merging: about a tenth of the orchestrator's CPU per call on a
    zero-latency server). Only for therasim's own OpenAI-compatible model, used as
    is, with nothing that path would feed: no callbacks (LangGraph's ``messages``
    stream, LangSmith tracing), no LLM cache, no rate limiter. Tags and metadata
    bound with ``with_config`` only label callbacks, so such a binding qualifies.
    Returns the model to call directly, or None."""
    if isinstance(model, RunnableBinding) and not model.kwargs and set(model.config) <= {"tags", "metadata"} and not model.config_factories:
        model = model.bound
    if type(model) is not OpenAICompatChatModel or model.callbacks or model.cache is not None or model.rate_limiter is not None:
        return None
    cbs = (var_child_runnable_config.get() or {}).get("callbacks")
    if cbs and (isinstance(cbs, list) or getattr(cbs, "handlers", None) or getattr(cbs, "inheritable_handlers", None)):
        return None
    return model if get_llm_cache() is None and not _tracing_v2_is_enabled() else None


def labelled(model: BaseChatModel, tags: list[str]) -> Any:
    """``model.with_config(tags=tags)``, or ``model`` itself when the call goes the
    direct way (:func:`_direct`), where tags would only label callbacks there are none
    of: a binding per call is a pydantic model built and thrown away."""
    return model if _direct(model) is not None else model.with_config(tags=tags)


class DirectCall:
    """A model call already found to go the direct way (:func:`_direct`), for
    :func:`ainvoke_model` to take without asking again: the test reads LangSmith's
    tracing settings and the callback context, a few microseconds each time, and a
    node's call asked it twice (once for its tags, once to call). Made per logical
    call (:func:`prepared`), in the task that makes the call, so what it found holds
    for that call's attempts."""

    __slots__ = ("model",)

    def __init__(self, model: OpenAICompatChatModel) -> None:
        self.model = model


def prepared(model: BaseChatModel, tags: Callable[[], list[str]]) -> Any:
    """What a node's call hands :func:`agenerate_structured` / :func:`agenerate_text`:
    a :class:`DirectCall` on the direct path, else ``model.with_config(tags=tags())``
    (:func:`labelled` with the direct test made once)."""
    direct = _direct(model)
    return DirectCall(direct) if direct is not None else model.with_config(tags=tags())


async def ainvoke_model(model: BaseChatModel | DirectCall, messages: list[BaseMessage], **kw: Any) -> BaseMessage | ChatReply:
    """``model.ainvoke(messages, **kw)``; for therasim's own HTTP model with no
    callbacks to feed, the same request without langchain-core's invoke machinery
    (:func:`_direct`; a :class:`DirectCall` is already known to go that way), and
    the reply as a :class:`therasim.providers.ChatReply` (the message's content,
    usage and response metadata, without the message)."""
    direct = model.model if type(model) is DirectCall else _direct(model)
    if direct is not None:
        stop = kw.pop("stop", None)
        return await direct._areply(messages, stop, **kw)
    return await model.ainvoke(messages, **kw)  # type: ignore[union-attr]


async def agenerate_text(
    model: BaseChatModel | DirectCall, messages: list[BaseMessage], *, seed: int | None = None, stats: CallStats | None = None, **kw: Any
) -> tuple[str, CallStats]:
    """One free-text generation with usage and latency recorded."""
    stats = stats or CallStats()
    if seed is not None:
        kw["seed"] = seed
    t0 = time.perf_counter()
    msg = await ainvoke_model(model, messages, **kw)
    stats.latency_s += time.perf_counter() - t0
    stats.attempts += 1
    stats.add_usage(msg)
    return str(msg.content), stats


async def agenerate_structured(
    model: BaseChatModel | DirectCall,
    schema_model: type[T],
    messages: list[BaseMessage],
    *,
    dialect: StructuredDialect | None = None,
    max_attempts: int = 3,
    seed: int | None = None,
    validation_context: dict[str, Any] | None = None,
    repair: Callable[[Any], tuple[Any, list[str]]] | None = None,
    **kw: Any,
) -> tuple[T, CallStats]:
    """Return a validated ``schema_model`` instance and the call's stats.

    ``repair`` may fix a parsed object deterministically before validation (for rules
    a grammar cannot express); what it changed is recorded in ``stats.repairs``.
    Invalid outputs are retried: first by resampling, then with the validation
    error fed back to the model.

    Raises :class:`StructuredOutputError` after ``max_attempts`` invalid outputs.
    """
    dialect = dialect or dialect_for(model.model if type(model) is DirectCall else model)  # type: ignore[union-attr,arg-type]
    rf = response_format_for(schema_model, dialect)
    msgs = list(messages)
    if dialect in ("prompt", "json_object"):
        # Without a schema-carrying constraint the schema must travel in the prompt; it goes
        # last so the stable prefix is untouched.
        hint = f"Reply with one JSON object only, matching this JSON schema: {_schema_hint(schema_model)}"
        last = msgs[-1]
        msgs[-1] = type(last)(content=f"{last.content}\n\n{hint}") if isinstance(last, HumanMessage) else last
        if not isinstance(last, HumanMessage):
            msgs.append(HumanMessage(content=hint))
    stats = CallStats()
    raw = ""
    for attempt in range(max_attempts):
        call_kw = dict(kw)
        if rf is not None:
            call_kw["response_format"] = rf
        if seed is not None:
            call_kw["seed"] = seed + attempt * 7919
        t0 = time.perf_counter()
        reply = await ainvoke_model(model, msgs, **call_kw)
        stats.latency_s += time.perf_counter() - t0
        stats.attempts += 1
        stats.add_usage(reply)
        raw = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
        try:
            obj = parse_json_text(raw)
            if repair is not None:
                obj, notes = repair(obj)
                stats.repairs.extend(notes)
            return schema_model.model_validate(obj, context=validation_context), stats
        except json.JSONDecodeError as e:
            problem = f"not valid JSON ({e.msg})"
        except ValidationError as e:
            problem = _short_errors(e)
        stats.errors.append(problem)
        if attempt % 2 == 1:
            # Repair turn: show the model its output and what was wrong with it. Small models
            # tend to echo feedback, so the first retry only resamples (new seed).
            msgs = [
                *msgs,
                AIMessage(content=raw),
                HumanMessage(content=f"That reply was invalid: {problem}. Reply again with the corrected JSON object only."),
            ]
    raise StructuredOutputError(schema_model.__name__, raw, stats.attempts, stats.errors, stats)
