"""Head sets in `steer` (source heads off, the target's amplified) and `translate` (each target's heads off), with
matched random head controls: the edit equals scaling the output projection's input slices by hand; the
commands run end to end on tiny models; bad flags fail in one line before the model loads."""

from __future__ import annotations

import importlib
import json

import pytest
import torch
from tiny import planted_attribution_model, planted_language, tiny_model
from typer.testing import CliRunner

import langneurons.cli.options as opt
from langneurons.cli import app
from langneurons.errors import LangneuronsError
from langneurons.evaluation.steer import SteerSettings, steer, steering_interventions
from langneurons.formats.neuronset import NeuronSet
from langneurons.intervention import deactivate, intervene, matched_control, random_control

steer_module = importlib.import_module("langneurons.evaluation.steer")  # the package exports a function `steer`
TEXTS = ["a1 a2 s1 a3 b2", "b0 b2 b3", "s2 a5 a6 a7 s3 s4"]


def head_set(loaded, aa: list[list[int]], bb: list[list[int]]) -> NeuronSet:
    a = loaded.adapter
    selected = [sorted({*x, *y}) for x, y in zip(aa, bb, strict=True)]
    return NeuronSet(["aa", "bb"], a.num_layers, a.num_heads, {"aa": aa, "bb": bb}, selected, "planted",
                     site="heads", model=loaded.name)  # fmt: skip


def logits(loaded):
    enc = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return loaded.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits


def by_hand(loaded, scales: dict[tuple[int, int], float]):
    """Logits with input columns of head h of the output projection of layer l multiplied by scales[l, h]."""
    a = loaded.adapter
    handles = []
    for layer in {lyr for lyr, _ in scales}:
        d = a.head_dim(layer)
        factor = torch.ones(a.num_heads * d)
        for (lyr, h), value in scales.items():
            if lyr == layer:
                factor[h * d : (h + 1) * d] = value

        def pre(module, args, factor=factor):
            return (args[0] * factor.to(args[0].dtype), *args[1:])

        handles.append(a.head_module(layer).register_forward_pre_hook(pre))
    try:
        return logits(loaded)
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_head_steering_scales_exactly_the_chosen_heads_slices(family):
    loaded = tiny_model(family)
    L = loaded.adapter.num_layers
    assert L >= 2 and loaded.adapter.num_heads == 4
    aa = [[1]] + [[] for _ in range(L - 1)]
    bb = [[2]] + [[0, 3]] + [[] for _ in range(L - 2)]
    hs = head_set(loaded, aa, bb)
    ivs = steering_interventions(hs, None, "aa", "bb", 3.0, SteerSettings(mode="amplify"), "heads")
    assert [iv.label for iv in ivs] == ["off aa", "amplify bb"] and all(iv.site == "heads" for iv in ivs)
    with intervene(loaded, ivs):
        steered = logits(loaded)
    expected = by_hand(loaded, {(0, 1): 0.0, (0, 2): 3.0, (1, 0): 3.0, (1, 3): 3.0})
    assert not torch.allclose(steered, logits(loaded))
    torch.testing.assert_close(steered, expected, rtol=1e-5, atol=1e-5)
    # the control: the same edits on random heads, same count per layer, disjoint from the set's heads
    ctrl = steering_interventions(hs, None, "aa", "bb", 3.0, SteerSettings(mode="amplify"), "heads", control=True)
    for iv, lang in zip(ctrl, ["aa", "bb"], strict=True):
        assert torch.equal(iv.mask.sum(1), hs.mask(lang).sum(1)) and not (iv.mask & hs.selected_mask()).any()
        assert torch.equal(iv.mask, random_control(hs, lang, 0))
    assert float(ctrl[1].scale[ctrl[1].mask].unique()) == 3.0 and float(ctrl[0].scale[ctrl[0].mask].unique()) == 0.0
    # no source: the target's heads alone; --keep-source likewise
    only = steering_interventions(hs, None, None, "bb", 2.0, SteerSettings(mode="amplify"), "heads")
    assert [iv.label for iv in only] == ["amplify bb"]


def test_a_full_layer_falls_back_to_a_uniform_draw():
    loaded = tiny_model("llama")
    L = loaded.adapter.num_layers
    hs = head_set(loaded, [[0, 1]] + [[] for _ in range(L - 1)], [[2, 3]] + [[] for _ in range(L - 1)])
    with pytest.raises(LangneuronsError):
        random_control(hs, "bb", 0)  # no free head is left in layer 0
    ctrl = matched_control(hs, "bb", 0, 1)
    assert ctrl.sum(1).tolist() == hs.mask("bb").sum(1).tolist()


def test_modes_are_checked_per_kind_of_set():
    loaded = tiny_model("llama")
    L = loaded.adapter.num_layers
    hs = head_set(loaded, [[1]] + [[] for _ in range(L - 1)], [[2]] + [[] for _ in range(L - 1)])
    with pytest.raises(LangneuronsError, match="a head set steers with mode amplify only"):
        steering_interventions(hs, None, "aa", "bb", 1.0, SteerSettings(mode="replace"), "heads")
    ns = NeuronSet(["aa", "bb"], L, loaded.adapter.intermediate_size, {"aa": [[1]] * L, "bb": [[2]] * L},
                   [[1, 2]] * L, "planted", site="act", model=loaded.name)  # fmt: skip
    with pytest.raises(LangneuronsError, match="mode amplify applies to head sets only"):
        steering_interventions(ns, None, "aa", "bb", 1.0, SteerSettings(mode="amplify"), "act")
    with pytest.raises(LangneuronsError, match="cannot add a shift"):  # heads are only ever scaled
        from langneurons.intervention import Intervention

        m = hs.mask("bb")
        Intervention(m, torch.ones(m.shape), torch.ones(m.shape), site="heads")
    assert deactivate(hs.mask("bb"), 2.0, site="heads").scale[0, 2] == 2.0


@pytest.fixture
def planted_identifier(monkeypatch):
    monkeypatch.setattr(steer_module, "identify_language", planted_language)


def test_steer_with_a_head_set_runs_every_condition(planted_identifier):
    loaded = planted_attribution_model(neuron=5, head=2)
    hs = head_set(loaded, [[0]], [[2]])
    prompts = ["a1 b1 a2", "a3 a4 b2 a5", "b3 a1 a2"]
    s = SteerSettings(mode="amplify", strengths=[2.0, 4.0], max_new_tokens=3, controls=2)
    result = steer(loaded, hs, None, prompts, "aa", ["bb"], s, progress=False)
    assert result["provenance"]["units"] == "attention heads" and result["provenance"]["site"] == "heads"
    assert "too few free heads" in result["provenance"]["controls"]
    rows = result["results"]["bb"]["strengths"]
    assert set(rows) == {"2", "4"}
    for row in rows.values():
        assert {"steered", "random", "null#0", "null#1", "significance"} <= set(row)
        assert row["steered"]["n"] == len(prompts) == len(row["random"]["generations"])


def test_steer_and_translate_heads_on_the_command_line(tmp_path, monkeypatch, planted_identifier):
    loaded = planted_attribution_model(neuron=5, head=2)
    monkeypatch.setattr(opt.ModelOptions, "load", lambda self: loaded)
    path = tmp_path / "heads.json"
    head_set(loaded, [[0]], [[2]]).save(path)
    (tmp_path / "prompts.txt").write_text("a1 b1 a2\na3 a4 b2 a5\n")
    runner = CliRunner()
    out = tmp_path / "steer.json"
    result = runner.invoke(app, ["steer", "--heads", str(path), "--to", "bb", "--from", "aa", "--prompts",
                                 str(tmp_path / "prompts.txt"), "--max-new-tokens", "3", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["provenance"]["settings"]["mode"] == "amplify" and data["provenance"]["settings"]["strengths"] == [2, 4]
    assert data["provenance"]["stats"] is None and set(data["results"]["bb"]["strengths"]) == {"2", "4"}
    texts = tmp_path / "txt"
    texts.mkdir()
    (texts / "aa.txt").write_text("".join(f"a{i % 8} a{(i + 1) % 8} s{i % 5}\n" for i in range(8)))
    (texts / "bb.txt").write_text("".join(f"b{i % 8} b{(i + 3) % 8} s{i % 5}\n" for i in range(8)))
    tout = tmp_path / "translate.json"
    result = runner.invoke(app, ["translate", "--pairs", "aa-bb", "--heads", str(path), "--corpus", str(texts),
                                 "--sentences", "3", "--shots", "1", "--max-new-tokens", "4", "--bootstrap", "20",
                                 "-o", str(tout)])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(tout.read_text())
    assert set(data["conditions"]) == {"none", "off:bb", "random:bb"} and data["provenance"]["component"] == str(path)
    assert "bb" in data["selectivity"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--heads", "H", "--neurons", "H"], "pass exactly one of --neurons, --heads and --directions"),
        (["--heads", "H", "--mode", "replace"], "a head set steers with --mode amplify only"),
        (["--neurons", "H", "--mode", "amplify"], "--mode amplify applies to --heads only"),
        (["--heads", "H", "--stats", "x"], "--stats apply to neuron sets"),
        (["--heads", "H", "--site", "act"], "--site, --any-site and --stats apply to neuron sets"),
        (["--neurons", "H"], "is a head set: pass it with --heads"),
        (["--heads", "N"], "is a neuron set: pass it with --neurons"),
    ],
)
def test_steer_heads_bad_flags_fail_before_the_model_loads(tmp_path, monkeypatch, args, message):
    def refuse(self):
        raise AssertionError("the model must not load")

    monkeypatch.setattr(opt.ModelOptions, "load", refuse)
    loaded = tiny_model("llama")
    L = loaded.adapter.num_layers
    head_set(loaded, [[1]] + [[] for _ in range(L - 1)], [[2]] + [[] for _ in range(L - 1)]).save(tmp_path / "h.json")
    NeuronSet(["aa", "bb"], L, loaded.adapter.intermediate_size, {"aa": [[1]] * L, "bb": [[2]] * L},
              [[1, 2]] * L, "planted", site="act", model=loaded.name).save(tmp_path / "n.json")  # fmt: skip
    paths = {"H": str(tmp_path / "h.json"), "N": str(tmp_path / "n.json")}
    args = [paths.get(a, a) for a in args]
    result = CliRunner().invoke(app, ["steer", *args, "--to", "bb", "--from", "aa", "-o", str(tmp_path / "o.json")])
    assert result.exit_code == 2 and message in result.output, result.output
    if "--neurons" in args and "--heads" not in args:  # translate refuses a head set given as --neurons too
        result = CliRunner().invoke(app, ["translate", "--pairs", "aa-bb", *args[:2], "-o", str(tmp_path / "t.json")])
        assert result.exit_code == 2 and "pass it with --heads" in result.output, result.output
