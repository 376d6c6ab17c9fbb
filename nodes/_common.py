"""Small helpers shared by node modules (message layout, transcript access)."""

from __future__ import annotations

import re
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from therasim.policies.analysis import TEXT_PATTERN_160
from therasim.prompts import compact, memory_block, render_transcript

__all__ = ["TEXT_PATTERN_160", "compact", "last_turn", "layout", "memory_block", "text_field", "wordy", "wordy_or_empty"]


def layout(system: str, transcript: list[dict[str, Any]], instruction: str, *, me: str | None = None) -> list[BaseMessage]:
    """Prefix-cache friendly layout: stable system part, append-only transcript, short instruction last."""
    return [
        SystemMessage(content=system),
        HumanMessage(content=f"TRANSCRIPT SO FAR:\n{render_transcript(transcript, me=me)}\n\n{instruction}"),
    ]


def last_turn(transcript: list[dict[str, Any]], speaker: str) -> dict[str, Any] | None:
    for t in reversed(transcript):
        if t.get("speaker") == speaker:
            return t
    return None


_WORD = re.compile(r"[^\W\d_]{2,}")


def wordy(v: str) -> str:
    """Validator for free-text fields: stripped, and at least one real word (grammar
    decoding lets small models emit whitespace or braces as 'text')."""
    v = v.strip()
    if not _WORD.search(v):
        raise ValueError("must be words, not empty or symbols")
    return v


def wordy_or_empty(v: str) -> str:
    v = v.strip()
    return wordy(v) if v else v




def text_field(max_len: int, *, optional: bool = False, description: str | None = None, min_len: int | None = None) -> Any:
    """A free-text field whose JSON schema carries a grammar ``pattern`` (no braces,
    brackets, quotes, backslashes or newlines; bounded length) so grammar backends
    (llama.cpp, vLLM/xgrammar) cannot emit JSON debris as 'text'. The pattern is
    not used for validation, so other backends are not held to it."""
    from pydantic import Field

    body = r'[^{}\[\]"\\<>\n]'
    first = r'[^ \t\n{}\[\]"\\<>.,;:!?()/@#$%^&*_+=|~`-]'
    lo = max((min_len if min_len is not None else 2) - 1, 0)
    pat = f"^{first}{body}{{{lo},{max_len - 1}}}$"
    if optional:
        pat = f"^({first}{body}{{0,{max_len - 1}}})?$"
    return Field(
        default=... if not optional else "",
        min_length=0 if optional else (min_len if min_len is not None else 2),
        max_length=max_len,
        description=description,
        json_schema_extra={"pattern": pat},
    )
