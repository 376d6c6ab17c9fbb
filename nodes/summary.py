"""Session summarisers, one per side.

Counselor side: themes, progress, homework, risk and plan, plus facts worth
remembering (from the counselor's view of the transcript: no hidden profile).
Client side: what the client remembers of the session and how they feel about it
(from who-said-what only, plus its own hidden state).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from therasim.context import NodeContext
from therasim.errors import StructuredOutputError
from therasim.nodes._common import text_field, wordy, wordy_or_empty
from therasim.policies.risk import level_rank
from therasim.prompts import Prompt, client_side_messages, counselor_side_messages, inner_line
from therasim.state import View

__all__ = ["ClientRecollection", "SessionSummary", "summarise_client", "summarise_counselor"]


Text = Annotated[str, AfterValidator(wordy)]
OptText = Annotated[str, AfterValidator(wordy_or_empty)]


class SessionSummary(BaseModel):
    """The counselor's notes on one session."""

    themes: list[Annotated[Text, text_field(40)]] = Field(min_length=1, max_length=3, description="main themes, a few words each")
    progress: Text = text_field(160, description="what moved in this session")
    homework: OptText = text_field(120, optional=True, description="homework agreed, or empty if none")
    risk: Text = text_field(120, description="risk observed and what was done")
    plan: Text = text_field(120, description="plan for the next session")
    facts: list[Annotated[Text, text_field(100, min_len=3)]] = Field(max_length=2, description="facts about the client worth remembering")


class ClientRecollection(BaseModel):
    """What the client takes away from a session."""

    remembers: Text = text_field(240, description="what you remember of the session")
    feels: Text = text_field(160, description="how you feel about the session and the counselor")
    homework: OptText = text_field(120, optional=True, description="what you were asked to do before next time, or empty")


COUNSELOR_PROMPT = Prompt(
    name="summarise_counselor",
    system="TASK: SESSION NOTES, as the counselor: your private notes after session {session}.",
    instruction="Risk peak this session: {risk_peak}. The session ended because: {end_reason}. Your notes as JSON.",
)
CLIENT_PROMPT = Prompt(
    name="summarise_client",
    system="NOW, AS {name}: you are thinking back on counseling session {session} (above) the same evening.",
    instruction="How you feel now (0-10): {inner}. In the first person, write what you remember, how you feel about it, and any homework, as JSON.",
)


def _risk_peak(turns: list[dict[str, Any]]) -> str:
    levels = [(t.get("risk") or {}).get("level", "none") for t in turns if t.get("speaker") == "client"]
    return max(levels, key=level_rank) if levels else "none"


async def summarise_counselor(view: View, ctx: NodeContext) -> dict[str, Any]:
    last = view["last"]
    turns = last.get("transcript") or []
    session = int(last.get("session") or view["session"])
    task = COUNSELOR_PROMPT.render_task(session=session, risk_peak=_risk_peak(turns), end_reason=last.get("end_reason") or "n/a")
    # The session's own prefix (header + transcript): cached from its last calls.
    msgs = counselor_side_messages(view, ctx.sim, task, turns=turns)
    rec: dict[str, Any] = {"session": session, "risk_peak": _risk_peak(turns)}
    try:
        s = await ctx.structured("analysts", SessionSummary, msgs, max_tokens=420)
        rec.update(s.model_dump())
    except StructuredOutputError as e:
        rec["error"] = f"{e.schema_name} invalid after {e.attempts} attempts"
    rec["calls"] = ctx.calls
    return {"summaries": [rec]}


async def summarise_client(view: View, ctx: NodeContext) -> dict[str, Any]:
    last = view["last"]
    turns = last.get("transcript") or []
    session = int(last.get("session") or view["session"])
    profile = view["profile"]
    inner = view["inner"]
    task = CLIENT_PROMPT.render_task(name=profile["intake"]["name"], session=session, inner=inner_line(inner, ("distress", "hopelessness", "alliance", "self_efficacy")))
    msgs = client_side_messages(view, ctx.sim, task, turns=turns)
    rec: dict[str, Any] = {"session": session}
    out: dict[str, Any] = {}
    try:
        r = await ctx.structured("client", ClientRecollection, msgs, max_tokens=300)
        rec.update(r.model_dump())
        if r.homework.strip():
            out["inner"] = {**inner, "homework": r.homework.strip()}
    except StructuredOutputError as e:
        rec["error"] = f"{e.schema_name} invalid after {e.attempts} attempts"
    rec["calls"] = ctx.calls
    out["recollections"] = [rec]
    return out
