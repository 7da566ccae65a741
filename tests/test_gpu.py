"""The same ground truth on a CUDA device: skipped without one (CI has none; run on a GPU machine).

Counts are exact integers, so they must equal the CPU's bit for bit; float sums agree to rounding.
"""

from __future__ import annotations

import pytest
import torch
from test_moe import GROUPS as MOE_GROUPS
from test_moe import ROUTES, planted_truth
from test_record import AA, BB, GROUPS, corpus, settings
from tiny import FAMILIES, planted_model, tiny_model, word_tokenizer
from tiny_moe import MOE_FAMILIES, planted_moe, tiny_moe

from langneurons.intervention import deactivate, intervene
from langneurons.models.loading import wrap_model
from langneurons.recording import record

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


def _to_cuda(loaded, dtype=torch.float32):
    return wrap_model(loaded.model.to("cuda", dtype), loaded.tokenizer, loaded.name)


def test_dense_recording_on_cuda_equals_cpu(tmp_path):
    cpu = record(planted_model(GROUPS, num_layers=2), corpus(), tmp_path / "cpu", settings(), progress=False)
    gpu = record(_to_cuda(planted_model(GROUPS, num_layers=2)), corpus(), tmp_path / "gpu", settings(), progress=False)
    assert torch.equal(cpu.count, gpu.count) and torch.equal(cpu.n_tokens, gpu.n_tokens)
    assert torch.allclose(cpu.sum, gpu.sum, rtol=1e-5, atol=1e-5)


def test_planted_moe_on_cuda_equals_the_truth(tmp_path):
    stats = record(_to_cuda(planted_moe(ROUTES, MOE_GROUPS)), corpus(), tmp_path / "run", settings(), progress=False)
    for k, texts in enumerate([AA, BB]):
        count, routed = planted_truth(texts)
        for layer in range(2):
            assert torch.equal(stats.count[k, layer], count)
            assert torch.equal(stats.extra["routed_tokens"][k, layer], routed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_moe_recording_on_cuda_is_bit_identical_to_the_bare_model(family, dtype):
    tok = word_tokenizer()
    enc = tok(["a1 a2 s3 b4 s6", "b1 s2 a7"], return_tensors="pt", padding=True).to("cuda")
    bare = tiny_moe(family).to("cuda", dtype)
    with torch.no_grad():
        want = bare(**enc).logits
    loaded = wrap_model(tiny_moe(family).to("cuda", dtype), tok, family)
    handles = loaded.adapter.hook_blocks("act", lambda layer, x, rows: x.clone())
    with torch.no_grad():
        got = loaded.model(**enc).logits
    for h in handles:
        h.remove()
    assert torch.equal(got, want), family


@pytest.mark.parametrize("family", FAMILIES)
def test_deactivation_on_cuda_matches_cpu(family):
    tok = word_tokenizer()
    texts = [" ".join(AA[0].split()[:6]), " ".join(BB[0].split()[:6])]
    out = {}
    for device in ("cpu", "cuda"):
        loaded = tiny_model(family)
        if device == "cuda":
            loaded = _to_cuda(loaded)
        mask = torch.zeros(loaded.adapter.num_layers, loaded.adapter.intermediate_size, dtype=torch.bool)
        mask[0, :8] = mask[-1, 3] = True
        enc = tok(texts, return_tensors="pt", padding=True).to(device)
        with torch.no_grad():
            base = loaded.model(**enc).logits.cpu()
            with intervene(loaded, deactivate(mask, 0.0)):
                out[device] = loaded.model(**enc).logits.cpu()
        assert not torch.allclose(base, out[device], atol=1e-4), (family, device)  # the edit took effect
    assert torch.allclose(out["cpu"], out["cuda"], atol=1e-4), family


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("family", ["llama", "gemma3_text", "opt", "moe:qwen2_moe", "moe:mixtral"])
def test_packed_rows_on_cuda_equal_each_condition_alone(family, dtype):
    from test_packing import conditions, logits
    from tiny_moe import tiny_moe_loaded

    from langneurons.intervention import on_rows

    loaded = tiny_moe_loaded(family[4:]) if family.startswith("moe:") else tiny_model(family)
    loaded = _to_cuda(loaded, dtype)
    one, two = conditions(loaded)
    packed = logits(loaded, on_rows(one, 0, 1) + on_rows(two, 1, 4))
    alone = torch.cat([logits(loaded, one)[:1], logits(loaded, two)[1:]])
    # dense rows: bit for bit; MoE expert blocks change size with the other rows' routing (rounding only)
    tol = 0.0 if not loaded.adapter.is_moe else (1e-5 if dtype == torch.float32 else 2e-2)
    assert torch.allclose(packed.float(), alone.float(), rtol=0, atol=tol), family


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_float32_accumulation_on_cuda_stays_within_the_bound(dtype):
    """Issue 25: the per-batch float32 sums (eager and fused) against float64 on the same CUDA tensors."""
    from langneurons.recording.accumulate import float32_bound
    from langneurons.recording.counter import batch_statistics, compiled_statistics

    x = (torch.randn(4096, 257, device="cuda", generator=torch.Generator("cuda").manual_seed(0)) * 3).to(dtype)
    keep = torch.arange(4096, device="cuda") % 5 != 2
    rows = keep.nonzero().squeeze(1)
    ref = x[rows].double()
    for count, total, total_sq in (batch_statistics(x, rows), compiled_statistics()(x, keep)):
        assert torch.equal(count.cpu(), (ref > 0).sum(0).cpu())
        n = ref.shape[0]
        assert bool(((total - ref.sum(0)).abs() <= float32_bound(n) * ref.abs().sum(0)).all())
        assert bool(((total_sq - (ref * ref).sum(0)).abs() <= float32_bound(n + 1) * (ref * ref).sum(0)).all())


def test_record_compiles_by_default_on_cuda(tmp_path):
    stats = record(_to_cuda(planted_model(GROUPS, num_layers=2)), corpus(), tmp_path / "g", settings(), progress=False)
    assert stats.manifest["counting_update"].startswith(("fused", "eager after the fused one failed"))
