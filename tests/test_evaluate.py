"""PPL equals a hand computation; steering runs and judges; the CLI reports one-line errors."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from tiny import tiny_model
from typer.testing import CliRunner

from langneurons.cli import app, main
from langneurons.data import Corpus
from langneurons.evaluation.langid import identify_language, to_label
from langneurons.evaluation.ppl import PPLSettings, ppl_matrix
from langneurons.evaluation.steer import SteerSettings, distinct_n, judge, steer
from langneurons.formats.neuronset import NeuronSet
from langneurons.intervention import deactivate, intervene, random_control
from langneurons.recording import RecordSettings, record

AA = ["a1 a2 s1 a3", "a0 a0", "s2 a5 a6 a7 s3 s4", "a4 a1", "a1 s0 a2 a3 a4 a5 a6 a7"]
BB = ["b1 s1", "b0 b2 b3 b4 b5", "s5 s6 b6", "b7 b7 b7 s7", "b3 b1"]


def corpus() -> Corpus:
    return Corpus(
        "test", {"aa": [(str(i), t) for i, t in enumerate(AA)], "bb": [(str(i), t) for i, t in enumerate(BB)]}
    )


def neuron_set(loaded, model_name=None) -> NeuronSet:
    a = loaded.adapter
    neurons = {"aa": [[1, 4, 9]] + [[2, 3]] * (a.num_layers - 1), "bb": [[5, 6]] * a.num_layers}
    selected = [sorted(set(neurons["aa"][i]) | set(neurons["bb"][i]) | {0}) for i in range(a.num_layers)]
    return NeuronSet(
        ["aa", "bb"],
        a.num_layers,
        a.intermediate_size,
        neurons,
        selected,
        "test",
        site="act",
        model=model_name or loaded.name,
    )


def hand_ppl(loaded, texts) -> float:
    """One sentence at a time, no padding: log-softmax by hand, every token after the first predicted."""
    total, count = 0.0, 0
    for text in texts:
        ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = loaded.model(input_ids=ids).logits[0].double()
        logp = logits - logits.exp().sum(-1, keepdim=True).log()
        for t in range(1, ids.shape[1]):
            total -= float(logp[t - 1, ids[0, t]])
            count += 1
    return math.exp(total / count)


@pytest.mark.parametrize("family", ["llama", "gpt2", "opt", "gemma3_text"])
def test_ppl_matches_hand_computation(family):
    loaded = tiny_model(family)
    ns = neuron_set(loaded)
    result = ppl_matrix(loaded, ns, corpus(), PPLSettings(batch_size=3), progress=False)
    assert result["interventions"] == ["none", "neurons:aa", "neurons:bb", "random:aa", "random:bb"]
    for lang, texts in (("aa", AA), ("bb", BB)):
        assert result["ppl"]["none"][lang] == pytest.approx(hand_ppl(loaded, texts), rel=1e-5)
        with intervene(loaded, deactivate(ns.mask(lang))):
            want = hand_ppl(loaded, texts)
        assert result["ppl"][f"neurons:{lang}"][lang] == pytest.approx(want, rel=1e-5)
        with intervene(loaded, deactivate(random_control(ns, lang, 0))):
            want = hand_ppl(loaded, texts)
        assert result["ppl"][f"random:{lang}"][lang] == pytest.approx(want, rel=1e-5)
    bos = family != "gpt2"
    n_words = sum(len(t.split()) for t in AA)
    assert result["tokens"]["aa"] == (n_words if bos else n_words - len(AA))
    rel, ppl = result["delta_relative"], result["ppl"]
    assert rel["neurons:aa"]["bb"] == pytest.approx(ppl["neurons:aa"]["bb"] / ppl["none"]["bb"] - 1)
    assert result["delta_absolute"]["neurons:aa"]["bb"] == pytest.approx(
        ppl["neurons:aa"]["bb"] - ppl["none"]["bb"]
    )
    s = result["summary"]["aa"]
    assert s["self"] == pytest.approx(rel["neurons:aa"]["aa"])
    assert s["others_median"] == pytest.approx(rel["neurons:aa"]["bb"])
    assert s["random_self"] == pytest.approx(rel["random:aa"]["aa"])
    prov = result["provenance"]
    assert prov["texts"]["sha256"] == corpus().sha256() and prov["site"] == "act"
    assert prov["texts"]["sentences"] == {"aa": 5, "bb": 5}


def test_ppl_is_batch_size_invariant():
    loaded = tiny_model("llama")
    ns = neuron_set(loaded)
    a = ppl_matrix(loaded, ns, corpus(), PPLSettings(batch_size=1, controls=False), progress=False)
    b = ppl_matrix(loaded, ns, corpus(), PPLSettings(batch_size=5, controls=False), progress=False)
    for row in a["ppl"]:
        for lang in ("aa", "bb"):
            assert a["ppl"][row][lang] == pytest.approx(b["ppl"][row][lang], rel=1e-5)


def test_ppl_refuses_a_set_for_another_model():
    loaded = tiny_model("llama")
    with pytest.raises(Exception, match="model"):
        ppl_matrix(loaded, neuron_set(loaded, "other-model"), corpus(), progress=False)


def test_langid_and_labels():
    assert to_label("zh-Hans") == "zh" and to_label("por") == "pt" and to_label("fr") == "fr"
    assert identify_language("Le chat dort sur le canapé depuis ce matin.")[0] == "fr"
    assert identify_language("猫从早上开始一直在沙发上睡觉。")[0] == "zh"
    assert identify_language("  123 ... ")[0] == "none"


def test_judge_and_distinct():
    assert distinct_n([1, 2, 1, 2, 1, 2]) == pytest.approx(2 / 5)
    assert distinct_n([1]) is None
    gens = [
        {"ids": [1, 2, 3], "lang": "fr", "distinct_2": 1.0, "ppl": 3.0},
        {"ids": [1, 1, 1], "lang": "en", "distinct_2": 0.5, "ppl": 5.0},
        {"ids": [], "lang": "none", "distinct_2": None, "ppl": None},
    ]
    j = judge(gens, "fr", base_ppl_median=3.0)
    assert j["success"] == pytest.approx(1 / 3) and j["languages"] == {"fr": 1, "en": 1, "none": 1}
    assert j["language_rate"] == pytest.approx(1 / 3) and j["not_fluent"] == 0
    assert j["distinct_2"] == pytest.approx(0.75) and j["empty"] == 1
    assert j["continuation_ppl_median"] == pytest.approx(4.0)  # a true median: (3 + 5) / 2


def test_a_looping_or_gibberish_continuation_in_the_target_language_is_not_a_success():
    """Review item 1: identified as the target is not enough; the text must also be fluent."""
    gens = [
        {"ids": [5, 6] * 6, "lang": "fr", "distinct_2": 2 / 11, "ppl": 2.0},  # a loop
        {"ids": list(range(12)), "lang": "fr", "distinct_2": 1.0, "ppl": 900.0},  # gibberish
        {"ids": list(range(12)), "lang": "fr", "distinct_2": 1.0, "ppl": 12.0},  # fluent
        {"ids": list(range(12)), "lang": "en", "distinct_2": 1.0, "ppl": 3.0},  # fluent, not the target
    ]
    j = judge(gens, "fr", base_ppl_median=3.0, settings=SteerSettings(min_distinct_2=0.5, max_ppl_ratio=10))
    assert j["language_rate"] == pytest.approx(3 / 4) and j["success"] == pytest.approx(1 / 4)
    assert j["not_fluent"] == 2 and [g["fluent"] for g in gens] == [False, False, True, True]
    assert j["fluent_rate"] == pytest.approx(2 / 4)


def test_steer_runs_with_baseline_and_control(tmp_path):
    loaded = tiny_model("llama")
    ns = neuron_set(loaded)
    stats = record(
        loaded,
        corpus(),
        tmp_path / "run",
        RecordSettings(batch_size=2, chunk_batches=1, max_length=64),
        progress=False,
    )
    s = SteerSettings(mode="replace", strengths=[1.0, 2.0], max_new_tokens=5, batch_size=2)
    out = steer(loaded, ns, stats, ["a1 a2", "a3", "s1 a4 a5"], "aa", ["bb"], s, progress=False)
    entry = out["results"]["bb"]
    assert set(entry["strengths"]) == {"1", "2"}
    for row in entry["strengths"].values():
        assert set(row) == {"steered", "random"}
        assert len(row["steered"]["generations"]) == 3
    assert len(out["baseline_generations"]) == 3
    assert out["provenance"]["settings"]["mode"] == "replace"


# ---- CLI ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    loaded = tiny_model("llama")
    loaded.model.save_pretrained(root / "model")
    loaded.tokenizer.save_pretrained(root / "model")
    texts = root / "texts"
    texts.mkdir()
    (texts / "aa.txt").write_text("\n".join(AA) + "\n")
    (texts / "bb.txt").write_text("\n".join(BB) + "\n")
    run = root / "run"
    from langneurons.models.loading import load_model

    reloaded = load_model(str(root / "model"), device="cpu")
    record(
        reloaded, corpus(), run, RecordSettings(batch_size=2, chunk_batches=1, max_length=64), progress=False
    )
    neuron_set(reloaded).save(run / "set.json")
    bad = neuron_set(reloaded)
    bad.num_layers, bad.neurons = 5, {k: v + [[]] * 2 for k, v in bad.neurons.items()}
    bad.selected = bad.selected + [[]] * 2
    bad.model = "some-7b-model"
    bad.save(root / "bad.json")
    prompts = root / "prompts.txt"
    prompts.write_text("a1 a2\ns1 a3\n")
    return root


def test_cli_ppl_and_steer(saved):
    runner = CliRunner()
    model = str(saved / "model")
    res = runner.invoke(
        app,
        [
            "ppl",
            "--model",
            model,
            "--neurons",
            str(saved / "run" / "set.json"),
            "--texts",
            str(saved / "texts"),
            "--out",
            str(saved / "ppl.json"),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads((saved / "ppl.json").read_text())
    assert set(data["summary"]) == {"aa", "bb"} and data["provenance"]["texts"]["sentences"]["aa"] == 5
    # evaluating on a subset of the set's languages: the others' own ΔPPL is not available ("n/a")
    res = runner.invoke(app, ["ppl", "--model", model, "--neurons", str(saved / "run" / "set.json"),
                              "--texts", str(saved / "texts"), "--languages", "aa", "--device", "cpu",
                              "--out", str(saved / "ppl-aa.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "bb neurons off: PPL on bb n/a" in " ".join(res.output.split())
    res = runner.invoke(app, ["steer", "--model", model, "--neurons", str(saved / "run" / "set.json"),
                              "--from", "aa", "--to", "bb", "--prompts", str(saved / "prompts.txt"),
                              "--strength", "1,3", "--max-new-tokens", "4", "--device", "cpu",
                              "--out", str(saved / "steer.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((saved / "steer.json").read_text())
    assert set(data["results"]["bb"]["strengths"]) == {"1", "3"}
    assert data["provenance"]["stats"] == str(saved / "run")  # found next to the neuron set


def run_main(monkeypatch, capsys, args):
    monkeypatch.setattr(sys, "argv", ["langneurons", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code, capsys.readouterr().err


def test_cli_neuron_set_for_another_model_is_a_one_line_error(saved, monkeypatch, capsys):
    args = ["ppl", "--model", str(saved / "model"), "--neurons", str(saved / "bad.json"),
            "--texts", str(saved / "texts"), "--out", str(saved / "x.json"), "--device", "cpu"]  # fmt: skip
    code, err = run_main(monkeypatch, capsys, args)
    assert code != 0 and "Traceback" not in err
    errors = [
        line for line in err.splitlines() if line.startswith("error:")
    ]  # (transformers' loading bar aside)
    assert len(errors) == 1 and "5 layers" in errors[0]


def test_cli_steer_errors(saved, monkeypatch, capsys):
    base = [
        "steer",
        "--model",
        str(saved / "model"),
        "--neurons",
        str(saved / "run" / "set.json"),
        "--out",
        str(saved / "y.json"),
        "--device",
        "cpu",
        "--prompts",
        str(saved / "prompts.txt"),
    ]
    code, err = run_main(monkeypatch, capsys, [*base, "--to", "zz"])
    assert code == 2 and "zz" in err and "Traceback" not in err
    code, err = run_main(monkeypatch, capsys, [*base, "--to", "bb", "--strength", "x"])
    assert code == 2 and "--strength" in err
