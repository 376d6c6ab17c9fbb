"""Where the orchestrator's CPU per model call goes: the same courses against the
zero-latency stub with parts of the stack switched off. Needs a running stub:

    therasim stub --port 8011 &
    python benchmarks/cpu_per_call.py --url http://127.0.0.1:8011

Also reported: session checkpoints per exchange (one per LangGraph superstep, the
session's input and start included) and model calls per second one core sustains.

Before/after in one invocation (``--base REV``): a baseline revision's package
(built as in ``before_after.py``) and this tree's, rounds alternated, medians:

    python benchmarks/cpu_per_call.py --url http://127.0.0.1:8011 --base f00501d --repeat 3

Postgres checkpoints (``--postgres DSN``, or ``--postgres auto`` for a throw-away
PostgreSQL 15 cluster as the scale-out tests start one; needs the ``postgres``
extra): two more variants, group commit on and off (``THERASIM_GROUP_COMMIT``),
each with its write transactions per second and, when the server's postmaster
pid is known (``auto``, or ``--pg-pid``), the server's CPU per model call:

    python benchmarks/cpu_per_call.py --courses 64 --postgres auto --only-postgres

Pregel against the lean executor (``--executors``): in one process, each variant
run under ``THERASIM_EXECUTOR=pregel`` and ``lean`` in turn, rounds alternated,
medians and each round's ratio (both arms share the process, its warm caches and
the machine's load at that moment):

    python benchmarks/cpu_per_call.py --url http://127.0.0.1:8011 --executors --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

VARIANTS = (
    ("graphs only (no checkpointer, no memory)", False, False),
    ("+ memory (Chroma + recall mirror)", False, True),
    ("+ checkpoints (SQLite, sync, compressed)", True, True),
)


def requests(url: str) -> int:
    with urllib.request.urlopen(url + "/metrics") as r:
        return int(json.loads(r.read())["requests"])


PG_VARIANTS = (
    ("+ checkpoints (Postgres, group commit)", "pg-group", True),
    ("+ checkpoints (Postgres, one transaction per write)", "pg-each", True),
)


def _server_cpu_s(pid: int | None) -> float | None:
    """CPU seconds of a postmaster and its backends so far (exited ones included:
    the postmaster reaps them)."""
    if not pid:
        return None
    import psutil

    try:
        pm = psutil.Process(pid)
        t = pm.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for c in pm.children():
            try:
                ct = c.cpu_times()
                total += ct.user + ct.system
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return None


def _fresh_database(dsn: str) -> str:
    """A new, empty database on the server ``dsn`` names (thread ids repeat across
    variants: the same courses, the same run id); its DSN."""
    import uuid

    import psycopg

    name = f"cpu_per_call_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    base, _, tail = dsn.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (f"?{tail}" if tail else "")


async def variant(url: str, cfg: object, *, checkpointer: bool | str, memory: bool, n: int, dsn: str | None = None, pg_pid: int | None = None) -> dict[str, float]:
    from therasim._internal.checkpoint import open_checkpointer, open_postgres_checkpointer
    from therasim.context import SimContext
    from therasim.graphs.course import course_builder, initial_course_state, run_course
    from therasim.memory import ChromaMemoryStore
    from therasim.profiles import sample_profiles
    from therasim.providers import ModelPool
    from therasim.testing import HashEmbedding

    pool = ModelPool(cfg.models)  # type: ignore[attr-defined]
    store = ChromaMemoryStore.persistent(tempfile.mkdtemp(), HashEmbedding()) if memory else None
    course = course_builder(cfg.course.model_copy(update={"memory": memory}))  # type: ignore[attr-defined]
    profiles = sample_profiles(n, seed=1)
    r0, c0, w0, s0 = requests(url), time.process_time(), time.perf_counter(), _server_cpu_s(pg_pid)
    finals: list[dict] = []
    txns = [0]

    async def go(saver: object) -> None:
        g = course.compile(checkpointer=saver)
        ctx = SimContext(models=pool, course=cfg.course, memory=store)  # type: ignore[attr-defined]
        finals.extend(await asyncio.gather(*(run_course(g, initial_course_state(p, run_id="x", sessions=cfg.course.sessions), ctx, thread_id=f"x/{p.id}/course" if saver else None) for p in profiles)))  # type: ignore[attr-defined]

    path = tempfile.mktemp(suffix=".sqlite")
    if isinstance(checkpointer, str):  # Postgres: group commit on or off, each run on a new database
        db = _fresh_database(str(dsn))
        async with open_postgres_checkpointer(db, pool_size=8, group_commit=checkpointer == "pg-group") as saver:
            if checkpointer == "pg-each":  # one transaction per aput / aput_writes: count them
                for name in ("aput", "aput_writes"):
                    f = getattr(saver, name)

                    @functools.wraps(f)  # the signature LangGraph inspects (task_path) stays
                    def counted(*a: object, _f: Any = f, **kw: object) -> object:
                        txns[0] += 1
                        return _f(*a, **kw)

                    setattr(saver, name, counted)
            await go(saver)
            if checkpointer == "pg-group":
                txns[0] = saver.group.commits
    elif checkpointer:
        async with open_checkpointer(path) as saver:
            await go(saver)
    else:
        await go(None)
    await pool.aclose()
    calls = max(requests(url) - r0, 1)
    wall = time.perf_counter() - w0
    out = {"cpu_ms_per_call": 1000 * (time.process_time() - c0) / calls, "calls": calls, "wall_s": wall}
    if isinstance(checkpointer, str):
        out["write_transactions"] = txns[0]
        out["commits_per_s"] = txns[0] / wall
        out["commits_per_call"] = txns[0] / calls
        s1 = _server_cpu_s(pg_pid)
        if s0 is not None and s1 is not None:
            out["server_cpu_ms_per_call"] = 1000 * (s1 - s0) / calls
    elif checkpointer:
        exchanges = sum(1 for f in finals for r in f.get("records") or [] for t in r.get("turns") or [] if t.get("speaker") == "client")
        with sqlite3.connect(path) as con:
            (steps,) = con.execute("SELECT count(*) FROM checkpoints WHERE thread_id NOT LIKE '%/course'").fetchone()
        out["session_checkpoints_per_exchange"] = steps / max(exchanges, 1)
    return out


def measure(url: str, courses: int, preset: str, *, turns: int = 8, dsn: str | None = None, pg_pid: int | None = None, only_postgres: bool = False, repeat: int = 1) -> dict[str, dict[str, float]]:
    from therasim.config import RunConfig

    cfg = RunConfig.model_validate({"models": {"default": {"provider": "openai", "model": "stub", "base_url": url + "/v1"}}, "course": {"preset": preset, "sessions": 2, "max_turns": turns}, "memory": {"embedding": "hash"}})
    asyncio.run(variant(url, cfg, checkpointer=False, memory=False, n=2))  # warm imports
    variants: list[tuple[str, bool | str, bool]] = [] if only_postgres else list(VARIANTS)
    if dsn:
        variants += PG_VARIANTS
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    for _ in range(repeat):  # rounds alternate the variants; medians reported
        for name, ck, mem in variants:
            runs[name].append(asyncio.run(variant(url, cfg, checkpointer=ck, memory=mem, n=courses, dsn=dsn, pg_pid=pg_pid)))
    return {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}


def executors(url: str, courses: int, preset: str, *, turns: int, repeat: int, variants: tuple[tuple[str, bool | str, bool], ...] = VARIANTS) -> dict[str, Any]:
    """Each variant under Pregel and the lean executor, alternated in one process
    (the arm that goes first alternates too); per round ``cpu_ms_per_call`` of each arm."""
    from therasim.config import RunConfig

    cfg = RunConfig.model_validate({"models": {"default": {"provider": "openai", "model": "stub", "base_url": url + "/v1"}}, "course": {"preset": preset, "sessions": 2, "max_turns": turns}, "memory": {"embedding": "hash"}})
    asyncio.run(variant(url, cfg, checkpointer=False, memory=False, n=2))  # warm imports
    out: dict[str, Any] = {}
    for name, ck, mem in variants:
        rounds: list[dict[str, float]] = []
        for i in range(repeat):
            r: dict[str, float] = {}
            for arm in (("pregel", "lean") if i % 2 == 0 else ("lean", "pregel")):
                os.environ["THERASIM_EXECUTOR"] = arm
                r[arm] = asyncio.run(variant(url, cfg, checkpointer=ck, memory=mem, n=courses))["cpu_ms_per_call"]
            rounds.append(r)
        os.environ.pop("THERASIM_EXECUTOR", None)
        med = {arm: statistics.median(r[arm] for r in rounds) for arm in ("pregel", "lean")}
        out[name] = {"rounds": rounds, "median": med, "lean_over_pregel": med["lean"] / med["pregel"], "round_ratios": [r["lean"] / r["pregel"] for r in rounds]}
    return out


def _postgres_auto() -> tuple[object, str, int]:
    """A throw-away PostgreSQL cluster (tests/scaleout_services.py), its DSN and
    postmaster pid."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from scaleout_services import Postgres  # type: ignore[import-not-found]

    pg = Postgres()
    pid = int((pg.data / "postmaster.pid").read_text().split()[0])
    return pg, pg.dsn, pid


def before_after(a: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from before_after import baseline_package

    pkg = str(baseline_package(a.base))
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(a.repeat):
        for arm, pp in (("before", pkg), ("after", None)):
            env = dict(os.environ)
            if pp:
                env["PYTHONPATH"] = pp + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            out = Path(tempfile.mktemp(suffix=".json"))
            cmd = [sys.executable, __file__, "--url", a.url, "--courses", str(a.courses), "--preset", a.preset, "--json", str(out)]
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())
            runs[arm].append(json.loads(out.read_text()))
    print(f"cpu_per_call: {a.courses} courses x 2 sessions x {a.turns} turns, {a.preset}, median of {a.repeat} (alternated); base {a.base}")
    print("| variant | key | before | after | after / before |")
    print("|---|---|---|---|---|")
    for name, _, _ in VARIANTS:
        for key in ("cpu_ms_per_call", "calls_per_s_per_core", "session_checkpoints_per_exchange"):
            b = [r[name][key] for r in runs["before"] if key in r[name]]
            n = [r[name][key] for r in runs["after"] if key in r[name]]
            if b and n:
                mb, mn = statistics.median(b), statistics.median(n)
                print(f"| {name} | `{key}` | {mb:.2f} | {mn:.2f} | {mn / mb:.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(runs, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8011")
    ap.add_argument("--courses", type=int, default=16)
    ap.add_argument("--preset", default="lean")
    ap.add_argument("--turns", type=int, default=8, help="turns per session (2 sessions per course)")
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--base", default=None, help="baseline git revision: before/after in one invocation")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--postgres", default=None, help="a Postgres DSN (or `auto`: a throw-away cluster): adds Postgres variants, group commit on and off")
    ap.add_argument("--pg-pid", type=int, default=None, help="the Postgres postmaster's pid, for the server's CPU per call")
    ap.add_argument("--only-postgres", action="store_true", help="only the Postgres variants")
    ap.add_argument("--executors", action="store_true", help="Pregel against the lean executor, alternated in one process")
    a = ap.parse_args()
    if a.executors:
        res_ex = executors(a.url, a.courses, a.preset, turns=a.turns, repeat=a.repeat)
        print(f"executors: {a.courses} courses x 2 sessions x {a.turns} turns, {a.preset}, {a.repeat} rounds alternated in one process")
        print("| variant | `cpu_ms_per_call` Pregel | lean | lean / Pregel | per round |")
        print("|---|---|---|---|---|")
        for name, r in res_ex.items():
            print(f"| {name} | {r['median']['pregel']:.2f} | {r['median']['lean']:.2f} | **{r['lean_over_pregel']:.2f}** | {', '.join(f'{x:.2f}' for x in r['round_ratios'])} |")
        if a.json:
            Path(a.json).write_text(json.dumps(res_ex, indent=1))
        return
    if a.base:
        before_after(a)
        return
    pg = None
    dsn, pg_pid = a.postgres, a.pg_pid
    if a.postgres == "auto":
        import signal

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout`: the cluster is still removed
        pg, dsn, pg_pid = _postgres_auto()
    try:
        res = measure(a.url, a.courses, a.preset, turns=a.turns, dsn=dsn, pg_pid=pg_pid, only_postgres=a.only_postgres, repeat=a.repeat if dsn else 1)
    finally:
        if pg is not None:
            pg.close()  # type: ignore[attr-defined]
    for r in res.values():
        r["calls_per_s_per_core"] = 1000 / r["cpu_ms_per_call"]
    print("| variant | orchestrator CPU ms per model call | model calls/s per core | session checkpoints per exchange | write transactions/s | per model call | Postgres server CPU ms per call |")
    print("|---|---|---|---|---|---|---|")

    def f(r: dict[str, float], key: str, fmt: str) -> str:
        return "" if key not in r else format(r[key], fmt)

    for name, r in res.items():
        print(f"| {name} | {r['cpu_ms_per_call']:.2f} | {r['calls_per_s_per_core']:.0f} | {f(r, 'session_checkpoints_per_exchange', '.2f')} | {f(r, 'commits_per_s', '.0f')} | {f(r, 'commits_per_call', '.2f')} | {f(r, 'server_cpu_ms_per_call', '.2f')} |")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
