"""Statistics against values computed by hand (worked in the comments)."""

from __future__ import annotations

import math

import pytest

from therasim.eval.stats import (
    bootstrap_ci,
    cohens_d,
    describe,
    krippendorff_alpha,
    paired_compare,
    quadratic_kappa,
    ranks,
    spearman,
)


def test_paired_compare_exact_permutation_and_dz() -> None:
    # diffs 1, 2, 0, 3: mean 1.5; |sum| >= 6 for 2 of the 8 sign patterns of (1, 2, 3), x2 for the 0 -> 4/16
    r = paired_compare([1, 2, 3, 4], [2, 4, 3, 7], n_boot=500)
    assert r["diff"] == pytest.approx(1.5) and r["p"] == pytest.approx(0.25)
    # sd of the diffs: sqrt(5/3)
    assert r["d_z"] == pytest.approx(1.5 / math.sqrt(5 / 3))
    assert r["ci_low"] <= 1.5 <= r["ci_high"] and 0 <= r["ci_low"] and r["ci_high"] <= 3
    assert r["mean_a"] == pytest.approx(2.5) and r["mean_b"] == pytest.approx(4.0)
    # a missing side drops the pair
    r2 = paired_compare([1, None, 3], [2, 5, None])
    assert r2["n"] == 1 and r2["dropped"] == 2 and r2["p"] == 1.0


def test_paired_compare_monte_carlo_detects_a_clear_shift() -> None:
    a = list(range(30))
    b = [x + 1 + (x % 3) * 0.1 for x in a]
    r = paired_compare(a, b, n_perm=2000, n_boot=500)
    assert r["p"] < 0.001 and r["ci_low"] > 0.9


def test_spearman_with_ties() -> None:
    # ranks x 1, 2.5, 2.5, 4; y 1, 3, 2, 4: sxy 4.5, sxx 4.5, syy 5
    assert ranks([1, 2, 2, 3]) == [1, 2.5, 2.5, 4]
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1)


def test_quadratic_kappa() -> None:
    # observed off-diagonal weight 1/4; expected 0.75 from the marginals -> 1 - 1/3
    assert quadratic_kappa([1, 2, 3], [1, 2, 2], lo=1, hi=3) == pytest.approx(2 / 3)
    assert quadratic_kappa([1, 2, 3, 4], [1, 2, 3, 4], lo=1, hi=6) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside the scale"):
        quadratic_kappa([7], [1], lo=1, hi=6)


def test_krippendorff_alpha_levels() -> None:
    # raters (1,2,3) and (1,2,2): n_1=2, n_2=3, n_3=1, n=6; o_23=o_32=1
    data = [[1, 2, 3], [1, 2, 2]]
    assert krippendorff_alpha(data, level="interval") == pytest.approx(1 - 5 * 2 / 34)
    assert krippendorff_alpha(data, level="nominal") == pytest.approx(1 - 5 * 2 / 22)
    # ordinal: d_12 = 2.5^2, d_23 = 2^2, d_13 = 4.5^2; D_o sum 8, D_e sum 180
    assert krippendorff_alpha(data, level="ordinal") == pytest.approx(1 - 5 * 8 / 180)
    # missing values: a unit with one value is not pairable and is left out
    assert krippendorff_alpha([[1, 2, 3, 5], [1, 2, 2, None]], level="ordinal") == pytest.approx(1 - 5 * 8 / 180)
    assert krippendorff_alpha([[1, 2, 3], [1, 2, 3]]) == pytest.approx(1.0)


def test_bootstrap_and_small_helpers() -> None:
    lo, hi = bootstrap_ci([1, 2, 3, 4, 5], n_boot=1000)
    assert 1 <= lo < 3 < hi <= 5
    assert bootstrap_ci([2.0]) == (2.0, 2.0) and all(math.isnan(x) for x in bootstrap_ci([]))
    assert bootstrap_ci([1, 2, 3], seed=1) == bootstrap_ci([1, 2, 3], seed=1)
    d = describe([3, 4, 4, 6])
    assert (d["median"], d["spread"], d["n"]) == (4, 3, 4)
    # pooled sd of (1,2,3) and (2,3,4) is 1 -> d = 1
    assert cohens_d([1, 2, 3], [2, 3, 4]) == pytest.approx(1.0)
