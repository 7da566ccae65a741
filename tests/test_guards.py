"""Inputs that would give a silently wrong number are refused: count-only statistics used as means,
sentence ids that shift after a skipped record, hooks that never fire (review items 3, 4, 9)."""

from __future__ import annotations

import json
import types

import pytest
import torch
from test_evaluate import neuron_set
from test_record import corpus, settings
from tiny import tiny_model
from typer.testing import CliRunner

from langneurons.cli import app
from langneurons.data import load_corpus
from langneurons.errors import LangneuronsError
from langneurons.formats.stats import Stats, load_stats, save_stats
from langneurons.intervention import activate, deactivate, intervene
from langneurons.recording import record


@pytest.fixture(scope="module")
def count_only(tmp_path_factory):
    """A recorded run rewritten as counts only, as `convert zhang2025` writes them."""
    root = tmp_path_factory.mktemp("counts")
    loaded = tiny_model("llama")
    stats = record(loaded, corpus(), root / "full", settings(), progress=False)
    zeros = torch.zeros_like(stats.sum)
    manifest = {**stats.manifest, "sum_available": False, "counted": "response tokens only (full − prefix)"}
    save_stats(root / "counts", Stats(stats.count, zeros, zeros.clone(), stats.n_tokens, manifest))
    ns = neuron_set(loaded)
    ns.save(root / "counts" / "set.json")
    loaded.model.save_pretrained(root / "model")
    loaded.tokenizer.save_pretrained(root / "model")
    return root, loaded


@pytest.mark.parametrize("mode", ["replace", "add", "diffmean"])
def test_means_from_count_only_statistics_are_an_error_naming_the_file(count_only, mode):
    root, loaded = count_only
    stats = load_stats(root / "counts")
    mask = neuron_set(loaded).mask("bb")
    with pytest.raises(LangneuronsError, match=rf"{root / 'counts'}.*counts only") as caught:
        activate(mask, stats, "bb", mode)
    assert "\n" not in str(caught.value)


def test_steer_refuses_count_only_statistics_found_next_to_the_set(count_only, tmp_path):
    root, _ = count_only
    (tmp_path / "p.txt").write_text("a1 a2\n")
    args = ["steer", "--model", str(root / "model"), "--neurons", str(root / "counts" / "set.json"),
            "--from", "aa", "--to", "bb", "--prompts", str(tmp_path / "p.txt"), "--strength", "1",
            "--out", str(tmp_path / "s.json")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "counts only" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s.json").exists()


def test_fallback_ids_count_skipped_records(tmp_path):
    """Review item 4: one blank record must not shift the ids of every later translation."""
    rows = [("en", "one"), ("fr", "un"), ("en", "   "), ("fr", "deux"), ("en", "three"), ("fr", "trois")]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"lang": lang, "text": text}) + "\n" for lang, text in rows) + "\n")
    c = load_corpus(str(path))
    assert c.ids("en") == ["0", "2"] and c.ids("fr") == ["0", "1", "2"]
    assert dict(zip(c.ids("en"), c.texts("en"), strict=True))["2"] == "three"  # aligned with "trois"
    assert "position" in c.id_source
    explicit = tmp_path / "ids.jsonl"
    explicit.write_text(json.dumps({"lang": "en", "text": "x", "id": "s7"}) + "\n")
    assert load_corpus(str(explicit)).ids("en") == ["s7"] and load_corpus(str(explicit)).id_source == "id field"


def test_fallback_ids_of_a_dataset_count_skipped_rows(tmp_path):
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_dict({"lang": ["en", "en", "en", "fr", "fr", "fr"],
                                       "text": ["one", "", "three", "un", "deux", "trois"]})  # fmt: skip
    data.save_to_disk(str(tmp_path / "ds"))
    c = load_corpus(f"hf:{tmp_path / 'ds'}")
    assert c.ids("en") == ["0", "2"] and c.ids("fr") == ["0", "1", "2"] and "position" in c.id_source


def test_similarity_says_which_id_source_grouped_the_meanings(tmp_path):
    from langneurons.analysis.similarity import similarity
    from langneurons.recording.pooled import record_pooled

    loaded = tiny_model("llama")
    path = tmp_path / "c.jsonl"
    rows = [("aa", "a1 a2"), ("bb", "b1 b2"), ("aa", "a3 s1"), ("bb", "b3 s1")]
    path.write_text("".join(json.dumps({"lang": lang, "text": text}) + "\n" for lang, text in rows))
    pooled = record_pooled(loaded, load_corpus(str(path)), max_length=64, progress=False)
    assert "position" in similarity(pooled)["id_source"]


def bypass_act_hook(loaded, layer: int):
    """Make one layer compute its MLP without calling the ``act_fn`` module (a fused/replaced kernel)."""
    mlp = loaded.adapter.layers[layer].mlp

    def forward(self, x):
        return self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))

    mlp.forward = types.MethodType(forward, mlp)


def test_record_fails_when_a_layers_hook_never_fires(tmp_path):
    loaded = tiny_model("llama")
    bypass_act_hook(loaded, 1)
    with pytest.raises(LangneuronsError, match=r"'act' hook of layer\(s\) 1 ") as caught:
        record(loaded, corpus(), tmp_path / "run", settings(), progress=False)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_an_intervention_that_touches_nothing_is_an_error():
    loaded = tiny_model("llama")
    bypass_act_hook(loaded, 2)
    mask = torch.zeros(loaded.adapter.num_layers, loaded.adapter.intermediate_size, dtype=torch.bool)
    mask[0, 3] = mask[2, 5] = True
    enc = loaded.tokenizer(["a1 a2"], return_tensors="pt")
    with pytest.raises(LangneuronsError, match=r"never reached site act of layer\(s\) 2"):
        with intervene(loaded, deactivate(mask)), torch.no_grad():
            loaded.model(**enc)
    mask[2, 5] = False  # only layer 0: its hook fires, no error
    with intervene(loaded, deactivate(mask)), torch.no_grad():
        loaded.model(**enc)
