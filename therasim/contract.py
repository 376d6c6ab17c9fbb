"""The node contract: what a node reads and writes, and what becomes of it.

Every exchange of a session fills a per-exchange scratch (``state["current"]``,
typed as :class:`ExchangeScratch`). Each key of that scratch is a :class:`Slot`:
it says which sides' views may read it, which transcript turn records it (and
under which name), whether it is speech, and how it is exported. Every node is a
frozen :class:`NodeSpec`: its function, side, model role, the slots it reads and
writes, whether its model output is speech, and its token cap.

The views (:func:`therasim.state.make_view`), the transcript (``record``), the
dataset export and the per-node token caps are all derived from these
declarations (:class:`ExchangeContract`), so a new role is one node module that
declares its spec plus one line in a preset: its output reaches the views, the
transcript and the export, and a key no spec declares is an error, never a
silent drop.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from typing_extensions import (
    TypedDict,  # LangGraph schema generation (pydantic) needs it before Python 3.12
)

from therasim.errors import TherasimError

if TYPE_CHECKING:
    from therasim.context import NodeContext
    from therasim.state import View

__all__ = [
    "BUILTIN_SLOTS",
    "ExchangeContract",
    "ExchangeScratch",
    "NodeFn",
    "NodeSpec",
    "Side",
    "Slot",
    "Turn",
    "builtin_contract",
]

Side = Literal["client", "counselor", "system"]
Turn = Literal["client", "counselor"]
NodeFn = Callable[["View", "NodeContext"], "Awaitable[dict[str, Any]] | dict[str, Any]"]


class ExchangeScratch(TypedDict, total=False):
    """The declared shape of ``state["current"]`` (the built-in slots; graphs may
    declare more through their nodes' specs)."""

    client_text: str
    client_note: dict[str, Any]
    client_inner: dict[str, Any]
    emotion: dict[str, Any]
    risk: dict[str, Any]
    recalled: list[dict[str, Any]]
    scan: list[dict[str, Any]]
    plan: dict[str, Any]
    directive: str
    draft: str
    counselor_text: str
    review: dict[str, Any]
    calls: dict[str, list[dict[str, Any]]]


def _pick(*keys: str) -> Callable[[Any], Any]:
    def pick(d: Any) -> dict[str, Any] | None:
        return {k: d.get(k) for k in keys} if isinstance(d, dict) else None

    return pick


def _export_risk(risk: Any) -> dict[str, Any] | None:
    if not risk:
        return None
    cues = [str(c.get("quote", c)) if isinstance(c, dict) else str(c) for c in risk.get("cues") or []]
    return {"level": risk.get("level"), "crisis_class": risk.get("crisis_class"), "handoff": bool(risk.get("handoff")), "cues": cues}


def _export_recalled(items: Any) -> list[dict[str, Any]]:
    return [{k: m.get(k) for k in ("id", "text", "session", "kind", "score")} for m in items or []]


@dataclass(frozen=True, slots=True)
class Slot:
    """One key of the per-exchange scratch.

    ``readers``: sides whose views see it (in ``current`` and, for counselor-side
    views, in the transcript); ``None`` means the writing node's side.
    ``turn``: the transcript turn that records it (``None`` with ``record=False``);
    ``None`` with ``record=True`` means the writing node's side (counselor for system nodes).
    ``field``: its name in the transcript turn (default: the key).
    ``speech``: the turn's spoken text (several speech slots of a turn: the first non-empty wins).
    ``none_if_empty``: record ``None`` instead of an empty value.
    ``export``: projection into the dataset export (``None``: not exported; the
    default for declared slots puts it in the turn's ``extra`` as JSON).
    """

    key: str
    readers: frozenset[Side] | None = None
    turn: Turn | None = None
    record: bool = True
    field: str | None = None
    speech: bool = False
    none_if_empty: bool = False
    export: Callable[[Any], Any] | Literal["extra"] | None = "extra"

    @property
    def name(self) -> str:
        """The slot's field name in the transcript turn."""
        return self.field or self.key


_C: frozenset[Side] = frozenset({"counselor"})
_NOBODY: frozenset[Side] = frozenset()

# Declaration order is the order of fields in a transcript turn.
BUILTIN_SLOTS: dict[str, Slot] = {
    s.key: s
    for s in (
        Slot("client_text", frozenset({"client", "counselor"}), "client", field="text", speech=True, export=None),
        Slot("emotion", _C, "client", export=_pick("main", "secondary", "intensity", "cause")),
        Slot("risk", _C, "client", export=_export_risk),
        Slot("recalled", _C, "client", export=_export_recalled),
        Slot("client_note", _NOBODY, "client", field="note", none_if_empty=True, export=None),
        Slot("client_inner", _NOBODY, "client", export=None),
        Slot("counselor_text", _C, "counselor", field="text", speech=True, export=None),
        Slot("draft", _C, "counselor", field="text", speech=True, export=None),
        Slot("plan", _C, "counselor", field="strategy", export=_pick("stage", "strategy", "rationale")),
        Slot("directive", _C, "counselor", none_if_empty=True, export=None),
        Slot("review", _C, "counselor", export=None),
        Slot("scan", _C, None, record=False, export=None),
        Slot("calls", _C, None, record=False, export=None),
    )
}
# Transcript-turn fields every turn has (not slots).
TURN_CORE = ("index", "exchange", "speaker", "text", "calls")


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of a graph: its function, the side whose view it gets, the model
    role it calls, the scratch slots it reads and writes (``Slot`` objects declare
    new slots; strings name declared ones), whether its model output is speech
    (cleaned of speaker labels and recorded as the turn's text), and its token cap.

    ``writes=None`` means undeclared: the node may write any slot the graph declares.

    ``fold=True`` says the node makes no model call and is deterministic given the
    state (a lookup, bookkeeping): the session builder may then run it in the same
    LangGraph superstep as the node before it (one checkpoint fewer per exchange;
    its output and trace are the same). Not part of :meth:`describe`.
    """

    name: str
    fn: NodeFn | None = None
    side: Side = "counselor"
    role: str | None = None
    description: str = ""
    impl: dict[str, Any] | None = None  # what stands at the node (manifests record it)
    reads: tuple[str, ...] = ()
    writes: tuple[str | Slot, ...] | None = None
    speech: bool = False
    max_tokens: int | None = None
    fold: bool = False

    def __post_init__(self) -> None:
        if self.side not in ("client", "counselor", "system"):
            raise TherasimError(f"node {self.name!r}: side must be 'client', 'counselor' or 'system', got {self.side!r}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise TherasimError(f"node {self.name!r}: max_tokens must be a positive integer, got {self.max_tokens!r}")
        # Accept lists for convenience; keep the spec hashable and frozen.
        object.__setattr__(self, "reads", tuple(self.reads))
        if self.writes is not None:
            object.__setattr__(self, "writes", tuple(self.writes))

    @property
    def write_keys(self) -> tuple[str, ...] | None:
        return None if self.writes is None else tuple(w.key if isinstance(w, Slot) else w for w in self.writes)

    @property
    def new_slots(self) -> tuple[Slot, ...]:
        """The slots this node declares, with defaults resolved from its side."""
        turn: Turn = "client" if self.side == "client" else "counselor"
        out = []
        for w in self.writes or ():
            if isinstance(w, Slot):
                out.append(dataclasses.replace(w, readers=w.readers if w.readers is not None else frozenset({self.side}), turn=w.turn or (turn if w.record else None)))
        return tuple(out)

    def replace(self, **changes: Any) -> NodeSpec:
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"side": self.side, "role": self.role, "fn": _qualname(self.fn)}
        if self.impl:
            d["impl"] = self.impl
        if self.reads:
            d["reads"] = list(self.reads)
        if self.writes is not None:
            d["writes"] = list(self.write_keys or ())
        if self.speech:
            d["speech"] = True
        if self.max_tokens:
            d["max_tokens"] = self.max_tokens
        slots = self.new_slots
        if slots:
            d["slots"] = {s.key: {"readers": sorted(s.readers or ()), "turn": s.turn, "field": s.name, "speech": s.speech} for s in slots}
        return d


def _qualname(fn: Any) -> str:
    if fn is None:
        return "None"
    if isinstance(fn, functools.partial):
        return f"partial({_qualname(fn.func)})"
    return str(getattr(fn, "__qualname__", type(fn).__name__))


class ExchangeContract:
    """The scratch slots and node specs of one session graph, and everything derived
    from them: per-side views of the scratch, the transcript record, the export,
    which turn each node's calls go with, and token caps."""

    def __init__(self, nodes: Iterable[NodeSpec] = ()) -> None:
        self.nodes: dict[str, NodeSpec] = {}
        self.slots: dict[str, Slot] = dict(BUILTIN_SLOTS)
        owner: dict[str, str] = {}
        for spec in nodes:
            self.nodes[spec.name] = spec
            for s in spec.new_slots:
                if s.key in BUILTIN_SLOTS:
                    raise TherasimError(f"node {spec.name!r} declares slot {s.key!r}, which is built in; name it in writes as a string instead")
                if s.key in owner and self.slots[s.key] != s:
                    raise TherasimError(f"slot {s.key!r} is declared differently by nodes {owner[s.key]!r} and {spec.name!r}; declare it once")
                if s.name in TURN_CORE and not s.speech:
                    raise TherasimError(f"slot {s.key!r} of node {spec.name!r}: field name {s.name!r} is reserved in transcript turns; pick another field")
                owner.setdefault(s.key, spec.name)
                self.slots[s.key] = s
        for spec in self.nodes.values():
            for k in (*spec.reads, *(spec.write_keys or ())):
                if k not in self.slots:
                    raise TherasimError(
                        f"node {spec.name!r} names scratch slot {k!r}, which no node declares; declare it in that node's writes as Slot({k!r}, ...) "
                        f"or use one of {sorted(self.slots)}"
                    )
        self._current_for = {side: frozenset(k for k, s in self.slots.items() if side in (s.readers or ())) for side in ("client", "counselor")}
        self._hidden_turn_fields = frozenset(s.name for s in self.slots.values() if s.record and "counselor" not in (s.readers or ()) and not s.speech)
        # the recorded fields of slots declared readable by the client (none built in)
        self._client_turn_fields = tuple(s.name for s in self.slots.values() if s.record and not s.speech and "client" in (s.readers or ()))

    # views -------------------------------------------------------------------
    def current_for(self, side: Side) -> frozenset[str]:
        """Scratch keys a node of ``side`` may read."""
        return self._current_for[side]  # type: ignore[index]

    def transcript_for(self, side: Side, turns: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The transcript as ``side`` may see it: the client hears only who said what;
        the counselor side loses the fields of client-only slots (inner state, notes)."""
        if side == "client":
            # plus the recorded fields of slots declared readable by the client (e.g. the
            # counselor move labels its appraisal reads); no built-in slot is
            shown = self._client_turn_fields
            if not shown:
                return [{"speaker": t["speaker"], "text": t["text"]} for t in turns]
            return [{"speaker": t["speaker"], "text": t["text"], **{k: t[k] for k in shown if t.get(k) is not None}} for t in turns]
        # A copy of each turn less its hidden fields (the same keys in the same order as
        # a filtering comprehension; dict() copies in C, several times faster per turn).
        hidden = self._hidden_turn_fields
        out = []
        for t in turns:
            d = dict(t)
            for k in hidden:
                d.pop(k, None)
            out.append(d)
        return out

    # writes ------------------------------------------------------------------
    def check_writes(self, node: str, current: Mapping[str, Any]) -> None:
        """A node may write only declared slots: an undeclared key would be dropped
        from every view, the transcript and the export, so it is an error."""
        unknown = sorted(k for k in current if k not in self.slots and k != "__reset__")
        if unknown:
            raise TherasimError(
                f"node {node!r} wrote scratch key(s) {unknown} that no node declares; declare them in its NodeSpec, "
                f"e.g. writes=(Slot({unknown[0]!r}, turn='counselor'),), or write one of {sorted(self.slots)}"
            )

    def speech_keys(self, spec: NodeSpec) -> tuple[str, ...]:
        """Where a node's plain-text output goes: its speech slots."""
        return tuple(k for k in spec.write_keys or () if self.slots[k].speech)

    def turn_of_calls(self, node: str) -> Turn:
        """Model calls go with the client turn when the node records something on it
        (it reads the client's utterance), else with the counselor turn."""
        spec = self.nodes.get(node)
        if spec is None:
            return "counselor"
        keys = spec.write_keys
        if keys is None:
            return "client" if spec.side == "client" else "counselor"
        return "client" if any(self.slots[k].turn == "client" and self.slots[k].record for k in keys) else "counselor"

    # record ------------------------------------------------------------------
    def record(self, cur: Mapping[str, Any], exchange: int, base: int) -> list[dict[str, Any]]:
        """The transcript turns of one finished exchange (client turn, counselor turn)."""
        calls = cur.get("calls") or {}
        turns: list[dict[str, Any]] = []
        for turn in ("client", "counselor"):
            slots = [s for s in self.slots.values() if s.record and s.turn == turn]
            speech = [cur.get(s.key) for s in slots if s.speech]
            text = functools.reduce(lambda a, b: a or b, speech) if speech else None
            if text is None:
                continue
            rec: dict[str, Any] = {"index": base + len(turns), "exchange": exchange, "speaker": turn, "text": text}
            for s in slots:
                if not s.speech:
                    v = cur.get(s.key)
                    rec[s.name] = (v or None) if s.none_if_empty else v
            rec["calls"] = {k: v for k, v in calls.items() if self.turn_of_calls(k) == turn}
            turns.append(rec)
        return turns

    def caps(self, overrides: Mapping[str, int] | None = None) -> dict[str, int]:
        """Token cap per node: the spec's, unless ``overrides`` (``SimContext.max_tokens``) names the node."""
        out = {n: s.max_tokens for n, s in self.nodes.items() if s.max_tokens}
        out.update(overrides or {})
        return out  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def builtin_contract() -> ExchangeContract:
    """The contract of the built-in slots alone (views of a state with no graph)."""
    return ExchangeContract()
