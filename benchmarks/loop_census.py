"""What the event loop is asked to do per model call: a census over one cohort run
(``arun_dir``: run files, SQLite checkpoints, embedded Chroma memory with the hash
embedding, lean, as ``benchmarks/runner_arms.py``) on the ``zero`` stub, on uvloop.

The loop is a subclass of uvloop's that counts, by the Python function that asked,
the tasks created (by coroutine), callbacks handed in from other threads
(``call_soon_threadsafe``: each one wakes the loop through its eventfd), timers
(``call_at`` / ``call_later``), ``call_soon`` callbacks, futures made with
``create_future`` and ``run_in_executor`` calls; asyncio's own helpers
(``gather``, ``shield``, ``wait_for``, ``to_thread``) are named by their caller. What
uvloop does internally for its transports and tasks (a task's steps, socket reads
and writes) is not counted here. Needs a running stub:

    therasim stub --profile zero --port 8011 &
    python benchmarks/loop_census.py --url http://127.0.0.1:8011 --courses 64

Figures are per model call (the stub's request count over the run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cohort_scaling as cs  # the cohort's config and warm-up

_ASYNCIO = ("/asyncio/", "/uvloop/", "/concurrent/futures/", "/threading.py")


def _caller() -> str:
    """The first frame outside asyncio, uvloop and this file: who asked the loop."""
    f = sys._getframe(2)
    while f is not None and (any(p in f.f_code.co_filename for p in _ASYNCIO) or f.f_code.co_filename == __file__):
        f = f.f_back
    if f is None:
        return "?"
    path = f.f_code.co_filename
    for cut in ("site-packages/", "/work/", "/therasim/"):
        if cut in path:
            path = path.split(cut, 1)[1]
    return f"{path}:{f.f_code.co_qualname}"


def _name(cb: Any) -> str:
    cb = getattr(cb, "func", cb)  # functools.partial
    return getattr(cb, "__qualname__", None) or type(cb).__name__


def census_loop() -> tuple[Any, dict[str, Counter[str]]]:
    import uvloop

    counts: dict[str, Counter[str]] = {k: Counter() for k in ("create_task", "call_soon_threadsafe", "timer", "call_soon", "create_future", "run_in_executor")}

    class CensusLoop(uvloop.Loop):  # type: ignore[misc]
        def create_task(self, coro: Any, **kw: Any) -> Any:
            counts["create_task"][f"{getattr(coro, '__qualname__', type(coro).__name__)} <- {_caller()}"] += 1
            return super().create_task(coro, **kw)

        def call_soon_threadsafe(self, cb: Any, *args: Any, **kw: Any) -> Any:
            counts["call_soon_threadsafe"][f"{_name(cb)} <- {_caller()}"] += 1
            return super().call_soon_threadsafe(cb, *args, **kw)

        def call_soon(self, cb: Any, *args: Any, **kw: Any) -> Any:
            counts["call_soon"][f"{_name(cb)} <- {_caller()}"] += 1
            return super().call_soon(cb, *args, **kw)

        # uvloop's call_at calls self.call_later: a timer is counted there, once
        def call_later(self, delay: float, cb: Any, *args: Any, **kw: Any) -> Any:
            counts["timer"][f"{_name(cb)} <- {_caller()}"] += 1
            return super().call_later(delay, cb, *args, **kw)

        def create_future(self) -> Any:
            counts["create_future"][_caller()] += 1
            return super().create_future()

        def run_in_executor(self, ex: Any, fn: Any, *args: Any) -> Any:
            counts["run_in_executor"][f"{_name(fn)} <- {_caller()}"] += 1
            return super().run_in_executor(ex, fn, *args)

    return CensusLoop, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8011")
    ap.add_argument("--courses", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=None)
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    from therasim.runner import arun_dir, start_run
    from therasim.tools.bench import _get

    shape = (a.sessions, a.turns)
    conc = a.concurrency or a.courses
    root = Path(tempfile.mkdtemp(prefix="loop-census-"))
    cs._warm_up(a.url, root, True, "w", shape, None)
    loop_cls, counts = census_loop()
    rd, _ = start_run(cs._config(a.url, conc, True, shape), sample=a.courses, out=root, run_id="census")
    r0 = int(_get(a.url + "/metrics")["requests"])
    with asyncio.Runner(loop_factory=loop_cls) as r:
        out = r.run(arun_dir(rd, concurrency=conc))
    calls = max(int(_get(a.url + "/metrics")["requests"]) - r0, 1)
    if len(out.completed) != a.courses:
        raise SystemExit(f"{len(out.completed)} of {a.courses} courses completed: {out.failed}")
    print(f"{a.courses} courses x {a.sessions} sessions x {a.turns} turns, {conc} in flight: {calls} model calls; per model call:\n")
    result: dict[str, Any] = {"args": vars(a), "calls": calls, "per_call": {}}
    for kind, c in counts.items():
        total = sum(c.values())
        result["per_call"][kind] = {"total": round(total / calls, 3), "by_caller": {k: round(v / calls, 3) for k, v in c.most_common()}}
        print(f"### {kind}: {total / calls:.2f} per call\n")
        for k, v in c.most_common(a.top):
            print(f"- {v / calls:.2f}  {k}")
        print()
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
