"""therasim.memory: the memory protocol, its filters, the backends registered by
name (``chroma``, ``chroma-http``, ``none``), the recall mirror and embedding
functions."""

from __future__ import annotations

from typing import Any

from therasim.memory.base import (
    MEMORY_BACKENDS,
    MEMORY_KINDS,
    MemoryFilter,
    MemoryStore,
    memory_backend,
    register_memory_backend,
)
from therasim.memory.chroma import ChromaMemoryStore
from therasim.memory.embeddings import (
    MiniLMEmbedding,
    OpenAIEmbedding,
    make_embedding,
    register_embeddings,
)

__all__ = [
    "MEMORY_BACKENDS",
    "MEMORY_KINDS",
    "ChromaMemoryStore",
    "MemoryFilter",
    "MemoryStore",
    "MiniLMEmbedding",
    "OpenAIEmbedding",
    "make_embedding",
    "memory_backend",
    "open_store",
    "register_embeddings",
    "register_memory_backend",
]

register_embeddings()
register_memory_backend("none", lambda spec, default_path, scope: None)


def open_store(spec: Any, default_path: str | None = None, scope: str | None = None) -> MemoryStore | None:
    """Open the store a :class:`therasim.config.MemorySpec` describes with the backend
    registered as ``spec.backend`` (None when it is ``none``). ``scope`` (a run id)
    keeps this run's memories apart from other runs' on a shared server or folder."""
    return memory_backend(spec.backend)(spec, default_path, scope)
