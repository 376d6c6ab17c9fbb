"""Termination rules for a session, as data."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

__all__ = ["TerminationRules"]


@dataclass(frozen=True, slots=True)
class TerminationRules:
    """When a session ends. Reasons: max_turns, client_wish, closing_exchange, risk_handoff."""

    closing_phrases: tuple[str, ...] = field(
        default=(
            r"\bsee you (?:next|on|at|in|soon)\b",
            r"\buntil next (?:time|session|week)\b",
            r"\b(?:good ?bye|bye for now|take care)\b",
            r"\bthat'?s (?:all|it) for today\b",
            r"\bend (?:our|the) session\b",
        )
    )
    min_turns_before_closing: int = 2

    def is_closing(self, text: str) -> bool:
        return any(rx.search(text) for rx in _compiled(tuple(self.closing_phrases)))


@functools.lru_cache(maxsize=64)
def _compiled(phrases: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """``phrases`` compiled case-insensitively (``re.search(p, text, re.IGNORECASE)``
    looked each one up in ``re``'s cache on every call)."""
    return tuple(re.compile(p, re.IGNORECASE) for p in phrases)
