"""Risk control in two layers: deterministic cue detection (never misses an explicit
crisis statement) and an LLM assessment; plus review of the counselor's draft."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from therasim.context import NodeContext
from therasim.contract import NodeSpec
from therasim.errors import StructuredOutputError
from therasim.policies.analysis import RiskAssessment, register_context
from therasim.policies.risk import level_rank
from therasim.policies.risk_assessment import combine, scan_cues, scan_floor, with_register
from therasim.prompts import Prompt, counselor_side_messages, register_line
from therasim.state import View

__all__ = ["PROMPT", "REVIEW_PROMPT", "REVIEW_SPEC", "SPEC", "DraftReview", "RiskAssessment", "combine", "register_context", "review_draft", "risk_control", "scan_cues", "scan_floor", "with_register"]

PROMPT = Prompt(
    name="risk_control",
    system="TASK: RISK ASSESSMENT.",
    instruction="Keyword screen found: {cues}. Risk register: {register}.",
)

REVIEW_PROMPT = Prompt(
    name="risk_review",
    system="TASK: DRAFT REVIEW.",
    instruction="Risk level {level}; required: {actions}. Counselor draft: \"{draft}\"\nIs the draft safe? Reply as JSON.",
)


class DraftReview(BaseModel):
    safe: bool
    problems: str = Field("", max_length=200)
    suggestion: str = Field("", max_length=200)


async def assess(client_text: str, view: View, ctx: NodeContext, register: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The LLM's assessment (or ``{"error": ...}``) and the scan's cues for one message."""
    cues = await scan_cues(client_text)
    cue_text = ", ".join(f"{c['category']}/{c['rung']}: \"{c['span']}\"{'' if c['active'] else ' (not active)'}" for c in cues) or "nothing"
    try:
        a = await ctx.structured(
            "analysts", RiskAssessment, counselor_side_messages(view, ctx.sim, PROMPT.render_task(cues=cue_text, register=register_line(view, register)))
        )
        llm: dict[str, Any] = a.model_dump()
    except StructuredOutputError as e:
        llm = {"error": str(e)[:300]}
    return llm, cues


async def risk_control(view: View, ctx: NodeContext) -> dict[str, Any]:
    """Assess the client's latest message in the light of the course's risk register;
    update the register; attach the risk protocol's directive."""
    text = view["current"].get("client_text", "")
    llm, cues = await assess(text, view, ctx, view.get("risk_register"))
    risk, update = with_register(view, ctx, llm, cues, text)
    return {**update, "current": {"risk": risk, "directive": risk["directive"], "calls": ctx.calls_update()}}


SPEC = NodeSpec("risk_control", risk_control, "counselor", role="analysts", reads=("client_text",), writes=("risk", "directive"), max_tokens=200)


_ABRUPT = re.compile(r"\b(?:i can(?:no|')t (?:help|talk about|discuss) (?:you|that|this)|i(?:'m| am) not able to (?:help|discuss)|(?:please )?(?:contact|see) someone else\.?$|that(?:'s| is) not my (?:job|problem))\b", re.IGNORECASE)
_SUPPORT = re.compile(r"\b(?:safe|safety|crisis|emergency|hotline|helpline|988|111|112|911|support|doctor|clinician|help)\b", re.IGNORECASE)


def rule_check(draft: str, level: str) -> list[str]:
    """Deterministic draft checks: no abrupt refusal; support offered at high risk."""
    problems = []
    if _ABRUPT.search(draft):
        problems.append("abrupt refusal; acknowledge the pain and stay with the client (Compassionate Completion Standard)")
    if level_rank(level) >= level_rank("high") and not _SUPPORT.search(draft):
        problems.append("at high risk the reply must ask about safety and offer support or crisis resources")
    if not draft.strip():
        problems.append("empty reply")
    return problems


async def review_draft(view: View, ctx: NodeContext) -> dict[str, Any]:
    """Review the counselor's draft against the risk assessment; rewrite unsafe drafts
    with the reviewer's feedback, at most ``course.max_draft_revisions`` times."""
    from therasim.speech import revise

    cur = view["current"]
    draft = cur.get("counselor_text") or cur.get("draft") or ""
    risk = cur.get("risk") or {}
    level = risk.get("level", "none")
    history: list[dict[str, Any]] = []
    for revision in range(ctx.course.max_draft_revisions + 1):
        problems = rule_check(draft, level)
        verdict: dict[str, Any] = {"revision": revision, "rule_problems": problems}
        if not problems and level_rank(level) >= level_rank("moderate"):
            try:
                r = await ctx.structured(
                    "analysts",
                    DraftReview,
                    counselor_side_messages(view, ctx.sim, REVIEW_PROMPT.render_task(level=level, actions=", ".join(risk.get("actions", [])), draft=draft)),
                )
                verdict["llm"] = r.model_dump()
                if not r.safe:
                    problems = [r.problems or "reviewer judged the draft unsafe", r.suggestion]
            except StructuredOutputError as e:
                verdict["llm_error"] = str(e)[:300]
        history.append(verdict)
        if not problems or revision == ctx.course.max_draft_revisions:
            break
        draft = await revise(view, ctx, draft, "; ".join(p for p in problems if p))
    return {"current": {"counselor_text": draft, "review": {"safe": not problems, "revisions": len(history) - 1, "history": history}, "calls": ctx.calls_update()}}


REVIEW_SPEC = NodeSpec(
    "risk_review",
    review_draft,
    "counselor",
    role="analysts",
    description="reviews the counselor's draft",
    reads=("counselor_text", "draft", "risk"),
    writes=("counselor_text", "review"),
    speech=True,
    max_tokens=120,
)
