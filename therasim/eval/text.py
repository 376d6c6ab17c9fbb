"""Word-level text helpers shared by the deterministic metrics."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["STOPWORDS", "content_words", "ngram_overlap", "ngrams", "words"]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

STOPWORDS = frozenset(
    """a about after again all also am an and any are as at be because been before being but by can could did do does
    doing don't down for from had has have having he her here hers him his how i i'd i'm i've if in into is it it's its
    just like me more most my myself no not now of off on once only or other our out over own really so some such than
    that that's the their them then there these they this those through to too under until up very was we were what
    when where which while who why will with would you you're your yours yeah okay ok well know think feel get got
    going much things thing way been even still""".split()
)


def words(text: str | None) -> list[str]:
    """Lower-cased word tokens (letters, digits, one apostrophe part)."""
    return _WORD.findall((text or "").lower().replace("\u2019", "'"))


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def ngram_overlap(text: str, source: str, n: int = 3) -> float | None:
    """Share of ``text``'s word n-grams (as a set) that also occur in ``source``;
    None when ``text`` has no n-gram."""
    a = set(ngrams(words(text), n))
    if not a:
        return None
    b = set(ngrams(words(source), n))
    return len(a & b) / len(a)


def content_words(text: str | None, min_len: int = 4) -> set[str]:
    return {w for w in words(text) if len(w) >= min_len and w not in STOPWORDS}
