"""Sentence pooling, LRDS/SADS, key neurons and AP expertise against constructed ground truth."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from tiny import VOCAB, WORDS, planted_model, tiny_model

from langneurons.analysis.similarity import (
    cosine_matrix,
    language_matrix,
    load_similarity,
    pair_masks,
    pair_scores,
    save_similarity,
    similarity,
)
from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.pooled import Pooled, load_pooled
from langneurons.identification.ap import ap_experts, average_precision, force_values
from langneurons.identification.key_neurons import key_neurons
from langneurons.recording.pooled import record_pooled

AA = ["a1 a2 s1 a3", "a0 a0", "s2 a5 a6 a7 s3 s4", "a4", "a1 s0 a2 a3 a4 a5 a6 a7"]
BB = ["b1 s1", "b0 b2 b3 b4 b5", "s5 s6 b6", "b7 b7 b7 s7", "b3"]
GROUPS = {0: set(WORDS["aa"]), 1: set(WORDS["bb"]), 2: set(WORDS["shared"]), 3: {"a0", "b0"}}


def corpus(aa=AA, bb=BB) -> Corpus:
    return Corpus(
        "test", {"aa": [(str(i), t) for i, t in enumerate(aa)], "bb": [(str(i), t) for i, t in enumerate(bb)]}
    )


def synthetic(
    langs: list[str], ids: list[str], x: torch.Tensor, languages: list[str] | None = None
) -> Pooled:
    return Pooled(
        x,
        ids,
        langs,
        torch.ones(len(ids), dtype=torch.int64),
        {"languages": languages or list(dict.fromkeys(langs)), "model": "synthetic", "site": "act"},
    )


# ---- pooling ---------------------------------------------------------------------------------------------
def test_pooled_vectors_are_means_over_real_tokens(tmp_path):
    loaded = planted_model(GROUPS, num_layers=2)
    pooled = record_pooled(loaded, corpus(), tmp_path, batch_size=3, max_length=64, progress=False)
    c = torch.tensor(len(VOCAB) ** 0.5)
    on, off = torch.nn.functional.silu(c), torch.nn.functional.silu(-c)
    for row, (lang, sid) in enumerate(zip(pooled.row_languages, pooled.ids, strict=True)):
        words = (AA if lang == "aa" else BB)[int(sid)].split()
        assert pooled.n_tokens[row] == len(words)  # BOS and padding excluded
        for j, group in GROUPS.items():
            share = sum(w in group for w in words) / len(words)
            want = share * on + (1 - share) * off
            assert torch.allclose(pooled.pooled[row, :, j], want.expand(2), atol=1e-5)
    again = load_pooled(tmp_path)
    assert torch.equal(again.pooled, pooled.pooled) and again.ids == pooled.ids
    assert again.manifest["corpus_sha256"] == corpus().sha256() and again.manifest["site"] == "act"


@pytest.mark.parametrize("family", ["llama", "opt", "gpt2", "gemma3_text", "bloom"])
def test_pooling_does_not_depend_on_batching(family):
    loaded = tiny_model(family)
    one = record_pooled(loaded, corpus(), batch_size=1, max_length=64, progress=False)
    many = record_pooled(loaded, corpus(), batch_size=4, max_length=64, progress=False)
    assert one.ids == many.ids and one.row_languages == ["aa"] * 5 + ["bb"] * 5
    assert torch.allclose(one.pooled, many.pooled, atol=1e-5)


def test_pooled_refuses_to_overwrite(tmp_path):
    loaded = planted_model(GROUPS, num_layers=1)
    record_pooled(loaded, corpus(), tmp_path, max_length=64, progress=False)
    with pytest.raises(LangneuronsError, match="--overwrite"):
        record_pooled(loaded, corpus(), tmp_path, max_length=64, progress=False)


# ---- LRDS / SADS -------------------------------------------------------------------------------------------
def brute_force(sim: torch.Tensor, langs: list[str], ids: list[str]) -> dict[str, float]:
    sides: dict[str, list[float]] = {"sl": [], "dl": [], "sm": [], "dm": []}
    for i, j in itertools.permutations(range(len(langs)), 2):
        v = float(sim[i, j])
        sides["sl" if langs[i] == langs[j] else "dl"].append(v)
        if langs[i] != langs[j]:
            sides["sm" if ids[i] == ids[j] else "dm"].append(v)
    mean = {k: sum(v) / len(v) for k, v in sides.items()}
    return {"lrds": mean["sl"] - mean["dl"], "sads": mean["sm"] - mean["dm"]}


def test_masked_scores_equal_a_pair_by_pair_loop():
    torch.manual_seed(0)
    langs = ["en"] * 4 + ["fr"] * 3 + ["de"] * 4
    ids = ["0", "1", "2", "3", "2", "0", "9", "3", "1", "0", "7"]
    sim = cosine_matrix(torch.randn(len(ids), 6))
    got = pair_scores(sim, pair_masks(langs, ids))
    want = brute_force(sim, langs, ids)
    assert got["lrds"] == pytest.approx(want["lrds"], abs=1e-12)
    assert got["sads"] == pytest.approx(want["sads"], abs=1e-12)


def test_identical_sentences_in_every_language_have_same_meaning_similarity_one(tmp_path):
    loaded = tiny_model("llama")
    texts = AA
    c = Corpus("same", {lang: [(str(i), t) for i, t in enumerate(texts)] for lang in ("x", "y", "z")})
    pooled = record_pooled(loaded, c, max_length=64, progress=False)
    result = similarity(pooled)
    assert result["whole_model"]["same_meaning"] == pytest.approx(1.0, abs=1e-9)
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in result["per_layer"]["same_meaning"])
    assert result["whole_model"]["sads"] > 0
    save_similarity(tmp_path / "similarity.json", result)
    assert load_similarity(tmp_path)["peaks"]["sads"]["layer"] in range(3)


def meaning_data(n_lang=4, n_sent=40, dim=32, seed=0):
    """Vectors = meaning + language + noise, per layer; returns languages, ids, tensor [N, 2, dim]."""
    g = torch.Generator().manual_seed(seed)
    meaning = torch.randn(n_sent, dim, generator=g)
    language = torch.randn(n_lang, dim, generator=g)
    langs, ids, rows = [], [], []
    for k in range(n_lang):
        for s in range(n_sent):
            langs.append(f"l{k}")
            ids.append(f"s{s}")
            base = meaning[s] + 0.7 * language[k] + 0.3 * torch.randn(dim, generator=g)
            rows.append(torch.stack([base, 0.2 * base + torch.randn(dim, generator=g)]))
    return langs, ids, torch.stack(rows).float()


def test_shuffled_alignment_drives_sads_to_zero():
    langs, ids, x = meaning_data()
    aligned = similarity(synthetic(langs, ids, x))["whole_model"]["sads"]
    g = torch.Generator().manual_seed(1)
    shuffled = list(ids)
    n_sent = 40
    for k in range(4):  # permute the ids inside each language: rows no longer pair with their translations
        perm = torch.randperm(n_sent, generator=g).tolist()
        shuffled[k * n_sent : (k + 1) * n_sent] = [ids[k * n_sent + p] for p in perm]
    control = similarity(synthetic(langs, shuffled, x))["whole_model"]["sads"]
    assert aligned > 0.3
    assert abs(control) < 0.1 * aligned


def test_meaning_groups_come_from_ids_not_positions():
    langs, ids, x = meaning_data(n_lang=3, n_sent=10)
    perm = torch.randperm(len(ids), generator=torch.Generator().manual_seed(3))
    a = similarity(synthetic(langs, ids, x))
    b = similarity(synthetic([langs[i] for i in perm], [ids[i] for i in perm], x[perm], ["l0", "l1", "l2"]))
    for key in ("lrds", "sads"):
        assert a["whole_model"][key] == pytest.approx(b["whole_model"][key], abs=1e-10)
        assert a["per_layer"][key] == pytest.approx(b["per_layer"][key], abs=1e-10)


def test_whole_model_cosine_is_the_cosine_of_concatenated_layers():
    langs, ids, x = meaning_data(n_lang=2, n_sent=6)
    result = similarity(synthetic(langs, ids, x))
    flat = cosine_matrix(x.reshape(x.shape[0], -1))
    want = pair_scores(flat, pair_masks(langs, ids))
    assert result["whole_model"]["lrds"] == pytest.approx(want["lrds"], abs=1e-12)
    matrix = language_matrix(flat, torch.tensor([0] * 6 + [1] * 6), 2)
    assert result["language_matrix"][0][1] == pytest.approx(float(flat[:6, 6:].mean()), abs=1e-12)
    assert matrix[0, 0] == pytest.approx(float((flat[:6, :6].sum() - 6) / 30), abs=1e-12)


def test_language_structure_gives_positive_lrds():
    langs, ids, x = meaning_data()
    result = similarity(synthetic(langs, ids, x))
    assert result["whole_model"]["lrds"] > 0.05
    assert result["pairs"]["same_meaning"] == 4 * 3 * 40


# ---- key linguistic neurons -------------------------------------------------------------------------------
def test_key_neurons_find_a_planted_language_neuron():
    g = torch.Generator().manual_seed(0)
    k, n, layers, width = 8, 12, 3, 16
    x = torch.rand(k * n, layers, width, generator=g) * 0.1
    x[:n, 1, 5] += 2.0  # language 0: neuron (1, 5) is large and shared by all of its sentences
    x[3 * n : 4 * n, 2, 7] += 2.0  # language 3: neuron (2, 7)
    langs = [f"l{i}" for i in range(k) for _ in range(n)]
    ids = [str(s) for _ in range(k) for s in range(n)]
    ns = key_neurons(synthetic(langs, ids, x))
    ns.validate()
    assert 5 in ns.neurons["l0"][1] and 7 in ns.neurons["l3"][2]
    assert ns.params["per_layer_counts"]["l0"] == [len(x) for x in ns.neurons["l0"]]
    others = [lang for lang in ns.languages if lang != "l0"]
    assert not any(5 in ns.neurons[lang][1] for lang in others)
    # noise alone can pass z > 2 (max z = sqrt(7) here), but far less often than the planted neurons
    assert sum(ns.count(lang) for lang in ns.languages) < 0.05 * k * layers * width


def test_key_neurons_need_repeated_sentences():
    x = torch.rand(2, 1, 4)
    with pytest.raises(LangneuronsError):
        key_neurons(synthetic(["a", "b"], ["0", "0"], x))


# ---- average precision ------------------------------------------------------------------------------------
def ap_reference(scores: list[float], labels: list[bool]) -> float:
    """AP over distinct thresholds: Σ (R_t − R_{t−1}) · P_t (scikit-learn's definition)."""
    positives = sum(labels)
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        above = [y for s, y in zip(scores, labels, strict=True) if s >= t]
        recall = sum(above) / positives
        ap += (recall - prev_recall) * sum(above) / len(above)
        prev_recall = recall
    return ap


def test_average_precision_matches_the_definition_with_ties():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (30, 7), generator=g).double()  # many ties
    scores[:, 0] = torch.randn(30, generator=g).double()
    labels = torch.zeros(2, 30, dtype=torch.bool)
    labels[0, :10] = True
    labels[1, 10:] = True
    got = average_precision(scores, labels)
    for k in range(2):
        for m in range(7):
            want = ap_reference(scores[:, m].tolist(), labels[k].tolist())
            assert got[k, m].item() == pytest.approx(want, abs=1e-12)


def test_ap_experts_select_separating_units_and_store_force_values():
    g = torch.Generator().manual_seed(0)
    k, n = 3, 20
    x = torch.randn(k * n, 2, 10, generator=g)
    x[:n, 0, 3] += 10.0  # language a fires high on (0, 3): AP = 1
    x[:n, 1, 8] -= 10.0  # language a fires low on (1, 8): lowest AP
    langs = [lang for lang in ("a", "b", "c") for _ in range(n)]
    ids = [str(i) for _ in range(k) for i in range(n)]
    ns = ap_experts(synthetic(langs, ids, x), n=2)
    ns.validate()
    assert ns.neurons["a"] == [[3], [8]]
    assert ns.params["ap"]["a"][0] == [pytest.approx(1.0)]
    values = force_values(ns, "a")
    assert values[0, 3].item() == pytest.approx(x[:n, 0, 3].double().quantile(0.5).item(), abs=1e-5)
    assert values[1, 8].item() == pytest.approx(x[:n, 1, 8].double().quantile(0.5).item(), abs=1e-5)
    assert math.isnan(values[0, 4].item())
    loaded = NeuronSet.from_dict(ns.to_dict())
    assert loaded.params["on_p50"] == ns.params["on_p50"]


def test_similarity_and_sentence_methods_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from langneurons.cli import app

    loaded = tiny_model("llama")
    model_dir = tmp_path / "model"
    loaded.model.save_pretrained(model_dir)
    loaded.tokenizer.save_pretrained(model_dir)
    texts = tmp_path / "corpus"
    texts.mkdir()
    (texts / "aa.txt").write_text("\n".join(AA) + "\n")
    (texts / "bb.txt").write_text("\n".join(BB) + "\n")
    run = tmp_path / "run"
    runner = CliRunner()
    args = ["similarity", "--model", str(model_dir), "--corpus", str(texts), "--languages", "aa,bb",
            "--sentences", "4", "--out", str(run), "--max-length", "32", "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    sim = load_similarity(run)
    assert sim["sentences"] == {"aa": 4, "bb": 4} and len(sim["per_layer"]["sads"]) == 3
    assert runner.invoke(app, args).exit_code == 2  # refuses to overwrite
    assert runner.invoke(app, [*args[:1], "--out", str(run), "--reuse"]).exit_code == 0
    result = runner.invoke(
        app, ["identify-sentences", str(run), "-m", "ap", "--n", "6", "-o", str(run / "ap.json")]
    )
    assert result.exit_code == 0, result.output
    ap = NeuronSet.load(run / "ap.json")
    assert ap.method == "ap" and all(ap.count(lang) == 6 for lang in ap.languages)
    result = runner.invoke(app, ["identify-sentences", str(run), "-m", "nope", "-o", str(run / "x.json")])
    assert result.exit_code == 2 and "unknown sentence method" in result.output
    result = runner.invoke(app, ["report", str(run), "--out", str(run / "report.html")])
    assert result.exit_code == 0, result.output
    assert (run / "report.html").read_text().count("<img ") == 4  # ap: 3 figures + similarity
