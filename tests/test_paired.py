"""Paired bootstrap between methods on a hand-made table (evaluation/paired.py): a large paired difference is
significant, no difference is not, pairing removes what the items share, and the result depends on the items
and the seed only."""

from __future__ import annotations

import numpy as np
import pytest

from langneurons.evaluation.paired import Measure, paired_bootstrap


def rate(outcomes):
    """The pooled success rate of a resample (one index array per stratum = target)."""
    return lambda draw: float(np.concatenate([o[i] for o, i in zip(outcomes, draw, strict=True)]).mean())


# 3 targets × 20 prompts: A succeeds on 17 of each 20, B on 4, C exactly where A does
A = [np.array([1.0] * 17 + [0.0] * 3) for _ in range(3)]
B = [np.array([1.0] * 4 + [0.0] * 16) for _ in range(3)]
C = [a.copy() for a in A]


def test_large_difference_significant_identical_not():
    out = paired_bootstrap(Measure("steer", [20, 20, 20], {"A": rate(A), "B": rate(B), "C": rate(C)}), 500, 0)
    assert out["methods"]["A"]["value"] == pytest.approx(51 / 60)
    assert out["methods"]["B"]["value"] == pytest.approx(12 / 60)
    lo, hi = out["methods"]["A"]["ci"]
    assert lo < 51 / 60 < hi
    ab = out["pairs"]["A vs B"]
    assert ab["difference"] == pytest.approx(39 / 60)
    assert ab["significant"] and ab["ci"][0] > 0.4 and ab["p"] < 0.01
    ac = out["pairs"]["A vs C"]  # the same outcomes: every resampled difference is exactly 0
    assert ac["difference"] == 0 and ac["ci"] == [0.0, 0.0] and not ac["significant"] and ac["p"] == 1.0
    assert out["best"] in ("A", "C") and set(out["tied_with_best"]) == {"A", "C"} - {out["best"]}
    assert paired_bootstrap(Measure("steer", [20, 20, 20], {"A": rate(A), "B": rate(B)}), 500, 0)["pairs"] == {
        "A vs B": ab
    }  # the same seed and items: the same draws


def test_pairing_removes_what_items_share():
    """Two methods whose per-item values differ by a constant 0.1 while the items themselves vary by ±5: the
    paired difference is exactly 0.1 in every resample, though each method's own interval is wide."""
    items = np.linspace(-5, 5, 30)
    stat = {"X": lambda d: float((items[d[0]] + 0.1).mean()), "Y": lambda d: float(items[d[0]].mean())}
    out = paired_bootstrap(Measure("m", [30], stat), 300, 1)
    x_ci = out["methods"]["X"]["ci"]
    assert x_ci[1] - x_ci[0] > 1.0  # unpaired, the two intervals overlap almost entirely
    row = out["pairs"]["X vs Y"]
    assert row["ci"] == pytest.approx([0.1, 0.1]) and row["significant"] and row["p"] == 0.0


def test_lower_is_better_and_undefined_methods():
    stat = {"low": lambda d: 1.0, "high": lambda d: 2.0, "none": lambda d: None}
    out = paired_bootstrap(Measure("m", [5], stat, higher_is_better=False), 50, 0)
    assert out["best"] == "low" and out["tied_with_best"] == []
    assert out["methods"]["none"] == {"value": None, "ci": None}
    assert all("none" not in pair for pair in out["pairs"])
