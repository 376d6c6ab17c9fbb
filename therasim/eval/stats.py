"""Statistics for evaluation: bootstrap intervals, paired comparisons and
agreement coefficients, in plain Python (no SciPy).

Sources (docs/evaluation.md): Efron & Tibshirani (1993) percentile bootstrap;
Good (2005) sign-flip permutation test for paired data; Cohen (1988) d and
d_z; Spearman (1904); Cohen (1968) weighted kappa with quadratic weights;
Krippendorff (2011) "Computing Krippendorff's alpha-reliability".
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "bootstrap_ci",
    "cohens_d",
    "describe",
    "krippendorff_alpha",
    "mean_ci",
    "paired_compare",
    "quadratic_kappa",
    "ranks",
    "spearman",
]

Number = float | int


def _clean(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def _percentile(sorted_vals: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 1]."""
    if not sorted_vals:
        return math.nan
    pos = q * (len(sorted_vals) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def bootstrap_ci(
    values: Sequence[Any], stat: Callable[[list[float]], float] = statistics.fmean, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over ``values`` (the units
    resampled: pass one value per course, never per turn). ``(nan, nan)`` for
    no data; a single value gives a zero-width interval."""
    xs = _clean(values)
    if not xs:
        return (math.nan, math.nan)
    if len(xs) == 1:
        return (xs[0], xs[0])
    rng = random.Random(seed)
    n = len(xs)
    boots = sorted(stat([xs[rng.randrange(n)] for _ in range(n)]) for _ in range(n_boot))
    a = (1 - level) / 2
    return (_percentile(boots, a), _percentile(boots, 1 - a))


def mean_ci(values: Sequence[Any], *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """``{"n", "mean", "ci_low", "ci_high"}`` with a bootstrap 95% interval."""
    xs = _clean(values)
    if not xs:
        return {"n": 0, "mean": None, "ci_low": None, "ci_high": None}
    lo, hi = bootstrap_ci(xs, n_boot=n_boot, seed=seed)
    return {"n": len(xs), "mean": statistics.fmean(xs), "ci_low": lo, "ci_high": hi}


def describe(values: Sequence[Any]) -> dict[str, Any]:
    """Median, spread (max - min), min, max and sd of a small sample (judge samples)."""
    xs = _clean(values)
    if not xs:
        return {"n": 0, "median": None, "spread": None, "min": None, "max": None, "sd": None}
    return {
        "n": len(xs),
        "median": statistics.median(xs),
        "spread": max(xs) - min(xs),
        "min": min(xs),
        "max": max(xs),
        "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
    }


def cohens_d(a: Sequence[Any], b: Sequence[Any]) -> float | None:
    """Cohen's d of b against a with the pooled standard deviation."""
    xa, xb = _clean(a), _clean(b)
    if len(xa) < 2 or len(xb) < 2:
        return None
    va, vb = statistics.variance(xa), statistics.variance(xb)
    pooled = math.sqrt(((len(xa) - 1) * va + (len(xb) - 1) * vb) / (len(xa) + len(xb) - 2))
    if pooled == 0:
        return None
    return (statistics.fmean(xb) - statistics.fmean(xa)) / pooled


def paired_compare(
    a: Sequence[Any], b: Sequence[Any], *, n_boot: int = 2000, n_perm: int = 10000, seed: int = 0
) -> dict[str, Any]:
    """Paired comparison of ``b`` against ``a`` (same units, same order).

    ``diff`` = mean(b - a) with a percentile bootstrap 95% interval (pairs
    resampled); ``p`` = two-sided sign-flip permutation p-value (exact when
    n <= 16, else ``n_perm`` random flips with the +1 correction); ``d_z`` =
    mean(diff) / sd(diff) (Cohen's d for paired data). Pairs with a missing
    side are dropped and counted in ``dropped``.
    """
    if len(a) != len(b):
        raise ValueError(f"paired_compare needs equal lengths, got {len(a)} and {len(b)}")
    pairs = [(float(x), float(y)) for x, y in zip(a, b, strict=True) if x is not None and y is not None and not (isinstance(x, float) and math.isnan(x)) and not (isinstance(y, float) and math.isnan(y))]
    diffs = [y - x for x, y in pairs]
    n = len(diffs)
    out: dict[str, Any] = {"n": n, "dropped": len(a) - n, "mean_a": None, "mean_b": None, "diff": None, "ci_low": None, "ci_high": None, "p": None, "d_z": None}
    if n == 0:
        return out
    out["mean_a"] = statistics.fmean(x for x, _ in pairs)
    out["mean_b"] = statistics.fmean(y for _, y in pairs)
    md = statistics.fmean(diffs)
    out["diff"] = md
    out["ci_low"], out["ci_high"] = bootstrap_ci(diffs, n_boot=n_boot, seed=seed)
    observed = abs(md)
    eps = 1e-12
    if n <= 16:
        hits = 0
        total = 0
        for signs in itertools.product((1, -1), repeat=n):
            total += 1
            if abs(sum(s * d for s, d in zip(signs, diffs, strict=True)) / n) >= observed - eps:
                hits += 1
        out["p"] = hits / total
    else:
        rng = random.Random(seed + 1)
        hits = 0
        for _ in range(n_perm):
            if abs(sum(d if rng.random() < 0.5 else -d for d in diffs) / n) >= observed - eps:
                hits += 1
        out["p"] = (hits + 1) / (n_perm + 1)
    if n >= 2:
        sd = statistics.stdev(diffs)
        out["d_z"] = md / sd if sd > 0 else None
    return out


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks with ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            r[order[k]] = avg
        i = j + 1
    return r


def _pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def spearman(x: Sequence[Any], y: Sequence[Any]) -> float | None:
    """Spearman's rho: Pearson's r of the average ranks (pairs with a missing side dropped)."""
    pairs = [(float(a), float(b)) for a, b in zip(x, y, strict=True) if a is not None and b is not None]
    if len(pairs) < 3:
        return None
    return _pearson(ranks([a for a, _ in pairs]), ranks([b for _, b in pairs]))


def quadratic_kappa(x: Sequence[Any], y: Sequence[Any], *, lo: int, hi: int) -> float | None:
    """Cohen's weighted kappa with quadratic weights on the integer scale lo..hi:
    1 - sum(w*O) / sum(w*E), w_ij = (i-j)^2 / (k-1)^2, E from the marginals."""
    pairs = [(round(float(a)), round(float(b))) for a, b in zip(x, y, strict=True) if a is not None and b is not None]
    k = hi - lo + 1
    if not pairs or k < 2:
        return None
    for a, b in pairs:
        if not (lo <= a <= hi and lo <= b <= hi):
            raise ValueError(f"rating {a if not lo <= a <= hi else b} outside the scale {lo}..{hi}")
    n = len(pairs)
    obs = [[0.0] * k for _ in range(k)]
    for a, b in pairs:
        obs[a - lo][b - lo] += 1
    row = [sum(obs[i]) for i in range(k)]
    col = [sum(obs[i][j] for i in range(k)) for j in range(k)]
    num = den = 0.0
    for i in range(k):
        for j in range(k):
            w = (i - j) ** 2 / (k - 1) ** 2
            num += w * obs[i][j]
            den += w * row[i] * col[j] / n
    if den == 0:
        return None
    return 1 - num / den


def krippendorff_alpha(data: Sequence[Sequence[Any]], *, level: str = "ordinal") -> float | None:
    """Krippendorff's alpha for ``data[rater][unit]`` (None = missing), level
    ``nominal``, ``ordinal`` or ``interval`` (Krippendorff 2011): the coincidence
    matrix of pairable values, alpha = 1 - (n - 1) * sum(o_ck d_ck) / sum(n_c n_k d_ck)."""
    if level not in ("nominal", "ordinal", "interval"):
        raise ValueError(f"level must be nominal, ordinal or interval, got {level!r}")
    if not data:
        return None
    n_units = max(len(r) for r in data)
    units: list[list[float]] = []
    for u in range(n_units):
        vals = [float(r[u]) for r in data if u < len(r) and r[u] is not None and not (isinstance(r[u], float) and math.isnan(r[u]))]
        if len(vals) >= 2:
            units.append(vals)
    cats = sorted({v for vals in units for v in vals})
    if len(cats) < 2:
        return None
    idx = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    o = [[0.0] * k for _ in range(k)]
    for vals in units:
        m = len(vals)
        for i, j in itertools.permutations(range(m), 2):
            o[idx[vals[i]]][idx[vals[j]]] += 1 / (m - 1)
    nc = [sum(o[c]) for c in range(k)]
    n = sum(nc)

    def delta(c: int, kk: int) -> float:
        if level == "nominal":
            return 0.0 if c == kk else 1.0
        if level == "interval":
            return (cats[c] - cats[kk]) ** 2
        a, b = min(c, kk), max(c, kk)
        return (sum(nc[a : b + 1]) - (nc[a] + nc[b]) / 2) ** 2

    do = sum(o[c][kk] * delta(c, kk) for c in range(k) for kk in range(k))
    de = sum(nc[c] * nc[kk] * delta(c, kk) for c in range(k) for kk in range(k))
    if de == 0:
        return None
    return 1 - (n - 1) * do / de
