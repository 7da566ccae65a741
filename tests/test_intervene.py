"""Interventions edit exactly the chosen neurons, at the chosen positions, and leave no trace."""

from __future__ import annotations

import pytest
import torch
from tiny import FAMILIES, planted_model, tiny_model

from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.stats import Stats
from langneurons.intervention import activate, deactivate, force, intervene, random_control, random_mask

TEXTS = ["a1 a2 s1 a3 b2", "b0 b2 b3", "s2 a5 a6 a7 s3 s4"]


def batch(loaded, texts=TEXTS):
    enc = loaded.tokenizer(texts, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def logits(loaded, texts=TEXTS):
    with torch.no_grad():
        return loaded.model(**batch(loaded, texts)).logits


def some_mask(loaded, seed=1, per_layer=5):
    a = loaded.adapter
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(a.num_layers, a.intermediate_size, dtype=torch.bool)
    for layer in range(a.num_layers):
        mask[layer, torch.randperm(a.intermediate_size, generator=gen)[:per_layer]] = True
    return mask


def no_hooks(model) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("family", FAMILIES)
def test_zeroing_down_in_equals_zeroing_down_columns(family):
    loaded = tiny_model(family)
    mask = some_mask(loaded)
    with intervene(loaded, deactivate(mask, site="down_in")):
        edited = logits(loaded)
    # act and down_in zeroing are the same edit (down_in = act · up, or the same tensor)
    with intervene(loaded, deactivate(mask, site="act")):
        edited_act = logits(loaded)
    base = logits(loaded)
    with torch.no_grad():
        for layer in range(loaded.adapter.num_layers):
            loaded.adapter.down_weight(layer)[:, mask[layer]] = 0.0
    by_weights = logits(loaded)
    assert not torch.allclose(base, by_weights)
    torch.testing.assert_close(edited, by_weights, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(edited_act, by_weights, rtol=1e-5, atol=1e-5)


def read_site(loaded, site, layers=None):
    """Register a recording hook (after any intervention hooks); returns the list it fills."""
    seen: list[tuple[int, torch.Tensor]] = []

    def fn(layer, act):
        seen.append((layer, act.detach().clone().reshape(-1, act.shape[-1])))

    return seen, loaded.adapter.hook(site, fn, layers)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("site", ["act", "down_in"])
def test_reader_sees_exactly_the_set_values(family, site):
    loaded = tiny_model(family)
    last = loaded.adapter.num_layers - 1
    mask = torch.zeros_like(some_mask(loaded))
    mask[last] = some_mask(loaded)[last]  # one layer: everything before it is unchanged
    values = torch.randn(mask.shape, dtype=torch.float64)
    seen, handles = read_site(loaded, site, [last])
    logits(loaded)
    base = seen.pop()[1]
    for h in handles:
        h.remove()
    with intervene(loaded, force(mask, values, site=site)):
        seen, handles = read_site(loaded, site, [last])
        logits(loaded)
        for h in handles:
            h.remove()
    got = seen.pop()[1]
    cols = mask[last]
    torch.testing.assert_close(got[:, cols], values[last, cols].float().expand(got.shape[0], -1))
    assert torch.equal(got[:, ~cols], base[:, ~cols])


def test_scaled_deactivation_and_additive_modes_are_affine():
    loaded = tiny_model("llama")
    mask = some_mask(loaded)
    shift = torch.randn(mask.shape, dtype=torch.float64)
    stats = fake_stats(loaded, means=[shift, torch.zeros_like(shift)])
    seen, handles = read_site(loaded, "act", [0])
    logits(loaded)
    base = seen.pop()[1]
    for h in handles:
        h.remove()
    cols = mask[0]
    cases = [
        (deactivate(mask, 0.5), 0.5 * base[:, cols]),
        (
            activate(mask, stats, "aa", "replace", 2.0),
            (2.0 * shift[0, cols]).float().expand(base.shape[0], -1),
        ),
        (activate(mask, stats, "aa", "add", 2.0), base[:, cols] + 2.0 * shift[0, cols].float()),
        (activate(mask, stats, "aa", "diffmean", 3.0), base[:, cols] + 3.0 * shift[0, cols].float()),
    ]
    for iv, want in cases:
        with intervene(loaded, iv):
            seen, handles = read_site(loaded, "act", [0])  # after the intervention's hooks
            logits(loaded)
        for h in handles:
            h.remove()
        got = seen.pop()[1]
        torch.testing.assert_close(got[:, cols], want, rtol=1e-5, atol=1e-6)
        assert torch.equal(got[:, ~cols], base[:, ~cols])


def test_interventions_compose_in_order():
    loaded = tiny_model("llama")
    a, b = some_mask(loaded, 1), some_mask(loaded, 2)
    with intervene(loaded, [force(a, 1.0), force(b, 2.0)]):
        seen, handles = read_site(loaded, "act", [0])
        logits(loaded)
    got = seen.pop()[1]
    assert bool((got[:, b[0]] == 2.0).all())
    assert bool((got[:, a[0] & ~b[0]] == 1.0).all())
    for h in handles:
        h.remove()


@pytest.mark.parametrize("family", FAMILIES)
def test_model_is_bit_identical_afterwards(family):
    loaded = tiny_model(family)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    out = logits(loaded)
    mask = some_mask(loaded)
    with intervene(loaded, [deactivate(mask, site="act"), force(mask, 3.0, site="down_in")]):
        assert not no_hooks(loaded.model)
        assert not torch.equal(logits(loaded), out)
    assert no_hooks(loaded.model)
    with pytest.raises(RuntimeError, match="boom"):
        with intervene(loaded, deactivate(mask)):
            raise RuntimeError("boom")
    assert no_hooks(loaded.model)
    after = loaded.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(logits(loaded), out)


def test_wrong_shape_is_a_one_line_error():
    loaded = tiny_model("llama")
    with pytest.raises(LangneuronsError, match="layers"):
        with intervene(loaded, deactivate(torch.ones(2, 7, dtype=torch.bool))):
            pass
    assert no_hooks(loaded.model)


def record_forwards(loaded, layer=0):
    """Per forward: the act-site tensor of ``layer`` as [B, T, F] (OPT's [B*T, F] reshaped)."""
    seen = []

    def fn(_layer, act):
        seen.append(act.detach().clone())

    return seen, loaded.adapter.hook("act", fn, [layer])


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "gpt2", "opt", "bloom", "falcon"])
@pytest.mark.parametrize("positions", ["prompt", "generated"])
def test_positions_during_cached_generation(family, positions):
    loaded = tiny_model(family)
    tok = loaded.tokenizer
    tok.padding_side = "left"
    enc = tok(["a1 a2 s1", "b0"], padding=True, return_tensors="pt")
    tok.padding_side = "right"
    prompt_len = enc["input_ids"].shape[1]
    mask = torch.zeros_like(some_mask(loaded))
    mask[0, [3, 7]] = True
    with intervene(loaded, force(mask, 7.0, positions=positions)):
        seen, handles = record_forwards(loaded)
        loaded.model.generate(**enc, max_new_tokens=4, min_new_tokens=4, do_sample=False, use_cache=True,
                              pad_token_id=0)  # fmt: skip
    for h in handles:
        h.remove()
    assert len(seen) == 4  # the prompt forward, then three one-token steps
    first = seen[0].reshape(2, prompt_len, -1)
    steps = [s.reshape(2, 1, -1) for s in seen[1:]]
    # The last prompt position produces the first new token: it is "generated", the ones before are "prompt".
    before_last = bool((first[:, :-1][..., [3, 7]] == 7.0).all())
    last = bool((first[:, -1][..., [3, 7]] == 7.0).all())
    gen_hit = all(bool((s[..., [3, 7]] == 7.0).all()) for s in steps)
    want = (True, False, False) if positions == "prompt" else (False, True, True)
    assert (before_last, last, gen_hit) == want
    assert not bool((first[..., [0, 1, 2]] == 7.0).any())
    if positions == "prompt":  # nothing after the prompt forward is "prompt"
        assert not any(bool((s[..., [3, 7]] == 7.0).any()) for s in steps)
        assert not bool((first[:, -1][..., [3, 7]] == 7.0).any())
    else:  # nothing before the last prompt position is "generated"
        assert not bool((first[:, :-1][..., [3, 7]] == 7.0).any())


def test_explicit_prompt_length_without_cache():
    loaded = tiny_model("llama")
    mask = torch.zeros_like(some_mask(loaded))
    mask[0, 5] = True
    enc = loaded.tokenizer(["a1 a2 s1 b3"], return_tensors="pt")  # 5 tokens with BOS
    with intervene(loaded, force(mask, 7.0, positions="generated"), prompt_length=3):
        seen, handles = record_forwards(loaded)
        with torch.no_grad():
            loaded.model(**enc, use_cache=False)
    for h in handles:
        h.remove()
    hit = seen[0][0, :, 5] == 7.0
    assert hit.tolist() == [False, False, True, True, True]  # position 2 produces token 3, the first new one


def fake_stats(loaded, means, site="act"):
    k = len(means)
    a = loaded.adapter
    n = torch.full((k,), 10, dtype=torch.int64)
    total = torch.stack(means).to(torch.float64) * 10
    manifest = {
        "languages": ["aa", "bb", "cc"][:k],
        "num_layers": a.num_layers,
        "intermediate_size": a.intermediate_size,
        "site": site,
        "model": loaded.name,
    }
    zeros = torch.zeros(k, a.num_layers, a.intermediate_size, dtype=torch.int64)
    return Stats(zeros, total, total**2, n, manifest)


def test_activation_means_must_come_from_the_same_site():
    loaded = tiny_model("llama")
    mask = some_mask(loaded)
    stats = fake_stats(loaded, [torch.ones(mask.shape)], site="act")
    with pytest.raises(LangneuronsError, match="site"):
        activate(mask, stats, "aa", site="down_in")


def neuron_set(num_layers=3, size=48):
    gen = torch.Generator().manual_seed(3)
    neurons, selected = {}, []
    for lang in ("aa", "bb"):
        neurons[lang] = [
            sorted(torch.randperm(size, generator=gen)[: 2 + layer].tolist()) for layer in range(num_layers)
        ]
    extra = [[0, 1]] * num_layers
    selected = [sorted(set(neurons["aa"][i]) | set(neurons["bb"][i]) | set(extra[i])) for i in range(num_layers)]
    return NeuronSet(["aa", "bb"], num_layers, size, neurons, selected, "test", site="act", model="m")


def test_random_control_matches_counts_is_disjoint_and_seeded():
    ns = neuron_set()
    union = ns.selected_mask() | ns.mask("aa") | ns.mask("bb")
    for lang in ns.languages:
        ctrl = random_control(ns, lang, seed=5)
        assert torch.equal(ctrl.sum(1), ns.mask(lang).sum(1))
        assert not bool((ctrl & union).any())
        assert torch.equal(ctrl, random_control(ns, lang, seed=5))
        assert not torch.equal(ctrl, random_control(ns, lang, seed=6))


def test_random_mask_refuses_impossible_counts():
    exclude = torch.zeros(2, 4, dtype=torch.bool)
    exclude[1, :3] = True
    with pytest.raises(LangneuronsError, match="layer 1"):
        random_mask(torch.tensor([1, 2]), exclude, 0)


def test_planted_neuron_zeroing_changes_only_through_it():
    # The planted LLaMA has zero down projections: no intervention may change its logits,
    # but a reader sees the edit.
    loaded = planted_model({0: {"a1"}}, num_layers=1)
    mask = torch.zeros(1, loaded.adapter.intermediate_size, dtype=torch.bool)
    mask[0, 0] = True
    base = logits(loaded, ["a1 a2"])
    with intervene(loaded, deactivate(mask)):
        seen, handles = read_site(loaded, "act")
        assert torch.equal(logits(loaded, ["a1 a2"]), base)
    for h in handles:
        h.remove()
    assert bool((seen[0][1][:, 0] == 0).all())


@pytest.mark.parametrize("family", ["llama", "gpt2", "opt"])
@pytest.mark.parametrize("positions", ["prompt", "generated"])
def test_position_limited_edits_with_a_given_prompt_length_follow_every_decoding_step(family, positions):
    """As steering runs it (prompt length given, not inferred): each decoding step is a forward of length 1 at
    offset > 0, read from the cache (transformers passes it as ``cache`` or ``past_key_values``), so
    'generated' edits every step and 'prompt' none of them."""
    loaded = tiny_model(family)
    mask = torch.zeros(loaded.adapter.num_layers, loaded.adapter.intermediate_size, dtype=torch.bool)
    mask[0, :4] = True
    enc = loaded.tokenizer(["a1 a2 a3"], return_tensors="pt")
    seen: list[tuple[int, bool]] = []  # (forward length, masked neurons forced at its last position)

    def look(_layer: int, x: torch.Tensor) -> None:
        rows = x.reshape(-1, x.shape[-1])  # OPT's activations are already [B·T, F]
        seen.append((rows.shape[0], bool((rows[-1, :4] == 7.0).all())))

    with intervene(loaded, force(mask, 7.0, positions=positions), prompt_length=enc["input_ids"].shape[1]):
        handles = loaded.adapter.hook("act", look, layers=[0])  # runs after the edit's own hook
        with torch.no_grad():
            loaded.model.generate(**enc, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=0)
        for h in handles:
            h.remove()
    assert [n for n, _ in seen] == [enc["input_ids"].shape[1], 1, 1, 1]
    assert [forced for _, forced in seen] == ([True] * 4 if positions == "generated" else [False] * 4)
