"""The memory protocol: per-client, per-role memories with metadata filters."""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["MEMORY_KINDS", "BufferedMemoryStore", "MemoryRole", "MemoryStore"]

MemoryRole = Literal["counselor", "client"]
MEMORY_KINDS = ("summary", "fact", "homework", "event", "risk", "plan")


@runtime_checkable
class MemoryStore(Protocol):
    """Cross-session memory. Roles are kept apart: counselor notes vs the client's
    own recollections; a search for one role never returns the other's items."""

    def add(self, client_id: str, role: MemoryRole, items: list[dict[str, Any]]) -> list[str]:
        """Store items (``text`` plus metadata: course, session, turn, kind); returns ids.
        Ids are deterministic, so re-adding the same item after a resume is a no-op."""
        ...

    def search(self, client_id: str, role: MemoryRole, query: str, k: int = 4, where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The ``k`` most relevant items with their ``score`` (1 = identical)."""
        ...

    def list(self, client_id: str, role: MemoryRole, where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        ...

    def delete_client(self, client_id: str) -> None:
        ...


@runtime_checkable
class BufferedMemoryStore(MemoryStore, Protocol):
    """What the runner and the memory nodes also use when a store offers it (each is
    looked up with ``getattr``, so a plain :class:`MemoryStore` still works):
    batch embedding, writes and searches with precomputed vectors, and writes
    buffered across an outage of a memory server."""

    pending: list[Any]  # write batches not yet delivered (client, role, ids, docs, metas, embeddings)
    retried: int  # transient errors retried so far

    def embed(self, texts: list[str]) -> list[Any]:
        """One embedding per text (one batch), for ``add(..., embeddings=...)``."""
        ...

    def add(self, client_id: str, role: MemoryRole, items: list[dict[str, Any]], embeddings: list[Any] | None = None) -> list[str]:
        ...

    def search(self, client_id: str, role: MemoryRole, query: str, k: int = 4, where: dict[str, Any] | None = None, embedding: Any = None) -> list[dict[str, Any]]:
        ...

    def flush(self) -> int:
        """Deliver buffered writes; returns how many batches are still pending."""
        ...

