"""Self-report measures, answered by the client from its week.

Before each session (and once after the last) the client answers the outcome
instruments (PHQ-9 and GAD-7 by default); after each session it rates the session
(WAI-SR and SRS by default). The instruments come from the registry in
:mod:`therasim.policies.instruments`. The client answers from its inner state, its
recollection of the last session and the between-session event, in the blocks
``course.measures_mode`` sets: ``whole`` (one call for every form), ``blocks``
(one call per instrument) or ``item`` (one call per item). Every answer is anchored
to the inner state (see the policy); item scores, totals, bands and subscales are
stored. A failed call leaves its items missing, never filled in.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field, create_model

from therasim.context import NodeContext
from therasim.errors import StructuredOutputError
from therasim.policies.instruments import Instrument, get_instrument, items_text, score
from therasim.prompts import (
    HEADER_OUTCOME_ITEMS,
    HEADER_SESSION_ITEMS,
    Prompt,
    client_header,
    inner_line,
)
from therasim.state import View

__all__ = [
    "GAD7_ITEMS",
    "ITEMS_TEXT",
    "PHQ9_ITEMS",
    "MeasuresAnswer",
    "answer_model",
    "band",
    "measures",
    "run_instruments",
    "session_measures",
]

PHQ9_ITEMS = {i.key: i.text for i in get_instrument("phq9").items}
GAD7_ITEMS = {i.key: i.text for i in get_instrument("gad7").items}
INNER_SHOWN = ("distress", "hopelessness", "anxiety", "self_efficacy", "alliance", "wish_to_continue")


def band(instrument: str, total: int) -> str:
    return get_instrument(instrument).band(total) or ""


@lru_cache(maxsize=64)
def answer_model(names: tuple[str, ...], item: str | None = None) -> type[BaseModel]:
    """The structured answer for some instruments (or one item of one)."""
    insts = [get_instrument(n) for n in names]
    fields: dict[str, Any] = {}
    for inst in insts:
        for it in inst.items:
            if item is None or it.key == item:
                fields[inst.field(it.key)] = (int, Field(ge=inst.low, le=inst.high, description=it.text))
    if names == ("phq9", "gad7") and item is None:
        model_name = "MeasuresAnswer"
    elif item is not None:
        model_name = "ItemAnswer"
    else:
        model_name = "".join(n.upper().replace("_", "") for n in names) + "Answer"
    return create_model(model_name, **fields)  # type: ignore[call-overload,no-any-return]


MeasuresAnswer = answer_model(("phq9", "gad7"))

PROMPT = Prompt(
    name="measures",
    system="NOW, AS {name}: you are filling in {what} {when}.",
    instruction=(
        "Your last session, as you remember it: {recollection}\n{event}"
        "Your inner state now (0-10): {inner}.\n{forms}\nAnswer every item with a whole number as JSON."
    ),
)

# The outcome items as the client header lists them (static: cached for every course).
ITEMS_TEXT = items_text(HEADER_OUTCOME_ITEMS)
# Instruments whose items the client header lists: a whole form of one of them is
# asked by reference to the header, not listed again.
_IN_HEADER = frozenset((*HEADER_OUTCOME_ITEMS, *HEADER_SESSION_ITEMS))


def _forms(insts: list[Instrument], item: str | None) -> str:
    out = []
    listed: list[Instrument] = []
    for inst in insts:
        if item is None and inst.name in _IN_HEADER:
            listed.append(inst)
            continue
        lines = [f"- {inst.field(i.key)}: {i.text}" for i in inst.items if item is None or i.key == item]
        out.append(f"{inst.title}, {inst.period} ({inst.anchors}):\n" + "\n".join(lines))
    if listed:
        out.insert(0, f"The {' and '.join(i.title.split(' ')[0] for i in listed)} items above ({', '.join(i.prefix + '_' for i in listed)}), each on its scale.")
    return "\n".join(out)


def _what(insts: list[Instrument]) -> str:
    return "a questionnaire" if len(insts) == 1 else ("two questionnaires" if len(insts) == 2 else f"{len(insts)} questionnaires")


def _risk_history(profile: dict[str, Any]) -> bool:
    from therasim.profiles import has_risk_history

    return has_risk_history(profile)


async def run_instruments(view: View, ctx: NodeContext, names: tuple[str, ...], *, when: str, session: int, kind: str) -> dict[str, Any]:
    """Ask the client the instruments ``names`` in the configured blocks; one stored record."""
    profile = view["profile"]
    inner = view["inner"]
    mode = getattr(ctx.course, "measures_mode", "whole")
    insts = [get_instrument(n) for n in names]
    recs = [r for r in (view.get("recollections") or []) if not r.get("error")]
    evs = view.get("events") or []
    recollection = (f"{recs[-1].get('remembers', '')} I feel {recs[-1].get('feels', '')}".strip() if recs else "(no session yet)")
    # the header has the recent events while they last (prompts.recent_text); right after
    # a session, or before the first, there is no "since then"
    event = f"Since then: {evs[-1]['text']}\n" if evs and evs[-1].get("text") and not inner.get("recent_events") and kind != "session" else ""
    # the client side's shared header (cached from the sessions; only the disclosed layers), then the forms
    header = client_header(view)
    shown = inner_line(inner, INNER_SHOWN)
    if mode == "whole":
        blocks: list[tuple[tuple[str, ...], str | None]] = [(names, None)]
    elif mode == "blocks":
        blocks = [((n,), None) for n in names]
    else:
        blocks = [((inst.name,), it.key) for inst in insts for it in inst.items]
    answers: dict[str, dict[str, int | None]] = {n: {} for n in names}
    errors: list[str] = []
    for block_names, item in blocks:
        schema = answer_model(block_names, item)
        block_insts = [get_instrument(n) for n in block_names]
        task = PROMPT.render_task(
            name=profile["intake"]["name"], what=_what(block_insts), when=when, recollection=recollection, event=event, inner=shown, forms=_forms(block_insts, item)
        )
        msgs = [SystemMessage(content=header), HumanMessage(content=task)]
        n_items = sum(len(i.items) for i in block_insts) if item is None else 1
        try:
            ans = (await ctx.structured("client", schema, msgs, max_tokens=40 + 14 * n_items)).model_dump()
        except StructuredOutputError as e:
            errors.append(f"{e.schema_name} invalid after {e.attempts} attempts" + (f" ({block_names[0]}.{item})" if item else ""))
            ans = {}
        for inst in block_insts:
            for it in inst.items:
                if item is None or it.key == item:
                    answers[inst.name][it.key] = ans.get(inst.field(it.key))
    rec: dict[str, Any] = {"session": session, "when": when, "kind": kind, "mode": mode}
    risk = _risk_history(profile)
    for inst in insts:
        got = answers[inst.name]
        rec[inst.name] = None if all(v is None for v in got.values()) else score(inst, got, inner, risk_history=risk)
    if "phq9" in names:
        phq = rec.get("phq9") or {}
        rec["self_harm_item"] = (phq.get("items") or {}).get("self_harm")
    if errors:
        rec["error"] = "; ".join(errors)
    rec["calls"] = ctx.calls
    return rec


def _outcome_names(ctx: NodeContext) -> tuple[str, ...]:
    return tuple(getattr(ctx.course, "outcome_instruments", ("phq9", "gad7")))


async def measures(view: View, ctx: NodeContext) -> dict[str, Any]:
    """Client side: the outcome instruments before a session (after the last one when ``done``)."""
    done = bool(view.get("done"))
    session = int(view.get("session", 1))
    when = "post-course" if done else f"before session {session}"
    rec = await run_instruments(view, ctx, _outcome_names(ctx), when=when, session=session, kind="outcome")
    return {"measures": [rec]}


async def session_measures(view: View, ctx: NodeContext) -> dict[str, Any]:
    """Client side, after a session: how the session and the alliance felt (WAI-SR, SRS)."""
    last = view.get("last") or {}
    session = int(last.get("session") or view["session"])
    names = tuple(getattr(ctx.course, "session_instruments", ("wai_sr", "srs")))
    if not names:
        return {}
    rec = await run_instruments(view, ctx, names, when=f"after session {session}", session=session, kind="session")
    return {"measures": [rec]}
