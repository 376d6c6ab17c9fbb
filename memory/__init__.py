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
    "open_run_store",
    "open_store",
    "register_embeddings",
    "register_memory_backend",
]

register_embeddings()
register_memory_backend("none", lambda spec, default_path, scope: None)


def open_store(spec: Any, default_path: str | None = None, scope: str | None = None, layout: str | None = None) -> MemoryStore | None:
    """Open the store a :class:`therasim.config.MemorySpec` describes with the backend
    registered as ``spec.backend`` (None when it is ``none``). ``scope`` (a run id)
    keeps this run's memories apart from other runs' on a shared server or folder.
    ``layout`` (how a run's memories are laid out in the backend, e.g. Chroma's
    ``"shared"`` or ``"per-client"``) is set on stores that have a ``layout``."""
    store = memory_backend(spec.backend)(spec, default_path, scope)
    if layout is not None and store is not None and hasattr(store, "layout"):
        store.layout = layout  # type: ignore[attr-defined]  # a backend's own attribute
    return store


#: the memory layout of runs whose manifest records none (made before ``memory_layout``)
LEGACY_LAYOUT = "per-client"


def open_run_store(spec: Any, default_path: str | None, manifest: dict[str, Any]) -> MemoryStore | None:
    """The store of a run, as its manifest records it: its scope (``memory_scope``, the
    run id; none for runs made before it) and layout (``memory_layout``; runs made
    before it keep one collection per client and role)."""
    return open_store(spec, default_path, scope=manifest.get("memory_scope"), layout=manifest.get("memory_layout", LEGACY_LAYOUT))
