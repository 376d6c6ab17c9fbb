"""therasim.memory: the memory protocol, the Chroma store and embedding functions."""

from __future__ import annotations

from typing import Any

from therasim.memory.base import MEMORY_KINDS, MemoryStore
from therasim.memory.chroma import ChromaMemoryStore
from therasim.memory.embeddings import (
    MiniLMEmbedding,
    OpenAIEmbedding,
    make_embedding,
    register_embeddings,
)

__all__ = ["MEMORY_KINDS", "ChromaMemoryStore", "MemoryStore", "MiniLMEmbedding", "OpenAIEmbedding", "make_embedding", "open_store", "register_embeddings"]

register_embeddings()


def open_store(spec: Any, default_path: str | None = None) -> ChromaMemoryStore | None:
    """Open the store a :class:`therasim.config.MemorySpec` describes (None when off)."""
    if spec.backend == "none":
        return None
    emb = make_embedding(spec.embedding)
    if spec.backend == "chroma-http":
        return ChromaMemoryStore.http(spec.host, spec.port, emb)
    path = spec.path or default_path
    if path is None:
        raise ValueError("memory.path is not set and no run folder was given")
    return ChromaMemoryStore.persistent(path, emb)
