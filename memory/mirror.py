"""The recall mirror: an in-process copy of each (client, role) memory collection
(ids, documents, metadata and unit vectors), LRU-bounded, so a recall is one
matrix-vector product instead of a query to the store. A backend loads an entry
with everything a collection holds on first use and updates it after each write
(see :class:`therasim.memory.chroma.ChromaMemoryStore`).

Filters here use Chroma's metadata filter semantics (``where`` dicts with the
operators in :data:`OPS`, ``$and``/``$or``): backends translate therasim's
:class:`therasim.memory.base.MemoryFilter` to that form.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["OPS", "Mirror", "MirrorEntry", "as_stored", "match", "supported"]

OPS = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$lt": lambda a, b: a is not None and a < b,
    "$lte": lambda a, b: a is not None and a <= b,
    "$gt": lambda a, b: a is not None and a > b,
    "$gte": lambda a, b: a is not None and a >= b,
    "$in": lambda a, b: a in b,
    "$nin": lambda a, b: a not in b,
}


def supported(where: dict[str, Any] | None) -> bool:
    if not where:
        return True
    for k, v in where.items():
        if k in ("$and", "$or"):
            if not all(supported(w) for w in v):
                return False
        elif k.startswith("$"):
            return False
        elif isinstance(v, dict) and not all(op in OPS for op in v):
            return False
    return True


def match(meta: dict[str, Any], where: dict[str, Any] | None) -> bool:
    """Chroma's metadata filter semantics for the operators above."""
    if not where:
        return True
    for k, v in where.items():
        if k == "$and":
            if not all(match(meta, w) for w in v):
                return False
        elif k == "$or":
            if not any(match(meta, w) for w in v):
                return False
        elif isinstance(v, dict):
            if k not in meta or not all(OPS[op](meta.get(k), arg) for op, arg in v.items()):
                return False
        elif meta.get(k) != v:
            return False
    return True


def as_stored(vecs: Any) -> Any:
    """The vectors as embedded Chroma gives them back (a float32 ``(n, d)`` array), or
    None when a row has no finite, non-zero norm.

    A collection in cosine space keeps each vector normalised (``v * (1 / |v|)``, the
    squares summed one after another in float32) with its norm, and ``get`` returns the
    product of the two, which can differ from what was written in the last bit of a
    component (measured on Chroma 1.5.9: ``tests/test_memory_fill.py`` writes vectors
    and compares the bits). The recall mirror keeps these values whether it is loaded
    from Chroma or filled from the store's own writes, so both give bit-identical
    scores. Every step is one IEEE float32 operation, so this is exact:
    ``np.cumsum`` adds in order, ``np.sqrt`` and the division are correctly rounded."""
    import numpy as np

    v = np.asarray(vecs, dtype="float32")
    if v.ndim != 2:
        v = v.reshape(len(v), -1)
    norm = np.sqrt(np.cumsum(v * v, axis=1, dtype="float32")[:, -1]) if v.shape[1] else np.zeros(len(v), dtype="float32")
    if not (np.all(norm > 0) and np.all(np.isfinite(norm))):
        return None
    inv = np.float32(1) / norm
    return (v * inv[:, None]) * norm[:, None]


class MirrorEntry:
    """One collection's copy. ``filled``: made without reading the store (its items
    are the store's own writes since the collection was new), see
    :meth:`therasim.memory.chroma.ChromaMemoryStore.search`."""

    __slots__ = ("docs", "filled", "ids", "lock", "mat", "metas")

    def __init__(self, filled: bool = False) -> None:
        import numpy as np

        self.filled = filled
        self.lock = threading.Lock()
        self.ids: list[str] = []
        self.docs: list[str] = []
        self.metas: list[dict[str, Any]] = []
        self.mat = np.zeros((0, 0), dtype="float32")

    def upsert(self, ids: list[str], docs: list[str], metas: list[dict[str, Any]], vecs: Any) -> None:
        import numpy as np

        v = np.asarray(vecs, dtype="float32").reshape(len(ids), -1)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        with self.lock:
            self._upsert(ids, docs, metas, v)

    def _upsert(self, ids: list[str], docs: list[str], metas: list[dict[str, Any]], v: Any) -> None:
        import numpy as np

        pos = {m: i for i, m in enumerate(self.ids)}
        new = []
        for j, mid in enumerate(ids):
            i = pos.get(mid)
            if i is None:
                new.append(j)
                continue
            self.docs[i], self.metas[i] = docs[j], metas[j]
            self.mat[i] = v[j]
        if new:
            self.ids += [ids[j] for j in new]
            self.docs += [docs[j] for j in new]
            self.metas += [metas[j] for j in new]
            self.mat = v[new] if self.mat.size == 0 else np.vstack([self.mat, v[new]])

    def search(self, q: Any, k: int, where: dict[str, Any] | None) -> list[dict[str, Any]]:
        import numpy as np

        qv = np.asarray(q, dtype="float32").reshape(-1)
        qv = qv / max(float(np.linalg.norm(qv)), 1e-12)
        with self.lock:
            ids, docs, metas, mat = list(self.ids), list(self.docs), list(self.metas), self.mat
        sims = mat @ qv
        if where:
            mask = np.fromiter((match(m, where) for m in metas), dtype=bool, count=len(metas))
            sims = np.where(mask, sims, -np.inf)
        n = min(k, int(np.isfinite(sims).sum()))
        if n <= 0:
            return []
        rounded = np.round(sims, 4)
        pool = np.argpartition(-sims, min(n + 8, len(sims)) - 1)[: n + 8] if n + 8 < len(sims) else np.arange(len(sims))
        top = sorted(pool.tolist(), key=lambda i: (-float(rounded[i]), ids[i]))[:n]
        return [{"id": ids[i], "text": docs[i], **metas[i], "score": round(float(sims[i]), 4)} for i in top]


class Mirror:
    """LRU map of collection name -> in-memory copy (ids, documents, metadata, unit vectors)."""

    def __init__(self, size: int) -> None:
        from collections import OrderedDict

        self.size = size
        self._d: OrderedDict[str, MirrorEntry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> MirrorEntry | None:
        with self._lock:
            e = self._d.get(name)
            if e is not None:
                self._d.move_to_end(name)
            return e

    def put(self, name: str, ids: list[str], docs: list[str], metas: list[Any], vecs: Any, filled: bool = False) -> MirrorEntry:
        e = MirrorEntry(filled)
        if ids:
            e.upsert(list(ids), list(docs), [dict(m or {}) for m in metas], vecs)
        with self._lock:
            self._d[name] = e
            self._d.move_to_end(name)
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return e

    def upsert(self, name: str, ids: list[str], docs: list[str], metas: list[dict[str, Any]], vecs: Any) -> bool:
        """Update ``name``'s entry if mirrored (others load in full on first search);
        True if it was. ``vecs`` None drops the entry instead (reloaded when used)."""
        with self._lock:
            e = self._d.get(name)
            if e is None:
                return False
            if vecs is None:
                del self._d[name]
                return False
            e.upsert(ids, docs, metas, vecs)
            return True

    def drop(self, name: str) -> None:
        with self._lock:
            self._d.pop(name, None)

    def drop_filled(self) -> None:
        """Drop every entry not loaded from the store (they load on next use)."""
        with self._lock:
            for name in [n for n, e in self._d.items() if e.filled]:
                del self._d[name]
