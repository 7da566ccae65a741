"""CLaS-Bench's DiffMean recipe (docs/methods.md §13): β·unit(μ_t − μ_s) after every layer of a range.

The direction set determines μ_t − μ_s up to the factor K/(K−1); the hook adds exactly β·unit(μ_t − μ_s) at
each layer of the range and nothing elsewhere; the control has the same per-layer norm; the CLI refuses bad
input before the model loads and writes a result keyed per (β, range).
"""

from __future__ import annotations

import json

import pytest
import torch
from test_diffmean import corpus, saved_direction_set, settings
from tiny import WORDS, tiny_model
from typer.testing import CliRunner

from langneurons.cli import app
from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.evaluation.steer import SteerSettings
from langneurons.evaluation.steer_directions import (
    CLAS_STRENGTHS,
    clas_builder,
    clas_key,
    default_ranges,
)
from langneurons.identification.diffmean import diffmean, residual_means
from langneurons.intervention import add_pair_direction, intervene, random_direction_control
from langneurons.recording import record

# three languages, so that "target − mean of the others" and "target − source" are different directions
CC = ["s1 s2 a1 b1", "s3 s3 s4", "a2 s5 b2 s6", "s7 s0"]


def three_corpus() -> Corpus:
    base = corpus().items
    return Corpus("t3", {**base, "cc": [(str(i), t) for i, t in enumerate(CC)]})


@pytest.fixture(scope="module")
def tiny3(tmp_path_factory):
    loaded = tiny_model("llama")
    stats = record(loaded, three_corpus(), tmp_path_factory.mktemp("run3"), settings(), progress=False)
    return loaded, stats, diffmean(stats)


def test_pair_direction_is_the_unit_target_minus_source_mean(tiny3):
    _, stats, ds = tiny3
    mu, _ = residual_means(stats)  # float64 [K, L, H] from the recorded sums
    k = len(ds.languages)
    assert k == 3
    for source, target in (("aa", "bb"), ("cc", "aa"), ("bb", "cc")):
        s, t = ds.index(source), ds.index(target)
        iv = add_pair_direction(ds, source, target, None, 3.0)
        assert sorted(iv.vectors) == list(range(ds.num_layers))  # default: every layer
        for layer in range(ds.num_layers):
            diff = mu[t, layer] - mu[s, layer]
            # d_t − d_s = (μ_t − μ_s)·K/(K−1)
            torch.testing.assert_close((ds.directions[t, layer] - ds.directions[s, layer]).double(),
                                       diff * k / (k - 1), rtol=1e-4, atol=1e-5)  # fmt: skip
            torch.testing.assert_close(iv.vectors[layer].double(), 3.0 * diff / diff.norm(), rtol=1e-4, atol=1e-5)
            # and it is not our recipe's direction (target − mean of the others)
            assert float(torch.dot(iv.vectors[layer].double() / 3.0, ds.unit(target, layer).double())) < 0.999


def test_the_hook_adds_beta_unit_at_each_layer_of_the_range_only(tiny3):
    loaded, stats, ds = tiny3
    mu, _ = residual_means(stats)
    layers = loaded.adapter.layers
    n = len(layers)
    assert n >= 3
    first, last, beta = 1, n - 2, 2.5
    before: dict[int, torch.Tensor] = {}
    after: dict[int, torch.Tensor] = {}

    def grab(store, i):
        def hook(module, args, output):
            store[i] = (output[0] if isinstance(output, tuple) else output).detach().clone()

        return hook

    # hooks registered before the intervention's see each layer's output before the edit, those registered
    # inside it see the edited output
    handles = [layer.register_forward_hook(grab(before, i)) for i, layer in enumerate(layers)]
    ids = loaded.tokenizer(["a1 a2 s1 b1", "s2 b3"], return_tensors="pt", padding=True)["input_ids"]
    iv = add_pair_direction(ds, "aa", "bb", list(range(first, last + 1)), beta)
    try:
        with torch.no_grad():
            loaded.model(input_ids=ids)
            plain = dict(before)
            with intervene(loaded, [iv]):
                handles += [layer.register_forward_hook(grab(after, i)) for i, layer in enumerate(layers)]
                loaded.model(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    for layer in range(n):
        edit = after[layer].double() - before[layer].double()
        if first <= layer <= last:
            diff = mu[1, layer] - mu[0, layer]  # μ_bb − μ_aa from the recorded sums
            torch.testing.assert_close(edit, (beta * diff / diff.norm()).expand_as(edit), rtol=1e-4, atol=1e-4)
        else:
            assert torch.equal(edit, torch.zeros_like(edit))
    assert torch.equal(before[0], plain[0])  # before the range nothing changed
    assert not torch.allclose(before[n - 1], plain[n - 1])  # after it, the edit has propagated


def test_control_has_the_same_norm_per_layer_and_another_direction(tiny3):
    _, _, ds = tiny3
    iv = add_pair_direction(ds, "aa", "cc", [0, 1], 7.0)
    control = random_direction_control(iv, seed=3)
    for layer in (0, 1):
        torch.testing.assert_close(control.vectors[layer].norm(), torch.tensor(7.0), rtol=1e-5, atol=1e-5)
        assert abs(float(torch.dot(control.vectors[layer], iv.vectors[layer]))) / 49.0 < 0.9
    with pytest.raises(LangneuronsError, match="target − source is zero"):
        add_pair_direction(ds, "aa", "aa", None, 1.0)
    with pytest.raises(LangneuronsError, match="out of range"):
        add_pair_direction(ds, "aa", "bb", [ds.num_layers], 1.0)


def test_builder_keys_ranges_and_seeds(tiny3):
    _, _, ds = tiny3
    n = ds.num_layers
    assert default_ranges(18) == [(0, 17), (4, 12)]
    assert all(0 <= a <= b < n for a, b in default_ranges(n))
    assert clas_key(16, 0, 17) == "β=16 @ layers 0–17" and clas_key(0.5, 4, 12) == "β=0.5 @ layers 4–12"
    assert len(CLAS_STRENGTHS) >= 3 and list(CLAS_STRENGTHS) == sorted(CLAS_STRENGTHS)
    grid = {clas_key(b, a, z): (b, (a, z)) for a, z in [(0, n - 1), (1, 1)] for b in (2.0, 8.0)}
    build = clas_builder(ds, "aa", SteerSettings(seed=5), grid)
    (steered,) = build("bb", clas_key(8.0, 0, n - 1), False)
    (control,) = build("bb", clas_key(8.0, 0, n - 1), True)
    (again,) = build("bb", clas_key(8.0, 0, n - 1), True)
    assert sorted(steered.vectors) == list(range(n))
    assert sorted(build("cc", clas_key(2.0, 1, 1), False)[0].vectors) == [1]
    for layer in range(n):
        assert torch.equal(control.vectors[layer], again.vectors[layer])  # seeded: the same control each time
        torch.testing.assert_close(control.vectors[layer].norm(), steered.vectors[layer].norm())
    other = build("cc", clas_key(8.0, 0, n - 1), True)[0]
    assert not torch.equal(other.vectors[0], control.vectors[0])  # another target: another random direction
    with pytest.raises(LangneuronsError, match="not in the direction set"):
        clas_builder(ds, "zz", SteerSettings(), grid)


def test_steer_clas_cli(tmp_path):
    model, dm = saved_direction_set(tmp_path)
    runner = CliRunner()
    base = ["steer", "--model", model, "--directions", str(dm), "--from", "bb", "--to", "aa", "--prompts",
            str(tmp_path / "prompts.txt"), "--max-new-tokens", "3", "--device", "cpu"]  # fmt: skip
    res = runner.invoke(app, [*base, "--recipe", "clas", "--layers", "0-1,1-1", "--strength", "4",
                              "--out", str(tmp_path / "c.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["provenance"]["recipe"] == "clas" and data["provenance"]["layer_ranges"] == [[0, 1], [1, 1]]
    assert "β" in data["provenance"]["edit"] and "μ_t − μ_s" in data["provenance"]["edit"]
    steered = data["results"]["aa"]["strengths"]
    assert set(steered) == {"β=4 @ layers 0–1", "β=4 @ layers 1–1"}
    for key in steered:  # the planted direction switches every generated word to aa; the random one does not
        assert all(w in WORDS["aa"] for g in steered[key]["steered"]["generations"] for w in g["text"].split())
        assert all(w in WORDS["bb"] for g in steered[key]["random"]["generations"] for w in g["text"].split())
    default = runner.invoke(app, [*base, "--recipe", "clas", "--out", str(tmp_path / "d.json")])
    assert default.exit_code == 0, default.output
    swept = json.loads((tmp_path / "d.json").read_text())["results"]["aa"]["strengths"]
    assert set(swept) == {clas_key(b, a, z) for a, z in default_ranges(2) for b in CLAS_STRENGTHS}

    def refused(extra, message):
        r = runner.invoke(app, [*base, *extra, "--out", str(tmp_path / "x.json")])
        assert r.exit_code == 2 and message in r.output, r.output
        assert not (tmp_path / "x.json").exists()

    refused(["--recipe", "clas", "--layers", "0-7"], "out of range")
    refused(["--recipe", "clas", "--layers", "1-0"], "is empty")
    refused(["--recipe", "clas", "--layers", "a-b"], "ranges FIRST-LAST")
    refused(["--recipe", "other"], "unknown --recipe")
    refused(["--layers", "0-1"], "ranges FIRST-LAST are for --recipe clas")
    r = runner.invoke(app, ["steer", "--model", model, "--neurons", str(dm), "--to", "aa", "--recipe", "clas",
                            "--out", str(tmp_path / "x.json")])  # fmt: skip
    assert r.exit_code == 2 and "--recipe applies to --directions only" in r.output
    out = ["--recipe", "clas", "--out", str(tmp_path / "x.json")]
    r = runner.invoke(app, [*base[:5], "--from", "zz", *base[7:], *out])
    assert r.exit_code == 2 and "'zz' is not in the direction set" in r.output
    r = runner.invoke(app, [*base[:5], "--from", "aa", *base[7:], *out])
    assert r.exit_code == 2 and "is the --from language" in r.output
