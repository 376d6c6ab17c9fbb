"""CPU of one model call's transport alone: ``HttpChatClient.chat`` (the lean HTTP/1.1
client, JSON encode and decode, breakers, the event loop's own work for the call:
its future, timer, socket reads and writes) against the ``zero`` stub, a baseline
revision's ``therasim/_internal/http.py`` and ``http1.py`` against this tree's, in
one process on one event loop, blocks of calls alternated between the two:

    python benchmarks/transport_calls.py --base 716a58b --concurrency 64 --blocks 8

Each block makes ``--calls`` calls from ``--concurrency`` concurrent callers (one
client per arm, its connections warmed first). Figures are CPU of the event loop's
thread per call (user and kernel, ``RUSAGE_THREAD``; the stub runs in another
process), the median over the blocks and the per-block ratio this / base. The
request body is a prompt-sized chat request (a ~3 KB system prompt, a transcript
of ten turns), the reply the stub's (~0.4 KB).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def body() -> dict[str, Any]:
    turns = [{"role": "user" if i % 2 else "assistant", "content": f"Turn {i}: " + "I have been feeling rather tired at work lately. " * 4} for i in range(10)]
    return {
        "model": "m",
        "messages": [{"role": "system", "content": "You are a counselor in a simulated session. " * 70}, *turns],
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": 200,
        "seed": 7,
        "user": "c0-0001",
    }


def load_base(rev: str) -> ModuleType:
    """The baseline revision's http.py, importing the baseline's http1.py."""
    tmp = Path(tempfile.mkdtemp())
    for name in ("http1", "http"):
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:therasim/_internal/{name}.py"], capture_output=True, check=True, text=True).stdout
        (tmp / f"base_{name}.py").write_text(src.replace("therasim._internal.http1", "base_http1"))
    sys.path.insert(0, str(tmp))
    spec = importlib.util.spec_from_file_location("base_http", tmp / "base_http.py")
    assert spec is not None and spec.loader is not None
    m = importlib.util.module_from_spec(spec)
    sys.modules["base_http"] = m
    spec.loader.exec_module(m)
    return m


def thread_cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return r.ru_utime, r.ru_stime


async def block(client: Any, req: dict[str, Any], calls: int, conc: int) -> tuple[float, float]:
    per = calls // conc

    async def worker() -> None:
        for _ in range(per):
            await client.chat(req)

    u0, s0 = thread_cpu()
    await asyncio.gather(*(worker() for _ in range(conc)))
    u1, s1 = thread_cpu()
    n = per * conc
    return 1e6 * (u1 - u0) / n, 1e6 * (s1 - s0) / n


async def run(url: str, base_mod: ModuleType, calls: int, conc: int, blocks: int) -> dict[str, Any]:
    from therasim._internal import http as this_mod

    req = body()
    arms = {"base": base_mod, "this": this_mod}
    clients = {k: m.HttpChatClient([url], api_key="k", timeout_s=30, policy=m.RetryPolicy()) for k, m in arms.items()}
    for c in clients.values():  # connections opened, code paths warmed
        await block(c, req, conc * 4, conc)
    rows: dict[str, list[tuple[float, float]]] = {k: [] for k in arms}
    for b in range(blocks):
        order = list(arms) if b % 2 == 0 else list(reversed(arms))
        for k in order:
            rows[k].append(await block(clients[k], req, calls, conc))
    for c in clients.values():
        await c.aclose()
    out: dict[str, Any] = {"calls_per_block": calls, "concurrency": conc, "blocks": blocks, "request_bytes": len(json.dumps(req))}
    for k, r in rows.items():
        out[k] = {
            "us_per_call": statistics.median(u + s for u, s in r),
            "user_us_per_call": statistics.median(u for u, _ in r),
            "sys_us_per_call": statistics.median(s for _, s in r),
            "per_block": [round(u + s, 2) for u, s in r],
        }
    out["ratios"] = [round((t[0] + t[1]) / (b[0] + b[1]), 3) for b, t in zip(rows["base"], rows["this"], strict=True)]
    out["ratio_median"] = statistics.median(out["ratios"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="baseline git revision")
    ap.add_argument("--url", default=None, help="a running stub's base URL (default: start `therasim stub --profile zero`)")
    ap.add_argument("--calls", type=int, default=6400)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    base_mod = load_base(a.base)
    stub = None
    url = a.url
    if url is None:
        from therasim.tools.bench import _Stub

        stub = _Stub("zero")
        url = stub.url + "/v1"
    try:
        factory: Any = asyncio.new_event_loop
        if a.loop == "uvloop":
            import uvloop

            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as r:
            out = r.run(run(url, base_mod, a.calls, a.concurrency, a.blocks))
    finally:
        if stub is not None:
            stub.close()
    out.update(base_rev=a.base, loop=a.loop, load=os.getloadavg()[0], time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    print("| arm | us per call (thread CPU) | user | kernel | per block |")
    print("|---|---|---|---|---|")
    for k in ("base", "this"):
        o = out[k]
        print(f"| {k} ({a.base if k == 'base' else 'this tree'}) | {o['us_per_call']:.1f} | {o['user_us_per_call']:.1f} | {o['sys_us_per_call']:.1f} | {', '.join(map(str, o['per_block']))} |")
    print(f"this / base: median {out['ratio_median']:.3f}, per block {out['ratios']}; load {out['load']:.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
