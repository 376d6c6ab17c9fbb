"""Chroma memory store: embedded PersistentClient by default, HttpClient for a
`chroma run` server shared by several processes.

Two layouts (``layout=``; a run records its own in the manifest, ``memory_layout``):

- ``"shared"`` (runs made since it was added): one collection per (scope, role),
  the scope being the run id. Every item carries its ``client_id`` in metadata and
  every read filters on it (Chroma answers a filtered query exactly over the
  client's few items), stored ids are prefixed with a hash of the client id (two
  clients' explicit ids never collide). A run keeps two collections, so the HNSW
  indexes Chroma holds loaded (about 2.5 MB each, whatever their size, in embedded
  Chroma 1.x) do not grow with the clients of the run.
- ``"blocks"`` (embedded runs made since it was added): the shared layout, once per
  block of ``block_size`` consecutive clients of the run's cohort (the manifest's
  order; clients outside it go to a block named ``extra``), each block an embedded
  Chroma of its own under ``PATH/blocks-<scope hash>/<block>``. A block is opened on
  first use and closed (its Chroma System stopped, its loaded index and caches
  freed) once none of its clients is in use and more than ``open_blocks`` blocks are
  open: the runner releases each client when its course ends and runs the cohort in
  order, so what stays resident depends on the courses in flight, not on the clients
  written. Reads of a closed block's clients (resume, inspect, fork) reopen it.
- ``"per-client"`` (older runs, read and resumed as they are): one collection per
  (scope, client, role).

Either way two runs sharing a `chroma run` server never see each other's
memories, and role separation is structural (the counselor's and the client's
memories live in different collections), not a filter someone can forget.

Chroma is the durable store. Recall is served from a read-through mirror of each
(client, role) in process memory (a client has ~100 memories: a 384 x 100
matrix), loaded with one ``get`` on first use and updated after every successful
write, so a recall is a matrix-vector product instead of a Chroma query (~1-3 ms
each, more with a ``where`` filter). In a block this store created (blocks layout)
a client's entry is filled from the store's own writes instead, from the first,
so it is never read from Chroma; the mirror keeps vectors as Chroma gives them back
(:func:`therasim.memory.mirror.as_stored`), so either way the scores are the same
bits, and a store checks its first filled entry against Chroma once. The mirror is LRU-bounded, and the runner
releases a finished course's entries. A course runs in one process, so its
client's memory is written only there; if several processes write the same
client's memory, pass ``cache=False``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections import OrderedDict
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
from therasim.memory.mirror import Mirror, MirrorEntry, as_stored, match, supported

_match, _supported = match, supported  # old private names (tests compare the mirror with Chroma)

__all__ = ["ChromaMemoryStore", "chroma_where", "run_layout"]


def memory_retry_policy(budget_s: float) -> RetryPolicy:
    """The retries of memory-server calls: 0.2 s doubling to 2 s, no jitter (one
    process per server connection), for up to ``budget_s`` (0: none)."""
    return RetryPolicy(max_retries=None, base_s=0.2, cap_s=2.0, budget_s=budget_s, jitter=False)


#: the memory layouts (see the module's docstring); runs whose manifest names none are "per-client"
LAYOUTS = ("blocks", "shared", "per-client")
#: clients per block in the "blocks" layout (a run records its own as memory_block_size)
BLOCK_SIZE = 256
#: blocks kept open with none of their clients in use (the most recently used ones)
OPEN_BLOCKS = 2
#: the longest a memory write waits for other clients' writes to share its upsert
#: (``THERASIM_MEMORY_GATHER_MS``; 0 turns gathering off), and the writers a batch
#: waits for at most (``THERASIM_MEMORY_GATHER_WRITERS``; see
#: :meth:`ChromaMemoryStore.gather_wait`). 64 took a 64-course run's 2,576 items in
#: 14-16 upserts instead of 38-39, but its CPU per model call did not measurably
#: change (docs/benchmarks.md, "Issue #17, session 17 (mem)"), so 8 stays the default:
#: fewer writers to wait for keeps a write's wait short once a long run's courses are
#: out of step; a write waits at most ``GATHER_S`` either way.
GATHER_S = 0.5
GATHER_WRITERS = 8
#: new collections' ``hnsw:sync_threshold`` (``THERASIM_CHROMA_HNSW_SYNC``; Chroma's
#: default is 1000). Embedded Chroma persists a collection's HNSW index (and only then
#: advances the log position it purges up to) every this many written items, and an
#: upsert's cost grows with the log records since that point (its local compaction
#: reads the log from the lower of its segments' persisted positions): at 1000 about
#: half of an upsert's CPU (docs/benchmarks.md, "the fixed cost of a Chroma upsert").
#: The log, written before the upsert returns, is what makes a write durable, so
#: persisting the index more often changes nothing about what survives a kill.
HNSW_SYNC = 100

#: Held by every call into embedded Chroma, process-wide: one such call runs at a time.
#: Chroma 1.x's Rust bindings keep the GIL through a write (chroma-core/chroma#3873
#: released it for reads only; #7692 reports other calls that keep it), and take their
#: own locks inside; two memory threads in Chroma at once can each hold what the other
#: needs (one holds the GIL and waits on a Rust lock, the other holds that lock and
#: waits for the GIL): a run of 256 courses in flight stopped that way for 12 minutes
#: (docs/benchmarks.md, "Issue #17, session 16 (loop)"). A thread waiting here releases
#: the GIL, and nothing is called into Chroma while another call is inside it. Calls to
#: a Chroma server (``chroma run``) are not serialised.
EMBEDDED_CHROMA_LOCK = threading.RLock()


def _env_int(name: str, default: int, low: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise TherasimError(f"{name}={raw!r}: give a whole number (at least {low})") from None
    if v < low:
        raise TherasimError(f"{name}={raw!r}: give a whole number of at least {low}")
    return v


def _hnsw_sync() -> int:
    return _env_int("THERASIM_CHROMA_HNSW_SYNC", HNSW_SYNC, 100)  # Chroma wants hnsw:batch_size (100) <= sync_threshold


def _gather_s() -> float:
    raw = os.environ.get("THERASIM_MEMORY_GATHER_MS", "").strip()
    if not raw:
        return GATHER_S
    try:
        return max(float(raw), 0.0) / 1000
    except ValueError:
        raise TherasimError(f"THERASIM_MEMORY_GATHER_MS={raw!r}: give milliseconds (a number, 0 turns gathering off)") from None


def _gather_writers() -> int:
    return _env_int("THERASIM_MEMORY_GATHER_WRITERS", GATHER_WRITERS, 1)


def run_layout(backend: str) -> str:
    """The layout a new run's memories get on ``backend``: ``"blocks"`` on embedded
    Chroma (so a run's resident memory does not grow with the clients written),
    ``"shared"`` on a Chroma server (its memory is the server's)."""
    return "blocks" if backend == "chroma" else "shared"


def _collection_name(client_id: str, role: str, scope: str | None = None) -> str:
    """The per-client layout's collection (and, in both layouts, the mirror's key)."""
    key = client_id if scope is None else f"{scope}\x00{client_id}"
    return f"m-{hashlib.sha1(key.encode()).hexdigest()[:20]}-{role}"


def _shared_name(role: str, scope: str | None) -> str:
    """The shared layout's collection of one role in one scope."""
    return f"run-{hashlib.sha1((scope or '').encode()).hexdigest()[:20]}-{role}"


def _block_dir(path: str, scope: str | None, block: int | str) -> str:
    """The folder of one block of the blocks layout (scoped, like the shared collections)."""
    name = f"{block:05d}" if isinstance(block, int) else block
    return os.path.join(path, f"blocks-{hashlib.sha1((scope or '').encode()).hexdigest()[:20]}", name)


class _Block:
    """One open block: its embedded Chroma client, collection handles, clients in use."""

    __slots__ = ("client", "cols", "users")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.cols: dict[str, Any] = {}
        self.users: set[str] = set()

    def close(self) -> None:
        with EMBEDDED_CHROMA_LOCK:
            self.client.close()


class _Batch:
    """Writes to one collection gathered for one upsert (:meth:`ChromaMemoryStore._group_upsert`)."""

    __slots__ = ("col", "deadline", "docs", "done", "embs", "error", "finished", "ids", "ids_set", "metas", "parts")

    def __init__(self, col: Any, deadline: float = 0.0) -> None:
        self.col = col
        self.finished = threading.Event()  # set once its upsert returned (done, error): what the writers other than its first wait on
        self.deadline = deadline  # time.monotonic() before which its writer waits for others (gather_wait)
        self.ids: list[str] = []
        self.ids_set: set[str] = set()
        self.docs: list[str] = []
        self.metas: list[dict[str, Any]] = []
        self.embs: list[Any] = []
        self.parts: list[list[str]] = []  # each writer's ids
        self.done = False
        self.error: BaseException | None = None

    def add(self, ids: list[str], docs: list[str], metas: list[dict[str, Any]], embeddings: Any) -> None:
        self.ids += ids
        self.ids_set.update(ids)
        self.docs += docs
        self.metas += metas
        self.embs.append(embeddings)
        self.parts.append(ids)


class _ABatch(_Batch):
    """A :class:`_Batch` gathered on an event loop (:meth:`ChromaMemoryStore.aadd`)."""

    __slots__ = ("go", "loop", "returned", "sent", "stored")

    def __init__(self, col: Any, loop: Any, deadline: float) -> None:
        import asyncio

        super().__init__(col, deadline)
        self.loop = loop
        self.go = asyncio.Event()  # enough writers joined: send now
        self.sent = loop.create_future()  # left the open batches (a writer with the same ids may open the next)
        self.returned = loop.create_future()  # its upsert returned (or failed: error)
        self.stored = False


def _id_prefix(client_id: str) -> str:
    """What the shared layout puts before a client's ids (fixed length: 12 + 1)."""
    return hashlib.sha1(client_id.encode()).hexdigest()[:12] + ":"


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
        layout: str = "shared",
        path: str | None = None,
        settings: Any = None,
        open_blocks: int = OPEN_BLOCKS,
    ) -> None:
        # ``path``/``settings``: an embedded Chroma folder, opened on first use (and, in
        # the blocks layout, the root of the run's block folders)
        self._client = client
        self._path = path
        self._settings = settings
        self._open_lock = threading.Lock()
        self._blocks: OrderedDict[int | str, _Block] = OrderedDict()
        self._block_of: dict[str, int] = {}
        self._open_blocks = open_blocks
        self.blocks_opened = 0  # statistics: blocks opened (reopened included) and closed
        self.blocks_closed = 0
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
        # blocks this store created (their folder did not exist when it opened them) ->
        # the mirror entries (collection names) it has written in them since: see _load
        self._born: dict[int | str, set[str]] = {}
        self._born_lock = threading.Lock()  # held only for a lookup (the loop takes it)
        # whether entries filled from this store's writes were found equal to Chroma's
        # own copy (None: not checked yet; False: they were not, so none are filled)
        self._fill_checked: bool | None = None
        self.fill_checks = 0  # statistics: reads made to check a filled entry against Chroma
        # collection handles, LRU-bounded: a run of 1e4-1e5 clients keeps only the
        # recently used ones (a course uses its client's two while it runs)
        self._cols: OrderedDict[str, Any] = OrderedDict()
        self._handles = handles
        self._lock = threading.Lock()
        # group commit of writes (_group_upsert): the open batch per collection, and the
        # collections with an upsert in flight
        self._group_cv = threading.Condition()
        self._open_batch: dict[tuple[int, str], _Batch] = {}
        self._group_busy: set[tuple[int, str]] = set()
        # the same on an event loop (aadd): open batches, the event of the upsert in
        # flight per (loop, collection), and the tasks sending batches
        self._abatches: dict[tuple[int, int, str], _ABatch] = {}
        self._abusy: dict[tuple[int, int, str], Any] = {}
        self._atasks: set[Any] = set()
        # per collection: (time of the last write, its client, mean gap between writes of
        # different clients), for gather_wait
        self._arrivals: dict[tuple[int, str], tuple[float, str, float]] = {}
        self.gather_s = _gather_s()
        self.gather_writers = _gather_writers()  # GATHER_WRITERS
        self.upserts = 0  # statistics: Chroma upserts the grouped writes took
        self.reads = 0  # statistics: Chroma reads (get) of a client's items (mirror loads, list)
        self.hnsw_sync = _hnsw_sync()  # new collections' hnsw:sync_threshold (HNSW_SYNC)
        self.layout = layout
        # embedded Chroma's calls one at a time in the process (EMBEDDED_CHROMA_LOCK);
        # None for a Chroma server's HTTP client
        self._serial: Any = EMBEDDED_CHROMA_LOCK if path is not None or _embedded(client) else None

    @property
    def client(self) -> Any:
        """The Chroma client (an embedded folder's is opened on first use; the blocks
        layout opens one per block instead, see :meth:`block_client`)."""
        if self._client is None and self._path is not None:
            with self._open_lock:
                if self._client is None:
                    self._client = _persistent_client(self._path, self._settings)
        return self._client

    @client.setter
    def client(self, value: Any) -> None:
        self._client = value

    @property
    def layout(self) -> str:
        """``"blocks"`` (the shared layout per block of clients, each block its own
        embedded Chroma), ``"shared"`` (one collection per scope and role) or
        ``"per-client"`` (one per scope, client and role: runs made before the shared
        layout)."""
        return self._layout

    @layout.setter
    def layout(self, value: str) -> None:
        if value not in LAYOUTS:
            raise TherasimError(f"memory layout {value!r}: use one of {LAYOUTS} (a run's manifest records its own as memory_layout)")
        if value == "blocks" and self._path is None:
            raise TherasimError("memory layout 'blocks' is for embedded Chroma (memory.backend: chroma, a folder); a Chroma server keeps a run's memories in the 'shared' layout")
        self.close()
        self._layout = value
        self._shared = value in ("shared", "blocks")
        with self._lock:
            self._cols.clear()
        self._mirror = Mirror(self._mirror.size)

    def assign_blocks(self, client_ids: list[str], block_size: int = BLOCK_SIZE) -> None:
        """The blocks layout's blocks: ``client_ids`` (the run's cohort, in the order its
        courses run) in consecutive blocks of ``block_size``. The same ids and size must
        be given whenever the run's memories are opened (the manifest records both);
        clients not named go to the block ``extra``."""
        if block_size < 1:
            raise TherasimError(f"memory_block_size must be at least 1, got {block_size}")
        self._block_of = {}
        for i, cid in enumerate(client_ids):
            self._block_of.setdefault(cid, i // block_size)

    def block_client(self, client_id: str) -> Any:
        """The embedded Chroma client of ``client_id``'s block (blocks layout), opened if
        needed; it may be closed again once that client is released."""
        self._col(client_id, "counselor", create=True)
        with self._lock:
            return self._blocks[self._block_key(client_id)].client

    def _block_key(self, client_id: str) -> int | str:
        return self._block_of.get(client_id, "extra")

    def _block_col(self, client_id: str, role: str, create: bool) -> Any:
        """The role's collection in the client's block, the block opened if needed; the
        client counts as in use (its block stays open) until :meth:`release`."""
        assert self._path is not None
        key = self._block_key(client_id)
        with self._lock:
            b = self._blocks.get(key)
            if b is None:
                folder = _block_dir(self._path, self.scope, key)
                new = not os.path.isdir(folder)
                if not create and new:
                    return None  # nothing stored in that block yet
                b = self._blocks[key] = _Block(_persistent_client(folder, self._settings))
                self.blocks_opened += 1
                if new and self.cache:
                    with self._born_lock:
                        self._born[key] = set()
            self._blocks.move_to_end(key)
            b.users.add(client_id)
            col = b.cols.get(role)
            if col is None:
                meta = {"hnsw:space": "cosine", "hnsw:sync_threshold": self.hnsw_sync, "layout": "blocks", "block": str(key), "role": role, **({"scope": self.scope} if self.scope else {})}
                col = self._collection(b.client, _shared_name(role, self.scope), meta if create else None)
                if col is None:
                    return None
                b.cols[role] = col
            closed = self._close_idle()
        if closed:
            release_freed_memory()
        return col

    def _close_idle(self) -> int:
        """Close least recently used blocks none of whose clients is in use, while more
        than ``open_blocks`` are open (called holding ``_lock``); returns how many closed.
        The caller then calls :func:`release_freed_memory` (not holding the lock)."""
        n = 0
        for key in [k for k, b in self._blocks.items() if not b.users]:
            if len(self._blocks) <= self._open_blocks:
                break
            self._blocks.pop(key).close()
            with self._born_lock:
                self._born.pop(key, None)
            self.blocks_closed += 1
            n += 1
        return n

    def close(self) -> None:
        """Close every open block (blocks layout); a later use reopens them."""
        with self._lock:
            with self._born_lock:
                self._born.clear()
            while self._blocks:
                self._blocks.popitem(last=False)[1].close()
                self.blocks_closed += 1

    @classmethod
    def persistent(cls, path: str, embedding: Any, *, segment_cache_mb: int = 256, **kw: Any) -> ChromaMemoryStore:
        """Embedded Chroma at ``path``. Its loaded index segments are kept in an LRU of
        ``segment_cache_mb`` (Python segment manager). Chroma 1.x's Rust core also keeps
        every written collection's HNSW index loaded (up to RLIMIT_NOFILE / 5, about
        2.5 MB each); capping that cache lost indexes not yet persisted ("Error creating
        hnsw segment reader: Nothing found on disk"), so it is left as Chroma sets it,
        and the shared layout keeps the number of collections at two per run."""
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False, allow_reset=False, chroma_segment_cache_policy="LRU", chroma_memory_limit_bytes=segment_cache_mb * 2**20)
        return cls(None, embedding, path=path, settings=settings, **kw)

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

    def _in_chroma(self, fn: Any, /, *args: Any, **kw: Any) -> Any:
        """``fn(*args, **kw)``, a call into Chroma: for embedded Chroma one at a time in
        the process (:data:`EMBEDDED_CHROMA_LOCK`); a Chroma server's client calls freely."""
        if self._serial is None:
            return fn(*args, **kw)
        with self._serial:
            return fn(*args, **kw)

    def _count_retry(self, e: BaseException) -> None:
        self.retried += 1

    def _retry(self, fn: Any) -> Any:
        """Call ``fn``; retry transient (connection) errors as :attr:`retry` allows."""
        return self.retry.call(fn, transient=_transient, on_retry=self._count_retry)

    def _stored_ids(self, client_id: str, ids: list[str]) -> list[str]:
        """The ids as Chroma stores them (the shared layout prefixes the client's hash)."""
        if not self._shared:
            return ids
        pre = _id_prefix(client_id)
        return [pre + i for i in ids]

    def _own_ids(self, ids: list[str]) -> list[str]:
        """The ids as :meth:`add` returned them."""
        if not self._shared:
            return list(ids)
        n = len(_id_prefix(""))
        return [i[n:] for i in ids]

    def _client_where(self, client_id: str, where: dict[str, Any] | None) -> dict[str, Any] | None:
        """``where`` in Chroma's syntax, limited to the client in the shared layout."""
        w = _where(where)
        if not self._shared:
            return w
        own = {"client_id": client_id}
        return own if w is None else {"$and": [own, w]}

    def _upsert(self, client_id: str, role: str, ids: list[str], docs: list[str], metas: list[dict[str, Any]], embeddings: Any) -> None:
        self._retry(lambda: self._in_chroma(self._col(client_id, role).upsert, ids=self._stored_ids(client_id, ids), documents=docs, metadatas=metas, embeddings=embeddings))

    def _group_upsert(self, client_id: str, role: str, ids: list[str], docs: list[str], metas: list[dict[str, Any]], embeddings: Any) -> None:
        """:meth:`_upsert`, with the writes of other clients to the same collection
        made meanwhile (other threads) in the same Chroma call: group commit. While an
        upsert to a collection is in flight, writes to it gather in one open batch;
        when it returns, one of their writers sends the whole batch. Each writer
        returns once the upsert holding its items has returned, and a failed upsert
        raises in each of its writers. A Chroma upsert costs ~8 ms of CPU and ~50 ms or
        more of wall time (its commit) whatever its size up to tens of items (0.6 ms
        an item at 40), so courses ending sessions together no longer queue one commit
        each on the thread pool. Only the shared layouts (one collection holds many
        clients) with explicit embeddings are grouped."""
        if not self._shared or embeddings is None:
            self._upsert(client_id, role, ids, docs, metas, embeddings)
            return
        col = self._retry(lambda: self._col(client_id, role))  # the client's use of its block starts here
        key = (id(col), role)
        stored = self._stored_ids(client_id, ids)
        with self._group_cv:
            wait = self.gather_wait(key, client_id, time.monotonic())
            others = self._clients_in_use(client_id)
            if others is not None and others <= 1:
                wait = 0.0  # no other client of the block in flight: nobody to wait for
            enough = self.gather_writers if others is None else max(min(self.gather_writers, others), 1)
            while True:
                b = self._open_batch.get(key)
                owner = b is None
                if b is None:
                    b = self._open_batch[key] = _Batch(col, time.monotonic() + wait)
                elif b.ids_set.intersection(stored):  # the same ids twice in one call: wait for the next batch
                    self._group_cv.wait()
                    continue
                b.add(stored, docs, metas, embeddings)
                if len(b.parts) >= enough:
                    b.deadline = 0.0  # enough writers (or every client in flight): no more waiting
                    self._group_cv.notify_all()
                break
            # The batch's first writer sends it, once no upsert to the collection is in
            # flight and its gathering time is over; only it (one per collection) waits
            # on the condition, the others wait for the batch's own event: a returning
            # upsert or a joining writer wakes one thread per collection, not every
            # writer in the pool.
            while owner:
                if key not in self._group_busy:
                    left = b.deadline - time.monotonic()
                    if left > 0:  # gathering other clients' writes (gather_wait)
                        self._group_cv.wait(left)
                        continue
                    del self._open_batch[key]
                    self._group_busy.add(key)
                    break
                self._group_cv.wait()
        if owner:
            try:
                import numpy as np

                embs = np.concatenate([np.asarray(e, dtype="float32").reshape(len(n), -1) for e, n in zip(b.embs, b.parts, strict=True)])
                self._retry(lambda: self._in_chroma(b.col.upsert, ids=b.ids, documents=b.docs, metadatas=b.metas, embeddings=embs))
                self.upserts += 1
            except BaseException as e:
                b.error = e
            finally:
                with self._group_cv:
                    b.done = True
                    self._group_busy.discard(key)
                    self._group_cv.notify_all()
                b.finished.set()
        else:
            b.finished.wait()
        if b.error is not None:
            if len(b.parts) > 1 and not _transient(b.error) and isinstance(b.error, Exception):
                # a bad item fails only its own writer: each writer of the batch sends its own part
                self._upsert(client_id, role, ids, docs, metas, embeddings)
                return
            raise b.error

    def _clients_in_use(self, client_id: str) -> int | None:
        """In the blocks layout, how many clients of ``client_id``'s block are in use
        (courses in flight that may write to it); None in the other layouts."""
        if self._layout != "blocks":
            return None
        with self._lock:
            b = self._blocks.get(self._block_key(client_id))
            return len(b.users) if b is not None else 0

    def gather_wait(self, key: tuple[int, str], client_id: str, now: float) -> float:
        """How long a new batch for collection ``key`` waits for other clients' writes
        before its upsert is sent (called holding ``_group_cv``, once per write).

        A Chroma upsert's cost is mostly fixed (~15-35 ms of CPU for a few items, ~0.7 ms
        more an item), so writes that share one cost a fraction of it each. Courses that
        started together end their sessions together and share upserts without waiting;
        as a long run goes on their phases spread and each write would pay a whole
        upsert (docs/benchmarks.md, "why cost rose within a long run"). So a batch waits
        while other clients' writes are expected: the mean gap between writes of
        different clients to the collection (a moving average; one client's own writes
        never count, so a lone course never waits) gives the wait for
        :attr:`gather_writers` ``- 1`` more (:data:`GATHER_WRITERS`), capped at :attr:`gather_s`; nothing waits when even
        one more is not expected within it. In the blocks layout a batch also goes as
        soon as every client of the block in flight has joined it, and nothing waits
        when no other client of the block is in flight. The writers still return only once the
        upsert holding their items has returned: nothing about durability changes."""
        last = self._arrivals.get(key)
        gap = float("inf")
        if last is not None:
            t, cid, gap = last
            if cid != client_id:
                g = max(now - t, 0.0)
                gap = g if gap == float("inf") else 0.8 * gap + 0.2 * g
        if len(self._arrivals) > 64:  # collections of closed blocks
            for k in [k for k, v in self._arrivals.items() if now - v[0] > 60.0]:
                del self._arrivals[k]
        self._arrivals[key] = (now, client_id, gap)
        if self.gather_s <= 0 or gap >= self.gather_s:
            return 0.0
        return min(self.gather_s, (self.gather_writers - 1) * gap)

    def flush(self) -> int:
        """Write buffered items (after an outage); returns how many batches are still pending."""
        while self.pending:
            batch = self.pending[0]
            try:
                self._upsert(*batch)
            except Exception as e:
                if _transient(e):
                    break
                raise
            self.pending.pop(0)
        return len(self.pending)

    def _collection(self, client: Any, name: str, create_with: dict[str, Any] | None) -> Any:
        """The collection ``name`` of a Chroma ``client``: created with metadata
        ``create_with`` if missing, or (``create_with`` None) None when it does not exist
        (nothing stored yet); a transient (connection) error is raised."""
        if create_with is not None:
            return self._in_chroma(client.get_or_create_collection, name, embedding_function=self.embedding, metadata=create_with)
        try:
            return self._in_chroma(client.get_collection, name, embedding_function=self.embedding)
        except Exception as e:
            if _transient(e):
                raise
            return None

    def _col_name(self, client_id: str, role: str) -> str:
        """The name of the collection holding ``client_id``'s ``role`` memories (shared and
        per-client layouts; a block names its own)."""
        return _shared_name(role, self.scope) if self._shared else _collection_name(client_id, role, self.scope)

    def _col(self, client_id: str, role: str, create: bool = True) -> Any:
        if role not in ("counselor", "client"):
            raise TherasimError(f"memory role must be 'counselor' or 'client', got {role!r}")
        if self._layout == "blocks":
            return self._block_col(client_id, role, create)
        name = self._col_name(client_id, role)
        with self._lock:
            col = self._cols.get(name)
            if col is not None:
                self._cols.move_to_end(name)
            else:
                owner = {"layout": "shared"} if self._shared else {"client_id": client_id}
                meta = {"hnsw:space": "cosine", "hnsw:sync_threshold": self.hnsw_sync, **owner, "role": role, **({"scope": self.scope} if self.scope else {})}
                col = self._collection(self.client, name, meta if create else None)
                if col is None:
                    return None
                self._cols[name] = col
                while len(self._cols) > self._handles:
                    self._cols.popitem(last=False)
            return col

    def _held_col(self, client_id: str, role: str) -> Any:
        """What :meth:`_col` returns when it needs no call into Chroma: the collection
        handle this store already holds (the client's use of its block recorded as
        :meth:`_col` records it); None when it holds none or another thread holds
        ``_lock`` (never waits: the event loop calls this)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self._layout == "blocks":
                key = self._block_key(client_id)
                b = self._blocks.get(key)
                col = b.cols.get(role) if b is not None else None
                if col is not None:
                    assert b is not None
                    self._blocks.move_to_end(key)
                    b.users.add(client_id)
                return col
            name = self._col_name(client_id, role)
            col = self._cols.get(name)
            if col is not None:
                self._cols.move_to_end(name)
            return col
        finally:
            self._lock.release()

    def add(self, client_id: str, role: MemoryRole, items: list[dict[str, Any]], embeddings: list[Any] | None = None) -> list[str]:
        """Store items; ``embeddings`` (one vector per item) skips the embedding function."""
        if not items:
            return []
        ids, docs, metas = self._prepare(client_id, role, items, embeddings)
        if embeddings is None and (self.cache or self.retry_budget_s):
            embeddings = self._embed(docs)
        if self.pending:
            self.flush()
        try:
            self._group_upsert(client_id, role, ids, docs, metas, embeddings)
        except Exception as e:
            if not _transient(e):
                raise
            # Still down after the retry budget: keep the write, flush it later.
            self.pending.append((client_id, role, ids, docs, metas, embeddings))
        if self.cache:
            self._mirror_write(client_id, role, ids, docs, metas, embeddings)
        return ids

    async def aadd(self, client_id: str, role: MemoryRole, items: list[dict[str, Any]], embeddings: Any = None) -> list[str]:
        """:meth:`add` for a caller on an event loop (the memory nodes call this when a
        store has it): the same items stored and the same ids returned, once the
        upsert holding them has returned. The difference is where a write waits to
        share an upsert with other clients' writes (group commit, :meth:`gather_wait`):
        here on the event loop, so that a write waiting for others holds no memory
        thread; only the upsert itself runs on the memory pool. With the sync path,
        each write gathered held a thread of the pool for the whole wait (~0.3 s), so
        a long run kept ~60 threads, each with its stack and allocator caches resident
        (docs/benchmarks.md, "#17: resident memory flat in cohort size"). Writes that
        are not grouped (a layout of one collection per client, no explicit
        embeddings, writes buffered after an outage) go through :meth:`add` on the
        memory pool."""
        from therasim.memory.pool import run_memory

        if not items:
            return []
        if not self._shared or embeddings is None or self.pending:
            return await run_memory(self.add, client_id, role, items, embeddings)
        ids, docs, metas = self._prepare(client_id, role, items, embeddings)
        try:
            await self._agroup_upsert(client_id, role, ids, docs, metas, embeddings)
        except Exception as e:
            if not _transient(e):
                raise
            self.pending.append((client_id, role, ids, docs, metas, embeddings))
        if self.cache:
            self._mirror_write(client_id, role, ids, docs, metas, embeddings)
        return ids

    async def _agroup_upsert(self, client_id: str, role: str, ids: list[str], docs: list[str], metas: list[dict[str, Any]], embeddings: Any) -> None:
        """:meth:`_group_upsert` on the event loop: the same batches (one open batch per
        collection, at most one upsert to it in flight from this loop, the same wait
        for other clients' writes and the same number of writers that sends a batch at
        once), each sent by a task of its own, so a writer that is cancelled never
        strands the others."""
        import asyncio

        from therasim.memory.pool import run_memory

        # the client's use of its block starts here; a handle this store holds is taken
        # on the loop (no Chroma call), anything else (opening a block or a collection)
        # on the memory pool
        col = self._held_col(client_id, role)
        if col is None:
            col = await run_memory(self._retry, lambda: self._col(client_id, role))
        loop = asyncio.get_running_loop()
        key = (id(loop), id(col), role)
        stored = self._stored_ids(client_id, ids)
        with self._group_cv:
            wait = self.gather_wait(key[1:], client_id, time.monotonic())
        # clients of the block in use, read without _lock (a thread opening a block holds
        # it for milliseconds; the loop must not wait on it): a dict lookup and a len
        blk = self._blocks.get(self._block_key(client_id)) if self._layout == "blocks" else None
        others = None if self._layout != "blocks" else (len(blk.users) if blk is not None else 0)
        if others is not None and others <= 1:
            wait = 0.0  # no other client of the block in flight: nobody to wait for
        enough = self.gather_writers if others is None else max(min(self.gather_writers, others), 1)
        while True:
            b = self._abatches.get(key)
            if b is None:
                b = self._abatches[key] = _ABatch(col, loop, loop.time() + wait)
                task = loop.create_task(self._asend(key, b))
                self._atasks.add(task)
                task.add_done_callback(self._atasks.discard)
            elif b.ids_set.intersection(stored):  # the same ids twice in one call: wait for the next batch
                await asyncio.shield(b.sent)
                continue
            b.add(stored, docs, metas, embeddings)
            if len(b.parts) >= enough:
                b.go.set()  # enough writers (or every client in flight): no more waiting
            break
        await asyncio.shield(b.returned)
        if b.error is not None:
            if len(b.parts) > 1 and not _transient(b.error) and isinstance(b.error, Exception):
                # a bad item fails only its own writer: each writer of the batch sends its own part
                await run_memory(self._upsert, client_id, role, ids, docs, metas, embeddings)
                return
            raise b.error

    async def _asend(self, key: tuple[int, int, str], b: _ABatch) -> None:
        """Send batch ``b`` once no upsert to its collection from this loop is in flight
        and its gathering time is over (or enough writers joined); then resolve its
        writers. If this task ends before the upsert returned (the loop shutting down),
        the writers get an error, never a success."""
        import asyncio
        import contextlib

        from therasim.memory.pool import run_memory

        try:
            while True:
                busy = self._abusy.get(key)
                if busy is not None:
                    await busy.wait()
                    continue
                left = b.deadline - b.loop.time()
                if left > 0 and not b.go.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(b.go.wait(), left)
                    continue
                break
            if self._abatches.get(key) is b:
                del self._abatches[key]
            b.sent.set_result(None)
            ev = self._abusy[key] = asyncio.Event()
            try:
                import numpy as np

                embs = np.concatenate([np.asarray(e, dtype="float32").reshape(len(n), -1) for e, n in zip(b.embs, b.parts, strict=True)])
                await run_memory(self._retry, lambda: self._in_chroma(b.col.upsert, ids=b.ids, documents=b.docs, metadatas=b.metas, embeddings=embs))
                self.upserts += 1
                b.stored = True
            except BaseException as e:
                b.error = e
                if not isinstance(e, Exception):
                    raise
            finally:
                if self._abusy.get(key) is ev:
                    del self._abusy[key]
                ev.set()
        finally:
            if self._abatches.get(key) is b:
                del self._abatches[key]
            if not b.stored and b.error is None:
                b.error = RuntimeError("memory write not stored: its upsert was not sent (the event loop stopped first)")
            for f in (b.sent, b.returned):
                if not f.done():
                    f.set_result(None)

    def _prepare(self, client_id: str, role: str, items: list[dict[str, Any]], embeddings: Any) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        """Ids, documents and metadata of the items :meth:`add` stores (each checked)."""
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
        return ids, docs, metas

    def embed(self, texts: list[str]) -> Any:
        """Vectors for ``texts`` with the store's embedding (one batch): pass them to
        :meth:`add` to embed several writes in one call."""
        return self._embed(texts)

    def _embed(self, texts: list[str]) -> Any:
        if self.embedding is None:
            raise TherasimError("this memory store has no embedding function; pass embeddings (or embedding=) explicitly")
        import numpy as np

        return np.asarray(self.embedding(texts), dtype="float32")

    def _get(self, client_id: str, role: str, where: dict[str, Any] | None, include: list[str]) -> dict[str, Any] | None:
        """Every stored item of the client and role that passes ``where`` (None: no collection yet)."""
        col = self._retry(lambda: self._col(client_id, role, create=False))
        if col is None:
            return None
        self.reads += 1
        res = dict(self._retry(lambda: self._in_chroma(col.get, where=self._client_where(client_id, where), include=include)))
        res["ids"] = self._own_ids(res["ids"])
        return res

    def _mirror_write(self, client_id: str, role: str, ids: list[str], docs: list[str], metas: list[dict[str, Any]], embeddings: Any) -> None:
        """The mirror after a write: a mirrored entry gets the items (their vectors as
        Chroma gives them back, :func:`as_stored`); an entry not mirrored is made from
        this write when everything stored for the client and role is this store's own
        writes and this is the first (a block this store created, first written
        now), so that its first recall needs no read of Chroma."""
        name = _collection_name(client_id, role, self.scope)
        vecs = as_stored(embeddings) if embeddings is not None else None
        if self._mirror.upsert(name, ids, docs, metas, vecs):
            return
        first = False
        if self._layout == "blocks":
            with self._born_lock:
                written = self._born.get(self._block_key(client_id))
                if written is not None:
                    first = name not in written
                    written.add(name)
        if first and vecs is not None and self._fill_checked is not False and len(set(ids)) == len(ids):
            self._mirror.put(name, ids, docs, metas, vecs, filled=True)

    def _unwritten(self, name: str, client_id: str) -> bool:
        """Whether nothing can be stored for ``name`` (a collection of ``client_id``):
        its block was created by this store, which has not written it since. If so the
        client counts as in use of its block (open), as a read would have made it."""
        if self._layout != "blocks" or self._fill_checked is False:
            return False
        key = self._block_key(client_id)
        with self._lock:
            b = self._blocks.get(key)
            with self._born_lock:
                written = self._born.get(key)
                if b is None or written is None or name in written:
                    return False
            b.users.add(client_id)
            self._blocks.move_to_end(key)
        return True

    def _load(self, client_id: str, role: str) -> MirrorEntry | None:
        name = _collection_name(client_id, role, self.scope)
        entry = self._mirror.get(name)
        if entry is not None:
            if entry.filled and self._fill_checked is None:
                return self._check_filled(client_id, role, name, entry)
            return entry
        if self._unwritten(name, client_id):
            return self._mirror.put(name, [], [], [], [], filled=True)
        res = self._get(client_id, role, None, ["embeddings", "documents", "metadatas"])
        if res is None:
            # Nothing stored yet: mirror it as empty (this store is the client's only
            # writer while cached, and add() updates mirrored entries), so a new
            # client's recalls never ask Chroma again.
            return self._mirror.put(name, [], [], [], [])
        return self._mirror.put(name, res["ids"], res["documents"], res["metadatas"], res["embeddings"])

    def _check_filled(self, client_id: str, role: str, name: str, entry: MirrorEntry) -> MirrorEntry:
        """The first recall of an entry filled from this store's writes (once per
        store): read the collection as an unfilled entry would be, and compare. Equal in
        every id, document, metadata value (and its type) and vector bit: later filled
        entries are trusted. Otherwise (another Chroma keeping vectors differently)
        nothing is filled any more, and the entries filled so far load from Chroma."""
        import numpy as np

        res = self._get(client_id, role, None, ["embeddings", "documents", "metadatas"])
        self.fill_checks += 1
        loaded = MirrorEntry()
        if res is not None and res["ids"]:
            loaded.upsert(list(res["ids"]), list(res["documents"]), [dict(m or {}) for m in res["metadatas"]], res["embeddings"])
        with entry.lock:
            same = (
                entry.ids == loaded.ids
                and entry.docs == loaded.docs
                and [{k: (type(v), v) for k, v in m.items()} for m in entry.metas] == [{k: (type(v), v) for k, v in m.items()} for m in loaded.metas]
                and entry.mat.shape[0] == loaded.mat.shape[0]
                and (entry.mat.size == 0 or np.array_equal(entry.mat.view(np.uint32), loaded.mat.view(np.uint32)))
            )
        if same:
            if self._fill_checked is None and loaded.ids:  # an empty one says nothing about vectors
                self._fill_checked = True
            entry.filled = False
            return entry
        self._fill_checked = False
        self._mirror.drop_filled()
        return self._mirror.put(name, loaded.ids, loaded.docs, loaded.metas, res["embeddings"] if res is not None and res["ids"] else [])

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
        # Over-fetch a little and order by (score, id), so ties break the same way
        # here and in the mirror. A per-client collection is counted first (Chroma
        # rejects an empty index); a filtered query on the shared one returns what
        # passes, fewer than asked when fewer do.
        m = k + 8
        if not self._shared:
            n = self._retry(lambda: self._in_chroma(col.count))
            if n == 0:
                return []
            m = min(m, n)
        cw = self._client_where(client_id, where)
        if embedding is not None:
            res = self._retry(lambda: self._in_chroma(col.query, query_embeddings=[embedding], n_results=m, where=cw))
        else:
            res = self._retry(lambda: self._in_chroma(col.query, query_texts=[query], n_results=m, where=cw))
        out = []
        for mid, doc, meta, dist in zip(self._own_ids(res["ids"][0]), res["documents"][0], res["metadatas"][0], res["distances"][0], strict=False):
            out.append({"id": mid, "text": doc, **(meta or {}), "score": round(1.0 - float(dist), 4)})
        out.sort(key=lambda it: (-it["score"], it["id"]))
        return out[:k]

    def list(self, client_id: str, role: MemoryRole, where: Where = None) -> list[dict[str, Any]]:
        res = self._get(client_id, role, _native(where), ["documents", "metadatas"])
        if res is None:
            return []
        return [{"id": i, "text": d, **(m or {})} for i, d, m in zip(res["ids"], res["documents"], res["metadatas"], strict=False)]

    def release(self, client_id: str) -> None:
        """Forget a finished course's client in process: its mirror entries and
        collection handles (the data stays in Chroma; a later use reloads it), and in
        the blocks layout its use of its block (a block none of whose clients is in use
        may be closed). The runner calls this when a course ends, with no call for that
        client in flight, so what the store holds depends on the courses in flight, not
        on the courses in the run."""
        for role in ("counselor", "client"):
            name = _collection_name(client_id, role, self.scope)
            with self._lock:
                self._cols.pop(name, None)
            self._mirror.drop(name)
        closed = 0
        with self._lock:
            b = self._blocks.get(self._block_key(client_id))
            if b is not None:
                b.users.discard(client_id)
                closed = self._close_idle()
        if closed:
            release_freed_memory()

    def delete_client(self, client_id: str) -> None:
        self.release(client_id)
        for role in ("counselor", "client"):
            try:
                if self._shared:
                    col = self._col(client_id, role, create=False)
                    if col is not None:
                        col.delete(where={"client_id": client_id})
                else:
                    self._in_chroma(self.client.delete_collection, _collection_name(client_id, role, self.scope))
            except Exception:  # not there: nothing to delete
                pass
        self.release(client_id)  # the block's use taken above


_malloc_trim: Any = None


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError, AttributeError):
        return False


def release_freed_memory(wait: bool = False) -> bool:
    """Hand back to the OS what the C allocator holds but nothing uses (glibc's
    ``malloc_trim(0)``, over all its arenas), in a background thread unless ``wait``
    (it takes milliseconds on a large heap; ctypes releases the GIL meanwhile).
    Called when a block closes: a closed block frees its index and caches, but glibc
    keeps freed memory in its arenas (Chroma's worker threads each have one), so the
    process's resident size would not show it. Does nothing (returns False) where the
    C library is not glibc."""
    global _malloc_trim
    if _malloc_trim is None:
        _malloc_trim = False
        if sys.platform.startswith("linux") and _glibc():
            try:
                import ctypes

                fn = ctypes.CDLL(None).malloc_trim
                fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
                _malloc_trim = fn
            except (OSError, AttributeError):
                pass
    if not _malloc_trim:
        return False
    if wait:
        _malloc_trim(0)
    else:
        threading.Thread(target=_malloc_trim, args=(0,), name="therasim-malloc-trim", daemon=True).start()
    return True


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


def _persistent_client(path: str, settings: Any) -> Any:
    """A Chroma client for ``path`` with its own copy of ``settings``: Chroma's
    ``PersistentClient`` writes ``persist_directory`` into the settings it is given, so
    one shared object would carry the last folder opened, and a second store opening a
    folder still open in this process (``inspect`` beside a run, a fresh store in a
    test) would fail "already exists with different settings"."""
    import chromadb

    with EMBEDDED_CHROMA_LOCK:
        return chromadb.PersistentClient(path=path, settings=settings.model_copy())


def _embedded(client: Any) -> bool:
    """Whether ``client`` runs Chroma in this process (anything but a server's HTTP
    client; a client that does not say is taken as embedded: serialising it only costs
    overlap)."""
    if client is None:
        return True
    try:
        impl = str(client.get_settings().chroma_api_impl)
    except Exception:
        return True
    return not impl.endswith("FastAPI")


def _open_chroma(spec: Any, default_path: str | None, scope: str | None) -> ChromaMemoryStore:
    path = spec.path or default_path
    if path is None:
        raise ValueError("memory.path is not set and no run folder was given")
    return ChromaMemoryStore.persistent(path, _embedding(spec), scope=scope)


def _open_chroma_http(spec: Any, default_path: str | None, scope: str | None) -> ChromaMemoryStore:
    return ChromaMemoryStore.http(spec.host, spec.port, _embedding(spec), scope=scope)


register_memory_backend("chroma", _open_chroma)
register_memory_backend("chroma-http", _open_chroma_http)
