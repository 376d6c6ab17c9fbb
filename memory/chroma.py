"""Chroma memory store: embedded PersistentClient by default, HttpClient for a
`chroma run` server shared by several processes.

One collection per (scope, client, role), the scope being the run id: two runs
sharing a `chroma run` server never see each other's memories, and a run's
course is its (scope, client) pair. Recall never filters a global index (a
metadata-filtered query over one index measured ~94 ms at 1e5 vectors), and
role separation is structural, not a filter someone can forget.

Chroma is the durable store. Recall is served from a read-through mirror of each
(client, role) collection in process memory (a client has ~100 memories: a
384 x 100 matrix), loaded with one ``get`` on first use and updated after every
successful write, so a recall is a matrix-vector product instead of a Chroma
query (~1-3 ms each, more with a ``where`` filter). The mirror is LRU-bounded.
A course runs in one process, so its client's memory is written only there; if
several processes write the same client's memory, pass ``cache=False``.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from therasim._internal.retry import RetryPolicy
from therasim.errors import TherasimError
from therasim.memory.base import (
    MEMORY_KINDS,
    MemoryFilter,
    MemoryRole,
    Where,
    register_memory_backend,
)
from therasim.memory.mirror import Mirror, MirrorEntry, match, supported

_match, _supported = match, supported  # old private names (tests compare the mirror with Chroma)

__all__ = ["ChromaMemoryStore", "chroma_where"]


def memory_retry_policy(budget_s: float) -> RetryPolicy:
    """The retries of memory-server calls: 0.2 s doubling to 2 s, no jitter (one
    process per server connection), for up to ``budget_s`` (0: none)."""
    return RetryPolicy(max_retries=None, base_s=0.2, cap_s=2.0, budget_s=budget_s, jitter=False)


def _collection_name(client_id: str, role: str, scope: str | None = None) -> str:
    key = client_id if scope is None else f"{scope}\x00{client_id}"
    return f"m-{hashlib.sha1(key.encode()).hexdigest()[:20]}-{role}"


class ChromaMemoryStore:
    """:class:`MemoryStore` over Chroma with an explicit embedding function."""

    def __init__(
        self,
        client: Any,
        embedding: Any,
        *,
        cache: bool = True,
        cache_size: int = 1024,
        retry_budget_s: float = 0.0,
        handles: int = 1024,
        scope: str | None = None,
        retry: RetryPolicy | None = None,
        serialize: bool = False,
    ) -> None:
        self.client = client
        # serialize: Chroma calls one at a time (the embedded client; see persistent())
        self._io: Any = threading.RLock() if serialize else contextlib.nullcontext()
        # Memories are kept per scope (a run id): collections of another scope are never read.
        self.scope = scope
        self.embedding = embedding
        self.cache = cache
        # A `chroma run` server can restart mid-run: transient errors are retried for up
        # to this long, and writes that still fail are buffered (see flush / pending).
        self.retry = memory_retry_policy(retry_budget_s) if retry is None else retry
        self.pending: list[tuple[str, str, list[str], list[str], list[dict[str, Any]], Any]] = []
        self.retried = 0
        self._mirror = Mirror(cache_size)
        # collection handles, LRU-bounded: a run of 1e4-1e5 clients keeps only the
        # recently used ones (a course uses its client's two while it runs)
        from collections import OrderedDict

        self._cols: OrderedDict[str, Any] = OrderedDict()
        self._handles = handles
        self._lock = threading.Lock()

    @classmethod
    def persistent(cls, path: str, embedding: Any, *, segment_cache_mb: int = 256, hnsw_cache: int = 64, **kw: Any) -> ChromaMemoryStore:
        """Embedded Chroma at ``path``. Its loaded index segments are kept in an LRU of
        ``segment_cache_mb`` (Python segment manager) and at most ``hnsw_cache`` HNSW
        indexes stay loaded (Chroma 1.x's Rust core keeps RLIMIT_NOFILE / 5 of them,
        about 2.5 MB each: with one collection per client and role, resident memory
        grew with every client of the run). Recall is served from the mirror, so an
        evicted index is reloaded only for the next write to that collection."""
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False, allow_reset=False, chroma_segment_cache_policy="LRU", chroma_memory_limit_bytes=segment_cache_mb * 2**20)
        with _hnsw_cache_limit(hnsw_cache):
            client = chromadb.PersistentClient(path=path, settings=settings)
        # One Chroma call at a time: with a bounded HNSW cache, an index evicted while
        # another thread opens a new collection's reader fails ("Error creating hnsw
        # segment reader: Nothing found on disk"); serialised, every write persists.
        return cls(client, embedding, serialize=True, **kw)

    @classmethod
    def http(cls, host: str, port: int, embedding: Any, **kw: Any) -> ChromaMemoryStore:
        import chromadb
        from chromadb.config import Settings

        kw.setdefault("retry_budget_s", 30.0)
        return cls(chromadb.HttpClient(host=host, port=port, settings=Settings(anonymized_telemetry=False)), embedding, **kw)

    @property
    def retry_budget_s(self) -> float:
        return self.retry.budget_s

    @retry_budget_s.setter
    def retry_budget_s(self, value: float) -> None:
        self.retry = memory_retry_policy(value)

    def _count_retry(self, e: BaseException) -> None:
        self.retried += 1

    def _retry(self, fn: Any) -> Any:
        """Call ``fn``; retry transient (connection) errors as :attr:`retry` allows.
        Each attempt holds the store's Chroma lock when calls are serialised."""

        def attempt() -> Any:
            with self._io:
                return fn()

        return self.retry.call(attempt, transient=_transient, on_retry=self._count_retry)

    def flush(self) -> int:
        """Write buffered items (after an outage); returns how many batches are still pending."""
        while self.pending:
            batch = self.pending[0]
            try:
                self._retry(lambda b=batch: self._col(b[0], b[1]).upsert(ids=b[2], documents=b[3], metadatas=b[4], embeddings=b[5]))
            except Exception as e:
                if _transient(e):
                    break
                raise
            self.pending.pop(0)
        return len(self.pending)

    def _col(self, client_id: str, role: str, create: bool = True) -> Any:
        if role not in ("counselor", "client"):
            raise TherasimError(f"memory role must be 'counselor' or 'client', got {role!r}")
        name = _collection_name(client_id, role, self.scope)
        with self._lock:
            col = self._cols.get(name)
            if col is not None:
                self._cols.move_to_end(name)
            else:
                if create:
                    meta = {"hnsw:space": "cosine", "client_id": client_id, "role": role, **({"scope": self.scope} if self.scope else {})}
                    col = self.client.get_or_create_collection(name, embedding_function=self.embedding, metadata=meta)
                else:
                    try:
                        col = self.client.get_collection(name, embedding_function=self.embedding)
                    except Exception as e:
                        if _transient(e):
                            raise
                        return None  # no such collection: nothing stored yet
                self._cols[name] = col
                while len(self._cols) > self._handles:
                    self._cols.popitem(last=False)
            return col

    def add(self, client_id: str, role: MemoryRole, items: list[dict[str, Any]], embeddings: list[Any] | None = None) -> list[str]:
        """Store items; ``embeddings`` (one vector per item) skips the embedding function."""
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
            meta.update(kind=kind, client_id=client_id, role=role, **({"scope": self.scope} if self.scope else {}))
            mid = it.get("id") or hashlib.sha1(f"{client_id}|{role}|{meta.get('course', '')}|{meta.get('session', '')}|{kind}|{text}".encode()).hexdigest()[:24]
            ids.append(str(mid))
            docs.append(text)
            metas.append(meta)
        if embeddings is not None and len(embeddings) != len(items):
            raise TherasimError(f"memory add: {len(embeddings)} embeddings for {len(items)} items")
        if embeddings is None and (self.cache or self.retry_budget_s):
            embeddings = self._embed(docs)
        if self.pending:
            self.flush()
        try:
            self._retry(lambda: self._col(client_id, role).upsert(ids=ids, documents=docs, metadatas=metas, embeddings=embeddings))
        except Exception as e:
            if not _transient(e):
                raise
            # Still down after the retry budget: keep the write, flush it later.
            self.pending.append((client_id, role, ids, docs, metas, embeddings))
        if self.cache:
            self._mirror.upsert(_collection_name(client_id, role, self.scope), ids, docs, metas, embeddings)
        return ids

    def embed(self, texts: list[str]) -> Any:
        """Vectors for ``texts`` with the store's embedding (one batch): pass them to
        :meth:`add` to embed several writes in one call."""
        return self._embed(texts)

    def _embed(self, texts: list[str]) -> Any:
        if self.embedding is None:
            raise TherasimError("this memory store has no embedding function; pass embeddings (or embedding=) explicitly")
        import numpy as np

        return np.asarray(self.embedding(texts), dtype="float32")

    def _load(self, client_id: str, role: str) -> MirrorEntry | None:
        name = _collection_name(client_id, role, self.scope)
        entry = self._mirror.get(name)
        if entry is not None:
            return entry
        col = self._retry(lambda: self._col(client_id, role, create=False))
        if col is None:
            # Nothing stored yet: mirror it as empty (this store is the client's only
            # writer while cached, and add() updates mirrored entries), so a new
            # client's recalls never ask Chroma again.
            return self._mirror.put(name, [], [], [], [])
        res = self._retry(lambda: col.get(include=["embeddings", "documents", "metadatas"]))
        return self._mirror.put(name, res["ids"], res["documents"], res["metadatas"], res["embeddings"])

    def search(self, client_id: str, role: MemoryRole, query: str, k: int = 4, where: Where = None, embedding: Any = None) -> list[dict[str, Any]]:
        """The ``k`` most relevant items (cosine ``score``); ``embedding`` skips
        embedding ``query``. ``where``: a :class:`MemoryFilter`, or Chroma's own
        ``where`` dict."""
        where = _native(where)
        if self.cache and _supported(where):
            entry = self._load(client_id, role)
            if entry is None or not entry.ids:
                return []
            q = embedding if embedding is not None else self._embed([query])[0]
            return entry.search(q, k, where)
        col = self._retry(lambda: self._col(client_id, role, create=False))
        if col is None:
            return []
        n = self._retry(col.count)
        if n == 0:
            return []
        # Over-fetch a little and order by (score, id), so ties break the same way
        # here and in the mirror.
        m = min(k + 8, n)
        if embedding is not None:
            res = self._retry(lambda: col.query(query_embeddings=[embedding], n_results=m, where=_where(where)))
        else:
            res = self._retry(lambda: col.query(query_texts=[query], n_results=m, where=_where(where)))
        out = []
        for mid, doc, meta, dist in zip(res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0], strict=False):
            out.append({"id": mid, "text": doc, **(meta or {}), "score": round(1.0 - float(dist), 4)})
        out.sort(key=lambda it: (-it["score"], it["id"]))
        return out[:k]

    def list(self, client_id: str, role: MemoryRole, where: Where = None) -> list[dict[str, Any]]:
        where = _native(where)
        with self._io:
            col = self._col(client_id, role, create=False)
            if col is None:
                return []
            res = col.get(where=_where(where))
        return [{"id": i, "text": d, **(m or {})} for i, d, m in zip(res["ids"], res["documents"], res["metadatas"], strict=False)]

    def release(self, client_id: str) -> None:
        """Forget a finished course's client in process: its mirror entries and
        collection handles (the data stays in Chroma; a later use reloads it). The
        runner calls this when a course ends, so what the store holds depends on the
        courses in flight, not on the courses in the run."""
        for role in ("counselor", "client"):
            name = _collection_name(client_id, role, self.scope)
            with self._lock:
                self._cols.pop(name, None)
            self._mirror.drop(name)

    def delete_client(self, client_id: str) -> None:
        for role in ("counselor", "client"):
            name = _collection_name(client_id, role, self.scope)
            with self._lock:
                self._cols.pop(name, None)
            self._mirror.drop(name)
            try:
                with self._io:
                    self.client.delete_collection(name)
            except Exception:  # not there: nothing to delete
                pass


_HNSW_LIMIT = threading.local()


@contextmanager
def _hnsw_cache_limit(n: int) -> Iterator[None]:
    """Cap the number of HNSW indexes the Rust core of a client created meanwhile
    keeps loaded (its size is set once, when the client's system is built)."""
    try:
        from chromadb.api.rust import RustBindingsAPI
    except ImportError:  # another Chroma build: nothing to cap
        yield
        return
    if not getattr(RustBindingsAPI, "_therasim_capped", False):
        real_start = RustBindingsAPI.start

        def start(self: Any) -> None:
            cap = getattr(_HNSW_LIMIT, "n", None)
            if cap and isinstance(getattr(self, "hnsw_cache_size", None), int):
                self.hnsw_cache_size = min(self.hnsw_cache_size, cap)
            real_start(self)

        RustBindingsAPI.start = start  # type: ignore[method-assign]
        RustBindingsAPI._therasim_capped = True  # type: ignore[attr-defined]
    _HNSW_LIMIT.n = n
    try:
        yield
    finally:
        _HNSW_LIMIT.n = None


def chroma_where(f: MemoryFilter) -> dict[str, Any] | None:
    """therasim's filter in Chroma's ``where`` syntax."""
    conds: list[dict[str, Any]] = []
    if f.session_before is not None:
        conds.append({"session": {"$lt": f.session_before}})
    if f.session is not None:
        conds.append({"session": f.session})
    if f.kinds is not None:
        conds.append({"kind": {"$in": list(f.kinds)}})
    if f.course is not None:
        conds.append({"course": f.course})
    return None if not conds else conds[0] if len(conds) == 1 else {"$and": conds}


def _native(where: Where) -> dict[str, Any] | None:
    return chroma_where(where) if isinstance(where, MemoryFilter) else (dict(where) if where else None)


def _where(where: dict[str, Any] | None) -> dict[str, Any] | None:
    if not where:
        return None
    if len(where) == 1:
        return where
    return {"$and": [{k: v} for k, v in where.items()]}


def _transient(e: BaseException) -> bool:
    """A connection-level failure (server restarting), not a bad request."""
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    names = {c.__name__ for c in type(e).__mro__}
    if names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError", "ReadError", "WriteError", "NetworkError", "TransportError"}:
        return True
    msg = str(e).lower()
    return any(w in msg for w in ("connection refused", "connecterror", "could not connect", "server disconnected", "connection reset"))


def _embedding(spec: Any) -> Any:
    from therasim import memory  # looked up at call time (tests swap in a fast embedding)

    return memory.make_embedding(spec.embedding)


def _open_chroma(spec: Any, default_path: str | None, scope: str | None) -> ChromaMemoryStore:
    path = spec.path or default_path
    if path is None:
        raise ValueError("memory.path is not set and no run folder was given")
    return ChromaMemoryStore.persistent(path, _embedding(spec), scope=scope)


def _open_chroma_http(spec: Any, default_path: str | None, scope: str | None) -> ChromaMemoryStore:
    return ChromaMemoryStore.http(spec.host, spec.port, _embedding(spec), scope=scope)


register_memory_backend("chroma", _open_chroma)
register_memory_backend("chroma-http", _open_chroma_http)
