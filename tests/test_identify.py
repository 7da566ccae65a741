"""Identification on synthetic statistics: hand-checkable LAPE and entropy-λ, planted neurons, classes,
the neuron-set file and its validation, Tang/Zhang conversions, and the CLI (typer's CliRunner)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NEURONSET_FORMAT, NeuronSet
from langneurons.formats.stats import Stats, load_stats, save_stats
from langneurons.formats.tang import export_tang, import_tang
from langneurons.formats.zhang import convert_zhang2025
from langneurons.identification import METHODS, get_method, identify
from langneurons.identification import common as common_mod
from langneurons.identification.common import (
    kth_rank,
    lape_entropy,
    quantile_bar,
    select_lowest,
    zhang_normalised_entropy,
)
from langneurons.identification.entropy_lambda import LambdaSelector, autosweep, norm_max


def make_stats(count, n_tokens, languages=None) -> Stats:
    """Stats from a count array [K, L, F] (zero sums), in the shape the recorder writes."""
    count = torch.as_tensor(count, dtype=torch.int64)
    k, n_layers, size = count.shape
    languages = languages or ["en", "fr", "de", "zh", "ja", "ru", "es", "sw"][:k]
    manifest = {
        "languages": languages,
        "model": "toy",
        "revision": "r0",
        "site": "act",
        "num_layers": n_layers,
        "intermediate_size": size,
        "dtype": "float32",
        "corpus": "toy-corpus",
        "corpus_sha256": "0" * 64,
        "langneurons_version": "test",
    }
    zeros = torch.zeros(count.shape, dtype=torch.float64)
    return Stats(count, zeros, zeros.clone(), torch.as_tensor(n_tokens, dtype=torch.int64), manifest)


def triples(ns: NeuronSet) -> set[tuple[str, int, int]]:
    return {
        (lang, layer, j) for lang in ns.languages for layer, idx in enumerate(ns.neurons[lang]) for j in idx
    }


# ---- ranks, quantiles, selection --------------------------------------------------------------------
def test_kth_rank_is_pythons_round_one_based_and_clamped():
    assert kth_rank(20, 0.95) == 19
    assert kth_rank(5, 0.5) == 2  # round(2.5) == 2: banker's rounding, as the references
    assert kth_rank(7, 0.5) == 4  # round(3.5) == 4
    assert kth_rank(3, 0.01) == 1  # round(0.03) == 0 → clamped to a valid rank
    assert kth_rank(10, 1.0) == 10


def test_quantile_bar_is_the_kth_value_not_its_neighbour():
    values = torch.arange(1, 21, dtype=torch.float64).view(2, 10) / 100  # 20 distinct values
    assert quantile_bar(values, 0.95) == pytest.approx(0.19)  # the 19th smallest, not the 18th or 20th
    assert quantile_bar(values, 0.5) == pytest.approx(0.10)
    assert quantile_bar(values, 1.0) == pytest.approx(0.20)


@pytest.mark.parametrize("ratio", [0.95, 0.5, 0.999, 1.0, 1e-7])
def test_quantile_bar_bracket_path_equals_kthvalue(ratio):
    gen = torch.Generator().manual_seed(1)
    counts = torch.randint(0, 300, (4, 2, 300_000), generator=gen)  # > BRACKET_MIN values, many ties
    p = counts.to(torch.float64) / torch.tensor([997.0, 1000.0, 1013.0, 1200.0]).view(4, 1, 1)
    assert p.numel() >= common_mod.BRACKET_MIN
    expected = float(p.flatten().kthvalue(kth_rank(p.numel(), ratio)).values)
    assert quantile_bar(p, ratio) == expected


def test_select_lowest_breaks_ties_by_lowest_flat_index():
    score = torch.tensor([3.0, 1.0, 2.0, 2.0, 2.0, 0.5, 2.0])
    assert select_lowest(score, 3).tolist() == [1, 2, 5]
    assert select_lowest(score, 4).tolist() == [1, 2, 3, 5]
    assert select_lowest(score, 2).tolist() == [1, 5]  # no tie at the boundary: topk's set
    assert select_lowest(torch.tensor([math.inf, 1.0, math.inf]), 2).tolist() == [1]  # only finite
    assert select_lowest(score, 0).tolist() == []


def test_select_lowest_matches_a_stable_sort_on_heavy_ties():
    gen = torch.Generator().manual_seed(3)
    score = torch.randint(0, 50, (20_000,), generator=gen).to(torch.float64)
    for k in (1, 37, 400, 401, 19_999, 20_000):
        expected = torch.sort(score, stable=True).indices[:k].sort().values
        assert torch.equal(select_lowest(score, k), expected), k


# ---- entropies -----------------------------------------------------------------------------------------
def test_lape_entropy_by_hand():
    p = torch.tensor([[0.3, 0.0, 0.5, 0.0], [0.1, 0.4, 0.5, 0.0]], dtype=torch.float64)
    h = lape_entropy(p)
    expected0 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert h.tolist() == pytest.approx([expected0, 0.0, math.log(2), 0.0])


def test_zhang_entropy_is_normalised_by_log_k():
    # K = 3: p̃ = (1/2, 1/2, 0) → H = log 2, Hn = log 2 / log 3 (neither log 2 nor unnormalised)
    p = torch.tensor([[0.2, 0.3, 0.0, 0.7], [0.2, 0.3, 0.0, 0.0], [0.0, 0.3, 0.0, 0.0]], dtype=torch.float64)
    hn = zhang_normalised_entropy(p)
    assert hn[0].item() == pytest.approx(math.log(2) / math.log(3), abs=1e-9)
    assert hn[1].item() == pytest.approx(1.0, abs=1e-12)  # uniform
    assert hn[2].item() == pytest.approx(1.0, abs=1e-12)  # no activation at all → uniform, Hn = 1
    assert 0.0 < hn[3].item() < 1e-9  # one-hot: only the 1e-12 clamp is left
    assert norm_max(10) == pytest.approx(0.29289682539682527)
    assert norm_max(2) == pytest.approx(0.75)


# ---- LAPE ---------------------------------------------------------------------------------------------
def lape_toy() -> Stats:
    """K = 2, one layer of 10 neurons, n = 100 tokens each; counts chosen so that the rates below hold."""
    en = [80, 0, 50, 10, 0, 70, 20, 5, 90, 30]
    fr = [0, 60, 50, 0, 0, 35, 20, 5, 90, 0]
    return make_stats([[en], [fr]], [100, 100])


def test_lape_by_hand():
    # 20 values; rank round(0.5·20) = 10 → bar = 0.20 (values ≤ 0.20 fail: neurons 3, 4, 6, 7).
    # Entropies of the rest: 0, 1, 9 → 0; 5 → H(2/3, 1/3); 2, 8 → log 2. Three lowest: 0, 1, 9.
    ns = identify(lape_toy(), "lape", top_rate=0.3, filter_rate=0.5, bar_ratio=0.5)
    assert ns.params["filter_bar"] == pytest.approx(0.2) and ns.params["bar"] == pytest.approx(0.2)
    assert ns.params["n_passed_filter"] == 6
    assert ns.selected == [[0, 1, 9]]
    assert ns.neurons == {"en": [[0, 9]], "fr": [[1]]}
    # top 4 adds neuron 5 (H = 0.64 < log 2), active above the bar in en (0.7) and fr (0.35)
    ns4 = identify(lape_toy(), "lape", top_rate=0.4, filter_rate=0.5, bar_ratio=0.5)
    assert ns4.neurons == {"en": [[0, 5, 9]], "fr": [[1, 5]]}
    assert ns4.class_counts() == {"specific": 3, "related": 0, "agnostic": 1, "unassigned": 0}


def test_lape_tie_break_takes_lowest_index():
    # top 2 of three zero-entropy neurons (0, 1, 9): the two lowest indices.
    ns = identify(lape_toy(), "lape", top_rate=0.2, filter_rate=0.5, bar_ratio=0.5)
    assert ns.selected == [[0, 1]]


def test_lape_filter_rank_off_by_one_would_change_the_result():
    # 20 distinct rates: default filter rank 19 → only the neuron holding the largest rate passes.
    en = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 20]]
    fr = [[10, 11, 12, 13, 14, 15, 16, 17, 18, 19]]
    ns = identify(make_stats([en, fr], [100, 100]), "lape", top_rate=0.5)
    assert ns.params["filter_bar"] == pytest.approx(0.19)  # rank 18 would give 0.18, rank 20 would give 0.20
    assert ns.params["n_target"] == 5 and ns.params["n_selected"] == 1
    assert ns.selected == [[9]] and ns.neurons == {"en": [[9]], "fr": [[]]}


def test_lape_selects_exactly_the_planted_neurons():
    gen = torch.Generator().manual_seed(7)
    k, n_layers, size, n = 4, 4, 256, 10_000
    rate = 0.05 + 0.45 * torch.rand(n_layers, size, generator=gen, dtype=torch.float64)
    noise = 1 + 0.05 * torch.rand(k, n_layers, size, generator=gen, dtype=torch.float64)
    p = rate * noise  # background: every language alike
    specific = {
        (0, 3): 0,
        (0, 200): 1,
        (1, 17): 2,
        (2, 99): 3,
        (3, 5): 0,
        (3, 250): 1,
        (1, 128): 3,
        (2, 7): 2,
    }
    related = {(0, 50): (0, 1), (1, 60): (2, 3), (3, 70): (1, 2), (2, 80): (0, 3)}
    busy = [(0, 10), (1, 11), (2, 12)]
    for (layer, j), lang in specific.items():
        p[:, layer, j] = 0.0
        p[lang, layer, j] = 0.9
    for (layer, j), langs in related.items():
        p[:, layer, j] = 0.0
        p[list(langs), layer, j] = 0.85
    for layer, j in busy:
        p[:, layer, j] = 0.95
    stats = make_stats((p * n).round().to(torch.int64), [n] * k)
    top_rate = (len(specific) + len(related)) / (n_layers * size)
    ns = identify(stats, "lape", top_rate=top_rate)
    langs = stats.languages
    expected = {(langs[lang], layer, j) for (layer, j), lang in specific.items()}
    expected |= {(langs[lang], layer, j) for (layer, j), group in related.items() for lang in group}
    found = triples(ns)
    assert found == expected  # precision = recall = 1
    assert ns.class_counts() == {"specific": 8, "related": 4, "agnostic": 0, "unassigned": 0}
    classes = ns.classes()
    assert classes[0]["specific"] == [3, 200] and classes[0]["related"] == [50]
    assert classes[3]["specific"] == [5, 250] and classes[3]["related"] == [70]
    # entropy-λ at λ = 0 also finds them; at a large λ the busy neurons come in, assigned to every language
    assert triples(identify(stats, "entropy-lambda", lam=0.0, top_rate=top_rate)) == expected
    loud = identify(stats, "entropy-lambda", lam=5.0, top_rate=top_rate)
    assert loud.class_counts()["agnostic"] == 3
    assert all(loud.classes()[layer]["agnostic"] == [j] for layer, j in busy)


# ---- entropy-λ and AutoSweep ---------------------------------------------------------------------------
def lambda_toy() -> Stats:
    """K = 2, 4 neurons: A (0.5, 0.5), B (0.10, 0.06), C (0.9, 0.8), D silent; n = 100 000."""
    en = [50_000, 10_000, 90_000, 0]
    fr = [50_000, 6_000, 80_000, 0]
    return make_stats([[en], [fr]], [100_000, 100_000])


def toy_scores(lam: float) -> list[float]:
    def hn(a: float, b: float) -> float:
        if a + b == 0:
            return 1.0
        x, y = a / (a + b), b / (a + b)
        return -(x * math.log(x) + y * math.log(y)) / math.log(2)

    rates = [(0.5, 0.5), (0.10, 0.06), (0.9, 0.8), (0.0, 0.0)]
    return [hn(a, b) - lam * max(a, b) / 0.75 for a, b in rates]


def test_entropy_lambda_by_hand():
    stats = lambda_toy()
    # bar: rank round(0.5·8) = 4 of [0, 0, .06, .1, .5, .5, .8, .9] → 0.1
    at0 = identify(stats, "entropy-lambda", lam=0.0, top_rate=0.25, bar_ratio=0.5)
    assert at0.params["bar"] == pytest.approx(0.1) and at0.params["lambda_mode"] == "fixed"
    assert min(range(4), key=lambda i: toy_scores(0.0)[i]) == 1
    assert at0.selected == [[1]] and at0.neurons == {"en": [[]], "fr": [[]]}  # B: 0.1 is not > 0.1
    assert at0.class_counts()["unassigned"] == 1
    at_half = identify(stats, "entropy-lambda", lam=0.5, top_rate=0.25, bar_ratio=0.5)
    assert min(range(4), key=lambda i: toy_scores(0.5)[i]) == 2
    assert at_half.selected == [[2]] and at_half.class_counts()["agnostic"] == 1


def test_autosweep_keeps_the_largest_lambda_without_all_language_neurons():
    stats = lambda_toy()
    ns = identify(stats, "entropy-lambda", lam="auto", top_rate=0.25, bar_ratio=0.5)
    # B and C swap at λ* where their scores meet; C is assigned to both languages.
    s0, s1 = toy_scores(0.0), toy_scores(1.0)
    slope_b, slope_c = s0[1] - s1[1], s0[2] - s1[2]
    switch = (s0[2] - s0[1]) / (slope_c - slope_b)
    lam = ns.params["lambda"]
    assert ns.params["lambda_mode"] == "auto"
    assert lam <= switch < lam + 1e-3
    assert ns.selected == [[1]]
    steps = ns.params["autosweep"]["steps"]
    assert steps[0] == [0.0, 0] and steps[1][0] == 0.2 and steps[1][1] == 1
    assert len(steps) == 2 + 8  # 0.2 / 2**8 < 1e-3 <= 0.2 / 2**7


def test_autosweep_returns_hi_when_it_is_acceptable_and_none_when_nothing_is():
    assert autosweep(lambda lam: 0)[0] == 0.2
    chosen, history = autosweep(lambda lam: 1)
    assert chosen is None and len(history) == 10
    chosen, _ = autosweep(lambda lam: int(lam > 0.0731), eps=1e-6)
    assert 0.0731 - 1e-6 <= chosen <= 0.0731


def test_autosweep_error_when_no_lambda_qualifies():
    stats = make_stats([[[900, 10]], [[900, 10]]], [1000, 1000])  # the busy neuron wins at every λ
    with pytest.raises(LangneuronsError, match="AutoSweep found no lambda"):
        identify(stats, "entropy-lambda", top_rate=0.5, bar_ratio=0.5)


def test_lambda_selector_narrowing_changes_nothing():
    gen = torch.Generator().manual_seed(5)
    p = torch.rand(6, 5000, generator=gen, dtype=torch.float64).pow_(4)
    hn, peak = zhang_normalised_entropy(p), p.amax(0)
    full, narrowed = LambdaSelector(hn, peak, norm_max(6), 50), LambdaSelector(hn, peak, norm_max(6), 50)
    lo, hi = 0.0, 0.2
    narrowed(lo)
    for lam in (0.1, 0.05, 0.075, 0.0625):
        narrowed.narrow(lo, hi)
        assert torch.equal(narrowed(lam), full(lam))
        lo = lam if lam < 0.07 else lo
        hi = lam if lam >= 0.07 else hi
    assert narrowed.pool is not None and narrowed.pool.numel() < 5000


# ---- dispatch and parameters ---------------------------------------------------------------------------
def test_registry_and_dispatch_errors():
    assert set(METHODS) >= {"lape", "entropy-lambda"}
    assert get_method("Entropy_Lambda").name == "entropy-lambda"
    stats = lape_toy()
    with pytest.raises(LangneuronsError, match="unknown method 'nope'"):
        identify(stats, "nope")
    with pytest.raises(LangneuronsError, match="does not take lam"):
        identify(stats, "lape", lam=0.1)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(LangneuronsError, match=r"top_rate must be in \(0, 1\]"):
            identify(stats, "lape", top_rate=bad)
    for bad in (-1, "x", math.inf, math.nan):
        with pytest.raises(LangneuronsError, match="lambda must be"):
            identify(stats, "entropy-lambda", lam=bad)
    assert (
        identify(lambda_toy(), "entropy-lambda", **{"lambda": 0.5, "top_rate": 0.25}).params["lambda"] == 0.5
    )


def test_language_subset_equals_statistics_of_those_languages():
    gen = torch.Generator().manual_seed(11)
    count = torch.randint(0, 1000, (3, 2, 64), generator=gen)
    stats = make_stats(count, [1000, 1200, 900], ["en", "fr", "de"])
    sub = identify(stats, "lape", languages=["de", "en"], top_rate=0.1)
    direct = identify(make_stats(count[[2, 0]], [900, 1000], ["de", "en"]), "lape", top_rate=0.1)
    assert sub.languages == ["de", "en"] and sub.neurons == direct.neurons
    with pytest.raises(LangneuronsError, match="'xx' is not in these statistics"):
        identify(stats, "lape", languages=["en", "xx"])


# ---- the neuron-set file -------------------------------------------------------------------------------
def toy_set() -> NeuronSet:
    return NeuronSet(
        languages=["en", "fr", "de"],
        num_layers=2,
        intermediate_size=8,
        neurons={"en": [[1, 2], [0, 5]], "fr": [[2], [0, 5]], "de": [[3], [0]]},
        selected=[[1, 2, 3, 6], [0, 5]],
        method="lape",
        params={"top_rate": 0.5},
        site="act",
        model="toy",
        source={"corpus_sha256": "0" * 64},
    )


def test_classes_counts_masks_and_overlap():
    ns = toy_set()
    assert ns.classes() == [
        {"specific": [1, 3], "related": [2], "agnostic": [], "unassigned": [6]},
        {"specific": [], "related": [5], "agnostic": [0], "unassigned": []},
    ]
    assert ns.class_counts() == {"specific": 2, "related": 2, "agnostic": 1, "unassigned": 1}
    assert ns.counts_per_layer("en") == [2, 2] and ns.count("fr") == 3
    mask = ns.mask("de")
    assert mask.shape == (2, 8) and mask.dtype == torch.bool
    assert mask.nonzero().tolist() == [[0, 3], [1, 0]]
    assert ns.overlap().tolist() == [[4, 3, 1], [3, 3, 1], [1, 1, 2]]
    assert ns.n_distinct() == 5 and ns.n_pairs() == 9
    with pytest.raises(LangneuronsError, match="'xx' is not in this neuron set"):
        ns.mask("xx")


def test_neuronset_round_trip(tmp_path):
    ns = toy_set()
    path = tmp_path / "set.json"
    ns.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == NEURONSET_FORMAT and data["summary"]["classes"]["agnostic"] == 1
    back = NeuronSet.load(path)
    assert back == ns


def set_dict() -> dict:
    return toy_set().to_dict()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="other/1"), "format is 'other/1'"),
        (lambda d: d.pop("selected"), "missing field"),
        (lambda d: d.update(languages="en"), "languages must be a list"),
        (lambda d: d.update(languages=["en", "en", "de"]), "duplicates"),
        (lambda d: d.update(num_layers=0), "num_layers must be a positive integer"),
        (lambda d: d.update(intermediate_size=True), "intermediate_size must be a positive integer"),
        (lambda d: d["neurons"].pop("de"), "one entry per language"),
        (lambda d: d["neurons"]["en"].pop(), r"neurons\[en\] must have num_layers = 2"),
        (lambda d: d["selected"].append([]), "selected must have num_layers = 2"),
        (lambda d: d["neurons"]["en"].__setitem__(0, [1, 8]), r"outside 0\.\.7"),
        (lambda d: d["neurons"]["en"].__setitem__(0, [-1, 2]), r"outside 0\.\.7"),
        (lambda d: d["neurons"]["en"].__setitem__(0, [2, 1]), "not sorted and unique"),
        (lambda d: d["neurons"]["en"].__setitem__(0, [2, 2]), "not sorted and unique"),
        (lambda d: d["neurons"]["en"].__setitem__(0, [1.5]), "other than integers"),
        (lambda d: d["neurons"]["en"].__setitem__(0, [True]), "other than integers"),
        (lambda d: d["neurons"]["en"].__setitem__(0, ["a"]), "other than integers"),
        (lambda d: d["neurons"]["en"].__setitem__(0, [[1]]), "other than integers"),
        (lambda d: d["neurons"]["en"].__setitem__(0, [7]), "missing from selected"),
        (lambda d: d.update(site=3), "site must be a string"),
        (lambda d: d.update(params=[]), "params must be an object"),
    ],
)
def test_neuronset_validation_errors(tmp_path, edit, message):
    data = set_dict()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LangneuronsError, match=message) as info:
        NeuronSet.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_neuronset_file_errors(tmp_path):
    with pytest.raises(LangneuronsError, match="no neuron-set file"):
        NeuronSet.load(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(LangneuronsError, match="not valid JSON"):
        NeuronSet.load(tmp_path / "broken.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(LangneuronsError, match="not a JSON object"):
        NeuronSet.load(tmp_path / "list.json")


def test_check_compatible():
    ns = toy_set()
    ns.check_compatible(2, 8)
    ns.check_compatible(2, 8, site="act", model="toy")
    ns.check_compatible(2, 8, site=None, model=None)
    with pytest.raises(LangneuronsError, match="2 layers × 8 neurons .* 18 layers × 2048 neurons") as info:
        ns.check_compatible(18, 2048, model="gemma")
    assert "\n" not in str(info.value)
    with pytest.raises(LangneuronsError, match="site 'act' but the target uses 'down_in'"):
        ns.check_compatible(2, 8, site="down_in")
    with pytest.raises(LangneuronsError, match="model 'toy'"):
        ns.check_compatible(2, 8, model="other")


def test_identified_set_records_parameters_and_source(tmp_path):
    ns = identify(lambda_toy(), "entropy-lambda", top_rate=0.25, bar_ratio=0.5)
    for key in ("top_rate", "bar_ratio", "lambda", "lambda_mode", "bar", "norm_max", "n_target", "autosweep"):
        assert key in ns.params
    assert ns.source["corpus_sha256"] == "0" * 64 and ns.source["langneurons_version"] == "test"
    assert ns.site == "act" and ns.model == "toy" and ns.method == "entropy-lambda"
    ns.save(tmp_path / "s.json")
    assert NeuronSet.load(tmp_path / "s.json") == ns
    lape_params = identify(lape_toy(), "lape").params
    for key in ("top_rate", "filter_rate", "bar_ratio", "filter_bar", "bar", "n_target", "n_selected"):
        assert key in lape_params


# ---- Tang and Zhang files (synthetic) ------------------------------------------------------------------
def tang_file(tmp_path: Path, data, name: str = "Toy-1B.neuron.pth") -> Path:
    path = tmp_path / name
    torch.save(data, path)
    return path


def toy_tang() -> list[list[torch.Tensor]]:
    t = lambda *xs: torch.tensor(xs, dtype=torch.int64)  # noqa: E731
    return [[t(1, 4), t()], [t(4), t(0, 9)]]


def test_tang_import_export_round_trip(tmp_path):
    original = toy_tang()
    path = tang_file(tmp_path, original)
    ns = import_tang(path, ["en", "zh"])
    assert ns.model == "Toy-1B" and ns.num_layers == 2 and ns.intermediate_size == 10
    assert ns.params["intermediate_size_inferred"] is True
    assert ns.neurons == {"en": [[1, 4], []], "zh": [[4], [0, 9]]} and ns.selected == [[1, 4], [0, 9]]
    ns.save(tmp_path / "set.json")
    out = tmp_path / "out.pth"
    export_tang(NeuronSet.load(tmp_path / "set.json"), out)
    back = torch.load(out, weights_only=True)
    assert type(back) is list and all(type(layers) is list for layers in back)
    for lang_a, lang_b in zip(original, back, strict=True):
        for a, b in zip(lang_a, lang_b, strict=True):
            assert a.dtype == b.dtype == torch.int64 and a.shape == b.shape and torch.equal(a, b)
    given = import_tang(path, ["en", "zh"], model="named", intermediate_size=16)
    assert given.model == "named" and given.intermediate_size == 16
    assert given.params["intermediate_size_inferred"] is False


def test_tang_import_errors(tmp_path):
    path = tang_file(tmp_path, toy_tang())
    with pytest.raises(LangneuronsError, match="holds 2 languages but 3 were given"):
        import_tang(path, ["en", "zh", "fr"])
    with pytest.raises(LangneuronsError, match="index 9 ≥ intermediate size 8"):
        import_tang(path, ["en", "zh"], intermediate_size=8)
    with pytest.raises(LangneuronsError, match="no such file"):
        import_tang(tmp_path / "none.pth", ["en"])
    floats = tang_file(tmp_path, [[torch.tensor([1.0])]], "f.pth")
    with pytest.raises(LangneuronsError, match="not List\\[lang\\]\\[layer\\]"):
        import_tang(floats, ["en"])
    ragged = tang_file(tmp_path, [[torch.tensor([1])], [torch.tensor([1]), torch.tensor([2])]], "r.pth")
    with pytest.raises(LangneuronsError, match="different numbers of layers"):
        import_tang(ragged, ["en", "zh"])
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(LangneuronsError, match="not a loadable torch file"):
        import_tang(tmp_path / "junk.pth", ["en"])


def zhang_dir(tmp_path: Path, langs=("en", "fr"), tag="Mistral-abc123") -> Path:
    folder = tmp_path / "zhang"
    folder.mkdir(parents=True, exist_ok=True)
    for i, lang in enumerate(langs):
        full = torch.tensor([[5, 3, 0], [7, 1, 2]], dtype=torch.int64) + i
        prefix = torch.tensor([[2, 4, 0], [1, 1, 0]], dtype=torch.int64)
        torch.save({"total_tokens": 100 + i, "over_zero": full}, folder / f"activation.{lang}.{tag}.pt")
        torch.save({"total_tokens": 40, "over_zero": prefix}, folder / f"prefix.activation.{lang}.{tag}.pt")
    return folder


def test_convert_zhang_response_tokens_only(tmp_path):
    stats = convert_zhang2025(zhang_dir(tmp_path), ["en", "fr"])
    assert stats.count[0].tolist() == [[3, 0, 0], [6, 0, 2]]  # 3 − 4 clamped to 0
    assert stats.count[1].tolist() == [[4, 0, 1], [7, 1, 3]]
    assert stats.n_tokens.tolist() == [60, 61]
    m = stats.manifest
    assert m["model"] == "Mistral-abc123" and m["site"] == "act" and m["corpus"] == "zhang2025-mgsm-release"
    assert m["sum_available"] is False and m["counted"] == "response tokens only (full − prefix)"
    assert m["negative_differences_clamped"] == 1 and len(m["corpus_sha256"]) == 64
    assert float(stats.sum.abs().sum()) == 0.0
    save_stats(tmp_path / "run", stats)
    assert torch.equal(load_stats(tmp_path / "run").count, stats.count)


def test_convert_zhang_errors(tmp_path):
    folder = zhang_dir(tmp_path)
    with pytest.raises(LangneuronsError, match=r"no activation\.de\.\*\.pt in"):
        convert_zhang2025(folder, ["en", "de"])
    (folder / "prefix.activation.fr.Mistral-abc123.pt").unlink()
    with pytest.raises(LangneuronsError, match=r"no prefix\.activation\.fr\.\*\.pt"):
        convert_zhang2025(folder, ["en", "fr"])
    other = zhang_dir(tmp_path / "b", langs=("en",), tag="Mistral-zzz")
    zhang_dir(tmp_path / "b", langs=("fr",), tag="Mistral-yyy")
    with pytest.raises(LangneuronsError, match="different models"):
        convert_zhang2025(other, ["en", "fr"])


# ---- CLI ------------------------------------------------------------------------------------------------
@pytest.fixture
def cli():
    from typer.testing import CliRunner

    from langneurons.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


def assert_one_line_error(result, text: str) -> None:
    output = result.output
    try:  # Click ≥ 8.2 mixes stderr into output and also keeps it apart; older Click may not
        stderr = result.stderr or ""
    except ValueError:
        stderr = ""
    if stderr not in output:
        output += stderr
    assert result.exit_code == 2, output
    assert "Traceback" not in output and text in output
    assert len([line for line in output.splitlines() if "error:" in line]) == 1


def test_cli_identify_show_export_import(tmp_path, cli):
    run = tmp_path / "run"
    save_stats(run, lape_toy())
    out = tmp_path / "set.json"
    result = cli("identify", run, "--method", "lape", "--top-rate", "0.3", "--filter-rate", "0.5",
                 "--bar-ratio", "0.5", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "specific" in result.output and out.exists()
    ns = NeuronSet.load(out)
    assert ns.neurons == {"en": [[0, 9]], "fr": [[1]]} and ns.source["run"] == str(run)
    shown = cli("show", out)
    assert shown.exit_code == 0, shown.output
    for text in ("neurons per language", "neurons per layer", "overlap", "Jaccard", "unassigned"):
        assert text in shown.output
    pth = tmp_path / "set.pth"
    assert cli("export", out, "--format", "tang", "--out", pth).exit_code == 0
    back = tmp_path / "back.json"
    imported = cli("import", "tang", pth, "--languages", "en,fr", "--intermediate-size", "10", "--out", back)
    assert imported.exit_code == 0, imported.output
    assert NeuronSet.load(back).neurons == ns.neurons
    auto = cli(
        "identify", run, "--method", "entropy-lambda", "--lambda", "auto", "--out", tmp_path / "a.json"
    )
    assert auto.exit_code == 0, auto.output
    assert NeuronSet.load(tmp_path / "a.json").params["lambda_mode"] == "auto"


def test_cli_convert(tmp_path, cli):
    folder = zhang_dir(tmp_path)
    run = tmp_path / "run"
    result = cli("convert", "zhang2025", folder, "--languages", "en,fr", "--out", run)
    assert result.exit_code == 0, result.output
    assert load_stats(run).manifest["counted"] == "response tokens only (full − prefix)"
    assert_one_line_error(
        cli("convert", "zhang2025", folder, "--languages", "en,fr", "--out", run), "--overwrite"
    )
    again = cli("convert", "zhang2025", folder, "--languages", "en,fr", "--out", run, "--overwrite")
    assert again.exit_code == 0, again.output
    assert_one_line_error(
        cli("convert", "zhang2025", folder, "--languages", "en,xx", "--out", tmp_path / "r2"), "activation.xx"
    )


def test_cli_errors_are_one_line(tmp_path, cli):
    run = tmp_path / "run"
    save_stats(run, lape_toy())
    out = tmp_path / "o.json"
    assert_one_line_error(cli("identify", run, "--method", "magic", "--out", out), "unknown method")
    assert_one_line_error(
        cli("identify", run, "--method", "lape", "--top-rate", "0", "--out", out), "top_rate"
    )
    assert_one_line_error(
        cli("identify", run, "--method", "lape", "--top-rate", "1.5", "--out", out), "top_rate"
    )
    assert_one_line_error(
        cli("identify", run, "--method", "entropy-lambda", "--lambda", "-0.5", "--out", out), "lambda must be"
    )
    assert_one_line_error(
        cli("identify", run, "--method", "lape", "--lambda", "0.1", "--out", out), "--lambda does not apply"
    )
    assert_one_line_error(
        cli("identify", run, "--method", "entropy-lambda", "--filter-rate", "0.9", "--out", out),
        "--filter-rate does not apply",
    )
    assert_one_line_error(cli("identify", tmp_path / "nope", "--method", "lape", "--out", out), "not a run")
    assert_one_line_error(cli("show", tmp_path / "missing.json"), "no neuron-set file")
    (tmp_path / "bad.json").write_text(json.dumps({**set_dict(), "num_layers": 3}))
    assert_one_line_error(cli("show", tmp_path / "bad.json"), "num_layers = 3")
    pth = tang_file(tmp_path, toy_tang())
    assert_one_line_error(
        cli("import", "tang", pth, "--languages", "en,zh,fr", "--out", out), "holds 2 languages but 3"
    )
    assert_one_line_error(
        cli("import", "tang", tmp_path / "x.pth", "--languages", "en", "--out", out), "no such"
    )
    toy_set().save(tmp_path / "ok.json")
    assert_one_line_error(
        cli("export", tmp_path / "ok.json", "--format", "csv", "--out", tmp_path / "x"),
        "unknown export format",
    )
