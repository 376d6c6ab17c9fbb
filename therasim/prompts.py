"""Prompt templates as data, each with a stable hash recorded in run manifests.

Layout for prefix caching: stable parts first (role system prompt, policy,
profile or intake, recalled memory), then the append-only transcript, then the
short per-turn instruction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["PROMPTS", "Prompt", "render_transcript"]

PROMPTS: dict[str, Prompt] = {}


@dataclass(frozen=True, slots=True)
class Prompt:
    """A node's prompt: a system template and a per-turn instruction template."""

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
