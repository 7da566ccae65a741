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
from langneurons.formats.shards import Shards
from langneurons.formats.stats import Stats
from langneurons.identification import identify
from langneurons.identification.stability import (
    ShardCounts,
    bootstrap,
    bootstrap_weights,
    data_size_curve,
    default_grid,
    sensitivity,
    stable_core,
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
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    plain = tmp_path / "plain"
    record(loaded, Corpus("t", items), plain, RecordSettings(batch_size=4, max_length=32), progress=False)
    res = runner.invoke(app, ["stability", str(plain), "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "--shards" in res.output and not (tmp_path / "x.json").exists()
    res = runner.invoke(
        app, ["stability", str(plain), "--bootstrap", "0", "--no-data-size", "--out", str(tmp_path / "x.json")]
    )
    assert res.exit_code == 0, res.output
    assert "sensitivity" in json.loads((tmp_path / "x.json").read_text())
    # the report draws the three figures from the result files alone
    from langneurons.reporting import write_report

    paths = {p.name for p in write_report(tmp_path, tmp_path / "figs", "png")}
    assert {"stab-bootstrap.png", "stab-data-size.png", "stab-sensitivity.png", "x-sensitivity.png"} <= paths
    assert "x-bootstrap.png" not in paths and "stab_core-heatmap.png" in paths  # the core is a neuron set
    assert (tmp_path / "figs" / "stab-bootstrap.png").read_bytes()[:4] == b"\x89PNG"
    res = runner.invoke(app, ["stability", str(plain), "--method", "entropy-lambda", "--bootstrap", "0",
                              "--no-data-size", "--out", str(tmp_path / "el.json")])  # fmt: skip
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
        (["--bootstrap", "0", "--no-data-size", "--no-sensitivity"], "nothing to do"),
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
