"""Issue 25: sums taken per batch in float32 and folded into float64 stay within the documented bound of the
float64 reference (γ_n · Σ|x| for sums, γ_(n+1) · Σx² for sums of squares), and counts stay bit-identical."""

from __future__ import annotations

import pytest
import torch

from langneurons.recording.accumulate import float32_bound
from langneurons.recording.counter import batch_statistics, masked_statistics


def reference(x: torch.Tensor, rows: torch.Tensor | None):
    xs = (x if rows is None else x[rows]).to(torch.float64)
    return (xs > 0).sum(0), xs.sum(0), (xs * xs).sum(0), xs.abs().sum(0), xs.shape[0]


def inputs():
    """Random activations of three dtypes and sizes, and planted ones built to cancel (large ± values
    summing to almost nothing) — the worst case for a low-precision sum."""
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for n, f in ((7, 5), (300, 64), (4096, 33)):
            yield (torch.randn(n, f, generator=gen) * 3).to(dtype)
    big = torch.tensor([1e4, -1e4, 1e-3, 7.5, -7.5, 3e3, -3e3 + 1e-2] * 64, dtype=torch.float32)
    yield torch.stack([big, big.flip(0), big * 0.5], dim=1)


@pytest.mark.parametrize("masked", [False, True])
def test_float32_sums_stay_within_the_documented_bound(masked):
    for x in inputs():
        n = x.shape[0]
        keep = torch.arange(n) % 3 != 1  # some padding rows left out
        rows = keep.nonzero().squeeze(1)
        count, total, total_sq = masked_statistics(x, keep) if masked else batch_statistics(x, rows)
        ref_count, ref_sum, ref_sq, ref_abs, m = reference(x, rows)
        assert torch.equal(count, ref_count)  # counts exact
        assert total.dtype == torch.float64 and total_sq.dtype == torch.float64
        assert bool(((total - ref_sum).abs() <= float32_bound(m) * ref_abs + 1e-300).all()), x.dtype
        assert bool(((total_sq - ref_sq).abs() <= float32_bound(m + 1) * ref_sq + 1e-300).all()), x.dtype


def test_float64_activations_keep_float64():
    x = torch.randn(50, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _, total, total_sq = batch_statistics(x, None)
    assert torch.allclose(total, x.sum(0), rtol=0, atol=1e-12)
    assert torch.allclose(total_sq, (x * x).sum(0), rtol=0, atol=1e-12)


def test_the_bound_is_tight_enough_to_matter():
    # a float32 sum of one batch (8 × 512 tokens) is within 2.4e-4 of Σ|x|: far below any reported digit
    assert float32_bound(4096) == pytest.approx(4096 * 2.0**-24, rel=1e-3)


def test_a_failing_fused_update_falls_back_once_and_says_so(tmp_path, monkeypatch):
    """record --compile on a machine whose compiler fails: one warning, the same counts as eager, and the
    manifest says how the run was counted."""
    import warnings

    from tiny import WORDS, tiny_model

    import langneurons.recording.counter as counter_module
    from langneurons.data import Corpus
    from langneurons.recording import RecordSettings, record

    def corpus():
        texts = {lang: [(str(i), " ".join(WORDS[lang][i : i + 4])) for i in range(4)] for lang in ("aa", "bb")}
        return Corpus("test", texts)

    def broken(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C compiler here\nmore lines")

        return run

    monkeypatch.setattr(counter_module.torch, "compile", broken)
    loaded = tiny_model("llama")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = RecordSettings(compile=True, batch_size=2, max_length=64)
        fused = record(loaded, corpus(), tmp_path / "f", settings, progress=False)
    messages = [str(w.message) for w in caught if "fused counting update failed" in str(w.message)]
    assert len(messages) == 1 and "RuntimeError: no C compiler here" in messages[0]
    settings = RecordSettings(compile=False, batch_size=2, max_length=64)
    eager = record(loaded, corpus(), tmp_path / "e", settings, progress=False)
    assert torch.equal(fused.count, eager.count)
    assert torch.allclose(fused.sum, eager.sum, rtol=1e-5, atol=1e-5)
    assert fused.manifest["counting_update"].startswith("eager after the fused one failed (RuntimeError")
    assert eager.manifest["counting_update"] == "eager"
