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
from therasim.memory.chroma import BLOCK_SIZE, ChromaMemoryStore, run_layout
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
    "run_layout",
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
    before it keep one collection per client and role). In the ``blocks`` layout the
    cohort's ids (``cohort.ids``) and ``memory_block_size`` place each client in its block."""
    layout = manifest.get("memory_layout", LEGACY_LAYOUT)
    store = open_store(spec, default_path, scope=manifest.get("memory_scope"), layout=layout)
    if layout == "blocks" and store is not None and hasattr(store, "assign_blocks"):
        store.assign_blocks(list((manifest.get("cohort") or {}).get("ids") or []), int(manifest.get("memory_block_size", BLOCK_SIZE)))
    return store
