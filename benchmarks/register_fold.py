"""CPU of folding one client turn into the risk register (``observe_turn``, once per
exchange in the risk node or the unified analyst), with the register copied the old
way (``copy.deepcopy``) and the current way (``risk_register._copy``), alternated
in one process over the same registers. The registers come from seeded random
courses of turns (raises, retractions, direct questions, PHQ-9 answers), so they
carry evidence and traces as a course with risk talk does; the scan's cues are
computed once, outside the timing.

    python benchmarks/register_fold.py --rounds 9 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import time
from typing import Any

from therasim.policies import risk_register
from therasim.policies.risk import scan

CLIENT = [
    "I'm going to kill myself tonight.",
    "I wish I were dead, honestly.",
    "Sometimes I cut myself when it gets bad.",
    "He hits me when he drinks.",
    "I was only joking, forget it.",
    "Work was fine, I went for a walk.",
    "I slept badly again and the week was long.",
    "I don't know, I just feel tired all the time.",
]
COUNSELOR = ["Are you having thoughts of killing yourself?", "Are you safe right now?", "How was your week?", "That sounds hard."]


def cases(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` (register, turn) pairs: each register is what a random course had folded
    before that turn."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        reg: Any = None
        for session in (1, 2, 3):
            reg, _ = risk_register.fold_phq9(reg, session=session, score=rng.choice([0, 0, 1, 2]), when="before")
            for ex in range(8):
                text = rng.choice(CLIENT)
                kw = {"session": session, "exchange": ex, "text": text, "cues": [c.as_dict() for c in scan(text, model=False)], "previous_counselor": rng.choice(COUNSELOR), "llm_level": rng.choice(["none", "low", "moderate"])}
                out.append({"reg": reg, "kw": kw})
                reg, _ = risk_register.observe_turn(reg, **kw)
    return out[:n]


def deep(reg: Any) -> dict[str, Any]:
    return copy.deepcopy(dict(reg)) if reg else risk_register.new_register()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=480)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    cs = cases(a.cases, 17)
    fast = risk_register._copy
    arms = {"deepcopy": deep, "structural": fast}
    per: dict[str, list[float]] = {k: [] for k in arms}
    copy_only: dict[str, list[float]] = {k: [] for k in arms}
    for r in range(a.rounds):
        for name in (("deepcopy", "structural") if r % 2 == 0 else ("structural", "deepcopy")):
            risk_register._copy = arms[name]  # type: ignore[assignment]
            t = time.thread_time()
            for c in cs:
                risk_register.observe_turn(c["reg"], **c["kw"])
            per[name].append(1e6 * (time.thread_time() - t) / len(cs))
            f = arms[name]
            t = time.thread_time()
            for c in cs:
                f(c["reg"])
            copy_only[name].append(1e6 * (time.thread_time() - t) / len(cs))
    risk_register._copy = fast  # type: ignore[assignment]
    sizes = [len(json.dumps(c["reg"])) for c in cs if c["reg"]]
    res = {
        "cases": len(cs),
        "rounds": a.rounds,
        "register_json_chars_median": statistics.median(sizes),
        "observe_turn_us": {k: statistics.median(v) for k, v in per.items()},
        "copy_us": {k: statistics.median(v) for k, v in copy_only.items()},
        "observe_turn_us_per_round": per,
        "copy_us_per_round": copy_only,
    }
    res["observe_turn_ratio"] = res["observe_turn_us"]["structural"] / res["observe_turn_us"]["deepcopy"]
    print(f"register_fold: {len(cs)} turns, median register {res['register_json_chars_median']:.0f} JSON chars, median of {a.rounds} rounds (alternated)")
    print("| piece | deepcopy us | structural us | structural / deepcopy |")
    print("|---|---|---|---|")
    for key, label in (("observe_turn_us", "`observe_turn` (one client turn)"), ("copy_us", "the copy alone")):
        b, n = res[key]["deepcopy"], res[key]["structural"]
        print(f"| {label} | {b:.1f} | {n:.1f} | {n / b:.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
