"""Run a cohort: profiles x course config, many courses at once, with a run
directory that survives a kill -9 at any moment.

One compiled course graph and one checkpointer per run; asyncio concurrency over
courses (``concurrency``: default 64 for model servers, 1 for the embedded
model); thread ids that name run, client and session; a rich progress bar.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import platform
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from therasim._internal.rundir import (
    JsonlWriter,
    RunDir,
    atomic_write_json,
    check_session_graph,
    event_line,
    iso_now,
    read_jsonl,
    repair_jsonl,
)
from therasim._version import RUN_FORMAT_VERSION, __version__
from therasim.config import RunConfig, load_config
from therasim.context import SimContext
from therasim.errors import ConfigError, ProfileError, RunDirError
from therasim.profiles import ClientProfile, load_profiles, sample_profiles
from therasim.records import dataset_record
from therasim.redact import redact, redact_text

__all__ = ["RunResult", "arun_dir", "dataset_record", "iter_records", "manifest_for", "resume", "run", "start_run"]

_PACKAGES = ("langgraph", "langchain-core", "langchain-openai", "openai", "chromadb", "pydantic", "llama_cpp_python", "sentence-transformers", "torch", "vllm")


@dataclass
class RunResult:
    """What a run did: where, and per course whether it completed or why not."""

    run_dir: Path
    run_id: str
    completed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sessions_written: int = 0
    turns: int = 0
    errors: int = 0
    retries: int = 0
    wall_s: float = 0.0
    memory_retries: int = 0
    memory_pending: int = 0  # memory write batches kept in memory_pending.jsonl (server still down at the end)
    events_dropped: int = 0  # events.jsonl lines not written (a full disk)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "run_id": self.run_id,
            "courses_completed": len(self.completed),
            "courses_failed": self.failed,
            "courses_already_done": len(self.skipped),
            "bad_profiles": self.problems,
            "sessions_written": self.sessions_written,
            "turns": self.turns,
            "call_errors": self.errors,
            "retries": self.retries,
            "memory_retries": self.memory_retries,
            "memory_pending": self.memory_pending,
            "wall_s": round(self.wall_s, 1),
        }


# --------------------------------------------------------------------------- manifest


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"therasim": __version__, "python": platform.python_version()}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def manifest_for(cfg: RunConfig, run_id: str, course: Any, profiles: list[ClientProfile], source: str, models: Any = None) -> dict[str, Any]:
    """Everything needed to reproduce a run, and nothing secret (API keys are only
    named by their environment variable)."""
    from therasim.native import checkpoint_format
    from therasim.prompts import PROMPTS
    from therasim.providers import ModelPool

    pool = models if isinstance(models, ModelPool) else ModelPool(models if models is not None else cfg.models)
    return {
        "run_format_version": RUN_FORMAT_VERSION,
        "therasim_version": __version__,
        "run_id": run_id,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "platform": {"system": platform.system(), "machine": platform.machine(), "python": sys.version.split()[0]},
        "models": pool.describe(),
        # chat models standing in at session nodes (replace_node/add_node), beside the role models
        "node_models": {n: s.impl for n, s in course.session.nodes.items() if (s.impl or {}).get("kind") == "chat_model"},
        "max_tokens_per_node": course.session.contract().caps(SimContext().max_tokens),
        "seed": cfg.seed,
        "seeds": {"profiles": cfg.seed, "events": cfg.seed, "calls": "derived: blake2b(seed, client, session, exchange, node, call)"},
        "prompts": {name: p.sha for name, p in sorted(PROMPTS.items())},
        "checkpoint": checkpoint_format(),  # with the codec the run writes (kept on resume)
        "graph": {
            "course": course.describe(),
            "session_hash": course.session.fingerprint(),
            "course_mermaid": _safe_mermaid(course),
            "session_mermaid": _safe_mermaid(course.session),
        },
        "config": redact(cfg.model_dump(mode="json")),  # a credential in a base_url is masked
        "cohort": {"source": source, "n": len(profiles), "ids": [p.id for p in profiles]},
        "memory_scope": run_id,  # memories are stored under the run id: runs sharing a Chroma server stay apart
        # embedded Chroma: the run's memories in blocks of clients (closed when done with);
        # a server: one collection per role for the run (runs without this key: one per client and role)
        "memory_layout": _memory_layout(cfg),
        "memory_block_size": _memory_block_size(),  # clients per block, in the cohort's order (the blocks layout)
    }


def _memory_layout(cfg: RunConfig) -> str:
    from therasim.memory import run_layout

    return run_layout(cfg.memory.backend)


def _memory_block_size() -> int:
    from therasim.memory import BLOCK_SIZE

    return BLOCK_SIZE


def _safe_mermaid(b: Any) -> str | None:
    try:
        return str(b.mermaid())
    except Exception:  # drawing is a convenience; never fail a run on it
        return None


# --------------------------------------------------------------------------- progress


class _Progress:
    """Counters and a rich progress bar (courses, sessions, turns, tokens/s, errors)."""

    def __init__(self, total: int, sessions_per_course: int, enabled: bool) -> None:
        self.total = total
        self.sessions_total = total * sessions_per_course
        self.courses = 0
        self.sessions = 0
        self.turns = 0
        self.tokens = 0
        self.errors = 0
        self.retries = 0
        self.t0 = time.monotonic()
        self._bar: Any = None
        self._task: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]courses"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._bar.add_task("courses", total=total, stats="")

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._refresh()
            self._bar.stop()

    def _refresh(self) -> None:
        if self._bar is None:
            return
        el = max(time.monotonic() - self.t0, 1e-6)
        stats = f"sessions {self.sessions}/{self.sessions_total}  turns {self.turns}  {self.tokens / el:,.0f} tok/s  errors {self.errors}  retries {self.retries}"
        self._bar.update(self._task, completed=self.courses, stats=stats)

    def event(self, kind: str, e: dict[str, Any]) -> None:
        """Count event ``kind`` (its fields ``e``)."""
        if kind == "node_call":
            self.tokens += int(e.get("input_tokens") or 0) + int(e.get("output_tokens") or 0)
            self.retries += int(e.get("retries") or 0)
            if e.get("error"):
                self.errors += 1
        elif kind == "exchange":
            self.turns += 1
        elif kind == "session_done":
            self.sessions += 1
        elif kind in ("course_done", "course_failed"):
            self.courses += 1
        self._refresh()


# --------------------------------------------------------------------------- the run


class EventLogFile:
    """The run's event log (``events.jsonl``): per-call records are buffered and
    written out at most ``interval_s`` later (by the writer and by
    :meth:`flush_every`), lifecycle events at once (the runner calls
    :meth:`flush_now`), and everything at the end. A kill loses at most that much of the log; transcripts, course status
    and checkpoints have their own durable writes and lose nothing."""

    def __init__(self, path: str | Path, interval_s: float = 1.0) -> None:
        self._f = open(path, "a", encoding="utf-8", buffering=1 << 16)
        self.interval_s = interval_s
        self._last = time.monotonic()
        self._dirty = False
        self._lock = threading.Lock()

    def write(self, s: str) -> None:
        self._f.write(s)
        self._dirty = True

    def log(self, name: str, fields: dict[str, Any]) -> None:
        """Write one event (:func:`therasim._internal.rundir.event_line`: redacted
        fields, ``event``, ``timestamp``), flushed within the interval."""
        line = event_line(name, fields, iso_now())
        with self._lock:
            self.write(line)
            self.flush()

    def flush(self) -> None:
        """Called by the logger after every event: writes out only once per interval."""
        if time.monotonic() - self._last >= self.interval_s:
            self.flush_now()

    def flush_now(self) -> None:
        if self._dirty:
            self._f.flush()
            self._dirty = False
        self._last = time.monotonic()

    async def flush_every(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.flush_now()

    def close(self) -> None:
        self.flush_now()
        self._f.close()



@contextlib.contextmanager
def _gc_for_run() -> Iterator[None]:
    """The cyclic garbage collector tuned for the run's duration (restored after):
    objects alive at the start (modules, the compiled graphs, the cohort) are frozen
    out of its scans, and young collections run every 20,000 allocations instead of
    700. Measured on the ``zero`` stub with memory on: collector pauses were about a
    third of the orchestrator's CPU and up to 1.3 s each (the throughput stalls)."""
    import gc

    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(old[0], 20_000), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


#: glibc malloc arenas in a process that runs a cohort (``THERASIM_MALLOC_ARENA_MAX``;
#: 0 leaves the C library's default of 8 per core). See :func:`_malloc_arenas_for_run`.
MALLOC_ARENA_MAX = 2
_arenas_set: int | None = None


def _malloc_arenas_for_run() -> int | None:
    """Cap glibc's malloc arenas for this process (``mallopt(M_ARENA_MAX)``) before a
    run starts; returns the cap set, None when nothing was set (not glibc, or
    ``THERASIM_MALLOC_ARENA_MAX=0``).

    Process-wide and for the rest of the process's life (glibc cannot shrink its
    arena count), so it is done here, when a cohort is run, never on import. Why: a
    run's memory calls and embedded Chroma's worker threads are many (a memory thread
    per course writing, Chroma's runtime threads per open block), and glibc gives
    threads up to 8 arenas per core, each keeping the freed memory of its busiest
    moment resident; over a long run the peaks of more arenas add up, so resident
    memory kept rising with the courses done (docs/benchmarks.md, "#17: resident
    memory flat in cohort size"). Set ``THERASIM_MALLOC_ARENA_MAX=0`` to leave glibc's
    default (or ``MALLOC_ARENA_MAX`` in the environment before Python starts, which
    glibc reads itself and this then leaves alone)."""
    global _arenas_set
    import os

    raw = os.environ.get("THERASIM_MALLOC_ARENA_MAX", "").strip()
    try:
        n = int(raw) if raw else MALLOC_ARENA_MAX
    except ValueError:
        raise ConfigError(f"THERASIM_MALLOC_ARENA_MAX={raw!r}: give a whole number of arenas (0 leaves glibc's default)") from None
    if n < 0:
        raise ConfigError(f"THERASIM_MALLOC_ARENA_MAX={raw!r}: give a whole number of arenas, at least 0 (0 leaves glibc's default)")
    if n == 0 or os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return None
    if _arenas_set is not None:
        return _arenas_set
    try:
        if os.confstr("CS_GNU_LIBC_VERSION") is None:
            return None
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    except (ValueError, OSError, AttributeError):
        return None
    if mallopt(-8, n) != 1:  # M_ARENA_MAX
        return None
    _arenas_set = n
    return n


def _new_run_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _profiles(rd: RunDir) -> Iterator[ClientProfile]:
    """The run's profiles, read from profiles.jsonl one at a time."""
    from pydantic import ValidationError

    for r in read_jsonl(rd.profiles):
        try:
            yield ClientProfile.model_validate(r)
        except ValidationError as e:
            raise RunDirError(f"{rd.profiles}: a profile no longer validates ({str(e).splitlines()[0][:200]}); the file was edited or damaged") from None


def _cohort_ids(rd: RunDir, man: dict[str, Any]) -> list[str]:
    """The ids of the run's profiles (profiles.jsonl's order), each profile validated and
    the manifest's ids checked against them. Only ids are kept: the runner reads each
    profile again when its course starts (:func:`_profiles`), so what it holds of the
    cohort is a few bytes per course, not the profiles (~8 KB each in Python)."""
    ids = [p.id for p in _profiles(rd)]
    have = set(ids)  # once: in the comprehension it was rebuilt per id (80 s at 10,000 courses)
    missing = [i for i in man["cohort"]["ids"] if i not in have]
    if missing:
        raise RunDirError(f"{rd.profiles}: profiles {missing[:5]} of the manifest's cohort are missing or damaged; restore the file to resume")
    return ids



def name_problems(cfg: RunConfig, *, preset: bool = True) -> list[tuple[str, str]]:
    """``(field, message)`` for each registered name in ``cfg`` that is not registered
    (preset, modality, emotion taxonomy, memory backend), checked now rather than mid-run."""
    from therasim.errors import TherasimError

    problems: list[tuple[str, str]] = []
    checks: list[tuple[str, str, Any]] = []
    from therasim.memory import memory_backend
    from therasim.policies.modalities import get_modality
    from therasim.policies.taxonomies import emotion_taxonomy

    checks += [("course.modality", cfg.course.modality, get_modality), ("course.emotion_taxonomy", cfg.course.emotion_taxonomy, emotion_taxonomy), ("memory.backend", cfg.memory.backend, memory_backend)]
    if preset:
        from therasim.graphs.presets import preset as get_preset

        checks.append(("course.preset", cfg.course.preset, get_preset))
    for fld, value, lookup in checks:
        try:
            lookup(value)
        except (TherasimError, KeyError) as e:
            problems.append((fld, str(e)))
    return problems


def check_names(cfg: RunConfig, source: str = "config", *, preset: bool = True) -> None:
    """Raise :class:`ConfigError` naming each unknown preset, modality or taxonomy."""
    problems = name_problems(cfg, preset=preset)
    if problems:
        lines = [f"{source}: {len(problems)} problem(s):"] + [f"  - {p}: {m}" for p, m in problems]
        raise ConfigError("\n".join(lines), problems)


def check_stored_urls(cfg: RunConfig) -> None:
    """A run directory never holds a credential: a base_url that carried one was stored
    masked, and cannot be called again from the run directory alone."""
    from therasim.config import ROLES
    from therasim.redact import MASK

    for role in ROLES:
        for u in cfg.models.for_role(role).base_urls:
            if MASK in u:
                raise RunDirError(
                    f"models.{role}.base_url {u} carried a credential, which therasim does not store; "
                    "put the key in an environment variable named by api_key_env (not in the URL) and start a new run"
                )


def _check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{uuid.uuid4().hex[:6]}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"output folder {path} is not writable ({e.strerror}); pass --out with a folder you can write to") from None


def _fold_calls_now(session_builder: Any) -> bool:
    """The layout a run without ``course.fold_calls`` is made in: its session
    builder's, else ``THERASIM_FOLD_CALLS`` (a bad value is a ConfigError naming it)."""
    if session_builder is not None and hasattr(session_builder, "fold_calls"):
        return bool(session_builder.fold_calls)
    from therasim.graphs.builder import fold_calls_default

    return fold_calls_default()


def start_run(
    config: RunConfig | str | Path | dict[str, Any] | None = None,
    *,
    profiles: list[ClientProfile] | str | Path | None = None,
    sample: int | None = None,
    out: str | Path | None = None,
    models: Any = None,
    run_id: str | None = None,
    session_builder: Any = None,
) -> tuple[RunDir, list[str]]:
    """Create a run directory: manifest, cohort, bad-profile report. Nothing runs yet.

    ``profiles``: a list, or a YAML/JSONL file (bad records are reported and skipped);
    ``sample``: draw N profiles with the run's seed; neither: the shipped examples.
    Returns the run directory and the problems found in the profiles.
    """
    from therasim.graphs.course import course_builder
    from therasim.profiles import example_profiles

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    if cfg.course.fold_calls is None:  # the layout the run is made in goes into its manifest: a resume, inspect or a Ray worker builds the same one
        cfg = cfg.model_copy(update={"course": cfg.course.model_copy(update={"fold_calls": _fold_calls_now(session_builder)})})
    check_names(cfg, preset=session_builder is None)  # an unknown modality or taxonomy fails here, not in every course
    problems: list[ProfileError] = []
    if profiles is not None and sample is not None:
        raise ConfigError("give either profiles or sample, not both")
    if isinstance(profiles, (str, Path)):
        source = str(profiles)
        cohort, problems = load_profiles(profiles)
    elif profiles is not None:
        source, cohort = "python", list(profiles)
    elif sample is not None:
        if sample < 1:
            raise ConfigError(f"--sample must be at least 1, got {sample}")
        source, cohort = f"sample_profiles(n={sample}, seed={cfg.seed})", sample_profiles(sample, seed=cfg.seed)
    else:
        source, cohort = "example_profiles()", example_profiles()
    if not cohort:
        msg = "no valid profiles to run"
        if problems:
            msg += ":\n" + "\n".join(f"  - {p}" for p in problems)
        raise ProfileError(msg)
    course = course_builder(cfg.course, session_builder)  # unknown preset fails here, before anything is written
    base = Path(out if out is not None else cfg.out_dir)
    _check_writable(base)
    rid = run_id or _new_run_id()
    rd = RunDir(base / rid)
    if rd.root.exists() and any(rd.root.iterdir()):
        raise RunDirError(f"{rd.root} already exists and is not empty; use --resume {rd.root} to continue it")
    manifest = manifest_for(cfg, rid, course, cohort, source, models)  # before any file: a failure leaves nothing
    rd.root.mkdir(parents=True, exist_ok=True)
    pw = JsonlWriter(rd.profiles)
    for p in cohort:
        pw.write(p.model_dump(mode="json"))
    pw.close()
    if problems:
        w = JsonlWriter(rd.problems)
        for pr in problems:
            w.write({"record": pr.record, "field": pr.field, "error": str(pr)})
        w.close()
    atomic_write_json(rd.manifest_path, manifest)
    return rd, [str(p) for p in problems]


async def arun_dir(
    run_dir: str | Path | RunDir,
    *,
    concurrency: int | None = None,
    progress: bool = False,
    models: Any = None,
    session_builder: Any = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    executor: Any = None,
) -> RunResult:
    """Run (or continue) every course of a run directory that is not completed.

    Finished sessions are never redone; an interrupted session continues from its
    last checkpoint; failed courses are retried. ``models`` overrides the config's
    models (a ModelPool or a role -> chat model mapping), e.g. for tests.
    ``executor``: None runs the courses in this process; a
    :class:`therasim.ray_executor.RayExecutor` shards them over Ray actors (the run
    directory is written here either way). The run directory is locked meanwhile
    (:class:`therasim._internal.rundir.RunLock`).
    """

    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    rd.manifest()  # a clear error for a missing or foreign folder before any lock file
    _malloc_arenas_for_run()
    with rd.lock("run"), _gc_for_run():  # a second run or resume of this folder stops here with the holder's pid and host
        return await _arun_dir_locked(rd, concurrency=concurrency, progress=progress, models=models, session_builder=session_builder, on_record=on_record, executor=executor)


async def _arun_dir_locked(
    rd: RunDir,
    *,
    concurrency: int | None,
    progress: bool,
    models: Any,
    session_builder: Any,
    on_record: Callable[[dict[str, Any]], None] | None,
    executor: Any = None,
) -> RunResult:
    from therasim._internal.checkpoint import open_run_checkpointer
    from therasim.graphs.course import course_builder, initial_course_state, run_course
    from therasim.memory import open_run_store
    from therasim.providers import ModelPool

    man = rd.manifest()
    cfg = RunConfig.model_validate(man["config"])
    check_stored_urls(cfg)
    run_id = man["run_id"]
    for p in (rd.transcripts, rd.courses, rd.branches, rd.events, rd.prompts):
        repair_jsonl(p)
    cohort_ids = _cohort_ids(rd, man)
    status = rd.course_status()
    written = {(r["client_id"], r["session"]) for r in read_jsonl(rd.transcripts) if r.get("branch") is None}
    result = RunResult(rd.root, run_id, problems=[p["error"] for p in rd.problems_list()])
    done = {i for i in cohort_ids if status.get(i, {}).get("status") == "completed"}
    n_todo = sum(1 for i in cohort_ids if i not in done)
    result.skipped = [i for i in cohort_ids if i in done]
    del cohort_ids, status
    # the courses to run, read from profiles.jsonl as they start (not held in memory)
    todo: Iterator[ClientProfile] = (p for p in _profiles(rd) if p.id not in done)
    pool = models if isinstance(models, ModelPool) else ModelPool(models if models is not None else cfg.models)
    course = course_builder(cfg.course, session_builder)
    check_session_graph(man, course.session, "resume the run")
    if executor is not None:
        executor.check(cfg)
    # memory_scope: the run id, memory_layout: how its memories are laid out (runs made
    # before either was recorded keep their unscoped / per-client collections)
    store = open_run_store(cfg.memory, str(rd.memory), man) if cfg.course.memory else None
    pending_file = rd.root / "memory_pending.jsonl"
    if store is not None and pending_file.exists():
        # memory writes a previous attempt could not deliver (memory server down at its end)
        for b in read_jsonl(pending_file):
            store.add(b["client_id"], b["role"], [{"id": i, "text": d, **m} for i, d, m in zip(b["ids"], b["docs"], b["metas"], strict=True)], embeddings=b["embeddings"])
        pending_file.unlink()
    n_conc = concurrency or cfg.effective_concurrency()
    if store is not None:
        from therasim.memory.pool import size_memory_pool

        size_memory_pool(n_conc)  # a memory thread per course in flight: no write queues behind another (memory/pool.py)

    ev_file = EventLogFile(rd.events)  # its own file: never filtered by CLI log levels
    transcripts = JsonlWriter(rd.transcripts)
    courses_w = JsonlWriter(rd.courses)
    prompts_w = JsonlWriter(rd.prompts, fsync=False, text_only=True)  # synced at the end; a torn line is repaired on resume; messages are text (orjson)
    t0 = time.monotonic()
    prog = _Progress(n_todo, cfg.course.sessions, progress)

    def on_event(e: dict[str, Any]) -> None:
        e = dict(e)
        name = e.pop("event", "event")
        e.pop("ts", None)
        prog.event(name, e)
        try:
            ev_file.log(name, e)
            if name != "node_call":  # lifecycle events (exchange, session, course) go out at once; per-call records are buffered
                ev_file.flush_now()
        except OSError:  # events are diagnostics: a full disk must not stop the courses
            result.events_dropped += 1

    def write_record(rec: dict[str, Any]) -> None:
        key = (rec["client_id"], rec["session"])
        if key in written:
            return  # re-filed after a resume: already on disk
        transcripts.write(dataset_record(rec))
        written.add(key)
        result.sessions_written += 1
        if on_record is not None:
            on_record(rec)

    def course_running(cid: str) -> None:
        courses_w.write({"client_id": cid, "status": "running", "thread_id": f"{run_id}/{cid}/course", "ts": time.time()})

    def course_ended(cid: str, error: str | None = None) -> None:
        if error is not None:
            reason = redact_text(error)[:1000]
            result.failed[cid] = reason
            # on a full disk this write fails too: the course stays not-completed
            # in courses.jsonl, and a resume runs it again
            with contextlib.suppress(OSError):
                courses_w.write({"client_id": cid, "status": "failed", "error": reason, "ts": time.time()})
            on_event({"event": "course_failed", "client_id": cid, "error": reason})
            return
        try:
            courses_w.write({"client_id": cid, "status": "completed", "ts": time.time()})
        except OSError as e:  # every session is on disk; only the status line is missing: a resume re-files it
            result.failed[cid] = f"{type(e).__name__}: {e.strerror} (writing the course status; resume to finish)"
            return
        result.completed.append(cid)
        on_event({"event": "course_done", "client_id": cid})

    async with open_run_checkpointer(cfg.checkpointer, str(rd.checkpoints)) if executor is None else contextlib.nullcontext() as saver:
        graph = course.compile(checkpointer=saver)
        ctx = SimContext.from_config(cfg, models=pool, memory=store, on_event=on_event, on_record=write_record, on_messages=prompts_w.write)
        sem = asyncio.Semaphore(n_conc)
        # a finished course's memory caches go (what the store keeps in process then
        # depends on the courses in flight, not on the cohort)
        release = store.release if store is not None else (lambda cid: None)

        async def one(p: ClientProfile) -> None:
            async with sem:
                tid = f"{run_id}/{p.id}/course"
                try:
                    course_running(p.id)
                    await run_course(graph, initial_course_state(p, run_id=run_id, sessions=cfg.course.sessions, modality=cfg.course.modality), ctx, thread_id=tid)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # one course failing never stops the others
                    course_ended(p.id, f"{type(e).__name__}: {e}")
                    return
                finally:
                    release(p.id)
                course_ended(p.id)

        flusher = asyncio.get_running_loop().create_task(ev_file.flush_every())
        try:
            with prog:
                if executor is None:
                    # n_conc workers over one iterator: a task per course in flight,
                    # not one per course of the cohort waiting on the semaphore
                    async def worker() -> None:
                        for p in todo:
                            await one(p)

                    await asyncio.gather(*(worker() for _ in range(min(n_conc, n_todo))))
                else:
                    await executor.arun(rd, cfg, list(todo), concurrency=n_conc, store=store, on_event=on_event, on_record=write_record, on_messages=prompts_w.write, course_running=course_running, course_ended=course_ended, models=models, session_builder=session_builder)
            if store is not None and store.pending:
                if await asyncio.to_thread(store.flush):
                    w = JsonlWriter(pending_file)
                    for cid, role, ids, docs, metas, embs in store.pending:
                        w.write({"client_id": cid, "role": role, "ids": ids, "docs": docs, "metas": metas, "embeddings": [list(map(float, e)) for e in embs]})
                    w.close()
                    result.memory_pending = len(store.pending)
            result.memory_retries = int(store.retried) if store is not None else 0
        finally:
            flusher.cancel()
            await pool.aclose()
            if store is not None and hasattr(store, "close"):
                store.close()  # embedded Chroma blocks still open (a later use reopens them)
            transcripts.close()
            courses_w.close()
            prompts_w.close()
            with contextlib.suppress(Exception):
                ev_file.close()
    result.turns, result.errors, result.retries = prog.turns, prog.errors, prog.retries
    result.wall_s = time.monotonic() - t0
    return result


def run(
    config: RunConfig | str | Path | dict[str, Any] | None = None,
    *,
    profiles: list[ClientProfile] | str | Path | None = None,
    sample: int | None = None,
    out: str | Path | None = None,
    concurrency: int | None = None,
    progress: bool = False,
    models: Any = None,
    session_builder: Any = None,
) -> RunResult:
    """Create a run directory and run it to the end (the Python face of `therasim run`)."""
    event_loop_factory()  # a bad THERASIM_EVENT_LOOP is refused before a run directory is made
    from therasim._internal.checkpoint import checkpoint_codec

    checkpoint_codec()  # and a bad THERASIM_CHECKPOINT_CODEC
    rd, _problems = start_run(config, profiles=profiles, sample=sample, out=out, models=models, session_builder=session_builder)
    return _sync(arun_dir(rd, concurrency=concurrency, progress=progress, models=models, session_builder=session_builder))


def resume(run_dir: str | Path, *, concurrency: int | None = None, progress: bool = False, models: Any = None, session_builder: Any = None) -> RunResult:
    """Finish a run that was interrupted (or retry its failed courses)."""
    return _sync(arun_dir(run_dir, concurrency=concurrency, progress=progress, models=models, session_builder=session_builder))


#: ``THERASIM_EVENT_LOOP``: the event loop therasim starts for a cohort
#: (:func:`event_loop_factory`)
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop a cohort runs on when therasim starts the loop itself (``therasim
    run``, :func:`run`, :func:`resume`): uvloop's when it is installed (``auto``, the
    default; libuv's loop and transports in C: the loop's own bookkeeping per model
    call, which asyncio's loop does in Python, is about a tenth of the orchestrator's
    CPU on a zero-latency server; docs/benchmarks.md), else asyncio's.
    ``THERASIM_EVENT_LOOP=asyncio`` always uses asyncio's, ``uvloop`` requires uvloop.
    A caller awaiting :func:`arun_dir` on a loop of its own keeps that loop."""
    import os

    raw = os.environ.get("THERASIM_EVENT_LOOP", "").strip().lower() or "auto"
    if raw not in EVENT_LOOPS:
        raise ConfigError(f"THERASIM_EVENT_LOOP={raw!r}: give one of {', '.join(EVENT_LOOPS)} (auto: uvloop when installed, else asyncio)")
    if raw == "asyncio" or sys.platform == "win32":
        if raw == "uvloop":
            raise ConfigError("THERASIM_EVENT_LOOP=uvloop: uvloop does not run on Windows; unset the variable or set it to asyncio")
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if raw == "uvloop":
            raise ConfigError("THERASIM_EVENT_LOOP=uvloop but uvloop is not installed; `pip install uvloop`, or unset the variable to use asyncio's loop") from None
        return asyncio.new_event_loop
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def run_loop(coro: Any) -> Any:
    """Run ``coro`` to the end on a new event loop of :func:`event_loop_factory`'s kind
    (``asyncio.Runner`` with that loop; on Python 3.10, which has no runner, the loop is
    made, run and closed here). A refused ``THERASIM_EVENT_LOOP`` closes ``coro``
    unstarted before the error is raised."""
    try:
        factory = event_loop_factory()
    except BaseException:
        coro.close()
        raise
    if sys.version_info < (3, 11):
        loop = factory()
        try:
            asyncio.set_event_loop(loop)
            return loop.run_until_complete(coro)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()
    with asyncio.Runner(loop_factory=factory) as r:
        return r.run(coro)


def _sync(coro: Any) -> RunResult:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_loop(coro)  # type: ignore[no-any-return]
    # Inside a running loop (Jupyter): run in a worker thread with its own loop.
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(run_loop, coro).result()  # type: ignore[no-any-return]


def iter_records(run_dir: str | Path) -> Iterator[dict[str, Any]]:
    """Session records of a run (original sessions, then branches)."""
    rd = RunDir(run_dir)
    rd.manifest()
    yield from rd.records()
    yield from rd.branch_records()

