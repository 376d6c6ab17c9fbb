"""Before/after in one run: the same ``therasim bench`` command on a baseline
revision's orchestrator and on this tree's, alternated in one invocation (shared,
noisy machines: compare ratios measured together, not figures from different
runs). The measuring instruments (the stub server and the bench harness) are this
tree's in both arms, so only the orchestrator differs.

    python benchmarks/before_after.py --base 05db893 --repeat 1 -- \\
        --profile h100-8b --clients 64 --sessions 2 --turns 10 --concurrency 64 --arms therasim
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the package layout (pyproject's package-dir): therasim/ plus these folders as subpackages
SUBPACKAGES = ("graphs", "nodes", "memory", "policies")
# the stub and the bench harness (therasim/tools/), also reachable at their old paths
INSTRUMENTS = ("therasim/tools/stub.py", "therasim/tools/bench.py", "therasim/tools/schema_sampling.py")
SHIMS = {"therasim/bench.py": "therasim.tools.bench", "therasim/stub.py": "therasim.tools.stub", "therasim/schema_sampling.py": "therasim.tools.schema_sampling"}
# modules that moved to therasim/_internal/ (the instruments import the new paths)
MOVED = ("rundir", "checkpoint", "http")
KEYS = (
    "prefix_hit_ratio", "prefix_hit_ratio_steady", "uncached_prompt_tokens_per_turn", "output_tokens_per_turn",
    "server_busy_s_per_turn", "distinct_cached_tokens_per_course", "cpu_ms_per_call", "E", "E_courses",
    "peak_rss_mb", "p50_turn_s", "errors", "retries", "turns_lost", "turns_duplicated",
)


def baseline_package(rev: str) -> Path:
    """``rev``'s package as an importable folder, with this tree's instruments."""
    src = Path(tempfile.mkdtemp(prefix="therasim-base-"))
    arch = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=arch, check=True)
    pkg = src / "pkg"
    shutil.copytree(src / "therasim", pkg / "therasim")
    for d in SUBPACKAGES:
        if (src / d).exists():
            shutil.copytree(src / d, pkg / "therasim" / d)
    (pkg / "therasim" / "tools").mkdir(exist_ok=True)
    (pkg / "therasim" / "tools" / "__init__.py").write_text("")
    for f in INSTRUMENTS:
        shutil.copy(ROOT / f, pkg / f)
    for mod in MOVED:  # a baseline from before a module moved to therasim._internal
        if not (pkg / "therasim" / "_internal" / f"{mod}.py").exists() and (pkg / "therasim" / f"{mod}.py").exists():
            (pkg / "therasim" / "_internal").mkdir(exist_ok=True)
            (pkg / "therasim" / "_internal" / "__init__.py").touch()
            (pkg / "therasim" / "_internal" / f"{mod}.py").write_text(f"import sys\n\nfrom therasim import {mod} as _m\n\nsys.modules[__name__] = _m\n")
    for old, new in SHIMS.items():
        (pkg / old).write_text(f"from {new} import *  # noqa: F403\n" + ("from therasim.tools.bench import bench, summarise  # noqa: F401\n" if old.endswith("bench.py") else ""))
    return pkg


def run(bench_args: list[str], out: Path, pythonpath: str | None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["THERASIM_STUB_PYTHONPATH"] = env.get("PYTHONPATH", "")  # the stub from this tree (therasim.bench._Stub)
        env["PYTHONPATH"] = pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "therasim.cli", "bench", *bench_args, "--json", str(out)]
    print("$", "PYTHONPATH=" + pythonpath if pythonpath else "", " ".join(cmd[2:]), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd=tempfile.gettempdir())
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def _same_files(out: Path, repeat: int) -> dict[str, dict[str, object]]:
    """For transcripts.jsonl and prompts.jsonl: whether every kept run (both arms) wrote
    the same lines (sorted: courses finish in any order), by hash."""
    import hashlib

    res: dict[str, dict[str, object]] = {}
    for name in ("transcripts.jsonl", "prompts.jsonl"):
        digests, lines = [], []
        for arm in ("before", "after"):
            for i in range(repeat):
                found = sorted((out / f"{arm}-{i}").rglob(name))
                rows = sorted(ln for f in found for ln in f.read_text().splitlines())
                digests.append(hashlib.sha256("\n".join(rows).encode()).hexdigest() if found else None)
                lines.append(len(rows))
        res[name] = {"identical": None not in digests and len(set(digests)) == 1, "files": len(digests), "lines": lines[0] if len(set(lines)) == 1 else lines, "sha256": digests}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="baseline git revision")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", default=None, help="folder for the JSON results")
    ap.add_argument("--keep", action="store_true", help="keep each run's folder (bench --out) and check that every run's transcripts.jsonl and prompts.jsonl (lines sorted) hash the same")
    ap.add_argument("bench_args", nargs=argparse.REMAINDER, help="after --: the therasim bench arguments")
    a = ap.parse_args()
    args = [x for x in a.bench_args if x != "--"]
    out = Path(a.out or tempfile.mkdtemp(prefix="therasim-ba-"))
    out.mkdir(parents=True, exist_ok=True)
    pkg = baseline_package(a.base)
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for i in range(a.repeat):
        for arm, pp in (("before", str(pkg)), ("after", None)):
            keep = ["--out", str(out / f"{arm}-{i}")] if a.keep else []
            runs[arm].append(run([*args, *keep, *(["--no-checkpoint-sizes"] if "--no-checkpoint-sizes" not in args else [])], out / f"{arm}-{i}.json", pp))
    same = _same_files(out, a.repeat) if a.keep else None

    def med(arm: str, k: str) -> float | None:
        xs = [r[k] for r in runs[arm] if isinstance(r.get(k), (int, float))]
        return statistics.median(xs) if xs else None

    print(f"bench {' '.join(args)}  (median of {a.repeat}; base {a.base})")
    print("| key | before | after | after / before |")
    print("|---|---|---|---|")
    for k in KEYS:
        b, n = med("before", k), med("after", k)
        ratio = f"{n / b:.3f}" if b and n is not None else ""
        print(f"| {k} | {'' if b is None else round(b, 4)} | {'' if n is None else round(n, 4)} | {ratio} |")
    summary: dict[str, object] = {arm: [{k: r.get(k) for k in (*KEYS, 'prefix_hit_ratio_by_node', 'cost_by_node', 'transcripts_match', 'valid')} for r in rs] for arm, rs in runs.items()}
    if same is not None:
        summary["files_identical"] = same
        for name, ok in same.items():
            print(f"{name} (lines sorted), every run of both arms: {'identical' if ok['identical'] else 'DIFFERENT'} ({ok['files']} files, {ok['lines']} lines each)")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"results: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
