"""One definition per summary (langneurons/summaries.py), checked by hand on small tables, and used by
`ppl`, `translate` and the report alike."""

from __future__ import annotations

import math

import numpy as np
import pytest

from langneurons.evaluation.ppl import summarise
from langneurons.evaluation.translate import selectivity as translate_selectivity
from langneurons.reporting.evaluation import PPLRatios, ppl_summary
from langneurons.summaries import median, selectivity, summarise_differences, summarise_ratios


def test_ratio_summary_by_hand():
    s = summarise_ratios([1.0, 2.0, 40.0])
    assert s["median"] == 2.0  # the mean (14.33) would be dominated by the ×40 cell
    assert s["geomean"] == pytest.approx(80 ** (1 / 3))
    assert s["n"] == 3 and s["excluded"] == 0
    even = summarise_ratios([1.0, 3.0, 5.0, 100.0])
    assert even["median"] == 4.0  # mean of the two middle values
    bad = summarise_ratios([2.0, float("nan"), None, float("inf"), 0.0, 8.0])
    assert bad["median"] == 5.0 and bad["geomean"] == pytest.approx(4.0) and bad["excluded"] == 4
    assert summarise_ratios([])["median"] is None


def test_difference_summary_by_hand():
    s = summarise_differences([-2.0, 1.0, 10.0])
    assert s["median"] == 1.0 and s["mean"] == pytest.approx(3.0)
    assert median([None, 3.0, float("nan"), 1.0]) == 2.0


def test_selectivity_is_own_over_median_of_others():
    assert selectivity(12.0, [1.0, 2.0, 40.0]) == pytest.approx(6.0)  # not 12 / mean(…) = 0.84
    assert selectivity(None, [1.0]) is None and selectivity(2.0, []) is None


def test_ppl_summary_uses_the_median_of_ratios():
    ppl = {"none": {"aa": 10.0, "bb": 10.0, "cc": 10.0, "dd": 10.0},
           "neurons:aa": {"aa": 100.0, "bb": 11.0, "cc": 12.0, "dd": 400.0},
           "random:aa": {"aa": 10.5, "bb": 10.0, "cc": 10.2, "dd": 10.4}}  # fmt: skip
    out = summarise(ppl, ["aa"], ["aa", "bb", "cc", "dd"])["aa"]
    assert out["self"] == pytest.approx(9.0)
    assert out["others_median"] == pytest.approx(0.2)  # ratios 1.1, 1.2, 40 → median 1.2
    assert out["others_geomean"] == pytest.approx((1.1 * 1.2 * 40) ** (1 / 3) - 1)
    assert out["random_others_median"] == pytest.approx(0.02)
    assert "others_mean" not in out


def test_translate_others_are_the_median_drop():
    scores = {"off:fr": {"en-fr": {"drop": 20.0, "drop_ci": [1, 2]}, "en-de": {"drop": 1.0},
                         "en-ru": {"drop": 2.0}, "en-zh": {"drop": 30.0}}}  # fmt: skip
    out = translate_selectivity({"scores": scores}, ["fr"], "en")["fr"]
    assert out["others_drop_median"] == 2.0 and out["others_drop_mean"] == pytest.approx(11.0)


def test_report_sentence_uses_the_same_median():
    ratio = np.array([[9.0, 1.1, 1.2, 40.0], [1.05, 1.0, 1.0, 1.0]])
    m = PPLRatios(rows=["neurons:aa", "random:aa"], languages=["aa", "bb", "cc", "dd"], ratio=ratio, base={})
    text = ppl_summary(m)
    assert "median ratio" in text and "×1.2" in text and "geometric mean" in text
    assert math.isclose(summarise_ratios([1.1, 1.2, 40.0])["median"], 1.2)
