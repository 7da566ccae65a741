"""Attribution (docs/methods.md §17): planted ground truth, finite differences, integrated gradients,
exact-ablation validation, selection by causal score, heads switched off in `ppl`, resume, CLI errors."""

from __future__ import annotations

import pytest
import torch
from tiny import planted_attribution_model, tiny_model
from tiny_moe import tiny_moe

from langneurons.data.corpus import Corpus
from langneurons.errors import LangneuronsError
from langneurons.evaluation.ppl import PPLSettings, ppl_matrix
from langneurons.formats.attribution import load_attribution
from langneurons.identification import identify
from langneurons.identification.attribution import attribution_set, selectivity
from langneurons.models.loading import wrap_model
from langneurons.recording import attribution as attribution_module
from langneurons.recording.attribute import attribute
from langneurons.recording.attribution import AttributionSettings, Sites, batch_nll, block_columns
from langneurons.recording.attribution_validation import agreement, spearman

AA = ["a1 a2 s1 a3 a4 a5", "a5 a6 a7 a0", "a0 a1 s3 a7 a2 a3", "a4 a3 a2 s2 a1"]
BB = ["b1 b2 s1 b3 b4", "b5 s2 b6 b7 b0", "b0 b1 b3 b2 b5", "b6 b5 s0 b4"]


def corpus(n: int = 4) -> Corpus:
    return Corpus("toy", {"aa": [(str(i), t) for i, t in enumerate(AA[:n])],
                          "bb": [(str(i), t) for i, t in enumerate(BB[:n])]})  # fmt: skip


def mean_nll(loaded, texts, edit=None, neurons=None, heads=None, site="act") -> float:
    """Exact mean NLL of ``texts`` with an edit at the given layers (the reference for the estimates)."""
    from langneurons.recording.attribution import language_batches

    total, tokens = 0.0, 0
    for batch in language_batches(loaded, texts, 2, 64):
        with torch.no_grad(), Sites(loaded, site, neurons, heads, edit=edit, capture=False):
            loss, n = batch_nll(loaded, batch)
        total, tokens = total + float(loss), tokens + n
    return total / tokens


def scale_unit(kind: str, layer: int, index: int, factor: float):
    def edit(k, lyr, x, rows):
        if k != kind or lyr != layer:
            return None
        new = x.clone()
        if kind == "heads":
            new[..., index, :] *= factor
            return new
        start, width, groups = block_columns(rows, x)
        if not start <= index < start + width:
            return None
        group, j = divmod(index - start, x.shape[1])
        new[groups == group, j] *= factor
        return new

    return edit


# ---- planted ground truth ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted():
    loaded = planted_attribution_model(neuron=5, head=2)
    result = attribute(loaded, corpus(), None, AttributionSettings(validate=4, batch_size=2), progress=False)
    return loaded, result


def test_planted_neuron_and_head_rank_first_and_exact_ablation_agrees(planted):
    loaded, r = planted
    neurons_aa, heads_bb = r.score("neurons", "aa"), r.score("heads", "bb")
    assert tuple(divmod(int(neurons_aa.argmax()), neurons_aa.shape[1])) == (0, 5)
    assert tuple(divmod(int(heads_bb.argmax()), heads_bb.shape[1])) == (0, 2)
    assert float(neurons_aa[0, 5]) > 0.05 and float(heads_bb[0, 2]) > 0.05
    # the head does nothing on aa text (no b-words to attend to); every other unit has a zero output column
    assert float(r.score("heads", "aa").abs().max()) < 1e-6
    others = neurons_aa.clone()
    others[0, 5] = 0
    assert float(others.abs().max()) < 1e-6
    # exact ablation of the sampled units: the planted ones (top-scored, so sampled first) have the largest effect
    v = r.meta["validation"]["per_unit"]
    assert v["neurons"]["units"][0] == [0, 5] and v["heads"]["units"][0] == [0, 2]
    exact_n, exact_h = torch.tensor(v["neurons"]["zero"]["exact"]), torch.tensor(v["heads"]["zero"]["exact"])
    assert int(exact_n[:, 0].argmax()) == 0 and float(exact_n[0, 0]) > 0.05
    assert int(exact_h[:, 1].argmax()) == 0 and float(exact_h[0, 1]) > 0.05
    assert exact_n[1:].abs().max() < 1e-6 and exact_h[1:].abs().max() < 1e-6
    # and the set chosen by causal score holds them
    ns = attribution_set(r, unit="neurons", per_language=1)
    assert ns.neurons["aa"][0] == [5]
    hs = identify(r, "attribution", unit="heads", per_language=1)
    assert hs.site == "heads" and hs.intermediate_size == 4 and hs.neurons["bb"][0] == [2] and hs.count("aa") == 0


def test_integrated_gradients_converge_to_exact_ablation(planted):
    """The planted layer has one active unit per type, so per-layer IG is the unit's own path: exact as k grows
    (right Riemann sum, error O(1/k)); first order misses the saturated head by a factor > 2."""
    loaded, r = planted
    exact_head = mean_nll(loaded, BB, scale_unit("heads", 0, 2, 0.0), heads=[0]) - mean_nll(loaded, BB)
    exact_neuron = mean_nll(loaded, AA, scale_unit("neurons", 0, 5, 0.0), neurons=[0]) - mean_nll(loaded, AA)
    one = attribute(loaded, corpus(), None, AttributionSettings(method="ig", steps=1, batch_size=2), progress=False)
    assert torch.equal(one.score("heads", "bb"), r.score("heads", "bb"))  # k = 1 is patching
    errors = []
    for k in (4, 32):
        ig = attribute(loaded, corpus(), None, AttributionSettings(method="ig", steps=k, batch_size=2), progress=False)
        assert torch.equal(ig.tensors["patching.heads.bb"], r.score("heads", "bb"))
        errors.append(abs(float(ig.score("heads", "bb")[0, 2]) - exact_head) / exact_head)
        neuron_err = abs(float(ig.score("neurons", "aa")[0, 5]) - exact_neuron) / exact_neuron
    assert float(r.score("heads", "bb")[0, 2]) < exact_head / 2
    assert errors[1] < errors[0] and errors[1] < 0.03 and neuron_err < 0.03


# ---- finite differences and completeness ------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "gpt2", "mixtral"])
def test_estimate_equals_central_finite_difference(family):
    """d/dε M(a·(1 − ε)) at 0 is −a·∂M/∂a, the zero-ablation estimate: central differences agree."""
    if family == "mixtral":
        loaded = wrap_model(tiny_moe("mixtral", implementation="eager").double(), tiny_model("llama").tokenizer,
                            "tiny-mixtral")  # fmt: skip
    else:
        loaded = tiny_model(family)
        loaded.model.double()
    r = attribute(loaded, corpus(3), None, AttributionSettings(batch_size=2), progress=False)
    eps = 1e-2
    for kind in ("neurons", "heads"):
        scores = r.score(kind, "aa")
        for layer in range(scores.shape[0]):
            index = int(scores[layer].abs().argmax())
            up = mean_nll(loaded, AA[:3], scale_unit(kind, layer, index, 1 - eps), **{kind: [layer]})
            down = mean_nll(loaded, AA[:3], scale_unit(kind, layer, index, 1 + eps), **{kind: [layer]})
            fd = (up - down) / (2 * eps)
            assert float(scores[layer, index]) == pytest.approx(fd, rel=5e-3, abs=1e-6), (kind, layer)


def test_ig_of_a_layer_adds_up_to_ablating_the_whole_layer():
    """Completeness: a layer's IG estimates sum to the exact effect of zeroing every unit of it there."""
    loaded = tiny_model("gpt2")
    loaded.model.double()
    r = attribute(loaded, corpus(2), None, AttributionSettings(method="ig", steps=48, batch_size=2), progress=False)
    base = mean_nll(loaded, AA[:2])
    for kind in ("neurons", "heads"):
        for layer in range(3):
            exact = mean_nll(loaded, AA[:2], lambda k, lyr, x, rows: x * 0, **{kind: [layer]}) - base
            total = float(r.score(kind, "aa")[layer].sum())
            assert total == pytest.approx(exact, rel=0.05, abs=2e-3), (kind, layer)


# ---- validation, MoE experts, mean ablation ---------------------------------------------------------------------


def test_validation_on_a_tiny_dense_model_agrees():
    loaded = tiny_model("llama")
    r = attribute(loaded, corpus(), None, AttributionSettings(validate=8, batch_size=2), progress=False)
    v = r.meta["validation"]["per_unit"]
    for kind in ("neurons", "heads"):
        assert len(v[kind]["units"]) == 8
        assert len({tuple(u) for u in v[kind]["units"]}) == 8
        for ablation in ("zero", "mean"):
            agr = v[kind][ablation]["agreement"]["patching"]
            assert agr["pairs"] == 16 and agr["spearman"] > 0.8, (kind, ablation, agr)


def test_mean_ablation_estimate_uses_the_other_languages_means():
    loaded = tiny_model("gpt2")
    loaded.model.double()
    r = attribute(loaded, corpus(2), None, AttributionSettings(batch_size=2), progress=False)
    mean_bb = r.tensors["activation_mean.neurons.bb"]
    layer, index = 1, int(r.score("neurons", "aa", "mean")[1].abs().argmax())
    value = float(mean_bb[layer, index])

    def towards(eps):  # a ← a + eps·(m − a)
        def edit(k, lyr, x, rows):
            if lyr != layer:
                return None
            new = x.clone()
            new[:, index] = x[:, index] + eps * (value - x[:, index])
            return new

        return edit

    fd = (mean_nll(loaded, AA[:2], towards(1e-3), neurons=[layer]) -
          mean_nll(loaded, AA[:2], towards(-1e-3), neurons=[layer])) / 2e-3  # fmt: skip
    assert float(r.score("neurons", "aa", "mean")[layer, index]) == pytest.approx(fd, rel=2e-3, abs=1e-7)


def test_moe_experts_are_the_sum_of_their_neurons_and_validate():
    loaded = wrap_model(tiny_moe("mixtral"), tiny_model("llama").tokenizer, "tiny-mixtral")
    s = AttributionSettings(units=("neurons", "heads", "experts"), validate=2, batch_size=2)
    r = attribute(loaded, corpus(2), None, s, progress=False)
    e, f = 4, 8
    neurons, experts = r.score("neurons", "aa"), r.score("experts", "aa")
    assert experts.shape == (3, e)
    torch.testing.assert_close(experts, neurons[:, : e * f].reshape(3, e, f).sum(-1), rtol=1e-5, atol=1e-7)
    assert set(r.meta["validation"]["per_unit"]) == {"neurons", "heads", "experts"}
    ns = identify(r, "attribution", unit="experts", per_language=2)
    assert ns.site == "experts" and ns.intermediate_size == e


# ---- selection, head sets in ppl, files, resume --------------------------------------------------------------


def test_selectivity_is_the_margin_over_the_most_hurt_other_language():
    scores = torch.tensor([[[3.0, 1.0]], [[1.0, 1.0]], [[0.5, 2.0]]])
    sel = selectivity(scores)
    assert sel[:, 0, 0].tolist() == [2.0, -2.0, -2.5]
    assert sel[:, 0, 1].tolist() == [-1.0, -1.0, 1.0]


def test_head_set_switches_heads_off_in_ppl_with_controls(planted):
    loaded, r = planted
    hs = attribution_set(r, unit="heads", per_language=1)
    result = ppl_matrix(loaded, hs, corpus(), PPLSettings(controls=3, batch_size=2), progress=False)
    assert result["provenance"]["units"] == "attention heads" and result["provenance"]["site"] == "heads"
    ppl = result["ppl"]
    assert ppl["neurons:bb"]["bb"] > 1.2 * ppl["none"]["bb"]  # the planted head carries bb
    assert ppl["neurons:bb"]["aa"] == pytest.approx(ppl["none"]["aa"], rel=1e-6)  # and nothing of aa
    assert ppl["random:bb"]["bb"] == pytest.approx(ppl["none"]["bb"], rel=1e-6)  # other heads write nothing
    sig = result["significance"]["per_language"]["bb"]  # null draws: one of the layer's 4 heads, uniformly
    real = ppl["neurons:bb"]["bb"] / ppl["none"]["bb"] - 1
    hits = sum(d >= real - 1e-9 for d in sig["control_deltas"])  # draws that hit the planted head itself
    assert sig["controls"] == 3 and sig["p"] == pytest.approx((1 + hits) / 4)
    assert all(d == pytest.approx(real, rel=1e-6) or abs(d) < 1e-6 for d in sig["control_deltas"])


def test_save_load_resume(tmp_path, monkeypatch):
    loaded = tiny_model("llama")
    s = AttributionSettings(batch_size=2)
    whole = attribute(loaded, corpus(), tmp_path / "whole", s, progress=False)
    calls = []
    real = attribution_module.language_batches

    def failing(loaded_, texts, *args):
        calls.append(texts[0])
        if texts[0].startswith("b"):
            raise KeyboardInterrupt
        yield from real(loaded_, texts, *args)

    monkeypatch.setattr(attribution_module, "language_batches", failing)
    with pytest.raises(KeyboardInterrupt):
        attribute(loaded, corpus(), tmp_path / "part", s, progress=False)
    assert (tmp_path / "part" / attribution_module.CHECKPOINT).exists()
    monkeypatch.setattr(attribution_module, "language_batches", real)
    resumed = attribute(loaded, corpus(), tmp_path / "part", s, progress=False)
    for key, value in whole.tensors.items():
        torch.testing.assert_close(resumed.tensors[key], value, rtol=1e-6, atol=1e-9)
    loaded_back = load_attribution(tmp_path / "part")
    assert loaded_back.languages == ["aa", "bb"] and not (tmp_path / "part" / attribution_module.CHECKPOINT).exists()
    torch.testing.assert_close(loaded_back.score("heads", "bb"), whole.score("heads", "bb"))
    with pytest.raises(LangneuronsError, match="already holds"):
        attribute(loaded, corpus(), tmp_path / "part", s, progress=False)
    other = AttributionSettings(batch_size=3)
    (tmp_path / "other").mkdir()
    monkeypatch.setattr(attribution_module, "language_batches", failing)
    with pytest.raises(KeyboardInterrupt):
        attribute(loaded, corpus(), tmp_path / "other", s, progress=False)
    monkeypatch.setattr(attribution_module, "language_batches", real)
    with pytest.raises(LangneuronsError, match="another attribution run"):
        attribute(loaded, corpus(), tmp_path / "other", other, progress=False)


def test_spearman_and_agreement_on_hand_made_numbers():
    assert spearman(torch.tensor([1.0, 2, 3, 4]), torch.tensor([10.0, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(torch.tensor([1.0, 2, 3, 4]), torch.tensor([4.0, 3, 2, 1])) == pytest.approx(-1.0)
    assert spearman(torch.tensor([1.0, 1, 2]), torch.tensor([1.0, 2, 3])) == pytest.approx(0.8660254)
    agr = agreement(torch.tensor([1.0, 0.5, 0.0, 0.0]), torch.tensor([2.0, 0.5, 0.1, 0.0]), largest=2)
    assert agr["largest"]["pairs"] == 2
    assert agr["largest"]["mean_abs_error"] == pytest.approx(0.5)
    assert agr["largest"]["median_ratio"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["attribute", "--units", "neurons,bogus", "-o", "X"], "unknown unit type 'bogus'"),
        (["attribute", "--steps", "3", "-o", "X"], "--steps is for --method ig"),
        (["attribute", "--method", "shap", "-o", "X"], "unknown attribution method"),
        (["attribute", "--validate", "-1", "-o", "X"], "--validate must be 0 or more"),
    ],
)
def test_attribute_bad_input_fails_before_the_model_loads(args, message, tmp_path):
    from typer.testing import CliRunner

    from langneurons.cli import app

    result = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "x")])
    assert result.exit_code == 2
    assert message in result.output and "loading model" not in result.output


def test_identify_and_ppl_flags(tmp_path, planted):
    from typer.testing import CliRunner

    from langneurons.cli import app

    _, r = planted
    r.save(tmp_path / "attr")
    runner = CliRunner()
    ok = runner.invoke(app, ["identify", str(tmp_path / "attr"), "--method", "attribution", "--unit", "heads"])
    assert ok.exit_code == 0, ok.output
    hs = (tmp_path / "attr" / "heads.json")
    assert hs.exists()
    bad = runner.invoke(app, ["identify", str(tmp_path / "attr"), "--method", "lape", "--unit", "heads"])
    assert bad.exit_code == 2 and "--unit applies to method attribution only" in bad.output
    both = runner.invoke(app, ["ppl", "--neurons", str(hs), "--heads", str(hs)])
    assert both.exit_code == 2 and "give --neurons" in both.output
    wrong = runner.invoke(app, ["ppl", "--neurons", str(hs), "--model", "embedded", "--sentences", "1"])
    assert wrong.exit_code == 2 and "pass it with --heads" in wrong.output


def test_python_api(tmp_path):
    import langneurons as ln

    loaded = planted_attribution_model(neuron=5, head=2)
    attr = ln.attribute(loaded, corpus(2), tmp_path / "attr", units="neurons,heads", batch_size=2, progress=False)
    again = ln.load_attribution(tmp_path / "attr")
    torch.testing.assert_close(again.scores("heads"), attr.scores("heads"))
    heads = ln.identify(tmp_path / "attr", "attribution", unit="heads", per_language=1, out=tmp_path / "h.json")
    assert heads.neurons["bb"][0] == [2] and (tmp_path / "h.json").exists()
    with pytest.raises(LangneuronsError, match="no experts"):
        ln.identify(attr, "attribution", unit="experts")


def test_an_interrupted_validation_resumes_without_estimating_again(tmp_path, monkeypatch):
    from langneurons.recording.attribution import estimate

    loaded = tiny_model("gpt2")
    s = AttributionSettings(batch_size=2)
    first = estimate(loaded, corpus(2), tmp_path / "a", s, progress=False)  # as if validation were then killed
    assert (tmp_path / "a" / attribution_module.CHECKPOINT).exists()
    calls = []
    real = attribution_module.corpus_batches  # the estimate's batches (the validation imports its own name)
    monkeypatch.setattr(attribution_module, "corpus_batches", lambda *a: calls.append(1) or real(*a))
    done = attribute(loaded, corpus(2), tmp_path / "a", AttributionSettings(batch_size=2, validate=2,
                     validate_ablations=("zero",)), progress=False)  # fmt: skip
    assert calls == [] and set(done.meta["validation"]["per_unit"]["heads"]) == {"units", "top_scored", "zero"}
    torch.testing.assert_close(done.scores("neurons"), first.scores("neurons"))


def test_faithfulness_of_a_planted_head_set_is_complete(planted):
    from langneurons.evaluation.faithfulness import faithfulness

    loaded, r = planted
    hs = attribution_set(r, unit="heads", per_language=1)
    res = faithfulness(loaded, hs, corpus(), batch_size=2, progress=False)
    bb = res["per_language"]["bb"]
    assert bb["size"] == 1 and bb["layer_units"] == 4 and bb["delta_set"] > 0.05
    assert bb["share"] == pytest.approx(1.0, rel=1e-5)  # the other heads of the layer write nothing
    ns = attribution_set(r, unit="neurons", per_language=1)
    aa = faithfulness(loaded, ns, corpus(), batch_size=2, progress=False)["per_language"]["aa"]
    assert aa["layer_units"] == 48 and 0.5 < aa["share"] <= 1.0 + 1e-6


@pytest.mark.parametrize(("family", "sandwich"), [("gemma3_text", True), ("gemma2", True), ("llama", False)])
def test_sandwich_norms_make_a_layers_first_order_estimates_sum_to_zero(family, sandwich):
    """Gemma-2/3 normalise each block's output before adding it (post-attention and post-feedforward RMSNorm):
    the output is scale-invariant to first order, so zero-ablation estimates of all units of a layer add up to
    0 (a large exact effect estimated as none: first order fails there); LLaMA has no such norm."""
    loaded = tiny_model(family)
    loaded.model.double()
    with torch.no_grad():  # block outputs well above the norms' eps (as in a trained model), so scale invariance holds
        for layer in range(3):
            loaded.adapter.head_module(layer).weight.mul_(100)
            loaded.adapter.down_module(layer).weight.mul_(100)
    r = attribute(loaded, corpus(2), None, AttributionSettings(batch_size=2), progress=False)
    for kind in ("neurons", "heads"):
        scores = r.score(kind, "aa").double()
        sums, size = scores.sum(1).abs(), scores.abs().sum(1)
        if sandwich:
            assert bool((sums < 1e-4 * size + 1e-9).all()), (kind, sums, size)
        else:
            assert bool((sums > 1e-3 * size).any()), (kind, sums, size)
