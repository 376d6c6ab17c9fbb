"""Speech as it is generated, from LangGraph's ``messages`` stream.

Model calls carry run tags (:meth:`therasim.context.NodeContext.tags`): the client's
and counselor's speech is ``therasim:speech`` (the client speaks inside a JSON
object, ``therasim:json``), analyst output ``therasim:analysis``. :func:`speech_deltas`
turns a graph's ``messages`` stream into ``(node, text)`` pieces of speech only,
pulling the client's utterance out of its JSON as it streams.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["UtteranceExtractor", "speech_deltas", "stream_session"]


class UtteranceExtractor:
    """Incrementally extracts the string value of one key (``utterance``) from a JSON
    object arriving in pieces; :meth:`feed` returns the newly decoded characters."""

    def __init__(self, key: str = "utterance") -> None:
        self.buf = ""
        self.key = key
        self.start: int | None = None  # index just after the opening quote of the value
        self.pos = 0
        self.done = False

    def feed(self, piece: str) -> str:
        self.buf += piece
        if self.done:
            return ""
        if self.start is None:
            i = self.buf.find(f'"{self.key}"')
            if i < 0:
                return ""
            j = self.buf.find('"', self.buf.find(":", i + len(self.key) + 2) + 1)
            if j < 0 or self.buf.find(":", i) < 0:
                return ""
            self.start = self.pos = j + 1
        out = []
        while self.pos < len(self.buf):
            c = self.buf[self.pos]
            if c == "\\":
                if self.pos + 1 >= len(self.buf):
                    break  # wait for the escaped character
                esc = self.buf[self.pos : self.pos + 2]
                if esc == "\\u":
                    if self.pos + 6 > len(self.buf):
                        break
                    esc = self.buf[self.pos : self.pos + 6]
                try:
                    out.append(json.loads(f'"{esc}"'))
                except json.JSONDecodeError:
                    out.append(esc)
                self.pos += len(esc)
                continue
            if c == '"':
                self.done = True
                self.pos += 1
                break
            out.append(c)
            self.pos += 1
        return "".join(out)


async def speech_deltas(parts: AsyncIterator[Any]) -> AsyncIterator[tuple[str, str]]:
    """``(node, text)`` speech pieces from a ``stream_mode="messages"`` iterator (or a
    multi-mode one yielding ``(mode, payload)``); analyst output is skipped."""
    extractors: dict[str, UtteranceExtractor] = {}
    async for part in parts:
        if isinstance(part, tuple) and len(part) == 2 and part[0] == "messages":
            part = part[1]
        elif isinstance(part, tuple) and len(part) == 2 and isinstance(part[0], str):
            continue  # another mode's payload
        piece = _speech_piece(part, extractors)
        if piece is not None:
            yield piece


def _speech_piece(payload: tuple[Any, dict[str, Any]], extractors: dict[str, UtteranceExtractor]) -> tuple[str, str] | None:
    """``(node, text)`` of one ``messages`` stream part if it is speech, else None."""
    chunk, meta = payload
    tags = meta.get("tags") or []
    if "therasim:speech" not in tags:
        return None
    text = chunk.content if isinstance(chunk.content, str) else ""
    node = str(meta.get("langgraph_node") or "")
    if "therasim:json" in tags:  # one extractor per model call (a retry is a new call)
        text = extractors.setdefault(str(getattr(chunk, "id", None) or node), UtteranceExtractor()).feed(text)
    return (node, text) if text else None


async def stream_session(graph: Any, state: dict[str, Any], context: Any, config: dict[str, Any] | None = None) -> AsyncIterator[tuple[str, Any]]:
    """Run a session graph, yielding ``("speech", (node, text))`` as tokens arrive,
    ``("event", dict)`` for therasim events and finally ``("final", state)``."""
    cfg = config or {"recursion_limit": 20 * (context.course.max_turns + 2) + 50}
    final: dict[str, Any] = {}
    extractors: dict[str, UtteranceExtractor] = {}
    async for mode, payload in graph.astream(state, config=cfg, context=context, stream_mode=["messages", "custom", "values"]):
        if mode == "values":
            final = payload
        elif mode == "custom":
            yield "event", payload
        elif (piece := _speech_piece(payload, extractors)) is not None:
            yield "speech", piece
    yield "final", final
