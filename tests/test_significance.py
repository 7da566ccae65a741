"""p-values, z, Wilson and bootstrap intervals; --controls R on ppl and steer; random "real" sets stay insignificant."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_evaluate import corpus, neuron_set, run_main
from tiny import tiny_model
from typer.testing import CliRunner

from langneurons.cli import app
from langneurons.evaluation.ppl import PPLSettings, ppl_matrix
from langneurons.evaluation.ppl import significance as ppl_significance
from langneurons.evaluation.significance import bootstrap_ratio_ci, empirical_p, summarise_effect, wilson, z_score
from langneurons.evaluation.steer import SteerSettings, steer, steer_significance
from langneurons.formats.neuronset import NeuronSet
from langneurons.intervention import null_control, random_control
from langneurons.intervention.controls import random_mask


def test_formulas_against_known_values():
    assert empirical_p(3.0, [1.0, 2.0, 3.0, 4.0]) == pytest.approx(3 / 5)  # 3 and 4 are >= 3
    assert empirical_p(9.0, [1.0] * 19) == pytest.approx(1 / 20)  # never 0
    assert empirical_p(1.0, []) is None
    assert z_score(4.0, [1.0, 2.0, 3.0]) == pytest.approx(2.0)  # mean 2, sd 1
    assert z_score(1.0, [2.0, 2.0]) is None and z_score(1.0, [2.0]) is None
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0 and wilson(0, 0) is None


def test_empirical_p_is_calibrated_under_the_null():
    gen = torch.Generator().manual_seed(0)
    draws = torch.randn(4000, 20, generator=gen).tolist()
    p = [empirical_p(row[0], row[1:]) for row in draws]
    rate = sum(x <= 0.05 for x in p) / len(p)
    assert abs(rate - 0.05) < 0.012  # exact: P(p <= 1/20) = 1/20 with 19 exchangeable controls
    assert abs(sum(x <= 0.5 for x in p) / len(p) - 0.5) < 0.03  # uniform-ish, not only in the tail


def test_bootstrap_ci_of_a_ratio_of_sums():
    gen = torch.Generator().manual_seed(1)
    tok = torch.randint(5, 30, (400,), generator=gen).to(torch.float64)
    diff = tok * 0.1 + torch.randn(400, generator=gen, dtype=torch.float64)  # per-token effect 0.1
    point = float(torch.expm1(diff.sum() / tok.sum()))
    lo, hi = bootstrap_ratio_ci(diff, tok, transform=torch.expm1, seed=0)
    assert lo < point < hi and hi - lo < 0.05
    lo40, hi40 = bootstrap_ratio_ci(diff[:40], tok[:40], transform=torch.expm1, seed=0)
    assert hi40 - lo40 > hi - lo  # fewer sentences, wider interval
    assert bootstrap_ratio_ci(diff, tok, seed=3) == bootstrap_ratio_ci(diff, tok, seed=3)


def random_set(loaded, seed: int) -> NeuronSet:
    """A 'real' set that is itself random: 4 neurons per layer per language, drawn like a control."""
    a = loaded.adapter
    none = torch.zeros(a.num_layers, a.intermediate_size, dtype=torch.bool)
    aa = random_mask(torch.full((a.num_layers,), 4), none, seed)
    bb = random_mask(torch.full((a.num_layers,), 4), none, seed + 10_000)  # drawn like the null draws
    neurons = {
        name: [m[i].nonzero().squeeze(1).tolist() for i in range(a.num_layers)] for name, m in (("aa", aa), ("bb", bb))
    }
    selected = [sorted(set(neurons["aa"][i] + neurons["bb"][i])) for i in range(a.num_layers)]
    return NeuronSet(["aa", "bb"], a.num_layers, a.intermediate_size, neurons, selected, "random", site="act",
                     model=loaded.name)  # fmt: skip


def test_a_random_set_tested_as_real_is_rarely_significant():
    loaded = tiny_model("llama")
    significant, ps = {"aa": 0, "bb": 0}, []
    for seed in range(20):
        out = ppl_matrix(
            loaded, random_set(loaded, seed), corpus(), PPLSettings(controls=19, seed=seed), progress=False
        )
        for lang, sig in out["significance"]["per_language"].items():
            assert sig["controls"] == 19 and len(sig["control_deltas"]) == 19
            ps.append(sig["p"])
            significant[lang] += sig["p"] <= 0.05
    assert max(significant.values()) <= 3  # 20 seeds at the 5 % level: about 1 expected per language
    assert 0.35 < sum(ps) / len(ps) < 0.65  # p-values spread over (0, 1], mean near 1/2


def test_ppl_controls_r_keeps_draw_zero_and_adds_own_language_rows(tmp_path):
    loaded = tiny_model("llama")
    ns = neuron_set(loaded)
    one = ppl_matrix(loaded, ns, corpus(), PPLSettings(controls=1), progress=False)
    many = ppl_matrix(loaded, ns, corpus(), PPLSettings(controls=5), progress=False)
    assert one["interventions"] == many["interventions"]  # the matrix rows are those of a single control
    assert one["ppl"]["random:aa"] == many["ppl"]["random:aa"]  # the disjoint control row is unchanged
    assert "significance" not in one  # R = 1: exactly the single-control result of before
    sig = many["significance"]["per_language"]["aa"]
    assert sig["real"] == pytest.approx(many["delta_relative"]["neurons:aa"]["aa"])
    assert len(set(sig["control_deltas"])) == 5  # five different random sets
    lo, hi = sig["ci95"]
    assert lo <= sig["real"] <= hi
    masks = [null_control(ns, "aa", 0, r) for r in range(5)]
    assert all(torch.equal(m.sum(1), ns.mask("aa").sum(1)) for m in masks)  # same count in every layer
    assert len({tuple(m.reshape(-1).nonzero().squeeze(1).tolist()) for m in masks}) == 5
    assert not torch.equal(masks[0], random_control(ns, "aa", 0))
    none = ppl_matrix(loaded, ns, corpus(), PPLSettings(controls=0), progress=False)
    assert "significance" not in none and not any(r.startswith("random") for r in none["interventions"])
    (tmp_path / "ppl.json").write_text(json.dumps(many))
    from langneurons.reporting import write_report

    (page,) = write_report(tmp_path, tmp_path / "report.html")
    text = page.read_text()
    assert "Significance against random controls" in text and "p (5 controls)" in text


def test_steer_controls_r(tmp_path):
    loaded = tiny_model("llama")
    s = SteerSettings(mode="force", strengths=[1.0], max_new_tokens=4, batch_size=2, controls=3)
    out = steer(loaded, neuron_set(loaded), None, ["a1 a2", "a3", "s1 a4"], "aa", ["bb"], s, progress=False)
    row = out["results"]["bb"]["strengths"]["1"]
    assert {"steered", "random", "null#0", "null#1", "null#2", "significance"} == set(row)
    sig = row["significance"]
    assert len(sig["control_rates"]) == 3 and sig["controls"] == 3
    real = row["steered"]["success"]  # the p-value by hand from the rates in the file
    assert sig["p"] == (1 + sum(rate >= real for rate in sig["control_rates"])) / 4 and len(sig["wilson95"]) == 2
    assert sig["control_rates"] == [row[f"null#{r}"]["success"] for r in range(3)]
    assert "generations" in row["random"] and "generations" not in row["null#1"]


def test_steer_significance_of_a_constructed_row():
    """Known rates: steered 3/4 against null draws 1/4, 3/4, 2/4 — one draw ties, so p = (1 + 1) / 4."""
    row = {"steered": {"success": 0.75, "n": 4}, "random": {"success": 0.25, "n": 4},
           "null#0": {"success": 0.25}, "null#1": {"success": 0.75}, "null#2": {"success": 0.5}}  # fmt: skip
    sig = steer_significance(row, 3)
    assert sig["p"] == pytest.approx(2 / 4) and sig["controls"] == 3 and sig["controls_not_finite"] == 0
    assert sig["z"] == pytest.approx((0.75 - 0.5) / 0.25)  # mean 0.5, sd 0.25
    assert sig["control_max"] == 0.75 and sig["warnings"] == []
    assert sig["wilson95"] == wilson(3, 4) and sig["control_wilson95"] == wilson(1, 4)
    row["steered"]["success"] = 1.0  # beats every draw: the smallest p there is at R = 3
    assert steer_significance(row, 3)["p"] == pytest.approx(1 / 4)


def test_nan_is_never_significant():
    """A NaN/inf effect (a half-precision model that overflowed) has no p-value; NaN/inf controls are
    counted, left out, and R is reduced; both are warnings."""
    nan, inf = float("nan"), float("inf")
    for bad in (nan, inf, -inf):
        out = summarise_effect(bad, [0.1, 0.2, 0.3])
        assert out["p"] is None and out["z"] is None and out["real"] is None
        assert "NaN/inf" in out["reason"] and out["warnings"] and out["controls"] == 3
        assert empirical_p(bad, [0.1, 0.2]) is None and z_score(bad, [0.1, 0.2]) is None
    out = summarise_effect(0.25, [0.1, nan, 0.3, inf, 0.2])
    assert out["controls"] == 3 and out["controls_not_finite"] == 2
    assert out["p"] == pytest.approx((1 + 1) / (1 + 3))  # over the three finite controls: 0.3 >= 0.25
    assert out["z"] == pytest.approx((0.25 - 0.2) / 0.1) and out["control_max"] == 0.3
    assert out["control_mean"] == pytest.approx(0.2) and out["control_sd"] == pytest.approx(0.1)
    assert "reason" not in out and len(out["warnings"]) == 1 and "2 of 5" in out["warnings"][0]
    assert empirical_p(0.25, [nan, nan]) is None
    every = summarise_effect(0.25, [nan, nan])
    assert every["p"] is None and every["controls"] == 0 and "reason" in every
    clean = summarise_effect(0.25, [0.1, 0.3])
    assert clean["warnings"] == [] and clean["controls_not_finite"] == 0 and "reason" not in clean
    assert bootstrap_ratio_ci(torch.tensor([1.0, nan]), torch.tensor([2.0, 3.0])) is None


def test_ppl_significance_of_an_overflowed_model_is_not_computable():
    """ΔPPL from per-sentence NLLs: a deactivation whose NLL is NaN (fp16 overflow) gets p None and a reason,
    never the smallest p; a NaN control is left out and counted."""
    tok = torch.tensor([10.0, 10.0])
    base = torch.tensor([20.0, 20.0])
    nan = float("nan")
    per_text = {("none", "aa"): (base, tok), ("neurons:aa", "aa"): (torch.tensor([nan, 30.0]), tok)}
    per_text |= {(f"null:aa#{r}", "aa"): (base + r, tok) for r in range(3)}
    s = PPLSettings(controls=3, languages=["aa"])
    ns = type("Set", (), {"languages": ["aa"]})()
    out = ppl_significance(per_text, s, ns, ["aa"])
    sig = out["per_language"]["aa"]
    assert sig["p"] is None and "NaN/inf" in sig["reason"] and sig["ci95"] is None and sig["real"] is None
    assert out["warnings"] and out["warnings"][0].startswith("aa: ")
    per_text["neurons:aa", "aa"] = (torch.tensor([40.0, 30.0]), tok)  # ΔPPL = e^(30/20) − 1
    per_text["null:aa#1", "aa"] = (torch.tensor([nan, 20.0]), tok)
    sig = ppl_significance(per_text, s, ns, ["aa"])["per_language"]["aa"]
    assert sig["real"] == pytest.approx(math.expm1(1.5)) and sig["controls"] == 2
    assert sig["controls_not_finite"] == 1 and sig["p"] == pytest.approx(1 / 3)  # beats both finite controls
    assert sig["control_deltas"][1] is None and json.dumps(sig, allow_nan=False)


def test_cli_controls_option(tmp_path, monkeypatch, capsys):
    from test_evaluate import AA, BB

    loaded = tiny_model("llama")
    loaded.model.save_pretrained(tmp_path / "model")
    loaded.tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "aa.txt").write_text("\n".join(AA) + "\n")
    (tmp_path / "texts" / "bb.txt").write_text("\n".join(BB) + "\n")
    neuron_set(loaded, model_name=str(tmp_path / "model")).save(tmp_path / "set.json")
    base = ["ppl", "--model", str(tmp_path / "model"), "--neurons", str(tmp_path / "set.json"), "--texts",
            str(tmp_path / "texts"), "--device", "cpu"]  # fmt: skip
    runner = CliRunner()
    res = runner.invoke(app, [*base, "--controls", "4", "--out", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    assert "against 4 controls" in res.output
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["provenance"]["settings"]["controls"] == 4
    res = runner.invoke(app, [*base, "--no-controls", "--out", str(tmp_path / "q.json")])
    assert res.exit_code == 0 and "significance" not in json.loads((tmp_path / "q.json").read_text())
    code, err = run_main(monkeypatch, capsys, [*base, "--controls", "-1", "--out", str(tmp_path / "r.json")])
    assert code == 2 and "--controls" in err and "Traceback" not in err and not (tmp_path / "r.json").exists()
