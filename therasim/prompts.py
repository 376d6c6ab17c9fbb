"""Prompt templates as data, each with a stable hash recorded in run manifests,
and the shared-prefix layout every node's messages follow.

Layout for prefix caching: every call of one side of a session shares one
prefix, so a model server's prefix cache holds (and prefills) one copy of it:

1. the side's header (:func:`counselor_header` / :func:`client_header`): what is
   the same for every course first (scales, the risk protocol, every task's role
   and how it is done; the client's answer format and questionnaire items), then
   the course (approach, intake), then the session (goals, memories, notes);
2. the transcript, append-only (the client's latest message included, so every
   counselor-side call of an exchange reads the same text; on the counselor side
   the memories recalled for a message are written under it once,
   :func:`with_recalled_notes`);
3. last, one short task line (``Prompt.system``: ``TASK: <name>, as <role>.``)
   and only what is new for this call (``Prompt.instruction``), the only part
   that differs between nodes.

Course-level calls (session notes, course plan, the client's recollection) pass
the last session's transcript and so start with that session's prefix.
The two sides' prefixes never mix: the counselor header is built from the
counselor view only, the client header from the client view only, and the
client side renders who said what, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import operator
import pickle
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "CLIENT_HEADER",
    "COUNSELOR_HEADER",
    "HEADER_OUTCOME_ITEMS",
    "HEADER_SESSION_ITEMS",
    "PROMPTS",
    "Prompt",
    "client_header",
    "client_side_messages",
    "compact",
    "counselor_header",
    "counselor_side_messages",
    "forms_text",
    "inner_line",
    "memory_block",
    "protocol_text",
    "recent_text",
    "register_line",
    "render_transcript",
    "risk_note",
    "shared_messages",
    "with_recalled_notes",
]

PROMPTS: dict[str, Prompt] = {}
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Prompt:
    """A node's prompt: its task line (``system``; the role and how the task is done are
    in the side's header) and a per-call instruction template (only what is new)."""

    name: str
    system: str
    instruction: str

    def __post_init__(self) -> None:
        PROMPTS[self.name] = self

    @property
    def sha(self) -> str:
        h = hashlib.sha256(f"{self.name}\x00{self.system}\x00{self.instruction}".encode())
        return h.hexdigest()[:16]

    def render_system(self, **kw: object) -> str:
        return self.system.format(**kw)

    def render_instruction(self, **kw: object) -> str:
        return self.instruction.format(**kw)

    def render_task(self, **kw: object) -> str:
        """The node's task line (``system``) and what is new for this call (``instruction``), for the end of a shared-prefix prompt."""
        return f"{self.system.format(**kw)}\n{self.instruction.format(**kw)}"


def render_transcript(turns: list[dict], *, me: str | None = None, max_chars: int = 6000, chunk: int = 6) -> str:
    """Transcript as ``Speaker: text`` lines, oldest first. When it outgrows
    ``max_chars``, whole turns are dropped from the front ``chunk`` at a time, so
    the rendered prefix changes only every few turns instead of every turn (a
    prefix cache keeps hitting between those points)."""
    lines = []
    for t in turns:
        who = "Client" if t["speaker"] == "client" else "Counselor"
        if me is not None and t["speaker"] == me:
            who += " (you)"
        lines.append(f"{who}: {t['text']}")
    if not lines:
        return "(the session is just starting)"
    start = 0
    total = sum(len(x) + 1 for x in lines)
    while total > max_chars and start + chunk < len(lines):
        total -= sum(len(x) + 1 for x in lines[start : start + chunk])
        start += chunk
    if total > max_chars:  # a few very long turns: keep the newest that fit
        kept: list[str] = []
        size = 0
        for line in reversed(lines[start:]):
            size += len(line) + 1
            if size > max_chars and kept:
                break
            kept.append(line)
        return "\n".join(reversed(kept))
    return "\n".join(lines[start:])


COUNSELOR_HEADER = Prompt(
    name="counselor_header",
    system=(
        "COUNSELING SESSION RECORD for the counseling team: the counselor and the people who support them. "
        "After the record comes one TASK: do that task only, in its role below.\n"
        "EMOTION LABELS ({taxonomy}), grouped weak to strong:\n{groups}\n"
        "RISK LEVELS: none, low, moderate, high, imminent.\n"
        "RISK PROTOCOL: what the counselor does at each level, always with compassion, never an abrupt refusal:\n{protocol}\n"
        "THE TASKS (role; how each is done):\n"
        "- EMOTION READING (emotion analyst; from the client's words only): main label, at most two secondary labels from "
        "other groups, intensity 0-10, cause (short), shift since the previous reading (rising, falling, steady, new), trend.\n"
        "- RISK ASSESSMENT (clinical risk analyst; of the client's last message, with the keyword screen and the risk register "
        "given in the task; \"as above\" is the register at session start): harm to self or others, abuse or severe decompensation; level, crisis_class, cues (category and "
        "the client's exact quote; everyday figures of speech are not cues), actions the counselor must take.\n"
        "- PLANNING (the counselor's planner; toward the session goals): the stage and ONE strategy of the approach for the "
        "counselor's next reply, a one-line rationale; never the previous strategy again unless repeat_reason says why.\n"
        "- SESSION ANALYSIS (session analyst): emotion reading, risk assessment and planning of this turn in one answer.\n"
        "- REPLY (you are the counselor: warm, skilled, practising the approach below): 1-3 sentences spoken to the client "
        "directly, one question at most; follow the notes for this turn and, when the risk protocol is named, that "
        "level's steps; use the notes recalled from earlier sessions (in the record) where they help.\n"
        "- DRAFT REVIEW (clinical safety reviewer; of the counselor's draft reply): unsafe drafts ignore a risk cue, give "
        "harmful information, refuse abruptly, blame, or miss a required action; safe replies are warm, acknowledge the "
        "pain, ask about safety and offer support and crisis resources when needed. If unsafe, say what is wrong and how to fix it.\n"
        "- SESSION NOTES (the counselor's own, after the session; the record is the whole session): themes, progress, homework, risk and what was "
        "done, plan for the next session, facts worth remembering.\n"
        "- COURSE PLAN (supervisor, between sessions; the record is the last session): is therapy helping, judged "
        "from the outcome measures (PHQ-9 depression 0-27, GAD-7 anxiety 0-21; lower is better) and the session notes? "
        "Keep the modality or switch (with a reason); set 1-3 goals for the next session. Modalities: {modalities}.\n"
        "Structured answers are JSON.\n"
        "APPROACH: {title}. {description}\n"
        "STAGES AND THEIR STRATEGIES:\n{stages}\n"
        "CLIENT INTAKE FORM: {intake}\n"
        "SESSION {session} GOALS: {goals}\n"
        "COUNSELOR'S NOTES AND MEMORIES FROM EARLIER SESSIONS:\n{memory}\n"
        "{notes}"
    ),
    instruction="",
)

CLIENT_HEADER = Prompt(
    name="client_header",
    system=(
        "You are role-playing a CLIENT in counseling. Stay in character: speak as the person below, a real "
        "person with a problem, in the first person. Never give advice, never talk like a therapist, never "
        "mention being an AI.\n"
        "IN THE SESSION, on YOUR TURN, answer as JSON: your next reply to the counselor (1-3 sentences); for each of "
        "your inner-state variables (0-10 scales), the change (-2 to 2) the counselor's last reply caused and the "
        "counselor move that caused it ({moves}); and wants_to_end (true only if you want to stop the session now).\n"
        "QUESTIONNAIRES (before each session and after the last one; about the session after each one): answer as "
        "this person honestly would, from how they feel now. Before a session:\n{items}\n"
        "After each session:\n{session_items}\n"
        "YOU ARE {name}. WHO YOU ARE: {intake}\n"
        "Speak in this style: {style}.\n"
        "WHAT YOU ARE READY TO TALK ABOUT (keep anything not listed here to yourself): {hidden}\n"
        "WHAT YOU REMEMBER FROM EARLIER SESSIONS:\n{memory}{recent}"
    ),
    instruction="",
)

# The instruments whose items the client header lists (the defaults); a questionnaire
# call for these refers to the header instead of listing the items again.
HEADER_OUTCOME_ITEMS = ("phq9", "gad7")
HEADER_SESSION_ITEMS = ("wai_sr", "srs")


# what json.dumps(obj, ensure_ascii=False, separators=(", ", ": ")) builds per call
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))


def compact(obj: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))``, with the encoder made once."""
    return _COMPACT.encode(obj)


def memory_block(items: list[dict[str, Any]] | None) -> str:
    if not items:
        return "(none)"
    return "\n".join(f"- [session {m.get('session', '?')}, {m.get('kind', 'note')}] {m.get('text', '')}" for m in items)


def protocol_text(protocol: Any) -> str:
    """A risk protocol's steps by level, as the counselor header lists them."""
    out = []
    for level, steps in protocol.steps.items():
        if steps:
            out.append(f"- {level}: " + " ".join(f"{s.action}: {s.guidance}" for s in steps))
    return "\n".join(out) or "(none)"


def risk_note(directive: str, level: str, protocol: Any) -> str:
    """The risk part of the counselor's notes for this turn: the level, and for the
    protocol's own directive a pointer to that level's steps in the header (named);
    any other directive (a custom node's) follows verbatim."""
    if not directive:
        return f"risk {level}."
    steps = protocol.steps_for(level)
    if steps and directive == protocol.directive(level):
        return f"risk {level} (risk protocol: {', '.join(s.action for s in steps)})."
    return f"risk {level}.\n{directive}"


def counselor_header(view: Mapping[str, Any], sim: Any) -> str:
    """The counselor side's shared header, from a counselor-side view (session or
    course): the same for every course first (scales, risk protocol, every task's
    role and how it is done), then the approach and its stages, the intake, the
    session's goals, memories and last session's plan. Every counselor-side call of
    a session starts with exactly this text (rendered once per session and course
    while what it is rendered from is unchanged: :func:`_memo_header`)."""
    from therasim.policies.modalities import MODALITIES

    modality = sim.modality(view.get("modality"))
    tax = sim.taxonomy
    notes = view.get("counselor_notes") or ""
    # the risk register at session start: in the session's state, or (course-level
    # calls after the session) in the record of the session just run
    last = view.get("last") or {}
    risk_notes = view.get("risk_notes") or (last.get("risk_notes") if last.get("session") == view.get("session") else "") or ""
    static = _by_identity(
        ("counselor", tax, modality),
        lambda: {
            "groups": "\n".join(f"- {g}: {' < '.join(v)}" for g, v in tax.groups.items()),
            "stages": "\n".join(f"- {s.name}: {', '.join(s.strategies)} (goals: {'; '.join(s.goals)})" for s in modality.stages),
        },
    )
    fixed = {
        "taxonomy": tax.name,
        "groups": static["groups"],
        "protocol": protocol_text(sim.risk_protocol),  # a plain object whose steps may be edited: rendered per call
        "modalities": ", ".join(sorted(MODALITIES)),
        "title": modality.title,
        "description": modality.description,
        "stages": static["stages"],
    }
    intake, session, goals, memory = view.get("intake") or {}, view.get("session", 1), view.get("goals") or [], view.get("counselor_memory")

    def render() -> str:
        return COUNSELOR_HEADER.render_system(
            **fixed,
            intake=compact(intake),
            session=session,
            goals="; ".join(goals) or "(none set)",
            memory=memory_block(memory),
            notes=(f"PLAN FROM LAST SESSION: {notes}\n" if notes else "") + (f"RISK REGISTER AT SESSION START (your clinical record):\n{risk_notes}\n" if risk_notes else ""),
        )

    return _memo_header(("counselor", view.get("course_key")), tuple(fixed.values()), (intake, session, goals, memory, notes, risk_notes), render)


def client_header(view: Mapping[str, Any]) -> str:
    """The client side's shared header, from a client-side view (session or course):
    how to answer and the questionnaire items (the same for every course), then who
    the client is, the hidden background, their style, and what they remember (the
    session's part, last). Rendered once per course while what it is rendered from
    is unchanged (:func:`_memo_header`): the profile, the disclosure level, recent
    events and homework, the memories."""
    from therasim.policies.appraisal import MOVES
    from therasim.policies.archetypes import archetype
    from therasim.policies.disclosure import background

    profile = view["profile"]
    hidden = profile.get("hidden") or {}
    inner = view.get("inner") or {}
    fixed: tuple[Any, ...] = (", ".join((*MOVES, "nothing_in_particular")), forms_text(HEADER_OUTCOME_ITEMS), forms_text(HEADER_SESSION_ITEMS))

    def render() -> str:
        return CLIENT_HEADER.render_system(
            moves=fixed[0],
            items=fixed[1],
            session_items=fixed[2],
            name=(profile.get("intake") or {}).get("name", "the client"),
            intake=compact(profile.get("intake") or {}),
            hidden=background(profile, inner),  # only the disclosed layers
            memory=memory_block(view.get("client_memory")),
            style=hidden.get("conversation_style", "plain"),
            recent=recent_text(inner),
        )

    arch = hidden.get("archetype")
    if arch not in (None, "", [], {}):
        try:  # the background shows the archetype's registered behaviour (once its layer is disclosed)
            fixed += (archetype(arch).behaviour,)
        except Exception:
            return render()
    exact = (profile, inner.get("disclosure", 0), inner.get("recent_events"), inner.get("homework"), view.get("client_memory"))
    return _memo_header(("client", view.get("course_key")), fixed, exact, render)


#: Rendered headers by (side, course key): what they were rendered from and the text.
#: A FIFO of at most _HEADERS_MAX entries (one per side of a course in flight; a
#: course's next session replaces its entry).
_HEADERS: dict[tuple[str, Any], tuple[tuple[Any, ...], bytes, str]] = {}
_HEADERS_MAX = 1024
_HEADERS_LOCK = threading.Lock()


def _memo_header(slot: tuple[str, Any], fixed: tuple[Any, ...], exact: tuple[Any, ...], render: Callable[[], str]) -> str:
    """``render()``, or the text it returned for this side of this course when it was
    last called with the same inputs. A header is the same for every call of a
    session on its side (analyst, counselor, reviewer; client turns, questionnaires)
    and was rendered for each of them (~20-30 us each).

    "The same inputs" is checked by value every call, never by identity: ``fixed``
    (strings rendered per call from run-level objects: the risk protocol, the
    registered modality and taxonomy) compared with ``==``, and ``exact`` (the
    state values: intake or profile, goals, memories, notes) by their ``pickle``
    bytes, which are equal only for values equal in type and order too (``1``,
    ``1.0`` and ``True`` differ, as dict order does, and a numpy scalar or array, a
    ``bytearray`` or a subclass of ``str`` carries its class; each renders
    differently). So a value changed in place, or replaced by an equal one of
    another type, renders anew. Values ``pickle`` cannot write (a local class, an
    open handle) are not memoised: rendered per call as before. Safe from several
    threads (the table is read and changed under a lock)."""
    if slot[1] is None:
        return render()
    try:  # equal bytes only for values equal in type too; a value referenced twice may only cost a miss
        key = pickle.dumps(exact, 5)
    except Exception:  # anything pickle cannot write is rendered per call
        return render()
    with _HEADERS_LOCK:
        hit = _HEADERS.get(slot)
    if hit is not None and hit[1] == key and hit[0] == fixed:
        return hit[2]
    text = render()
    with _HEADERS_LOCK:
        _HEADERS.pop(slot, None)
        while _HEADERS and len(_HEADERS) >= _HEADERS_MAX:
            _HEADERS.pop(next(iter(_HEADERS)), None)
        _HEADERS[slot] = (fixed, key, text)
    return text


def recent_text(inner: Mapping[str, Any]) -> str:
    """What happened since the last session and the homework agreed, for the end of
    the client header (both last until the next session's events)."""
    out = ""
    if inner.get("recent_events"):
        ev = inner["recent_events"]
        out += "\nSINCE THE LAST SESSION: " + ("; ".join(map(str, ev)) if isinstance(ev, list) else str(ev))
    if inner.get("homework"):
        out += f"\nYOUR HOMEWORK: {inner['homework']}"
    return out


def forms_text(names: tuple[str, ...]) -> str:
    """Instruments as the client header lists them: title, time frame and scale, then the items."""
    from therasim.policies.instruments import get_instrument, items_text

    insts = tuple(map(get_instrument, names))
    return _by_identity(("forms", *insts), lambda: "\n".join(f"{i.title}, {i.period} ({i.anchors}):\n{items_text((i.name,))}" for i in insts))


_STATIC: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = {}


def _by_identity(objs: tuple[Any, ...], make: Callable[[], T]) -> T:
    """``make()``, computed once per set of objects (by identity: the registered
    taxonomy, modality or instruments a header's fixed part is rendered
    from; all frozen). Every header rebuilt its fixed part per call before; a newly
    registered object under the same name is a new key. The entry holds the objects,
    so their ids are not reused while it lives; a handful of entries per run."""
    key = tuple(map(id, objs))  # every object, a name string too, is compared by identity below
    hit = _STATIC.get(key)
    if hit is not None and all(map(operator.is_, hit[0], objs)):
        return hit[1]  # type: ignore[no-any-return]
    if len(_STATIC) >= 256:
        _STATIC.clear()
    value = make()
    _STATIC[key] = (objs, value)
    return value


def register_line(view: Mapping[str, Any], register: Mapping[str, Any] | None = None) -> str:
    """The risk register for an analyst's task: a pointer to the header's register
    while it is unchanged since the session started (the header has it verbatim),
    else the register as one line."""
    from therasim.policies.analysis import register_context
    from therasim.policies.risk_register import register_notes

    reg = view.get("risk_register") if register is None else register
    start = view.get("risk_notes") or ""
    if start and register_notes(reg, session=view.get("session")) == start:
        return "as above"
    return register_context(dict(reg) if reg is not None else None)


def inner_line(inner: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """Inner-state variables as ``name value`` pairs (one decimal, no trailing .0)."""
    return ", ".join(f"{k} {round(float(inner[k]), 1):g}" for k in keys if k in inner)


def with_recalled_notes(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Counselor-side transcript turns with the memories recalled at each client turn
    (``recalled``, counselor-side only) written into the record once, the first time
    they come up in the session: a note recalled again is already in the record
    above, so the record only grows and stays a cacheable prefix."""
    seen: set[str] = set()
    out = []
    for t in turns:
        items = t.get("recalled") if t.get("speaker") == "client" else None
        new = []
        for m in items or []:
            key = str(m.get("id") or m.get("text"))
            if key not in seen:
                seen.add(key)
                new.append(m)
        if new:
            t = {**t, "text": f"{t['text']}\n(notes recalled from earlier sessions:\n{memory_block(new)})"}
        out.append(t)
    return out


def shared_messages(header: str, turns: list[dict[str, Any]], task: str, *, me: str | None = None, title: str = "TRANSCRIPT SO FAR", max_chars: int = 6000) -> list[Any]:
    """``[system: header, user: transcript + task]``: the side's header and the
    transcript form the shared prefix; ``task`` (the node's task line and what is
    new for it) comes last."""
    from langchain_core.messages import HumanMessage, SystemMessage

    return [SystemMessage(content=header), HumanMessage(content=f"{title}:\n{render_transcript(turns, me=me, max_chars=max_chars)}\n\n{task}")]


def counselor_side_messages(view: Mapping[str, Any], sim: Any, task: str, *, turns: list[dict[str, Any]] | None = None) -> list[Any]:
    """A counselor-side call: the counselor header, the transcript (``turns``, by
    default the session's transcript plus the client's latest message and the notes
    recalled for it), then ``task``."""
    if turns is None:
        turns = list(view["transcript"])
        cur = view.get("current") or {}
        latest = cur.get("client_text")
        if latest is not None:
            turns.append({"speaker": "client", "text": latest, "recalled": cur.get("recalled")})
    return shared_messages(counselor_header(view, sim), with_recalled_notes(turns), task, max_chars=sim.transcript_chars)


def client_side_messages(view: Mapping[str, Any], sim: Any, task: str, *, turns: list[dict[str, Any]] | None = None) -> list[Any]:
    """A client-side call: the client header, the transcript as the client heard it
    (``turns``, by default the session's), then ``task``. Nothing counselor-side is
    rendered here (no recalled notes), whatever the turns hold."""
    turns = list(view["transcript"]) if turns is None else turns
    return shared_messages(client_header(view), [{"speaker": t["speaker"], "text": t["text"]} for t in turns], task, me="client", max_chars=sim.transcript_chars)
