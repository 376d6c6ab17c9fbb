"""Chroma memory store: embedded PersistentClient by default, HttpClient for a
`chroma run` server shared by several processes.

One collection per (client, role): recall never filters a global index (a
metadata-filtered query over one index measured ~94 ms at 1e5 vectors), and
role separation is structural, not a filter someone can forget.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from therasim.errors import TherasimError
from therasim.memory.base import MEMORY_KINDS, MemoryRole

__all__ = ["ChromaMemoryStore"]


def _collection_name(client_id: str, role: str) -> str:
    return f"m-{hashlib.sha1(client_id.encode()).hexdigest()[:20]}-{role}"


class ChromaMemoryStore:
    """:class:`MemoryStore` over Chroma with an explicit embedding function."""

    def __init__(self, client: Any, embedding: Any) -> None:
        self.client = client
        self.embedding = embedding
        self._cols: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def persistent(cls, path: str, embedding: Any) -> ChromaMemoryStore:
        import chromadb
        from chromadb.config import Settings

        return cls(chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False, allow_reset=False)), embedding)

    @classmethod
    def http(cls, host: str, port: int, embedding: Any) -> ChromaMemoryStore:
        import chromadb
        from chromadb.config import Settings

        return cls(chromadb.HttpClient(host=host, port=port, settings=Settings(anonymized_telemetry=False)), embedding)

    def _col(self, client_id: str, role: str, create: bool = True) -> Any:
        if role not in ("counselor", "client"):
            raise TherasimError(f"memory role must be 'counselor' or 'client', got {role!r}")
        name = _collection_name(client_id, role)
        with self._lock:
            col = self._cols.get(name)
            if col is None:
                if create:
                    col = self.client.get_or_create_collection(name, embedding_function=self.embedding, metadata={"hnsw:space": "cosine", "client_id": client_id, "role": role})
                else:
                    try:
                        col = self.client.get_collection(name, embedding_function=self.embedding)
                    except Exception:
                        return None
                self._cols[name] = col
            return col

    def add(self, client_id: str, role: MemoryRole, items: list[dict[str, Any]]) -> list[str]:
        if not items:
            return []
        ids, docs, metas = [], [], []
        for i, it in enumerate(items):
            text = str(it.get("text", "")).strip()
            if not text:
                raise TherasimError(f"memory item #{i} has no text")
            kind = it.get("kind", "fact")
            if kind not in MEMORY_KINDS:
                raise TherasimError(f"memory item #{i}: kind {kind!r} is not one of {MEMORY_KINDS}")
            meta = {k: v for k, v in it.items() if k != "text" and isinstance(v, (str, int, float, bool))}
            meta.update(kind=kind, client_id=client_id, role=role)
            mid = it.get("id") or hashlib.sha1(f"{client_id}|{role}|{meta.get('course', '')}|{meta.get('session', '')}|{kind}|{text}".encode()).hexdigest()[:24]
            ids.append(str(mid))
            docs.append(text)
            metas.append(meta)
        self._col(client_id, role).upsert(ids=ids, documents=docs, metadatas=metas)
        return ids

    def search(self, client_id: str, role: MemoryRole, query: str, k: int = 4, where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        col = self._col(client_id, role, create=False)
        if col is None:
            return []
        n = col.count()
        if n == 0:
            return []
        res = col.query(query_texts=[query], n_results=min(k, n), where=_where(where))
        out = []
        for mid, doc, meta, dist in zip(res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0], strict=False):
            out.append({"id": mid, "text": doc, **(meta or {}), "score": round(1.0 - float(dist), 4)})
        return out

    def list(self, client_id: str, role: MemoryRole, where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        col = self._col(client_id, role, create=False)
        if col is None:
            return []
        res = col.get(where=_where(where))
        return [{"id": i, "text": d, **(m or {})} for i, d, m in zip(res["ids"], res["documents"], res["metadatas"], strict=False)]

    def delete_client(self, client_id: str) -> None:
        for role in ("counselor", "client"):
            name = _collection_name(client_id, role)
            with self._lock:
                self._cols.pop(name, None)
            try:
                self.client.delete_collection(name)
            except Exception:  # not there: nothing to delete
                pass


def _where(where: dict[str, Any] | None) -> dict[str, Any] | None:
    if not where:
        return None
    if len(where) == 1:
        return where
    return {"$and": [{k: v} for k, v in where.items()]}
