"""Bootstrap stability, data-size curves and threshold sensitivity against planted ground truth."""

from __future__ import annotations

import json
import random

import pytest
import torch
from test_record import GROUPS
from tiny import WORDS, planted_model
from typer.testing import CliRunner

from langneurons.cli import app
from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.shards import SHARD_RULE, Shards
from langneurons.formats.stats import Stats
from langneurons.identification import identify
from langneurons.identification.stability import (
    ShardCounts,
    bootstrap,
    bootstrap_weights,
    data_size_curve,
    default_grid,
    jaccard,
    language_masks,
    resampling_plan,
    sensitivity,
    spearman_brown,
    split_half,
    split_half_weights,
    stable_core,
    stats_from_counts,
)
from langneurons.recording import RecordSettings, record

S, TOKENS = 20, 500
STRONG_AA, STRONG_BB, WEAK = range(0, 4), range(4, 8), range(8, 20)
# LAPE with these settings selects 14 of 100 neurons: the 8 strong ones and 6 of the 12 equally weak ones.
PARAMS = {"top_rate": 0.14, "filter_rate": 0.5, "bar_ratio": 0.9}


def planted_shards(seed: int = 0) -> tuple[Stats, Shards]:
    """Two languages, one layer of 100 neurons, 20 shards of 500 tokens: binomial counts with planted rates.

    Strong neurons fire half the time in their language and never in the other; the 12 weak ones fire
    at 0.3 in aa and 0.2 in bb (all alike, so which of them make the top is down to sampling); the
    rest fire at 0.2 in both.
    """
    p = torch.full((2, 1, 100), 0.2, dtype=torch.float64)
    p[:, 0, list(STRONG_AA)] = torch.tensor([[0.5], [0.0]], dtype=torch.float64)
    p[:, 0, list(STRONG_BB)] = torch.tensor([[0.0], [0.5]], dtype=torch.float64)
    p[0, 0, list(WEAK)] = 0.3
    gen = torch.Generator().manual_seed(seed)
    count = torch.binomial(
        torch.full((S, 2, 1, 100), float(TOKENS), dtype=torch.float64),
        p.expand(S, 2, 1, 100).contiguous(),
        generator=gen,
    )
    count = count.to(torch.int64)
    n_tokens = torch.full((S, 2), TOKENS, dtype=torch.int64)
    zeros = torch.zeros(2, 1, 100, dtype=torch.float64)
    manifest = {"languages": ["aa", "bb"], "num_layers": 1, "intermediate_size": 100, "site": "act", "model": "m"}
    return Stats(count.sum(0), zeros, zeros, n_tokens.sum(0), manifest), Shards(count.to(torch.int32), n_tokens)


def test_weights_are_multinomial_draws_and_seeded():
    w = bootstrap_weights(3, 20, 50, seed=1)
    assert w.shape == (50, 3, 20) and bool((w.sum(2) == 20).all()) and bool((w >= 0).all())
    assert torch.equal(w, bootstrap_weights(3, 20, 50, seed=1)) and not torch.equal(w, bootstrap_weights(3, 20, 50, 2))
    # a shard is drawn 0 times with probability (1 - 1/S)^S ≈ 0.358
    assert abs(float((w == 0).double().mean()) - (1 - 1 / 20) ** 20) < 0.03


def test_all_shards_once_give_the_totals_exactly():
    stats, shards = planted_shards()
    count, n_tokens = ShardCounts(shards).weighted(torch.ones(2, S, dtype=torch.int64))
    assert torch.equal(count, stats.count) and torch.equal(n_tokens, stats.n_tokens)


def test_strong_neurons_always_selected_weak_ones_spread():
    stats, shards = planted_shards()
    full = identify(stats, "lape", **PARAMS)
    assert set(range(8)) <= set(full.selected[0]) and len(full.selected[0]) == 14
    result = bootstrap(stats, shards, "lape", PARAMS, resamples=100, seed=0)
    freq = result.frequency[:, 0]  # [K, F]
    assert bool((freq[0, list(STRONG_AA)] == 1).all()) and bool((freq[1, list(STRONG_BB)] == 1).all())
    assert bool((freq[1, list(STRONG_AA)] == 0).all()) and bool((freq[0, list(STRONG_BB)] == 0).all())
    weak = freq[0, list(WEAK)]
    assert abs(float(weak.sum()) - 6) < 1e-6  # 6 of the 12 in every resample
    assert int(((weak > 0.1) & (weak < 0.9)).sum()) >= 6  # spread, not fixed
    assert float(freq[:, 20:].max()) == 0.0  # background never selected
    per = result.summary["per_language"]
    assert per["bb"]["jaccard"]["mean"] == 1.0 and per["bb"]["core_size"] == 4
    assert 0.3 < per["aa"]["jaccard"]["mean"] < 0.95
    core = stable_core(result, full)
    core.validate()
    assert set(STRONG_AA) <= set(core.neurons["aa"][0]) and core.neurons["bb"][0] == list(STRONG_BB)
    assert not set(core.selected[0]) & set(range(20, 100))
    again = bootstrap(stats, shards, "lape", PARAMS, resamples=100, seed=0)
    assert torch.equal(again.frequency, result.frequency)  # seeded


def test_entropy_lambda_bootstrap_reports_rechosen_lambda():
    stats, shards = planted_shards()
    params = {"top_rate": 0.14, "bar_ratio": 0.9}
    result = bootstrap(stats, shards, "entropy-lambda", params, resamples=20, seed=3)
    lam = result.summary["lambda"]
    assert len(lam["values"]) == result.summary["successful"] == 20 and lam["full"] is not None
    fixed = bootstrap(stats, shards, "entropy-lambda", {**params, "lam": 0.05}, resamples=20, seed=3)
    assert set(fixed.summary["lambda"]["values"]) == {0.05}
    assert bool((result.frequency[0, 0, list(STRONG_AA)] == 1).all())


def test_data_size_curve_reaches_jaccard_one_at_fraction_one():
    stats, shards = planted_shards()
    curve = data_size_curve(stats, shards, "lape", PARAMS, fractions=(1 / 16, 1 / 4, 1), repeats=3, seed=0)
    first, last = curve["points"][0], curve["points"][-1]
    assert [p["shards"] for p in curve["points"]] == [2, 5, 20]
    for lang in ("aa", "bb"):
        assert last["per_language"][lang]["jaccard"] == {"mean": 1.0, "min": 1.0, "max": 1.0}
        assert last["per_language"][lang]["tokens"] == S * TOKENS
        assert first["per_language"][lang]["tokens"] == 2 * TOKENS
    assert first["per_language"]["aa"]["jaccard"]["mean"] < 1.0  # 2 shards cannot settle the weak ones
    assert first["per_language"]["bb"]["jaccard"]["mean"] == 1.0  # strong ones show up in any 2 shards


def test_sensitivity_default_point_equals_default_set():
    stats, _ = planted_shards()
    lape = sensitivity(stats, "lape", {})
    point = next(p for p in lape["points"] if p["params"] == {"top_rate": 0.01, "filter_rate": 0.95, "bar_ratio": 0.95})
    assert point["jaccard_mean"] == 1.0 and point["kept"] == 1.0
    assert len(lape["points"]) == len(default_grid("lape")) == 25
    el = sensitivity(stats, "entropy-lambda", {"top_rate": 0.14, "bar_ratio": 0.9})
    assert el["points"][0]["params"] == {"lambda": "auto"} and el["points"][0]["jaccard_mean"] == 1.0
    wider = next(p for p in lape["points"] if p["params"]["top_rate"] == 0.04 and p["params"]["filter_rate"] == 0.95)
    assert wider["pairs"] >= point["pairs"]


def test_methods_that_need_more_than_counts_are_refused():
    stats, shards = planted_shards()
    with pytest.raises(LangneuronsError, match="count-based"):
        bootstrap(stats, shards, "ap", {}, resamples=2)


# ---- paired resampling on parallel corpora, split halves ---------------------------------------------


def parallel_manifest(langs=("aa", "bb"), ranges=None) -> dict:
    ranges = ranges or {lang: [[0, 40]] for lang in langs}
    return {"languages": list(langs), "sentence_ranges": ranges, "shards": {"count": S, "rule": SHARD_RULE}}


def test_resampling_plan_is_paired_only_for_identical_sentence_ids():
    assert resampling_plan(parallel_manifest())["mode"] == "paired"
    other = parallel_manifest(ranges={"aa": [[0, 40]], "bb": [[3, 43]]})
    plan = resampling_plan(other)
    assert plan["mode"] == "independent" and "different sentence ids" in plan["reason"]
    assert resampling_plan({"languages": ["aa", "bb"]})["mode"] == "independent"  # no ids recorded
    stale = {**parallel_manifest(), "shards": {"rule": "something else"}}
    assert resampling_plan(stale)["mode"] == "independent"
    assert resampling_plan(other, "paired") == {"mode": "paired", "reason": "forced (paired)"}
    with pytest.raises(LangneuronsError, match="--resampling"):
        resampling_plan(other, "sideways")


def test_paired_weights_share_shard_indices_across_languages_independent_differ():
    paired = bootstrap_weights(5, 20, 30, seed=4, paired=True)
    assert paired.shape == (30, 5, 20) and bool((paired.sum(2) == 20).all())
    assert all(torch.equal(paired[:, k], paired[:, 0]) for k in range(5))
    independent = bootstrap_weights(5, 20, 30, seed=4)
    assert not any(torch.equal(independent[:, k], independent[:, 0]) for k in range(1, 5))
    halves = split_half_weights(5, 20, 30, seed=4, paired=True)
    assert all(torch.equal(halves[:, :, k], halves[:, :, 0]) for k in range(5))
    halves = split_half_weights(5, 20, 30, seed=4)
    assert not any(torch.equal(halves[:, :, k], halves[:, :, 0]) for k in range(1, 5))


def test_bootstrap_follows_the_manifest_and_records_the_mode():
    stats, shards = planted_shards()
    stats.manifest.update(parallel_manifest())
    paired = bootstrap(stats, shards, "lape", PARAMS, resamples=10, seed=0)
    assert paired.summary["resampling"] == "paired" and "parallel" in paired.summary["resampling_reason"]
    stats.manifest["sentence_ranges"] = {"aa": [[0, 40]], "bb": [[40, 80]]}
    independent = bootstrap(stats, shards, "lape", PARAMS, resamples=10, seed=0)
    assert independent.summary["resampling"] == "independent"
    assert not torch.equal(paired.jaccard, independent.jaccard)  # other draws for bb


@pytest.mark.parametrize("num_shards", [7, 20])
def test_split_halves_never_share_a_shard(num_shards):
    w = split_half_weights(3, num_shards, 40, seed=2)
    assert w.shape == (40, 2, 3, num_shards) and bool(((w == 0) | (w == 1)).all())
    assert int((w[:, 0] * w[:, 1]).sum()) == 0  # disjoint
    assert bool((w.sum(3) == num_shards // 2).all())  # equal halves (odd S: one shard left out)
    assert torch.equal(w, split_half_weights(3, num_shards, 40, seed=2))  # seeded
    with pytest.raises(LangneuronsError, match="2 shards"):
        split_half_weights(3, 1, 4, seed=0)


def test_split_half_jaccard_equals_a_hand_computation():
    """4 shards, 2 languages, 4 neurons: LAPE picks per half; the Jaccard is checked against sets by hand."""
    # shard counts [S=4, K=2, L=1, F=4], 10 tokens each. aa: neuron 0 in every shard, neuron 1 only in
    # shards 0 and 1, neuron 2 only in shards 2 and 3; bb: neuron 3 everywhere.
    count = torch.zeros(4, 2, 1, 4, dtype=torch.int64)
    count[:, 0, 0, 0] = 9
    count[[0, 1], 0, 0, 1] = 9
    count[[2, 3], 0, 0, 2] = 9
    count[:, 1, 0, 3] = 9
    n_tokens = torch.full((4, 2), 10, dtype=torch.int64)
    zeros = torch.zeros(2, 1, 4, dtype=torch.float64)
    manifest = {"languages": ["aa", "bb"], "num_layers": 1, "intermediate_size": 4, "site": "act", "model": "m",
                **parallel_manifest(ranges={"aa": [[0, 8]], "bb": [[0, 8]]})}  # fmt: skip
    stats = Stats(count.sum(0), zeros, zeros, n_tokens.sum(0), manifest)
    shards = Shards(count.to(torch.int32), n_tokens)
    # every neuron that fires in a half is selected (top_rate 1) and belongs to the languages it fires in
    # (at least 4 of the 8 probabilities are 0, so the 0.5 quantile bars are 0)
    params = {"top_rate": 1.0, "filter_rate": 0.5, "bar_ratio": 0.5}
    result = split_half(stats, shards, "lape", params, splits=12, seed=5)
    assert result["resampling"] == "paired" and result["successful"] == 12
    weights = split_half_weights(2, 4, 12, seed=5, paired=True)
    counts = ShardCounts(shards)
    for r in range(12):
        a, b = (set(weights[r, h, 0].nonzero().squeeze(1).tolist()) for h in range(2))
        assert not a & b and len(a) == len(b) == 2
        # by hand: aa's set on a half = neuron 0, plus 1 if the half holds shard 0 or 1, plus 2 if it holds 2 or 3
        sets = [{0} | ({1} if h & {0, 1} else set()) | ({2} if h & {2, 3} else set()) for h in (a, b)]
        expect = len(sets[0] & sets[1]) / len(sets[0] | sets[1])
        assert result["per_language"]["aa"]["values"][r] == pytest.approx(expect)
        assert result["per_language"]["bb"]["values"][r] == 1.0
        masks = [language_masks(identify(stats_from_counts(stats, *counts.weighted(weights[r, h])), "lape", **params))
                 for h in range(2)]  # fmt: skip
        assert float(jaccard(masks[0], masks[1])[0]) == pytest.approx(expect)
    values = result["per_language"]["aa"]["values"]
    assert {round(v, 6) for v in values} == {round(1 / 3, 6), 1.0}  # {0,1} vs {0,2}, or {0,1,2} twice
    mean = sum(values) / len(values)
    assert result["per_language"]["aa"]["jaccard"]["mean"] == pytest.approx(mean)
    assert result["per_language"]["aa"]["extrapolated"]["mean"] == pytest.approx(2 * mean / (1 + mean))


def test_spearman_brown_extrapolation_on_hand_numbers():
    assert spearman_brown(0.5) == pytest.approx(2 / 3)  # 2 * 0.5 / 1.5
    assert spearman_brown(0.6) == pytest.approx(0.75)  # 1.2 / 1.6
    assert spearman_brown(0.0) == 0.0 and spearman_brown(1.0) == 1.0
    assert spearman_brown(0.5, factor=4) == pytest.approx(0.8)  # 2 / 2.5


def test_split_half_on_planted_shards():
    stats, shards = planted_shards()
    result = split_half(stats, shards, "lape", PARAMS, splits=20, seed=0)
    per = result["per_language"]
    assert per["bb"]["jaccard"]["mean"] == 1.0 and per["bb"]["extrapolated"]["mean"] == 1.0
    assert 0.2 < per["aa"]["jaccard"]["mean"] < 1.0
    assert per["aa"]["extrapolated"]["mean"] > per["aa"]["jaccard"]["mean"]
    assert per["aa"]["tokens_half"] == S // 2 * TOKENS and per["aa"]["tokens_full"] == S * TOKENS
    assert result["resampling"] == "independent"  # the planted manifest lists no sentence ids


def ten_language_result() -> dict:
    """A stability result for ten languages (synthetic shards), as the CLI would write it."""
    langs = [f"l{i}" for i in range(10)]
    gen = torch.Generator().manual_seed(0)
    k, f = len(langs), 200
    p = torch.full((k, 1, f), 0.2, dtype=torch.float64)
    for i in range(k):
        p[i, 0, 10 * i : 10 * i + 4] = 0.6  # strong, language-specific
        p[i, 0, 10 * i + 4 : 10 * i + 10] = 0.2 + 0.02 * (i + 1)  # weak: harder for some languages
    count = torch.binomial(torch.full((S, k, 1, f), float(TOKENS), dtype=torch.float64),
                           p.expand(S, k, 1, f).contiguous(), generator=gen).to(torch.int64)  # fmt: skip
    n_tokens = torch.full((S, k), TOKENS, dtype=torch.int64)
    zeros = torch.zeros(k, 1, f, dtype=torch.float64)
    manifest = {"languages": langs, "num_layers": 1, "intermediate_size": f, "site": "act", "model": "m",
                **parallel_manifest(langs)}  # fmt: skip
    stats = Stats(count.sum(0), zeros, zeros, n_tokens.sum(0), manifest)
    shards = Shards(count.to(torch.int32), n_tokens)
    params = {"top_rate": 0.5, "filter_rate": 0.5, "bar_ratio": 0.9}
    boot = bootstrap(stats, shards, "lape", params, resamples=20, seed=0)
    return {
        "format": "langneurons-stability/1", "method": "lape", "params": params, "languages": langs,
        "bootstrap": boot.summary,
        "split_half": split_half(stats, shards, "lape", params, splits=20, seed=0),
        "data_size": data_size_curve(stats, shards, "lape", params, repeats=3, seed=0),
        "provenance": {"stats": "synthetic", "model": "m", "site": "act", "corpus": "ntrex"},
    }  # fmt: skip


def test_ten_language_figures_render(tmp_path):
    from langneurons.reporting.stability_figures import stability_figures

    data = ten_language_result()
    assert data["split_half"]["resampling"] == data["bootstrap"]["resampling"] == "paired"
    figures = {name: (png, caption) for name, png, _, caption in stability_figures("ten", data)}
    assert {"ten-bootstrap.png", "ten-split-half.png", "ten-data-size.png"} <= figures.keys()
    for name, (png, _) in figures.items():
        assert png[:4] == b"\x89PNG"
        (tmp_path / name).write_bytes(png)
    caption = figures["ten-data-size.png"][1]
    assert "by construction" in caption and "proves nothing" in caption
    assert "2J / (1 + J)" in figures["ten-split-half.png"][1] and "approximation" in figures["ten-split-half.png"][1]


# ---- end to end: planted model → record --shards → stability CLI → stable core ------------------------


def test_cli_on_a_planted_model(tmp_path):
    rng = random.Random(0)
    items = {
        lang: [(str(i), " ".join(rng.choices(WORDS[lang] + WORDS["shared"], k=rng.randint(2, 9)))) for i in range(40)]
        for lang in ("aa", "bb")
    }
    loaded = planted_model(GROUPS, num_layers=2)
    run = tmp_path / "run"
    record(loaded, Corpus("t", items), run, RecordSettings(batch_size=4, max_length=32, shards=8), progress=False)
    out = tmp_path / "stab.json"
    runner = CliRunner()
    args = ["stability", str(run), "--bootstrap", "30", "--top-rate", "0.05", "--out", str(out), "--repeats", "2"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["bootstrap"]["successful"] == 30 and data["provenance"]["shards"] == 8
    core = NeuronSet.load(tmp_path / "stab.core.json")
    # neuron 0 fires on every aa word, neuron 1 on every bb word: selected for their language every time
    assert 0 in core.neurons["aa"][0] and 1 in core.neurons["bb"][0]
    assert data["data_size"]["points"][-1]["jaccard_mean"] == 1.0
    assert (tmp_path / "stab.frequency.safetensors").exists()
    # ids 0..39 in both languages: a parallel corpus, so one draw is shared by both languages
    assert data["resampling"]["mode"] == "paired" and data["bootstrap"]["resampling"] == "paired"
    assert data["split_half"]["successful"] == 50 and data["split_half"]["shards_per_half"] == 4
    assert "split halves" in res.output and "2J/(1+J)" in res.output
    assert set(data["split_half"]["per_language"]) == {"aa", "bb"}
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    plain = tmp_path / "plain"
    record(loaded, Corpus("t", items), plain, RecordSettings(batch_size=4, max_length=32), progress=False)
    res = runner.invoke(app, ["stability", str(plain), "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "--shards" in res.output and not (tmp_path / "x.json").exists()
    res = runner.invoke(app, ["stability", str(plain), "--bootstrap", "0", "--split-half", "0", "--no-data-size",
                              "--out", str(tmp_path / "x.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "sensitivity" in json.loads((tmp_path / "x.json").read_text())
    res = runner.invoke(app, ["stability", str(run), "--bootstrap", "5", "--split-half", "2", "--no-data-size",
                              "--no-sensitivity"])  # fmt: skip  (no -o: the README's command as written)
    assert res.exit_code == 0, res.output
    assert (run / "stability.json").exists() and (run / "stability.core.json").exists()
    # the report draws the three figures from the result files alone
    from langneurons.reporting import write_report

    paths = {p.name for p in write_report(tmp_path, tmp_path / "figs", "png")}
    assert {"stab-bootstrap.png", "stab-split-half.png", "stab-data-size.png", "stab-sensitivity.png",
            "x-sensitivity.png"} <= paths  # fmt: skip
    assert "x-bootstrap.png" not in paths and "stab_core-heatmap.png" in paths  # the core is a neuron set
    assert (tmp_path / "figs" / "stab-bootstrap.png").read_bytes()[:4] == b"\x89PNG"
    res = runner.invoke(app, ["stability", str(plain), "--method", "entropy-lambda", "--bootstrap", "0",
                              "--split-half", "0", "--no-data-size", "--out", str(tmp_path / "el.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "el-sensitivity.png" in {p.name for p in write_report(tmp_path, tmp_path / "figs2", "png")}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "ap"], "count-based"),
        (["--fractions", "1/0"], "--fractions"),
        (["--fractions", "0.5,2"], "(0, 1]"),
        (["--bootstrap", "-1"], "--bootstrap"),
        (["--threshold", "1.5"], "threshold"),
        (["--lambda", "0.1"], "--lambda does not apply"),
        (["--method", "entropy-lambda", "--filter-rate", "0.9"], "--filter-rate does not apply"),
        (["--bootstrap", "0", "--split-half", "0", "--no-data-size", "--no-sensitivity"], "nothing to do"),
        (["--split-half", "-1"], "--split-half"),
        (["--resampling", "sideways"], "--resampling"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, args, message):
    stats, shards = planted_shards()
    from langneurons.formats.shards import save_shards
    from langneurons.formats.stats import save_stats

    stats.sum_sq = stats.sum.clone()  # safetensors refuses two names for one tensor
    save_stats(tmp_path / "run", stats)
    save_shards(tmp_path / "run", shards)
    res = CliRunner().invoke(app, ["stability", str(tmp_path / "run"), "--out", str(tmp_path / "s.json"), *args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "s.json").exists()
