"""The run directory: what a run leaves on disk, written so that a kill -9 at any
moment loses nothing already finished and duplicates nothing on resume.

::

    RUN_DIR/
      manifest.json       versions, models and sampling per role, seeds, prompt
                          hashes, graph shape, the validated config (write-then-rename)
      profiles.jsonl      the cohort (so a resume runs the same clients)
      problems.jsonl      profiles that failed validation, with record and field
      transcripts.jsonl   one record per finished session (fsync'd appends)
      courses.jsonl       course status changes: running, completed, failed (+ reason)
      branches.jsonl      replays and forks (counterfactual sessions)
      events.jsonl        structlog JSON per node call (latency, tokens, retries)
      prompts.jsonl       the messages each client/counselor model call was given, and its answer
      checkpoints.sqlite  LangGraph checkpoints (one thread per course and per session)
      memory/             Chroma store
      plots/              PNGs from `therasim plot`
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from therasim._version import RUN_FORMAT_VERSION, __version__
from therasim.errors import RunDirError

__all__ = ["JsonlWriter", "RunDir", "atomic_write_json", "check_session_graph", "read_jsonl", "repair_jsonl"]


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON next to ``path``, fsync, then rename over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def repair_jsonl(path: Path) -> int:
    """Drop a torn last line (a write cut by a kill). Returns bytes dropped."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return 0
        cut = data.rfind(b"\n") + 1
        f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())
        return len(data) - cut


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line; repair_jsonl removes it on resume


class JsonlWriter:
    """Append-only JSON lines, one ``write`` per record, flushed and (by default)
    fsync'd before returning, so a record is either whole on disk or absent."""

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self._f = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, default=str, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()
            if self.fsync:
                os.fsync(self._f.fileno())

    def sync(self) -> None:
        with self._lock:
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.flush()
                os.fsync(self._f.fileno())
                self._f.close()


class RunDir:
    """Paths and readers of one run directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # paths -------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def transcripts(self) -> Path:
        return self.root / "transcripts.jsonl"

    @property
    def courses(self) -> Path:
        return self.root / "courses.jsonl"

    @property
    def branches(self) -> Path:
        return self.root / "branches.jsonl"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def prompts(self) -> Path:
        return self.root / "prompts.jsonl"

    @property
    def profiles(self) -> Path:
        return self.root / "profiles.jsonl"

    @property
    def problems(self) -> Path:
        return self.root / "problems.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints.sqlite"

    @property
    def memory(self) -> Path:
        return self.root / "memory"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    # reading -----------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The manifest, checked for a compatible format version."""
        if not self.root.is_dir():
            raise RunDirError(f"{self.root}: no such run directory")
        if not self.manifest_path.is_file():
            raise RunDirError(f"{self.root}: not a therasim run directory (no manifest.json); give the folder `therasim run` printed")
        try:
            m = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunDirError(f"{self.manifest_path}: unreadable manifest ({e}); the run directory is damaged") from None
        fmt = m.get("run_format_version")
        if fmt != RUN_FORMAT_VERSION:
            made = m.get("therasim_version", "unknown")
            raise RunDirError(
                f"{self.root}: run format version {fmt!r} (made by therasim {made}) is not supported by therasim {__version__}, "
                f"which reads format {RUN_FORMAT_VERSION}. Open it with therasim {made}, or start a new run."
            )
        return m  # type: ignore[no-any-return]

    def records(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.transcripts))

    def branch_records(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.branches))

    def course_status(self) -> dict[str, dict[str, Any]]:
        """Latest status line per client id."""
        out: dict[str, dict[str, Any]] = {}
        for rec in read_jsonl(self.courses):
            out[rec["client_id"]] = rec
        return out

    def problems_list(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.problems))


def check_session_graph(manifest: dict[str, Any], builder: Any, action: str) -> None:
    """Refuse to ``action`` (resume, replay, fork, inspect) a run with a session graph
    other than the one its manifest records (by :meth:`SessionGraphBuilder.fingerprint`)."""
    graph = manifest.get("graph") or {}
    want = graph.get("session_hash")
    if not want:
        return  # manifests from before graph hashes were recorded
    got = builder.fingerprint()
    if got == want:
        return
    rec = (graph.get("course") or {}).get("session") or {}
    raise RunDirError(
        f"cannot {action}: this run used session graph {rec.get('name')!r} with nodes {rec.get('order')} (hash {want}), "
        f"but the graph given is {builder.name!r} with nodes {builder.order} (hash {got}). "
        "Pass session_builder= the graph the run used (manifest.json's graph.course.session describes it)."
    )
