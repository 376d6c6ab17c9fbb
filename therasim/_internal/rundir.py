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

import contextlib
import datetime
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from therasim._version import RUN_FORMAT_VERSION, __version__
from therasim.errors import RunDirError

__all__ = ["JsonlWriter", "RunDir", "RunLock", "atomic_write_json", "check_session_graph", "dumps_loose", "dumps_strict", "read_jsonl", "repair_jsonl"]


class RunLock:
    """An exclusive lock on a run directory (``RUN_DIR/.lock``), held by whatever
    writes it: run, resume, fork, replay.

    ``fcntl.flock`` on the file: the kernel drops it when the holder exits, however
    it exits, so a lock left by a dead process (kill -9, power loss) is taken over
    at once; the holder's pid, host and command are written in the file for the
    message the next process prints.
    """

    def __init__(self, root: Path, purpose: str) -> None:
        self.root = Path(root)
        self.purpose = purpose
        self.path = self.root / ".lock"
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return {}

    def acquire(self) -> RunLock:
        import fcntl
        import socket
        import time

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(f"{self.root}: cannot write here ({e.strerror}); {self.purpose} needs a writable run directory (copy it somewhere you can write)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            h = self.holder()
            who = f"pid {h.get('pid', '?')} on host {h.get('host', '?')}" + (f" ({h['purpose']} since {h['since']})" if h.get("purpose") else "")
            raise RunDirError(f"{self.root} is in use by {who}; wait for it to finish or stop that process, then try again") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose, "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:
            pass  # the flock is what counts; the text only names the holder
        self._fd = fd
        return self

    def release(self) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities as strings ("nan", "inf"): strict JSON has no
    such numbers, and a reader (``datasets``, ``jq``) would reject the file."""
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def dumps_strict(obj: Any, **kw: Any) -> str:
    """``json.dumps`` that never writes NaN or Infinity.

    A dict with the default or the compact separators (the event log's and the JSONL
    writers' records) goes to a C encoder made once (:func:`_strict_encoders`): the
    same bytes as ``json.dumps`` without its per-call Python (argument checks, a
    ``JSONEncoder`` and its C encoder made for every record; session 18 of #17).
    Anything that encoder fails on (NaN, a circular reference, a key JSON has no
    form for) goes the ``json.dumps`` way, whose result or error it then is."""
    if type(obj) is dict and _ENCODERS is not None and (not kw or (len(kw) == 1 and kw.get("separators") == _COMPACT)):
        try:
            return "".join(_ENCODERS[bool(kw)](obj, 0))
        except Exception:
            pass  # the json.dumps way below: its output, or its error
    try:
        return json.dumps(obj, default=str, ensure_ascii=False, allow_nan=False, **kw)
    except ValueError:
        return json.dumps(_finite(obj), default=str, ensure_ascii=False, allow_nan=False, **kw)


_COMPACT = (",", ":")


def _c_encoder(key_sep: str, item_sep: str, allow_nan: bool, probes: list[Any], want: Callable[[Any], str]) -> Any:
    """A C encoder (``json.encoder.c_make_encoder``) made once, as ``JSONEncoder.iterencode``
    makes one per call for ``json.dumps(obj, default=str, ensure_ascii=False, ...)``,
    but without the circular reference check (its markers dict would be shared by
    every caller and thread; a circular record fails with RecursionError and its
    caller retries the ``json.dumps`` way, which raises what it always did). None
    (``json.dumps`` every time) when this Python has no C encoder, or one that does
    not take these arguments or does not write ``want(p)`` for each probe ``p``."""
    import json.encoder as je

    make = getattr(je, "c_make_encoder", None)
    if make is None:
        return None
    try:
        enc = make(None, str, je.encode_basestring, None, key_sep, item_sep, False, False, allow_nan)
        if any("".join(enc(p, 0)) != want(p) for p in probes):
            return None
    except Exception:
        return None
    return enc


def _strict_encoders() -> tuple[Any, Any] | None:
    """:func:`dumps_strict`'s encoders (:func:`_c_encoder`) for json's default
    separators and for the compact ones (``(",", ":")``), or None."""
    probe = [{"a": [1, 2.5, None, True, "x\u00e9\n\u2028", {"b": ()}], "c": -3e-7, "p": Path("p"), 4: "k"}]
    default = _c_encoder(": ", ", ", False, probe, lambda p: json.dumps(p, default=str, ensure_ascii=False, allow_nan=False))
    compact = _c_encoder(":", ",", False, probe, lambda p: json.dumps(p, default=str, ensure_ascii=False, allow_nan=False, separators=_COMPACT))
    return (default, compact) if default is not None and compact is not None else None


_ENCODERS = _strict_encoders()
#: :func:`dumps_loose`'s encoder: what ``json.dumps(obj, default=str, ensure_ascii=False)``
#: writes (NaN as ``NaN``), or None
_LOOSE = _c_encoder(
    ": ",
    ", ",
    True,
    [{"a": [1, 2.5, float("nan"), None, True, "x\u00e9\n", {"b": ()}], 4: Path("p")}, "s", 3, -1e300 * 1e10],
    lambda p: json.dumps(p, default=str, ensure_ascii=False),
)


def dumps_loose(obj: Any) -> str:
    """``json.dumps(obj, default=str, ensure_ascii=False)`` (NaN written as ``NaN``: the
    dataset export's JSON-string fields, as they always were), through a C encoder made
    once (session 18 of #17); what it fails on goes the ``json.dumps`` way, whose result
    or error it then is."""
    if _LOOSE is not None:
        try:
            return "".join(_LOOSE(obj, 0))
        except Exception:
            pass
    return json.dumps(obj, default=str, ensure_ascii=False)


def event_line(name: str, fields: dict[str, Any], timestamp: str) -> str:
    """One ``events.jsonl`` line: ``fields`` with every URL's secrets masked
    (:func:`therasim.redact.redact`), then ``event`` and ``timestamp``, as
    :func:`dumps_strict` writes them, newline-terminated. Byte for byte what the
    structlog pipeline it replaces wrote (``TimeStamper`` then ``JSONRenderer``; tested),
    at a fraction of the cost: no processor chain, and the redaction walk only for a
    record whose JSON holds ``://`` (JSON writes ``:`` and ``/`` as they are, so a
    record without it has no URL to mask and the walk would copy it unchanged)."""
    rec = dict(fields)
    rec["event"] = name
    rec["timestamp"] = timestamp
    line = dumps_strict(rec)
    if "://" in line:
        from therasim.redact import redact

        rec = redact(fields)
        rec["event"] = name
        rec["timestamp"] = timestamp
        line = dumps_strict(rec)
    return line + "\n"


_SECOND: tuple[int, str] = (-1, "")  # the last second iso_now formatted, and its text


def iso_now() -> str:
    """The current UTC time as structlog's ``TimeStamper(fmt="iso", utc=True)`` writes it
    (``datetime.now(timezone.utc).isoformat()`` with ``Z``: microseconds only when not
    zero). The date and time of day are formatted once per second (session 18 of #17:
    the datetime and its isoformat were ~1 us per event line)."""
    global _SECOND
    sec, ns = divmod(time.time_ns(), 1_000_000_000)
    last, text = _SECOND
    if sec != last:
        text = datetime.datetime.fromtimestamp(sec, datetime.timezone.utc).replace(tzinfo=None).isoformat()
        _SECOND = (sec, text)
    us = ns // 1000
    return f"{text}.{us:06d}Z" if us else text + "Z"


def dumps_text_line(obj: Any) -> bytes:
    """One JSON line, byte for byte what ``dumps_strict(obj, separators=(",", ":"))``
    writes, for records of text: strings, ints, None, lists and dicts with string
    keys (the prompt log). orjson, about 4x faster on prompt-sized records; it writes
    floats differently (NaN as null), so records that may hold them are not given
    to it. Anything orjson refuses (a lone surrogate, a non-string key) goes the
    ``dumps_strict`` way."""
    try:
        import orjson

        return orjson.dumps(obj, default=str) + b"\n"
    except (TypeError, ImportError):
        return (dumps_strict(obj, separators=(",", ":")) + "\n").encode("utf-8")


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON next to ``path``, fsync, then rename over it (a failure,
    a full disk included, leaves the old file whole and no temporary behind)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(dumps_strict(obj, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
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


def read_jsonl(path: Path, *, require: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """The records of a JSONL file of the run directory. A line that is not a JSON
    object with the ``require``d keys (torn by a kill, damaged by hand, bad UTF-8)
    is skipped: the other records still read."""
    if not path.exists():
        return
    try:
        f = open(path, "rb")
    except OSError as e:
        raise RunDirError(f"{path}: cannot read it ({e.strerror})") from None
    with f:
        for raw in f:
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                obj = None
            if not isinstance(obj, dict) or any(k not in obj for k in require):
                continue  # a torn line (repair_jsonl removes it on resume) or a damaged one
            yield obj


class JsonlWriter:
    """Append-only JSON lines, one ``write`` per record, flushed and (by default)
    fsync'd before returning, so a record is either whole on disk or absent."""

    def __init__(self, path: Path, *, fsync: bool = True, text_only: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.text_only = text_only  # records of text only: encoded by dumps_text_line
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(f"{path}: cannot write ({e.strerror}); check the folder is writable and the disk has room") from None
        self._lock = threading.Lock()

    def write(self, obj: dict[str, Any]) -> None:
        """Append one record. On any failure (a full disk: ENOSPC) the file is cut back
        to where it was, so no partial line stays behind, and the error is raised."""
        data = dumps_text_line(obj) if self.text_only else (dumps_strict(obj, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                raise RunDirError(f"{self.path}: writer is closed")
            start = os.lseek(self._fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    n = _os_write(self._fd, view)
                    view = view[n:]
                if self.fsync:
                    os.fsync(self._fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)
                raise

    def sync(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    os.fsync(fd)
                except OSError:
                    pass  # every write was already synced or reported
                finally:
                    os.close(fd)


def _os_write(fd: int, data: Any) -> int:
    """``os.write`` (a seam for tests that simulate a full disk)."""
    return os.write(fd, data)


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

    def lock(self, purpose: str) -> RunLock:
        """The run directory's exclusive lock (a context manager)."""
        return RunLock(self.root, purpose)

    # reading -----------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The manifest, checked for a compatible format version."""
        if not self.root.is_dir():
            raise RunDirError(f"{self.root}: no such run directory")
        if not self.manifest_path.is_file():
            raise RunDirError(f"{self.root}: not a therasim run directory (no manifest.json); give the folder `therasim run` printed")
        try:
            m = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise RunDirError(f"{self.manifest_path}: unreadable manifest ({str(e)[:200]}); the run directory is damaged") from None
        except OSError as e:
            raise RunDirError(f"{self.manifest_path}: cannot read it ({e.strerror})") from None
        if not isinstance(m, dict):
            raise RunDirError(f"{self.manifest_path}: the manifest is not a JSON object; the run directory is damaged")
        fmt = m.get("run_format_version")
        if fmt != RUN_FORMAT_VERSION:
            made = m.get("therasim_version", "unknown")
            raise RunDirError(
                f"{self.root}: run format version {fmt!r} (made by therasim {made}) is not supported by therasim {__version__}, "
                f"which reads format {RUN_FORMAT_VERSION}. Open it with therasim {made}, or start a new run."
            )
        bad = [k for k, t in (("run_id", str), ("config", dict), ("cohort", dict)) if not isinstance(m.get(k), t)]
        if not bad and not isinstance(m["cohort"].get("ids"), list):
            bad = ["cohort.ids"]
        if bad:
            raise RunDirError(f"{self.manifest_path}: the manifest lacks {', '.join(bad)} (edited by hand?); the run directory is damaged")
        course = m["config"].get("course")
        if isinstance(course, dict) and "fold_calls" not in course:
            # made before the layout was recorded (session 14 of #17): every such run has
            # the per-node layout, so a resume, inspect, replay or fork builds that one
            # and not today's default (one superstep per exchange)
            m["config"]["course"] = {**course, "fold_calls": False}
        return m

    def records(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.transcripts, require=("client_id", "session")))

    def branch_records(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.branches, require=("client_id", "session", "branch")))

    def course_status(self) -> dict[str, dict[str, Any]]:
        """Latest status line per client id."""
        out: dict[str, dict[str, Any]] = {}
        for rec in read_jsonl(self.courses, require=("client_id", "status")):
            out[str(rec["client_id"])] = rec
        return out

    def problems_list(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.problems, require=("error",)))


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
