"""Outcome measures: before each session (and once after the last) the client
answers every PHQ-9 and GAD-7 item (0..3) from its inner state, in one
structured call. Item and total scores, severity bands and the PHQ-9 item-9
(thoughts of self-harm) flag are stored."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from therasim.context import NodeContext
from therasim.errors import StructuredOutputError
from therasim.nodes._common import compact
from therasim.prompts import Prompt, client_header
from therasim.state import View

__all__ = ["GAD7_ITEMS", "ITEMS_TEXT", "PHQ9_ITEMS", "MeasuresAnswer", "band", "measures", "score_record"]

# Short item labels (paraphrased); the answer scale is 0 not at all, 1 several days,
# 2 more than half the days, 3 nearly every day, over the last two weeks.
PHQ9_ITEMS = {
    "interest": "little interest or pleasure in doing things",
    "down": "feeling down, depressed or hopeless",
    "sleep": "trouble falling or staying asleep, or sleeping too much",
    "tired": "feeling tired or having little energy",
    "appetite": "poor appetite or overeating",
    "failure": "feeling bad about yourself, or that you are a failure",
    "concentration": "trouble concentrating on things",
    "psychomotor": "moving or speaking slowly, or being fidgety and restless",
    "self_harm": "thoughts that you would be better off dead or of hurting yourself",
}
GAD7_ITEMS = {
    "nervous": "feeling nervous, anxious or on edge",
    "cant_stop_worry": "not being able to stop or control worrying",
    "worry_too_much": "worrying too much about different things",
    "trouble_relaxing": "trouble relaxing",
    "restless": "being so restless that it is hard to sit still",
    "irritable": "becoming easily annoyed or irritable",
    "afraid": "feeling afraid as if something awful might happen",
}
_BANDS = {
    "phq9": [(4, "minimal"), (9, "mild"), (14, "moderate"), (19, "moderately severe"), (27, "severe")],
    "gad7": [(4, "minimal"), (9, "mild"), (14, "moderate"), (21, "severe")],
}


def _item(desc: str) -> Any:
    return Field(ge=0, le=3, description=desc)


class MeasuresAnswer(BaseModel):
    """All 16 items, 0..3 each (PHQ-9 as phq_*, GAD-7 as gad_*)."""

    phq_interest: int = _item(PHQ9_ITEMS["interest"])
    phq_down: int = _item(PHQ9_ITEMS["down"])
    phq_sleep: int = _item(PHQ9_ITEMS["sleep"])
    phq_tired: int = _item(PHQ9_ITEMS["tired"])
    phq_appetite: int = _item(PHQ9_ITEMS["appetite"])
    phq_failure: int = _item(PHQ9_ITEMS["failure"])
    phq_concentration: int = _item(PHQ9_ITEMS["concentration"])
    phq_psychomotor: int = _item(PHQ9_ITEMS["psychomotor"])
    phq_self_harm: int = _item(PHQ9_ITEMS["self_harm"])
    gad_nervous: int = _item(GAD7_ITEMS["nervous"])
    gad_cant_stop_worry: int = _item(GAD7_ITEMS["cant_stop_worry"])
    gad_worry_too_much: int = _item(GAD7_ITEMS["worry_too_much"])
    gad_trouble_relaxing: int = _item(GAD7_ITEMS["trouble_relaxing"])
    gad_restless: int = _item(GAD7_ITEMS["restless"])
    gad_irritable: int = _item(GAD7_ITEMS["irritable"])
    gad_afraid: int = _item(GAD7_ITEMS["afraid"])


PROMPT = Prompt(
    name="measures",
    system="NOW, AS {name}: you are filling in two questionnaires {when} (the items above).",
    instruction="YOUR INNER STATE NOW (0-10 scales): {inner}\nAnswer every item with 0, 1, 2 or 3 as JSON.",
)


# The items as the client header lists them (static: cached for every course).
ITEMS_TEXT = "\n".join([f"- phq_{k}: {v}" for k, v in PHQ9_ITEMS.items()] + [f"- gad_{k}: {v}" for k, v in GAD7_ITEMS.items()])


def band(instrument: str, total: int) -> str:
    for hi, name in _BANDS[instrument]:
        if total <= hi:
            return name
    return _BANDS[instrument][-1][1]


def score_record(ans: MeasuresAnswer, *, session: int, when: str) -> dict[str, Any]:
    """Item scores, totals, bands and the item-9 flag as one stored record."""
    d = ans.model_dump()
    phq = {k[4:]: v for k, v in d.items() if k.startswith("phq_")}
    gad = {k[4:]: v for k, v in d.items() if k.startswith("gad_")}
    phq_total, gad_total = sum(phq.values()), sum(gad.values())
    return {
        "session": session,
        "when": when,
        "phq9": {"items": phq, "total": phq_total, "band": band("phq9", phq_total)},
        "gad7": {"items": gad, "total": gad_total, "band": band("gad7", gad_total)},
        "self_harm_item": phq["self_harm"],
    }


async def measures(view: View, ctx: NodeContext) -> dict[str, Any]:
    """Client side: answer PHQ-9 and GAD-7 from the hidden profile and inner state."""
    profile = view["profile"]
    inner = view["inner"]
    done = bool(view.get("done"))
    session = int(view.get("session", 1))
    when = "post-course" if done else f"before session {session}"
    task = PROMPT.render_task(name=profile["intake"]["name"], when="after the last counseling session" if done else f"before counseling session {session}", inner=compact({k: inner.get(k) for k in ("distress", "hopelessness", "anxiety", "self_efficacy") if k in inner}))
    from langchain_core.messages import HumanMessage, SystemMessage

    # The client side's shared header (cached from the sessions), then the questionnaire.
    msgs = [SystemMessage(content=client_header(view)), HumanMessage(content=task)]
    try:
        ans = await ctx.structured("client", MeasuresAnswer, msgs, max_tokens=220)
    except StructuredOutputError as e:
        # Recorded as missing, never filled with made-up scores.
        return {"measures": [{"session": session, "when": when, "phq9": None, "gad7": None, "error": f"{e.schema_name} invalid after {e.attempts} attempts", "calls": ctx.calls}]}
    rec = score_record(ans, session=session, when=when)
    rec["calls"] = ctx.calls
    return {"measures": [rec]}
