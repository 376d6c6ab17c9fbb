"""The ``hash`` embedding (the benchmarks' and tests' stand-in for MiniLM) gives the
same vectors, bit for bit, as its first definition: one md5 bucket of 64 per word,
counted, scaled to unit length. Stores written with it before read back the same."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

from therasim.memory import embeddings
from therasim.memory.embeddings import HashEmbedding


def _first_definition(input: list[str]) -> list[np.ndarray]:
    out = []
    for text in input:
        v = np.zeros(64, dtype="float32")
        for w in text.lower().split():
            v[int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1.0
        n = float(np.linalg.norm(v)) or 1.0
        out.append(v / n)
    return out


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x.view(np.uint32), y.view(np.uint32)) for x, y in zip(a, b, strict=True))


def test_the_same_bits_as_the_first_definition() -> None:
    rng = random.Random(0)
    words = "I keep waking up at four and the whole day is gone Work WORK piles up é Ü 日本 a".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 200))) for _ in range(300)]
    texts += ["", "   ", "a " * 3000, "\tTabs\nand newlines  "]
    h = HashEmbedding()
    assert _same(h(texts), _first_definition(texts))
    for one in [*texts[:20], "", "x"]:
        assert _same(h([one]), _first_definition([one]))
    assert h([]) == []


def test_the_bucket_cache_is_bounded_and_answers_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "_BUCKETS", {})
    monkeypatch.setattr(embeddings, "_BUCKETS_MAX", 8)
    texts = [f"w{i} w{i % 3} shared" for i in range(50)]
    assert _same(HashEmbedding()(texts), _first_definition(texts))
    assert len(embeddings._BUCKETS) <= 8
