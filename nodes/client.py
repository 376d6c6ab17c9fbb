"""Client node: role-plays from a hidden profile and a hidden inner state it updates every turn."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator

from therasim.context import NodeContext, clean_utterance
from therasim.contract import NodeSpec
from therasim.errors import StructuredOutputError
from therasim.nodes._common import compact, text_field
from therasim.prompts import Prompt, client_side_messages
from therasim.state import View

__all__ = ["PROMPT", "SPEC", "ClientTurn", "client"]

PROMPT = Prompt(
    name="client",
    system="YOUR TURN, as {name}:",
    instruction="YOUR INNER STATE NOW (private): {inner}\nYour answer as JSON:",
)

_THERAPIST_TALK = re.compile(
    r"\b(?:as (?:a|your) (?:therapist|counsel+or)|as an ai|i am an ai|i'm an ai|language model|how does that make you feel)\b",
    re.IGNORECASE,
)


_META_TALK = re.compile(r"\b(?:value error|json|schema|utterance|inner state|wants_to_end)\b", re.IGNORECASE)


class ClientTurn(BaseModel):
    """The client's next utterance and updated inner state."""

    utterance: str = text_field(300)
    distress: int = Field(ge=0, le=10)
    trust: int = Field(ge=0, le=10)
    disclosure: int = Field(ge=0, le=4)
    wants_to_end: bool

    @field_validator("utterance")
    @classmethod
    def _in_character(cls, v: str) -> str:
        v = clean_utterance(v)
        if len(re.findall(r"[^\W\d_]{2,}", v)) < 2:
            raise ValueError("utterance must be at least two words of speech")
        if _META_TALK.search(v):
            raise ValueError("utterance must be the client's speech, not notes about the format")
        if _THERAPIST_TALK.search(v):
            raise ValueError("the client broke character (talked like a therapist or an AI); answer as the client")
        return v.strip()


async def client(view: View, ctx: NodeContext) -> dict[str, Any]:
    """Produce the client's next utterance; update the hidden inner state."""
    inner = dict(view["inner"])
    name = view["profile"]["intake"]["name"]
    shown_inner = {k: inner.get(k) for k in ("distress", "hopelessness", "anxiety", "trust", "disclosure", "wish_to_continue", "homework", "recent_events") if inner.get(k) not in (None, [])}
    messages = client_side_messages(view, ctx.sim, PROMPT.render_task(name=name, inner=compact(shown_inner)))
    note: dict[str, Any] = {}
    try:
        turn = await ctx.structured("client", ClientTurn, messages)
        text = turn.utterance
        # Policy: disclosure moves one step at a time (MindEval); the proposal is kept in the record.
        prev = int(inner.get("disclosure", 0))
        disclosure = max(prev - 1, min(prev + 1, turn.disclosure))
        if disclosure != turn.disclosure:
            note["disclosure_proposed"] = turn.disclosure
        inner.update(distress=turn.distress, trust=turn.trust, disclosure=disclosure, wants_to_end=turn.wants_to_end)
    except StructuredOutputError as e:
        # Degrade openly: plain-text utterance, inner state unchanged, the failure recorded.
        plain = client_side_messages(view, ctx.sim, f"YOUR TURN, as {name}: your next reply to the counselor, 1-3 sentences, as plain text.")
        text = await ctx.text("client", plain)
        note["degraded"] = f"inner state not updated: {e.schema_name} invalid after {e.attempts} attempts"
    return {"inner": inner, "current": {"client_text": text, "client_note": note, "client_inner": dict(inner), "calls": ctx.calls_update()}}


SPEC = NodeSpec(
    "client",
    client,
    "client",
    role="client",
    description="client role-play from a hidden profile",
    writes=("client_text", "client_note", "client_inner"),
    speech=True,
    max_tokens=200,
)
