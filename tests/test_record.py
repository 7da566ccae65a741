"""Recording must count exactly: planted ground truth, independent recounts, padding, merge."""

from __future__ import annotations

import pytest
import torch
from tiny import FAMILIES, VOCAB, WORDS, planted_model, tiny_model

from langneurons.data import Corpus
from langneurons.formats.stats import load_stats, merge_stats
from langneurons.recording import RecordSettings, record

AA = ["a1 a2 s1 a3", "a0 a0", "s2 a5 a6 a7 s3 s4", "a4", "a1 s0 a2 a3 a4 a5 a6 a7"]
BB = ["b1 s1", "b0 b2 b3 b4 b5", "s5 s6 b6", "b7 b7 b7 s7", "b3"]


def corpus(n: int | None = None) -> Corpus:
    return Corpus("test", {"aa": [(str(i), t) for i, t in enumerate(AA[:n])],
                           "bb": [(str(i), t) for i, t in enumerate(BB[:n])]})


def settings(**kw) -> RecordSettings:
    return RecordSettings(**{"batch_size": 2, "chunk_batches": 1, "max_length": 64, **kw})


GROUPS = {0: set(WORDS["aa"]), 1: set(WORDS["bb"]), 2: set(WORDS["shared"]), 3: {"a0", "b0"}, 5: {"s1", "b7"}}


def test_planted_counts_equal_token_frequencies(tmp_path):
    loaded = planted_model(GROUPS, num_layers=2)
    stats = record(loaded, corpus(), tmp_path / "run", settings(), progress=False)
    for k, texts in enumerate([AA, BB]):
        words = [w for t in texts for w in t.split()]
        assert stats.n_tokens[k] == len(words)  # BOS not counted
        expected = torch.zeros(stats.intermediate_size, dtype=torch.int64)
        for j, group in GROUPS.items():
            expected[j] = sum(w in group for w in words)
        for layer in range(2):
            assert torch.equal(stats.count[k, layer], expected)
        # activation values are silu(±sqrt(H)): the sums are known in closed form too
        c = torch.tensor(len(VOCAB) ** 0.5, dtype=torch.float64)
        on, off = torch.nn.functional.silu(c), torch.nn.functional.silu(-c)
        want = expected * on + (len(words) - expected) * off
        assert torch.allclose(stats.sum[k, 0], want, rtol=1e-5)
        assert torch.allclose(stats.sum_sq[k, 0], expected * on**2 + (len(words) - expected) * off**2, rtol=1e-5)


def test_count_bos_adds_one_token_per_sentence(tmp_path):
    loaded = planted_model(GROUPS, num_layers=1)
    a = record(loaded, corpus(), tmp_path / "a", settings(), progress=False)
    b = record(loaded, corpus(), tmp_path / "b", settings(count_bos=True), progress=False)
    assert torch.equal(b.n_tokens - a.n_tokens, torch.tensor([len(AA), len(BB)]))


# The pre-activation whose sign decides `act > 0` (GELU/SiLU/ReLU are > 0 exactly where x > 0).
PRE = {
    "phi3": lambda layer: (layer.mlp.gate_up_proj, lambda y: y.chunk(2, dim=-1)[0]),
    "bloom": lambda layer: (layer.mlp.dense_h_to_4h, None),
    "bloom_slow": lambda layer: (layer.mlp.dense_h_to_4h, None),
    "gpt2": lambda layer: (layer.mlp.c_fc, None),
    "gpt_neox": lambda layer: (layer.mlp.dense_h_to_4h, None),
    "opt": lambda layer: (layer.fc1, None),
    "phi": lambda layer: (layer.mlp.fc1, None),
    "falcon": lambda layer: (layer.mlp.dense_h_to_4h, None),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_act_counts_equal_preactivation_sign(family, tmp_path):
    loaded = tiny_model(family)
    stats = record(loaded, corpus(), tmp_path / "run", settings(batch_size=3), progress=False)
    adapter, tok = loaded.adapter, loaded.tokenizer
    for k, texts in enumerate([AA, BB]):
        expected = torch.zeros(adapter.num_layers, adapter.intermediate_size, dtype=torch.int64)
        for text in texts:  # one sentence at a time: no padding at all
            enc = tok(text, return_tensors="pt", return_special_tokens_mask=True)
            real = ~enc.pop("special_tokens_mask").bool().reshape(-1)
            handles = []
            for i, layer in enumerate(adapter.layers):
                module, pick = PRE.get(family, lambda lay: (lay.mlp.gate_proj, None))(layer)

                def grab(_m, _a, out, i=i, pick=pick, real=real, expected=expected):
                    y = (pick(out) if pick else out).reshape(-1, adapter.intermediate_size)[real]
                    expected[i] += (y > 0).sum(0)

                handles.append(module.register_forward_hook(grab))
            with torch.no_grad():
                loaded.model(**enc)
            for h in handles:
                h.remove()
        assert torch.equal(stats.count[k], expected), family
        assert stats.n_tokens[k] == sum(len(t.split()) for t in texts)


@pytest.mark.parametrize("family", ["llama", "bloom_slow", "gpt2", "opt"])
def test_padding_never_changes_statistics(family, tmp_path):
    loaded = tiny_model(family)
    alone = record(loaded, corpus(), tmp_path / "a", settings(batch_size=1), progress=False)
    padded = record(loaded, corpus(), tmp_path / "b", settings(batch_size=5), progress=False)
    assert torch.equal(alone.count, padded.count)
    assert torch.equal(alone.n_tokens, padded.n_tokens)
    assert torch.allclose(alone.sum, padded.sum, rtol=1e-5, atol=1e-5)
    assert torch.allclose(alone.sum_sq, padded.sum_sq, rtol=1e-5, atol=1e-5)


def test_recording_is_deterministic_and_files_round_trip(tmp_path):
    loaded = tiny_model("qwen3")
    a = record(loaded, corpus(), tmp_path / "a", settings(), progress=False)
    b = record(loaded, corpus(), tmp_path / "b", settings(), progress=False)
    for name in ("count", "sum", "sum_sq", "n_tokens"):
        assert torch.equal(getattr(a, name), getattr(b, name))
        assert torch.equal(getattr(load_stats(tmp_path / "a"), name), getattr(a, name))
    m = load_stats(tmp_path / "a").manifest
    for key in ("languages", "model", "revision", "site", "num_layers", "intermediate_size", "dtype",
                "corpus", "corpus_sha256", "langneurons_version"):
        assert key in m
    assert m["languages"] == ["aa", "bb"] and m["site"] == "act" and m["num_layers"] == 3


def test_merge_of_halves_equals_whole(tmp_path):
    loaded = tiny_model("gemma3_text")
    whole = record(loaded, corpus(), tmp_path / "w", settings(batch_size=1), progress=False)
    first = Corpus("t", {lang: pairs[:3] for lang, pairs in corpus().items.items()})
    second = Corpus("t", {lang: pairs[3:] for lang, pairs in corpus().items.items()})
    a = record(loaded, first, tmp_path / "a", settings(batch_size=1), progress=False)
    b = record(loaded, second, tmp_path / "b", settings(batch_size=1), progress=False)
    merged = merge_stats([a, b])
    assert merged.languages == ["aa", "bb"]
    assert torch.equal(merged.count, whole.count) and torch.equal(merged.n_tokens, whole.n_tokens)
    assert torch.allclose(merged.sum, whole.sum) and torch.allclose(merged.sum_sq, whole.sum_sq)
    only_bb = record(loaded, Corpus("t", {"bb": corpus().items["bb"]}), tmp_path / "c", settings(batch_size=1),
                     progress=False)
    only_aa = record(loaded, Corpus("t", {"aa": corpus().items["aa"]}), tmp_path / "d", settings(batch_size=1),
                     progress=False)
    appended = merge_stats([only_bb, only_aa])
    assert appended.languages == ["bb", "aa"]
    assert torch.equal(appended.count[1], whole.count[0])


def test_token_budget_stops_each_language_early(tmp_path):
    loaded = planted_model(GROUPS, num_layers=1)
    stats = record(loaded, corpus(), tmp_path / "run", settings(tokens=5), progress=False)
    # whole sentences until at least 5 counted tokens: aa 4+2 = 6, bb 2+5 = 7
    assert stats.n_tokens.tolist() == [6, 7]
    assert stats.manifest["sentences"] == {"aa": 2, "bb": 2}


@pytest.mark.parametrize("family", FAMILIES)
def test_zeroing_at_down_in_equals_zeroing_down_columns(family):
    loaded = tiny_model(family)
    adapter, chosen = loaded.adapter, {0: [1, 5], 2: [0, 7, 9]}
    enc = loaded.tokenizer(["a1 a2 s3 b4", "b1 s2"], return_tensors="pt", padding=True)

    def zero(layer, x):
        if layer in chosen:
            x = x.clone()
            x[..., chosen[layer]] = 0
            return x
        return None

    handles = adapter.hook("down_in", zero)
    with torch.no_grad():
        hooked = loaded.model(**enc).logits
    for h in handles:
        h.remove()
    with torch.no_grad():
        baseline = loaded.model(**enc).logits
        for layer, cols in chosen.items():
            adapter.down_weight(layer)[:, cols] = 0
        surgery = loaded.model(**enc).logits
    assert not torch.allclose(baseline, surgery)
    assert torch.allclose(hooked, surgery, atol=1e-5), family


def test_unsupported_mixture_of_experts_is_refused_with_one_line():
    from langneurons.errors import LangneuronsError
    from langneurons.models import get_adapter

    model = tiny_model("llama").model
    model.config.model_type = "jamba"  # an MoE family whose experts are not fused 3-D modules
    with pytest.raises(LangneuronsError, match="mixture-of-experts model 'jamba' is not supported") as err:
        get_adapter(model)
    assert "\n" not in str(err.value)
