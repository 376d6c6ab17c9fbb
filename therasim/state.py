"""State of one session and of a course, and the per-node input views that make
the double-blind structural.

State holds plain JSON-able data. The transcript is append-only and stored in a
LangGraph ``DeltaChannel``: checkpoints keep only each step's new turns, so
checkpoint storage grows linearly with turns instead of quadratically.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any

from langgraph.channels import DeltaChannel
from typing_extensions import (
    TypedDict,  # pydantic (LangGraph's schema generation) needs it before Python 3.12
)

from therasim.contract import ExchangeContract, ExchangeScratch, Side, builtin_contract
from therasim.errors import TherasimError

__all__ = [
    "CLIENT_KEYS",
    "COUNSELOR_KEYS",
    "COURSE_CLIENT_KEYS",
    "COURSE_COUNSELOR_KEYS",
    "BlindViewError",
    "CourseState",
    "ExchangeScratch",
    "SessionState",
    "Side",
    "View",
    "make_course_view",
    "make_view",
]

def append_turns(state: Sequence[dict], writes: Sequence[Sequence[dict]]) -> list[dict]:
    """DeltaChannel reducer: append every write's turns (batching-invariant)."""
    out = list(state)
    for w in writes:
        out.extend(w)
    return out


def merge_current(left: dict | None, right: dict | None) -> dict:
    """Per-exchange scratch: shallow merge, ``calls`` merged one level deeper;
    ``{"__reset__": True}`` clears it at the end of an exchange."""
    left = left or {}
    if not right:
        return left
    if right.get("__reset__"):
        return {k: v for k, v in right.items() if k != "__reset__"}
    out = {**left, **right}
    if "calls" in left and "calls" in right:
        out["calls"] = {**left["calls"], **right["calls"]}
    return out


def replace_last(state: Any, writes: Sequence[Any]) -> Any:
    """DeltaChannel reducer with plain overwrite semantics (batching-invariant)."""
    return writes[-1] if writes else state


def merge_current_all(state: dict | None, writes: Sequence[dict | None]) -> dict:
    """DeltaChannel form of :func:`merge_current`: a fold over the batch."""
    out = state or {}
    for w in writes:
        out = merge_current(out, w)
    return out


def _static() -> DeltaChannel:
    # Stored once when written, not again in every step's checkpoint.
    return DeltaChannel(replace_last, snapshot_frequency=1000)


class SessionState(TypedDict, total=False):
    # identity
    run_id: str
    client_id: str
    session: int
    course_key: str
    # counselor-visible context
    modality: Annotated[str, _static()]
    goals: Annotated[list[str], _static()]
    intake: Annotated[dict[str, Any], _static()]
    counselor_memory: Annotated[list[dict[str, Any]], _static()]
    counselor_notes: Annotated[str, _static()]
    # the course's risk register (policies.risk_register; the counselor's clinical
    # record, written by the risk node) and its notes at session start
    risk_register: Annotated[dict[str, Any], _static()]
    risk_notes: Annotated[str, _static()]
    # client-only (hidden from every counselor-side node)
    profile: Annotated[dict[str, Any], _static()]
    inner: Annotated[dict[str, Any], _static()]
    client_memory: Annotated[list[dict[str, Any]], _static()]
    # the conversation
    transcript: Annotated[list[dict[str, Any]], DeltaChannel(append_turns, snapshot_frequency=1000)]
    current: Annotated[ExchangeScratch, DeltaChannel(merge_current_all, snapshot_frequency=1000)]
    exchange: int
    ended: bool
    end_reason: str | None


# Keys each side may read. System nodes (termination, record) see everything.
COUNSELOR_KEYS = frozenset(
    {"run_id", "client_id", "session", "course_key", "modality", "goals", "intake", "counselor_memory", "counselor_notes", "transcript", "current", "exchange", "ended", "end_reason"}
    | {"risk_register", "risk_notes"}
)
CLIENT_KEYS = frozenset({"run_id", "client_id", "session", "course_key", "profile", "inner", "client_memory", "transcript", "current", "exchange", "ended"})
# Fields of the per-exchange scratch each side may read (of the built-in slots; a
# graph's own contract adds the slots its nodes declare): derived, see therasim.contract.
_CURRENT_FOR = {side: builtin_contract().current_for(side) for side in ("counselor", "client")}


class BlindViewError(TherasimError, KeyError):
    """A node asked for a field its side may not see (double-blind)."""


class View(Mapping[str, Any]):
    """Read-only projection of the state for one side. Reading a hidden field raises
    :class:`BlindViewError` instead of returning it."""

    __slots__ = ("_data", "_hidden", "node", "side")

    def __init__(self, data: dict[str, Any], side: Side, node: str, hidden: frozenset[str]) -> None:
        self._data = data
        self.side = side
        self.node = node
        self._hidden = hidden

    def __getitem__(self, key: str) -> Any:
        if key in self._hidden:
            raise BlindViewError(f"{self.side}-side node {self.node!r} may not read {key!r} (double-blind)")
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)


def make_view(state: Mapping[str, Any], side: Side, node: str, contract: ExchangeContract | None = None) -> View:
    """Project ``state`` onto what a node of ``side`` may see. ``contract`` (the
    session graph's) says which scratch slots and transcript fields each side reads;
    without one, the built-in slots'."""
    if side == "system":
        return View(dict(state), side, node, frozenset())
    c = contract or builtin_contract()
    allowed = COUNSELOR_KEYS if side == "counselor" else CLIENT_KEYS
    data: dict[str, Any] = {k: v for k, v in state.items() if k in allowed}
    cur = state.get("current") or {}
    readable = c.current_for(side)
    data["current"] = {k: v for k, v in cur.items() if k in readable}
    # The client hears only what was said: no analyst outputs, plans or notes.
    data["transcript"] = c.transcript_for(side, state.get("transcript", []))
    hidden = frozenset(state.keys() - data.keys())
    return View(data, side, node, hidden)


def _append(state: Sequence[dict], writes: Sequence[Sequence[dict]]) -> list[dict]:
    return append_turns(state, writes)


class CourseState(TypedDict, total=False):
    """State of one course (the cross-session loop). Histories are append-only
    DeltaChannels so course checkpoints also grow linearly with sessions."""

    # identity and schedule
    run_id: str
    client_id: str
    course_key: str
    session: int  # the session being prepared or run (1-based)
    sessions_planned: int
    done: bool
    # counselor-visible
    modality: Annotated[str, _static()]
    goals: Annotated[list[str], _static()]
    intake: Annotated[dict[str, Any], _static()]
    counselor_notes: Annotated[str, _static()]
    counselor_memory: Annotated[list[dict[str, Any]], _static()]
    measures: Annotated[list[dict[str, Any]], DeltaChannel(_append, snapshot_frequency=1000)]
    summaries: Annotated[list[dict[str, Any]], DeltaChannel(_append, snapshot_frequency=1000)]
    plans: Annotated[list[dict[str, Any]], DeltaChannel(_append, snapshot_frequency=1000)]
    risk_register: Annotated[dict[str, Any], _static()]
    # client-only
    profile: Annotated[dict[str, Any], _static()]
    inner: Annotated[dict[str, Any], _static()]
    client_memory: Annotated[list[dict[str, Any]], _static()]
    recollections: Annotated[list[dict[str, Any]], DeltaChannel(_append, snapshot_frequency=1000)]
    events: Annotated[list[dict[str, Any]], DeltaChannel(_append, snapshot_frequency=1000)]
    # the session just run (both sides' data; views project it)
    last: Annotated[dict[str, Any], _static()]
    # system: scratch for the session being assembled, and finished session records
    pending: Annotated[dict[str, Any], DeltaChannel(merge_current_all, snapshot_frequency=1000)]
    records: Annotated[list[dict[str, Any]], DeltaChannel(_append, snapshot_frequency=1000)]


COURSE_COUNSELOR_KEYS = frozenset(
    {"run_id", "client_id", "course_key", "session", "sessions_planned", "done", "modality", "goals", "intake", "counselor_notes", "counselor_memory", "measures", "summaries", "plans", "last"}
    | {"risk_register"}
)
COURSE_CLIENT_KEYS = frozenset(
    {"run_id", "client_id", "course_key", "session", "sessions_planned", "done", "profile", "inner", "client_memory", "recollections", "events", "measures", "last"}
)


def make_course_view(state: Mapping[str, Any], side: Side, node: str) -> View:
    """Project course state onto one side. ``last`` (the session just run) is cut
    down the same way as the session view: the counselor side loses the client's
    inner state per turn, the client side keeps only who said what."""
    if side == "system":
        return View(dict(state), side, node, frozenset())
    allowed = COURSE_COUNSELOR_KEYS if side == "counselor" else COURSE_CLIENT_KEYS
    data: dict[str, Any] = {k: v for k, v in state.items() if k in allowed}
    last = state.get("last") or {}
    turns = last.get("transcript") or []
    shown = builtin_contract().transcript_for(side, turns)
    if side == "client":
        data["last"] = {"session": last.get("session"), "transcript": shown}
    else:
        data["last"] = {
            "session": last.get("session"),
            "end_reason": last.get("end_reason"),
            "modality": last.get("modality"),
            "goals": last.get("goals"),
            "risk_notes": last.get("risk_notes") or "",  # the counselor's own clinical record
            "transcript": shown,
        }
    hidden = frozenset(state.keys() - data.keys())
    return View(data, side, node, hidden)
