"""Pieces of the per-call Python, each timed in one process with the variants
alternated (CPU time of this thread, so a loaded machine slows it down without
skewing the ratios much):

- headers: every header call of a few lean courses (the views captured from a run
  on a schema-faithful fake model, in call order), rendered per call against
  ``therasim.prompts._memo_header`` (rendered once per course and session while its
  inputs are unchanged); both give the same strings (checked);
- blobs: every checkpoint blob those courses wrote (LangGraph's msgpack bytes,
  captured in the serializer), compressed and decompressed with zlib (level 3, the
  ``z:`` blobs) and zstd (level 3, ``zs:``); sizes too;
- direct: ``therasim.structured._direct`` on therasim's own HTTP model (the test a
  node's call made twice before ``prepared``, once since).

    python benchmarks/call_pieces.py --courses 8 --rounds 7 --json out.json

Per-call figures divide by the model calls of the captured courses.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import statistics
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any


def capture(courses: int) -> dict[str, Any]:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from therasim import prompts
    from therasim._internal import checkpoint as ck
    from therasim.config import CourseSpec
    from therasim.context import SimContext
    from therasim.graphs import CourseGraphBuilder, initial_course_state, run_course
    from therasim.profiles import sample_profiles
    from therasim.providers import ModelPool
    from therasim.testing import SchemaFakeChatModel

    headers: list[tuple[str, Any, Any]] = []
    blobs: list[bytes] = []
    calls = [0]
    real_c, real_k = prompts.counselor_header, prompts.client_header

    def c_header(view: Any, sim: Any) -> str:
        headers.append(("counselor", copy.deepcopy(dict(view)), sim))
        return real_c(view, sim)

    def k_header(view: Any) -> str:
        headers.append(("client", copy.deepcopy(dict(view)), None))
        return real_k(view)

    plain = JsonPlusSerializer()

    class Capturing(ck.CompressedSerializer):
        def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
            _typ, data = plain.dumps_typed(obj)
            if len(data) >= self.min_size:
                blobs.append(data)
            return super().dumps_typed(obj)

    import therasim.nodes.measures as measures

    prompts.counselor_header, prompts.client_header, measures.client_header = c_header, k_header, k_header  # type: ignore[assignment]
    real_ser = ck.CompressedSerializer
    ck.CompressedSerializer = Capturing  # type: ignore[misc]
    try:

        def log(node: str, side: str, msgs: Any) -> None:
            calls[0] += 1

        spec = CourseSpec(preset="lean", sessions=2, max_turns=8)
        ctx = SimContext(models=ModelPool({"default": SchemaFakeChatModel(seed=1)}), course=spec, on_prompt=log)

        async def go() -> None:
            async with ck.open_checkpointer(str(Path(tempfile.mkdtemp()) / "c.sqlite")) as saver:
                g = CourseGraphBuilder("lean").compile(checkpointer=saver)
                await asyncio.gather(*(run_course(g, initial_course_state(p, run_id="pieces", sessions=2), ctx, thread_id=f"pieces/{p.id}/course") for p in sample_profiles(courses, seed=1)))

        asyncio.run(go())
    finally:
        prompts.counselor_header, prompts.client_header, measures.client_header = real_c, real_k, real_k  # type: ignore[assignment]
        ck.CompressedSerializer = real_ser  # type: ignore[misc]
    return {"headers": headers, "blobs": blobs, "calls": calls[0]}


def _replay(headers: list[tuple[str, Any, Any]], memo: bool) -> tuple[float, list[str]]:
    from therasim import prompts

    real = prompts._memo_header
    if not memo:
        prompts._memo_header = lambda slot, fixed, exact, render: render()  # type: ignore[assignment]
    prompts._HEADERS.clear()
    out = []
    try:
        t0 = time.thread_time()
        for side, view, sim in headers:
            out.append(prompts.counselor_header(view, sim) if side == "counselor" else prompts.client_header(view))
        return time.thread_time() - t0, out
    finally:
        prompts._memo_header = real  # type: ignore[assignment]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--courses", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    cap = capture(a.courses)
    calls, headers, blobs = cap["calls"], cap["headers"], cap["blobs"]
    from therasim._internal.checkpoint import _zstd

    zs = _zstd()
    assert zs is not None
    rounds: dict[str, list[float]] = {k: [] for k in ("render", "memo", "zlib_c", "zstd_c", "zlib_d", "zstd_d", "direct")}
    z_blobs = [zlib.compress(b, 3) for b in blobs]
    s_blobs = [zs.compress(b, 3) for b in blobs]
    from therasim.config import ModelSpec
    from therasim.providers import make_chat_model
    from therasim.structured import _direct

    model = make_chat_model(ModelSpec(provider="openai", model="m", base_url="http://127.0.0.1:9/v1"))
    same = True
    for i in range(a.rounds):
        for arm in (("render", "memo") if i % 2 == 0 else ("memo", "render")):
            dt, out = _replay(headers, arm == "memo")
            rounds[arm].append(dt)
            if arm == "memo":
                memo_out = out
            else:
                render_out = out
        same &= memo_out == render_out
        for arm in (("zlib", "zstd") if i % 2 == 0 else ("zstd", "zlib")):
            t0 = time.thread_time()
            if arm == "zlib":
                for b in blobs:
                    zlib.compress(b, 3)
            else:
                for b in blobs:
                    zs.compress(b, 3)
            rounds[f"{arm}_c"].append(time.thread_time() - t0)
            t0 = time.thread_time()
            if arm == "zlib":
                for b in z_blobs:
                    zlib.decompress(b)
            else:
                for b in s_blobs:
                    zs.decompress(b)
            rounds[f"{arm}_d"].append(time.thread_time() - t0)
        t0 = time.thread_time()
        for _ in range(calls):
            _direct(model)
        rounds["direct"].append(time.thread_time() - t0)
    med = {k: statistics.median(v) for k, v in rounds.items()}
    us = lambda s, n: 1e6 * s / max(n, 1)  # noqa: E731
    res = {
        "courses": a.courses,
        "model_calls": calls,
        "header_calls": len(headers),
        "headers_identical": same,
        "header_us_per_header_call": {"render": us(med["render"], len(headers)), "memo": us(med["memo"], len(headers))},
        "header_us_per_model_call": {"render": us(med["render"], calls), "memo": us(med["memo"], calls)},
        "memo_over_render": med["memo"] / med["render"],
        "memo_over_render_per_round": [m / r for m, r in zip(rounds["memo"], rounds["render"], strict=True)],
        "blobs": len(blobs),
        "blobs_per_model_call": len(blobs) / max(calls, 1),
        "blob_bytes_mean": statistics.mean(map(len, blobs)) if blobs else 0,
        "compressed_bytes_mean": {"zlib": statistics.mean(map(len, z_blobs)), "zstd": statistics.mean(map(len, s_blobs))},
        "compress_us_per_blob": {"zlib": us(med["zlib_c"], len(blobs)), "zstd": us(med["zstd_c"], len(blobs))},
        "decompress_us_per_blob": {"zlib": us(med["zlib_d"], len(blobs)), "zstd": us(med["zstd_d"], len(blobs))},
        "compress_us_per_model_call": {"zlib": us(med["zlib_c"], calls), "zstd": us(med["zstd_c"], calls)},
        "zstd_over_zlib_compress": med["zstd_c"] / med["zlib_c"],
        "direct_check_us": us(med["direct"], calls),
        "rounds": rounds,
    }
    print(json.dumps({k: v for k, v in res.items() if k != "rounds"}, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
