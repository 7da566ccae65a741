"""The logit lens (docs/methods.md §16): the last layer is the model's own output on every family, a planted
middle layer shows its token's peak there, the word filter, bootstrap intervals, and bad input."""

from __future__ import annotations

import pytest
import torch
from tiny import FAMILIES, tiny_model
from tiny_moe import MOE_FAMILIES, tiny_moe_loaded


def _last_layer_matches(loaded) -> None:
    batch = loaded.tokenizer(["a1 b2 s3 a4", "b1 b1"], padding=True, return_tensors="pt")
    logits = loaded.model(**batch).logits
    last = batch.attention_mask.sum(1) - 1
    want = torch.log_softmax(logits[torch.arange(2), last].float(), -1)
    hidden = loaded.adapter.residual_stream(batch.input_ids, batch.attention_mask, last_only=True)
    assert hidden.shape == (2, loaded.adapter.num_layers, loaded.adapter.hidden_size)
    got = torch.log_softmax(loaded.adapter.lens_logits(hidden[:, -1]), -1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # an earlier layer is a different distribution (the lens reads the stream, not the output)
    assert not torch.allclose(torch.log_softmax(loaded.adapter.lens_logits(hidden[:, 0]), -1), want, atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_last_layer_is_the_model_output(family):
    _last_layer_matches(tiny_model(family))


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_last_layer_is_the_model_output_moe(family):
    _last_layer_matches(tiny_moe_loaded(family))


def test_softcapping_is_applied():
    loaded = tiny_model("gemma2")
    loaded.model.config.final_logit_softcapping = 0.05  # tiny cap: every logit is squeezed into ±0.05
    _last_layer_matches(loaded)
    hidden = loaded.adapter.residual_stream(torch.tensor([[1, 5, 6]]), last_only=True)
    assert loaded.adapter.lens_logits(hidden[:, 1]).abs().max() <= 0.05
