"""Sensitivity of the client simulator to the counselor (docs/simulation.md).

The same sampled clients, the same seed, two counselor arms (the scripted
``dismissive`` and ``supportive`` reference counselors); the client (and every
other role) on the stub model served in process (``therasim stub``'s server,
profile ``zero``), or on the embedded SmolLM2 with ``--model embedded``. Prints
per arm: mean PHQ-9 change (last measured minus first, the last observation
carried forward after a dropout), mean WAI-SR total over attended sessions, the
dropout rate, and Cohen's d (pooled SD) and paired d_z of the difference, with
the counselor moves the trace names behind the alliance updates.

    python benchmarks/sensitivity.py                      # 30 clients x 4 sessions on the stub
    python benchmarks/sensitivity.py --model embedded --clients 3 --sessions 2 --turns 3
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import statistics
import time
from typing import Any

from therasim.config import CourseSpec, ModelSpec
from therasim.context import SimContext
from therasim.graphs import course_builder, initial_course_state, run_course
from therasim.profiles import ClientProfile, sample_profiles
from therasim.providers import ModelPool, make_chat_model

ARMS = ("dismissive", "supportive")
# metric -> the arm expected to score higher
EXPECTED_HIGHER = {"phq9_change": "dismissive", "wai_sr": "supportive", "dropout": "dismissive"}


def _phq_change(recs: list[dict[str, Any]]) -> float | None:
    totals = [((r.get("measures") or {}).get("phq9") or {}).get("total") for r in recs]
    totals += [((r.get("measures_after") or {}).get("phq9") or {}).get("total") for r in recs]
    seen = [t for t in totals if t is not None]
    return float(seen[-1] - seen[0]) if len(seen) >= 2 else (0.0 if seen else None)


def _wai(recs: list[dict[str, Any]]) -> float | None:
    vals = [((r.get("session_measures") or {}).get("wai_sr") or {}).get("total") for r in recs]
    vals = [v for v in vals if v is not None]
    return statistics.fmean(vals) if vals else None


def outcomes(recs: list[dict[str, Any]]) -> dict[str, Any]:
    recs = sorted(recs, key=lambda r: r["session"])
    moves: collections.Counter[str] = collections.Counter()
    for r in recs:
        for t in r.get("turns") or []:
            for u in (t.get("note") or {}).get("updates") or []:
                if u["variable"] == "alliance" and u["moves"]:
                    moves[u["moves"][0]] += 1
    return {
        "phq9_change": _phq_change(recs),
        "wai_sr": _wai(recs),
        "dropout": 1.0 if any(r.get("end_reason") == "dropout" for r in recs) else 0.0,
        "no_shows": sum(1 for r in recs if r.get("end_reason") == "no_show"),
        "alliance_moves": dict(moves),
    }


def cohen_d(a: list[float], b: list[float]) -> float:
    """(mean a - mean b) / pooled SD."""
    va, vb = statistics.pvariance(a) * len(a) / max(len(a) - 1, 1), statistics.pvariance(b) * len(b) / max(len(b) - 1, 1)
    sd = math.sqrt(((len(a) - 1) * va + (len(b) - 1) * vb) / max(len(a) + len(b) - 2, 1))
    return (statistics.fmean(a) - statistics.fmean(b)) / sd if sd else math.inf * (1 if statistics.fmean(a) > statistics.fmean(b) else -1)


def d_z(a: list[float], b: list[float]) -> float:
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    return statistics.fmean(diffs) / sd if sd else math.inf * (1 if statistics.fmean(diffs) > 0 else -1)


async def run_arm(arm: str, profiles: list[ClientProfile], models: dict[str, Any], args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    recs: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    spec = CourseSpec(preset=args.preset, sessions=args.sessions, max_turns=args.turns, memory=False)
    pool = ModelPool({**models, "counselor": make_chat_model(ModelSpec(provider="scripted", model=arm))})
    ctx = SimContext(models=pool, course=spec, seed=args.seed, on_record=lambda r: recs[r["client_id"]].append(r))
    graph = course_builder(spec).compile()
    sem = asyncio.Semaphore(args.concurrency)

    async def one(p: ClientProfile) -> None:
        async with sem:
            await run_course(graph, initial_course_state(p, run_id=arm, sessions=args.sessions), ctx)

    await asyncio.gather(*(one(p) for p in profiles))
    await pool.aclose()
    return recs


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    profiles = sample_profiles(args.clients, seed=args.seed)
    runner = None
    if args.model == "stub":
        from aiohttp import web

        from therasim.stub import StubServer, create_app

        runner = web.AppRunner(create_app(StubServer("zero", seed=args.seed)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        models: dict[str, Any] = {"default": ModelSpec(provider="openai", model="stub", base_url=f"http://127.0.0.1:{port}/v1", timeout_s=30)}
    else:
        models = {"default": ModelSpec(provider="embedded", n_ctx=4096)}
        args.concurrency = 1
    out: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if k != "json"}, "arms": {}}
    try:
        for arm in ARMS:
            t0 = time.perf_counter()
            recs = await run_arm(arm, profiles, models, args)
            per = {p.id: outcomes(recs[p.id]) for p in profiles}
            out["arms"][arm] = {"per_client": per, "wall_s": round(time.perf_counter() - t0, 1)}
    finally:
        if runner is not None:
            await runner.cleanup()
    ids = [p.id for p in profiles]
    table = {}
    for metric, higher in EXPECTED_HIGHER.items():
        keep = [i for i in ids if all(out["arms"][a]["per_client"][i][metric] is not None for a in ARMS)]
        dis = [out["arms"]["dismissive"]["per_client"][i][metric] for i in keep]
        sup = [out["arms"]["supportive"]["per_client"][i][metric] for i in keep]
        d = cohen_d(dis, sup) if len(keep) > 1 else float("nan")
        dz = d_z(dis, sup) if len(keep) > 1 else float("nan")
        sign = 1 if higher == "dismissive" else -1
        table[metric] = {
            "n": len(keep),
            "dismissive": round(statistics.fmean(dis), 3) if dis else None,
            "supportive": round(statistics.fmean(sup), 3) if sup else None,
            "cohen_d": round(d, 3),
            "d_z": round(dz, 3),
            "expected_direction": bool(sign * d > 0),
            "d_at_least_0.8": bool(sign * d >= 0.8),
        }
    out["table"] = table
    for arm in ARMS:
        moves: collections.Counter[str] = collections.Counter()
        for o in out["arms"][arm]["per_client"].values():
            moves.update(o["alliance_moves"])
        out["arms"][arm]["alliance_moves"] = dict(moves.most_common())
        out["arms"][arm]["no_shows"] = sum(o["no_shows"] for o in out["arms"][arm]["per_client"].values())
    return out


def render(out: dict[str, Any]) -> str:
    c = out["config"]
    lines = [
        f"clients {c['clients']} x sessions {c['sessions']} x turns {c['turns']}, seed {c['seed']}, model {c['model']}, preset {c['preset']}",
        f"{'metric':<14}{'n':>4}{'dismissive':>12}{'supportive':>12}{'Cohen d':>10}{'d_z':>8}  expected direction, |d| >= 0.8",
    ]
    for m, r in out["table"].items():
        lines.append(f"{m:<14}{r['n']:>4}{r['dismissive']!s:>12}{r['supportive']!s:>12}{r['cohen_d']:>10}{r['d_z']:>8}  {r['expected_direction']}, {r['d_at_least_0.8']}")
    for arm in ARMS:
        a = out["arms"][arm]
        lines.append(f"{arm}: wall {a['wall_s']} s, no-shows {a['no_shows']}, moves behind alliance updates {a['alliance_moves']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", choices=("stub", "embedded"), default="stub")
    ap.add_argument("--preset", default="minimal")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--json", help="write the full result (per client) here")
    args = ap.parse_args()
    out = asyncio.run(main_async(args))
    print(render(out))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
