"""Client node: role-plays from the disclosed layers of a hidden profile and updates
its hidden inner state every turn by appraising the counselor's last reply.

The model proposes a change for every inner variable, naming the counselor move
behind it; the appraisal policy (:mod:`therasim.policies.appraisal`) reads the
move from the reply's text and the analyst labels, and the dynamics policy
(:mod:`therasim.policies.dynamics`) bounds and steers the proposal and caps it per
turn and per session. The disclosure level, which decides the layers the prompt
holds (:mod:`therasim.policies.disclosure`), follows the alliance and the
counselor's exploration. Every change is in the turn's note with its reason.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from therasim.context import NodeContext, clean_utterance, two_words
from therasim.contract import NodeSpec
from therasim.errors import StructuredOutputError
from therasim.nodes._common import last_turn, text_field
from therasim.policies.appraisal import MOVES, appraise
from therasim.policies.archetypes import archetype
from therasim.policies.disclosure import next_level
from therasim.policies.dynamics import LEAVES_AT, VARIABLES, WANTS_TO_END_BELOW, update_inner
from therasim.prompts import Prompt, client_side_messages, inner_line
from therasim.state import View

__all__ = ["PROMPT", "SPEC", "Change", "ClientTurn", "client"]

PROMPT = Prompt(
    name="client",
    system="YOUR TURN, as {name}.",
    instruction="Inner state now (private, 0-10): {inner}. The counselor's last reply landed as: {landed}. Your answer as JSON:",
)

_THERAPIST_TALK = re.compile(
    r"\b(?:as (?:a|your) (?:therapist|counsel+or)|as an ai|i am an ai|i'm an ai|language model|how does that make you feel)\b",
    re.IGNORECASE,
)
_META_TALK = re.compile(r"\b(?:value error|json|schema|utterance|inner state|wants_to_end)\b", re.IGNORECASE)

Cause = Literal[(*MOVES, "nothing_in_particular")]  # type: ignore[valid-type]


class Change(BaseModel):
    """A proposed change of one inner variable and the counselor move that caused it."""

    delta: int = Field(ge=-2, le=2)
    because: Cause  # type: ignore[valid-type]


class Changes(BaseModel):
    distress: Change
    hopelessness: Change
    anxiety: Change
    self_efficacy: Change
    alliance: Change
    wish_to_continue: Change


class ClientTurn(BaseModel):
    """The client's next utterance and its proposed inner-state changes."""

    utterance: str = text_field(300)
    changes: Changes
    wants_to_end: bool

    @field_validator("utterance")
    @classmethod
    def _in_character(cls, v: str) -> str:
        v = clean_utterance(v)
        if not two_words(v):
            raise ValueError("utterance must be at least two words of speech")
        if _META_TALK.search(v):
            raise ValueError("utterance must be the client's speech, not notes about the format")
        if _THERAPIST_TALK.search(v):
            raise ValueError("the client broke character (talked like a therapist or an AI); answer as the client")
        return v.strip()


def _landed(appraisal: dict[str, Any] | None) -> str:
    if appraisal is None:
        return "(the session is just starting)"
    moves = appraisal["moves"]
    if not moves:
        return "nothing in particular"
    return ", ".join(m.replace("_", " ") for m in sorted(moves, key=lambda m: -moves[m]))


async def client(view: View, ctx: NodeContext) -> dict[str, Any]:
    """Produce the client's next utterance; update the hidden inner state."""
    profile = view["profile"]
    inner = dict(view["inner"])
    hidden = profile["hidden"]
    session = int(view.get("session") or 1)
    exchange = int(view.get("exchange") or 0)
    transcript = view["transcript"]
    # The counselor's last reply and the client words it answered.
    appraisal = None
    if transcript and transcript[-1].get("speaker") == "counselor":
        prev_client = last_turn(transcript[:-1], "client") or {}
        course_exchange = exchange if session == 1 else 99
        appraisal = appraise(transcript[-1]["text"], prev_client.get("text", ""), transcript[-1].get("move_labels"), exchange=course_exchange)
    arch = archetype(hidden.get("archetype"))
    name = profile["intake"]["name"]
    # homework and recent events are at the end of the header (prompts.recent_text)
    task = PROMPT.render_task(name=name, inner=inner_line(inner, VARIABLES), landed=_landed(appraisal))
    # the shared client-side prefix: the header shows only the disclosed layers (policies/disclosure.py)
    messages = client_side_messages(view, ctx.sim, task)
    note: dict[str, Any] = {}
    proposals: dict[str, dict[str, Any]] | None = None
    wants_to_end = False
    try:
        turn = await ctx.structured("client", ClientTurn, messages)
        text = turn.utterance
        proposals = turn.changes.model_dump()
        wants_to_end = turn.wants_to_end
    except StructuredOutputError as e:
        # Degrade openly: plain-text utterance; the inner state follows the appraisal alone.
        plain = client_side_messages(view, ctx.sim, f"YOUR TURN, as {name}: your next reply to the counselor, 1-3 sentences, as plain text.")
        text = await ctx.text("client", plain)
        note["degraded"] = f"no proposals: {e.schema_name} invalid after {e.attempts} attempts; changes follow the appraisal alone"
    if appraisal is not None:
        inner, updates = update_inner(inner, appraisal, proposals, archetype_name=hidden.get("archetype"), session=session)
        note["appraisal"] = appraisal
        note["updates"] = [u for u in updates if u["delta"] or u["proposed"]]
        moves = appraisal["moves"]
        if max(moves.get("exploration", 0.0), moves.get("reflection", 0.0)) >= 0.5:
            inner["explored"] = int(inner.get("explored", 0)) + 1
    prev_level = int(inner.get("disclosure", 0))
    level, why = next_level(prev_level, float(inner.get("alliance", 0)), int(inner.get("explored", 0)), shift=arch.disclosure_shift)
    inner["disclosure"] = level
    if level != prev_level:
        note["disclosure"] = {"from": prev_level, "to": level, "reason": why}
    wish = float(inner.get("wish_to_continue", 5))
    if wish <= LEAVES_AT:
        inner["wants_to_end"] = True
        note["wants_to_end"] = f"wish_to_continue {wish:.1f} <= {LEAVES_AT}: the client leaves"
    elif wants_to_end and wish >= WANTS_TO_END_BELOW:
        inner["wants_to_end"] = False
        note["wants_to_end"] = f"proposed, not honoured: wish_to_continue {wish:.1f} >= {WANTS_TO_END_BELOW}"
    else:
        inner["wants_to_end"] = wants_to_end
    return {"inner": inner, "current": {"client_text": text, "client_note": note, "client_inner": dict(inner), "calls": ctx.calls_update()}}


SPEC = NodeSpec(
    "client", client, "client", role="client", description="client role-play from the disclosed layers of a hidden profile; appraises each counselor move",
    writes=("client_text", "client_note", "client_inner"), speech=True, max_tokens=320,
)
