"""The orchestrator's event-loop CPU per model call without the HTTP round trip
(issue #17, session 18, nodes): a lean cohort run in this process through the
runner (``start_run`` + ``arun_dir``, SQLite checkpoints, memory off), with
therasim's own model answering in process: ``OpenAICompatChatModel._areply``
builds the request body as usual and hands it to the ``zero`` stub's reply function
(``StubServer.reply``, the same answers the HTTP stub gives), timed on its own
and taken out. What is left is the nodes, the graphs and the run files, with
neither the transport's nor the server's CPU in it, so a change to the nodes'
Python shows as a larger share than in ``therasim bench``.

    python benchmarks/nodes_cpu.py 64 64 3           # courses, in flight, rounds
    python benchmarks/nodes_cpu.py --base REV --repeat 6 -- 64 64 2   # REV's package against this tree's, alternated

Prints, per round, the model calls and the thread's CPU per call (the stub's part
taken out), and a sha256 of the run's transcripts.jsonl and prompts.jsonl (lines
sorted), which both arms must share. A stub (``STUB_URL``, default
http://127.0.0.1:8011) only answers whatever the runner asks besides chat calls.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def one_round(url: str, n: int, conc: int) -> dict[str, Any]:
    import gc

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import cohort_scaling as cs
    import uvloop

    from therasim import providers
    from therasim.runner import arun_dir, start_run
    from therasim.tools.stub import StubServer

    stub = StubServer("zero")
    spent = [0.0, 0]

    async def areply(self: Any, messages: Any, stop: Any = None, **kwargs: Any) -> Any:
        body = self._body(messages, stop, kwargs)
        t0 = time.thread_time()
        text, _, _ = stub.reply(body)
        spent[0] += time.thread_time() - t0
        spent[1] += 1
        return providers.ChatReply(
            text,
            {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15, "input_token_details": {"cache_read": 0}},
            {"model_name": "stub", "finish_reason": "stop", "transport": {}},
        )

    providers.OpenAICompatChatModel._areply = areply  # type: ignore[method-assign]
    root = Path(tempfile.mkdtemp(prefix="nodes-cpu-", dir=os.environ.get("THR_TMP")))
    try:
        rd, _ = start_run(cs._config(url, conc, False, (2, 4)), sample=n, out=root, run_id="t")
        gc.collect()
        c0 = time.thread_time()
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            r.run(arun_dir(rd, concurrency=conc))
        cpu = time.thread_time() - c0 - spent[0]
        digests = {}
        for name in ("transcripts.jsonl", "prompts.jsonl"):
            rows = sorted(ln for f in sorted(Path(rd.root).rglob(name)) for ln in f.read_text().splitlines())
            digests[name] = hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
        return {"calls": spent[1], "cpu_ms_per_call": 1000 * cpu / spent[1], "stub_ms_per_call": 1000 * spent[0] / spent[1], **digests}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ab(a: argparse.Namespace, args: list[str]) -> None:
    from before_after import baseline_package

    pkg = baseline_package(a.base)
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for _ in range(a.repeat):
        for arm, pp in (("before", str(pkg)), ("after", None)):
            env = dict(os.environ)
            if pp:
                env["PYTHONPATH"] = pp + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nodes_cpu.py"), *args], env=env, capture_output=True, text=True, check=True, cwd=tempfile.gettempdir()).stdout
            rs = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
            runs[arm].extend(rs)
            print(arm, " ".join(f"{r['cpu_ms_per_call']:.3f}" for r in rs), file=sys.stderr, flush=True)
    b = statistics.median(r["cpu_ms_per_call"] for r in runs["before"])
    n = statistics.median(r["cpu_ms_per_call"] for r in runs["after"])
    pairs = [round(y["cpu_ms_per_call"] / x["cpu_ms_per_call"], 3) for x, y in zip(runs["before"], runs["after"], strict=True)]
    same = {k: len({r[k] for rs in runs.values() for r in rs}) == 1 for k in ("transcripts.jsonl", "prompts.jsonl", "calls")}
    res = {"base": a.base, "args": args, "before_ms": round(b, 4), "after_ms": round(n, 4), "ratio": round(n / b, 3), "pairs": pairs, "identical": same, "load": os.getloadavg(), "runs": runs}
    print(json.dumps({k: v for k, v in res.items() if k != "runs"}))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default=None, help="baseline git revision: run both arms, alternated")
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--json", default=None)
    ap.add_argument("rest", nargs=argparse.REMAINDER, help="COURSES CONCURRENCY ROUNDS")
    a = ap.parse_args()
    rest = [x for x in a.rest if x != "--"]
    if a.base:
        ab(a, rest)
        return
    n, conc = int(rest[0]), int(rest[1])
    url = os.environ.get("STUB_URL", "http://127.0.0.1:8011")
    for _ in range(int(rest[2]) if len(rest) > 2 else 1):
        print(json.dumps(one_round(url, n, conc)), flush=True)


if __name__ == "__main__":
    main()
