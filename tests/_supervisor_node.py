"""A new role as a user would add it: one node module (prompt, output model,
function, spec). tests/test_contract.py adds it to a preset with one line."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from therasim.context import NodeContext
from therasim.contract import NodeSpec, Slot
from therasim.errors import StructuredOutputError
from therasim.nodes._common import layout
from therasim.prompts import Prompt
from therasim.state import View

PROMPT = Prompt(
    name="test_supervisor",
    system="You are a clinical supervisor listening to a counseling session.",
    instruction="Client just said: \"{latest}\". Give the counselor one short piece of advice. Reply as JSON.",
)


class Supervision(BaseModel):
    advice: str = Field(max_length=160)
    focus: str = Field(max_length=40)


async def supervisor(view: View, ctx: NodeContext) -> dict[str, Any]:
    msgs = layout(PROMPT.system, view["transcript"], PROMPT.render_instruction(latest=view["current"].get("client_text", "")))
    try:
        out: dict[str, Any] = (await ctx.structured("analysts", Supervision, msgs)).model_dump()
    except StructuredOutputError as e:
        out = {"error": str(e)[:200]}
    return {"current": {"supervision": out}}


SPEC = NodeSpec(
    "supervisor",
    supervisor,
    "counselor",
    role="analysts",
    description="a supervisor's advice to the counselor, every turn",
    reads=("client_text",),
    writes=(Slot("supervision", turn="counselor"),),
    max_tokens=150,
)
