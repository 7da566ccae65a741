"""Attention heads through the adapters: each family's head outputs are the output projection's input."""

from __future__ import annotations

import pytest
import torch
from tiny import FAMILIES, tiny_model
from tiny_moe import MOE_FAMILIES, tiny_moe_loaded

from langneurons.errors import LangneuronsError

TEXTS = ["a1 a2 s1 a3 b2", "b0 b2 b3", "s2 a5 a6 a7 s3 s4"]


def logits(loaded):
    enc = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return loaded.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits


def zero_input_columns(module, cols: torch.Tensor) -> None:
    """Zero the output projection's weight where it reads input columns ``cols`` (its bias stays)."""
    with torch.no_grad():
        if hasattr(module, "in_features"):  # nn.Linear (and Falcon's subclass): weight [out, in]
            module.weight[:, cols] = 0.0
        else:  # GPT-2's Conv1D: weight [in, out]
            module.weight[cols, :] = 0.0


def check_head_ablation(loaded, picks: dict[int, list[int]]) -> None:
    a = loaded.adapter
    base = logits(loaded)
    seen = []

    def fn(layer, heads):
        seen.append((layer, tuple(heads.shape[-2:])))
        out = heads.clone()
        out[..., picks.get(layer, []), :] = 0.0
        return out

    handles = a.hook_heads(fn)
    try:
        hooked = logits(loaded)
    finally:
        for h in handles:
            h.remove()
    assert {layer for layer, _ in seen} == set(a.head_layers)
    assert all(shape == (a.num_heads, a.head_dim(layer)) for layer, shape in seen)
    for layer, heads in picks.items():
        d = a.head_dim(layer)
        cols = torch.cat([torch.arange(h * d, (h + 1) * d) for h in heads])
        zero_input_columns(a.head_module(layer), cols)
    by_weights = logits(loaded)
    assert not torch.allclose(base, by_weights)
    torch.testing.assert_close(hooked, by_weights, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "bloom_slow"])
def test_head_ablation_equals_zeroing_output_projection_columns(family):
    loaded = tiny_model(family)
    assert loaded.adapter.num_heads == 4
    check_head_ablation(loaded, {0: [1], 1: [0, 3], 2: [2]})


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe", "deepseek_v3", "gpt_oss", "qwen3_next"])
def test_head_ablation_moe_families(family):
    assert family in MOE_FAMILIES
    loaded = tiny_moe_loaded(family)
    layers = loaded.adapter.head_layers
    assert layers if family != "qwen3_next" else layers == [1]  # its linear-attention layers have no heads
    check_head_ablation(loaded, {layers[0]: [2]})


def test_bloom_slow_path_refuses_heads():
    loaded = tiny_model("bloom_slow")
    with pytest.raises(LangneuronsError, match="slow_but_exact"):
        loaded.adapter.hook_heads(lambda layer, x: None)
