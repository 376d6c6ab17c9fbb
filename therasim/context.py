"""Run-level context handed to every node (LangGraph runtime context), and the
per-call :class:`NodeContext` helpers nodes use to talk to models."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from therasim.config import CourseSpec, Role, RunConfig
from therasim.errors import StructuredOutputError
from therasim.policies.modalities import Modality, get_modality
from therasim.policies.risk import RiskProtocol
from therasim.policies.taxonomies import EmotionTaxonomy, emotion_taxonomy
from therasim.policies.termination import TerminationRules
from therasim.providers import ModelPool, as_provider, dialect_for, own_max_tokens
from therasim.state import Side
from therasim.structured import CallStats, agenerate_structured, agenerate_text, prepared

if TYPE_CHECKING:
    from therasim.contract import ExchangeContract, NodeSpec

__all__ = ["CallInfo", "NodeContext", "SimContext", "current_call"]

T = TypeVar("T", bound=BaseModel)
EventSink = Callable[[dict[str, Any]], None]
PromptLog = Callable[[str, Side, list[BaseMessage]], None]


@dataclass(kw_only=True)
class SimContext:
    """Everything nodes share in a run: models per role, policies, course shape,
    seed, memory store and event sinks. Passed as LangGraph's runtime context."""

    models: ModelPool = field(default_factory=ModelPool)
    course: CourseSpec = field(default_factory=CourseSpec)
    seed: int = 0
    structured_attempts: int = 3
    risk_protocol: RiskProtocol = field(default_factory=RiskProtocol)
    termination: TerminationRules = field(default_factory=TerminationRules)
    memory: Any = None  # therasim.memory.MemoryStore or None
    recall_k: int = 4
    on_event: EventSink | None = None
    on_prompt: PromptLog | None = None
    on_record: Callable[[dict[str, Any]], None] | None = None  # finished session records (the runner writes them)
    on_messages: Callable[[dict[str, Any]], None] | None = None  # client/counselor model calls: messages given and answer (prompts.jsonl)
    # Per-node output caps that override the node specs' own (NodeSpec.max_tokens);
    # structured calls that hit a cap come back as invalid JSON.
    max_tokens: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: RunConfig, *, models: ModelPool | None = None, memory: Any = None, **overrides: Any) -> SimContext:
        """The one factory from a run's config to its context: the config's models
        (or ``models``), course, seed, attempts and recall depth, the ``memory`` store
        opened for it, and any other field as a keyword (event sinks, caps)."""
        kw: dict[str, Any] = {
            "models": models if models is not None else ModelPool(cfg.models),
            "course": cfg.course,
            "seed": cfg.seed,
            "structured_attempts": cfg.structured_attempts,
            "memory": memory,
            "recall_k": cfg.memory.recall_k,
        }
        return cls(**{**kw, **overrides})

    # (course, models, transcript_chars) of the last look-up: both are fixed objects
    # (a frozen CourseSpec; a pool's role specs are set when it is made), so the answer
    # holds while neither is replaced (it was worked out per model call)
    _chars: tuple[Any, Any, int] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def transcript_chars(self) -> int:
        """Transcript characters a prompt keeps (``course.transcript_chars``, else 6000
        with an embedded model among the roles, 24000 otherwise)."""
        c = self._chars
        if c is not None and c[0] is self.course and c[1] is self.models:
            return c[2]
        if self.course.transcript_chars is not None:
            n = self.course.transcript_chars
        else:
            from therasim.config import ModelSpec

            specs = [self.models.spec(r) for r in ("client", "counselor", "analysts")]
            small = any((isinstance(s, ModelSpec) and s.provider == "embedded") or ((p := as_provider(s)) is not None and p.small_context) for s in specs)
            n = 6000 if small else 24000
        self._chars = (self.course, self.models, n)
        return n

    def modality(self, name: str | None = None) -> Modality:
        return get_modality(name or self.course.modality)

    @property
    def taxonomy(self) -> EmotionTaxonomy:
        return emotion_taxonomy(self.course.emotion_taxonomy)

    def emit(self, event: dict[str, Any]) -> None:
        """Hand an event to ``on_event`` and, inside a graph streamed with the ``custom``
        mode, to LangGraph's stream (each event is a dict with an ``event`` key)."""
        if self.on_event is not None:
            self.on_event(event)
        get_writer = _GET_WRITER[0] if _GET_WRITER else _stream_writer_getter()
        try:
            writer = get_writer()
        except RuntimeError:  # not inside a graph run
            return
        try:
            silent = _SILENT[writer]
        except KeyError:
            silent = _silent(writer)
        except TypeError:  # an unhashable callable
            silent = False
        if not silent:  # a writer that drops what it gets needs no copy of it
            writer(dict(event))


# LangGraph's ``get_stream_writer``, imported on the first event (it was imported per
# event), and for each stream writer seen whether it drops what it is given (a function
# whose code is ``return None``: LangGraph's runtime without the ``custom`` stream
# mode, the lean executor's)
_GET_WRITER: list[Callable[[], Callable[[Any], None]]] = []
_SILENT: dict[Any, bool] = {}


def _stream_writer_getter() -> Callable[[], Callable[[Any], None]]:
    from langgraph.config import get_stream_writer

    _GET_WRITER.append(get_stream_writer)
    return get_stream_writer


def _drops(_: Any) -> None:
    return None


def _silent(writer: Any) -> bool:
    code = getattr(writer, "__code__", None)
    silent = type(writer).__name__ == "function" and code is not None and code.co_code == _drops.__code__.co_code and code.co_consts == _drops.__code__.co_consts
    if len(_SILENT) >= 256:  # per-run writers (closures) come and go
        _SILENT.clear()
    _SILENT[writer] = silent
    return silent


def as_sim_context(ctx: Any) -> SimContext:
    """The SimContext of a graph run: the context itself; ``SimContext()`` when none was
    given; ``ctx.to_sim()`` for a JSON context (LangGraph Studio / ``langgraph dev``
    give :class:`therasim.studio.StudioContext`, or a plain dict of its fields)."""
    if isinstance(ctx, SimContext):
        return ctx
    if ctx is None:
        return SimContext()
    to_sim = getattr(ctx, "to_sim", None)
    if callable(to_sim):
        return to_sim()  # type: ignore[no-any-return]
    if isinstance(ctx, dict):
        from therasim.studio import StudioContext

        return StudioContext.model_validate(ctx).to_sim()
    raise TypeError(f"the graph's context must be a SimContext or a StudioContext/dict of model specs, got {type(ctx).__name__}")


_SPEAKER_PREFIX = re.compile(r"^\s*(?:\(?(?:counsel+or|therapist|client|you)\)?\s*(?:\(you\))?\s*:\s*)+", re.IGNORECASE)
_NEXT_SPEAKER = re.compile(r"\n\s*(?:counsel+or|therapist|client)\s*(?:\(you\))?\s*:", re.IGNORECASE)


_HEADER_LINE = re.compile(r"^\s*(?:[A-Z][A-Z '/-]{3,}(?:\([^)]*\))?\s*:.*|- [a-z_]+: .*)$")


def clean_utterance(text: str) -> str:
    """Strip a leading speaker label, echoed prompt headers (``RISK PROTOCOL ...:``) and
    anything after the model starts writing the other speaker's lines (small models
    continue the transcript)."""
    text = "\n".join(line for line in text.strip().splitlines() if not _HEADER_LINE.match(line))
    text = _SPEAKER_PREFIX.sub("", text.strip())
    m = _NEXT_SPEAKER.search(text)
    if m:
        text = text[: m.start()]
    return text.replace("(the session is just starting)", "").strip()


_SPEECH_WORD = re.compile(r"[^\W\d_]{2,}")


def two_words(text: str) -> bool:
    r"""Whether ``text`` holds at least two words of two or more letters
    (``len(re.findall(r"[^\W\d_]{2,}", text)) >= 2``, stopping at the second)."""
    found = _SPEECH_WORD.finditer(text)
    return next(found, None) is not None and next(found, None) is not None


def derive_seed(*parts: object) -> int:
    h = hashlib.blake2b("|".join(str(p) for p in parts).encode(), digest_size=4)
    return int.from_bytes(h.digest(), "big") & 0x7FFFFFFF


@dataclass(frozen=True, slots=True)
class CallInfo:
    """Who is calling a model right now (for test doubles, like pydantic-ai's
    ``AgentInfo``): the node, its side, the model role, the kind of call
    (``text`` or ``structured``), the output schema's name and the attempt."""

    node: str
    side: Side
    role: str
    kind: str
    schema: str | None = None
    ids: dict[str, Any] = field(default_factory=dict)


_CURRENT_CALL: ContextVar[CallInfo | None] = ContextVar("therasim_current_call", default=None)


def current_call() -> CallInfo | None:
    """The :class:`CallInfo` of the model call in progress in this task (or None)."""
    return _CURRENT_CALL.get()


class _Calling:
    """``current_call()`` is ``info`` inside the block (a plain context manager: a
    generator-based one costs several times more per model call)."""

    __slots__ = ("info", "token")

    def __init__(self, info: CallInfo) -> None:
        self.info = info

    def __enter__(self) -> None:
        self.token = _CURRENT_CALL.set(self.info)

    def __exit__(self, *exc: object) -> None:
        _CURRENT_CALL.reset(self.token)


class NodeContext:
    """What a node function gets besides its view: model calls that record
    tokens, latency, attempts and retries, and seeds derived from run, client,
    session, exchange and node (so a replay asks the same questions)."""

    def __init__(self, sim: SimContext, node: str, side: Side, ids: dict[str, Any], *, spec: NodeSpec | None = None, contract: ExchangeContract | None = None) -> None:
        self.sim = sim
        self.node = node
        self.side = side
        self.ids = ids
        self.spec = spec
        self.contract = contract
        self.calls: list[dict[str, Any]] = []
        self.last_repairs: list[str] = []

    def _calling(self, role: str, kind: str, schema: str | None = None) -> _Calling:
        return _Calling(CallInfo(self.node, self.side, role, kind, schema, dict(self.ids)))

    @property
    def speech(self) -> bool:
        """Whether this node's free-text output is speech (cleaned and checked for words)."""
        return bool(self.spec.speech) if self.spec is not None else self.node in ("client", "counselor", "risk_review")

    @property
    def course(self) -> CourseSpec:
        return self.sim.course

    def seed(self, *extra: object) -> int:
        return derive_seed(self.sim.seed, self.ids.get("client_id"), self.ids.get("session"), self.ids.get("exchange"), self.node, *extra)

    def model(self, role: Role) -> BaseChatModel:
        return self.sim.models.get(role, self.ids.get("course_key"))

    def tags(self, role: Role, kind: str) -> list[str]:
        """Run tags of a model call, in LangGraph's ``messages`` stream metadata: speech of
        the client or counselor is ``therasim:speech`` (inside JSON for the client's
        structured turn), analyst output ``therasim:analysis``; JSON calls add ``therasim:json``."""
        speech = role in ("client", "counselor") and self.node in ("client", "counselor", "risk_review")
        return ["therasim:speech" if speech else "therasim:analysis", *(["therasim:json"] if kind == "structured" else []), f"therasim:node:{self.node}", f"therasim:role:{role}"]

    def _kw(self, model: BaseChatModel, max_tokens: int | None) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        p = as_provider(model)
        if p is not None:
            kw.update(p.call_kwargs(cache_slot=self.side, course_key=self.ids.get("course_key")))
        # A user-supplied model's own max_tokens is respected; an explicit cap still wins.
        cap = self.sim.max_tokens.get(self.node) or (self.spec.max_tokens if self.spec is not None else None)
        mt = max_tokens or (None if own_max_tokens(model) is not None else cap)
        if mt:
            kw["max_tokens"] = mt
        return kw

    def _record(self, role: Role, kind: str, stats: CallStats, error: str | None = None) -> None:
        rec = {"node": self.node, "role": role, "kind": kind, **stats.as_dict()}
        if error:
            rec["error"] = error
        self.calls.append(rec)
        ids = self.ids
        self.sim.emit({"event": "node_call", "run_id": ids.get("run_id"), "client_id": ids.get("client_id"), "session": ids.get("session"), "exchange": ids.get("exchange"), **rec, "ts": time.time()})

    async def text(self, role: Role, messages: list[BaseMessage], *, max_tokens: int | None = None) -> str:
        """Free-text generation by the model of ``role``."""
        model = self.model(role)
        if self.sim.on_prompt:
            self.sim.on_prompt(self.node, self.side, messages)
        stats = CallStats()
        speech = self.speech
        text = raw = ""
        try:
            for attempt in range(self.sim.structured_attempts):
                with self._calling(role, "text"):
                    raw, stats = await agenerate_text(prepared(model, lambda: self.tags(role, "text")), messages, seed=self.seed(len(self.calls), attempt), stats=stats, **self._kw(model, max_tokens))  # type: ignore[arg-type]
                text = clean_utterance(raw) if speech else raw.strip()
                if not speech or two_words(text):
                    break
                stats.errors.append(f"no usable speech in reply: {raw[:80]!r}")
        except Exception as e:
            self._record(role, "text", stats, error=f"{type(e).__name__}: {e}")
            raise
        self._record(role, "text", stats)
        self._log_messages(role, "text", messages, text, raw=raw)
        return text

    async def structured(
        self,
        role: Role,
        schema: type[T],
        messages: list[BaseMessage],
        *,
        max_tokens: int | None = None,
        context: dict[str, Any] | None = None,
        repair: Any = None,
    ) -> T:
        """A validated ``schema`` instance from the model of ``role``; raises
        :class:`StructuredOutputError` (recorded) when the attempt budget runs out."""
        model = self.model(role)
        if self.sim.on_prompt:
            self.sim.on_prompt(self.node, self.side, messages)
        try:
            with self._calling(role, "structured", schema.__name__):
                obj, stats = await agenerate_structured(
                    prepared(model, lambda: self.tags(role, "structured")),
                    schema,
                    messages,
                    dialect=dialect_for(model),
                    max_attempts=self.sim.structured_attempts,
                    seed=self.seed(len(self.calls)),
                    validation_context=context,
                    repair=repair,
                    **self._kw(model, max_tokens),
                )
        except StructuredOutputError as e:
            st = e.stats if isinstance(e.stats, CallStats) else CallStats(attempts=e.attempts, errors=e.errors)
            self._record(role, "structured", st, error=str(e)[:500])
            raise
        self._record(role, "structured", stats)
        self.last_repairs = list(stats.repairs)
        if self.sim.on_messages is not None and role in ("client", "counselor"):  # the answer's JSON only when it is logged
            self._log_messages(role, "structured", messages, obj.model_dump_json(), schema=schema.__name__)
        return obj

    def _log_messages(self, role: Role, kind: str, messages: list[BaseMessage], output: str, *, raw: str | None = None, schema: str | None = None) -> None:
        """Hand the messages a client/counselor model was given, and its answer, to
        ``on_messages`` (the runner keeps them in prompts.jsonl for dataset export)."""
        if self.sim.on_messages is None or role not in ("client", "counselor"):
            return
        roles = {"system": "system", "human": "user", "ai": "assistant"}
        self.sim.on_messages({
            **{k: self.ids.get(k) for k in ("run_id", "client_id", "session", "exchange")},
            "node": self.node,
            "role": role,
            "kind": kind,
            "schema": schema,
            "messages": [{"role": roles.get(m.type, "user"), "content": m.content if isinstance(m.content, str) else str(m.content)} for m in messages],
            "output": output,
            "raw": raw if raw is not None and raw != output else None,
        })

    def calls_update(self) -> dict[str, Any]:
        """The ``current.calls`` entry for this node (merged into the turn record)."""
        return {self.node: self.calls}
