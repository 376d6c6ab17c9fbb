"""The memory protocol: per-client, per-role memories with metadata filters, and
the registry of memory backends."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from therasim._internal.registry import Registry

__all__ = ["MEMORY_BACKENDS", "MEMORY_KINDS", "BufferedMemoryStore", "MemoryBackend", "MemoryFilter", "MemoryRole", "MemoryStore", "memory_backend", "register_memory_backend"]

MemoryRole = Literal["counselor", "client"]
MEMORY_KINDS = ("summary", "fact", "homework", "event", "risk", "plan")


@dataclass(frozen=True)
class MemoryFilter:
    """Which memories a search or list may return, in therasim's terms (each backend
    translates it to its own query language). Every condition set must hold."""

    session_before: int | None = None  # written in a session numbered below this
    session: int | None = None  # written in exactly this session
    kinds: tuple[str, ...] | None = None  # one of these kinds (MEMORY_KINDS)
    course: str | None = None  # written by this course (its course key)

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds or () if k not in MEMORY_KINDS]
        if bad:
            raise ValueError(f"MemoryFilter.kinds: {bad} not in {MEMORY_KINDS}")

    def describe(self) -> dict[str, Any]:
        """The conditions set, as a JSON-ready dict (for traces)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if v is not None}

    def matches(self, meta: Mapping[str, Any]) -> bool:
        """Whether an item with metadata ``meta`` passes (the reference semantics)."""
        s = meta.get("session")
        if self.session_before is not None and not (isinstance(s, (int, float)) and s < self.session_before):
            return False
        if self.session is not None and s != self.session:
            return False
        if self.kinds is not None and meta.get("kind") not in self.kinds:
            return False
        return self.course is None or meta.get("course") == self.course


#: what a store's ``search`` and ``list`` take: therasim's filter; a backend may also
#: accept its own native form (Chroma: a ``where`` dict), which nodes never use
Where = MemoryFilter | Mapping[str, Any] | None


@runtime_checkable
class MemoryStore(Protocol):
    """Cross-session memory: every method the runner and the memory nodes call.
    Roles are kept apart: counselor notes vs the client's own recollections; a
    search for one role never returns the other's items.

    A store without batching, caches or write buffering implements ``embed`` as
    ``return None``, ``flush`` as ``return 0``, ``release`` as a no-op and keeps
    ``pending = []``, ``retried = 0``."""

    pending: list[Any]  # write batches not yet delivered (client, role, ids, docs, metas, embeddings)
    retried: int  # transient errors retried so far

    def add(self, client_id: str, role: MemoryRole, items: list[dict[str, Any]], embeddings: Sequence[Any] | None = None) -> list[str]:
        """Store items (``text`` plus metadata: course, session, turn, kind); returns ids.
        Ids are deterministic, so re-adding the same item after a resume is a no-op.
        ``embeddings`` (one vector per item, from :meth:`embed`) skips embedding."""
        ...

    def search(self, client_id: str, role: MemoryRole, query: str, k: int = 4, where: Where = None, embedding: Any = None) -> list[dict[str, Any]]:
        """The ``k`` most relevant items with their ``score`` (1 = identical);
        ``embedding`` (the query's vector) skips embedding ``query``."""
        ...

    def list(self, client_id: str, role: MemoryRole, where: Where = None) -> list[dict[str, Any]]:
        """Every item of the client and role that passes ``where``."""
        ...

    def delete_client(self, client_id: str) -> None:
        """Forget the client's memories of both roles."""
        ...

    def release(self, client_id: str) -> None:
        """Drop what the store caches in process for a client whose course ended (the
        memories stay stored); a store without caches does nothing."""
        ...

    def embed(self, texts: list[str]) -> Sequence[Any] | None:
        """One embedding per text (one batch) for ``add(..., embeddings=...)``, or None
        when the store embeds on ``add`` itself."""
        ...

    def flush(self) -> int:
        """Deliver buffered writes; returns how many batches are still pending."""
        ...


#: kept for code that named the fuller protocol: it is now :class:`MemoryStore`
BufferedMemoryStore = MemoryStore

#: opens the store a :class:`therasim.config.MemorySpec` describes:
#: ``(spec, default_path, scope) -> store``; ``default_path`` is the run folder's
#: memory folder (or None), ``scope`` the run id that keeps runs apart
MemoryBackend = Callable[[Any, "str | None", "str | None"], "MemoryStore | None"]

MEMORY_BACKENDS: Registry[MemoryBackend] = Registry("memory backend", hint="register one with therasim.memory.register_memory_backend(name, opener)")


def register_memory_backend(name: str, opener: MemoryBackend) -> MemoryBackend:
    """Make ``memory.backend: NAME`` open stores with ``opener(spec, default_path, scope)``."""
    return MEMORY_BACKENDS.register(name, opener)


def memory_backend(name: str) -> MemoryBackend:
    """The opener registered as ``name`` (an :class:`UnknownNameError` listing the known ones)."""
    return MEMORY_BACKENDS.lookup(name)
