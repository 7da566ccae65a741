"""Conformance with the authors' released files (README "Correctness", docs/methods.md §3–4).

The files are found at ``$LANGNEURONS_REFERENCE`` or ``<repo>/../shared/reference``; tests skip where
they are absent.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.stats import Stats
from langneurons.formats.tang import export_tang, import_tang
from langneurons.formats.zhang import ZHANG_LANGUAGES, convert_zhang2025
from langneurons.identification import identify

REFERENCE = Path(
    os.environ.get("LANGNEURONS_REFERENCE") or Path(__file__).resolve().parents[2] / "shared" / "reference"
)
TANG = REFERENCE / "tang2024-lape"
ZHANG = REFERENCE / "zhang2025-mistral-mgsm"
TANG7 = ["en", "zh", "fr", "es", "vi", "id", "ja"]
TANG6 = TANG7[:6]
# Real MLP intermediate sizes of the models (the files only give a lower bound).
TANG_FILES = {
    "LLaMA-2-7B": (TANG7, 11008),
    "LLaMA-2-13B": (TANG7, 13824),
    "LLaMA-2-70B": (TANG6, 28672),
    "BLOOM-7B": (TANG6, 16384),
    "Mistral-7B": (TANG6, 14336),
    "OPT-6.7B": (TANG6, 16384),
    "Phi-2-2.7B": (TANG6, 10240),
}
ZHANG_LAMBDA = 0.109375


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference release not found at {path} (set LANGNEURONS_REFERENCE)")
    return path


def released_zhang_mask() -> list[list[torch.Tensor]]:
    masks = sorted(need(ZHANG).glob("mask.Mistral-*"))
    if not masks:
        pytest.skip(f"no mask.Mistral-* in {ZHANG}")
    return torch.load(masks[0], weights_only=True)


def mask_triples(mask: list[list[torch.Tensor]]) -> set[tuple[int, int, int]]:
    return {(k, layer, int(j)) for k, layers in enumerate(mask) for layer, t in enumerate(layers) for j in t}


def set_triples(ns: NeuronSet) -> set[tuple[int, int, int]]:
    return {
        (k, layer, j)
        for k, lang in enumerate(ns.languages)
        for layer, idx in enumerate(ns.neurons[lang])
        for j in idx
    }


@pytest.fixture(scope="module")
def zhang_stats() -> Stats:
    return convert_zhang2025(need(ZHANG / "activations"), ZHANG_LANGUAGES)


# ---- Zhang et al. 2025: entropy − λ·max ----------------------------------------------------------------
def test_entropy_lambda_rebuilds_the_released_mask(zhang_stats):
    released = mask_triples(released_zhang_mask())
    ns = identify(zhang_stats, "entropy-lambda", lam=ZHANG_LAMBDA, top_rate=0.01)
    ours = set_triples(ns)
    assert len(released) == 6307
    assert ours == released, (
        f"{len(ours & released)} of {len(released)} matched, {len(ours - released)} extra"
    )
    assert ns.params["n_selected"] == round(0.01 * 32 * 14336)


def naive_autosweep(stats: Stats) -> float:
    """AutoSweep written plainly from docs/methods.md §4 ([L, F, K] layout, a full stable sort per λ)."""
    k = stats.count.shape[0]
    count = stats.count.permute(1, 2, 0).to(torch.float64).clamp(min=0)  # [L, F, K]
    p = count / stats.n_tokens.clamp(min=1).to(torch.float64)
    s = p.sum(-1, keepdim=True)
    normed = torch.where(s > 0, p / s, torch.full_like(p, 1.0 / k))
    q = normed.clamp(min=1e-12)
    q = q / q.sum(-1, keepdim=True)
    hn = -(q * torch.log(q + 1e-30)).sum(-1) / math.log(k)
    peak = p.max(-1).values
    norm = sum(1.0 / i for i in range(1, k + 1)) / k
    bar = p.flatten().kthvalue(round(p.numel() * 0.95)).values
    n_select = round(hn.numel() * 0.01)
    everywhere = ((p > bar).sum(-1) == k).flatten()

    def ok(lam: float) -> bool:
        score = (hn - peak * lam / norm).flatten()
        chosen = torch.sort(score, stable=True).indices[:n_select]
        return int(everywhere[chosen].sum()) == 0

    lo, hi, best, steps = 0.0, 0.2, None, 0
    if ok(lo):
        best = lo
    if ok(hi):
        return hi
    while hi - lo > 1e-3 and steps < 64:
        steps += 1
        mid = (lo + hi) / 2
        if ok(mid):
            best, lo = mid, mid
        else:
            hi = mid
    assert best is not None
    return best


def test_autosweep_chooses_the_lambda_of_a_plain_implementation(zhang_stats):
    ns = identify(zhang_stats, "entropy-lambda", lam="auto", top_rate=0.01)
    expected = naive_autosweep(zhang_stats)
    assert ns.params["lambda"] == expected
    assert ns.params["lambda"] == ZHANG_LAMBDA  # the λ of the released mask
    assert int(ns.language_counts().max()) < len(ZHANG_LANGUAGES)  # no neuron has all 10 languages
    assert ns.class_counts()["agnostic"] == 0
    assert set_triples(ns) == mask_triples(released_zhang_mask())


def test_released_zhang_mask_imports_like_our_set(zhang_stats, tmp_path):
    mask_path = sorted(need(ZHANG).glob("mask.Mistral-*"))[0]
    imported = import_tang(mask_path, list(ZHANG_LANGUAGES), intermediate_size=14336, method="entropy-lambda")
    ours = identify(zhang_stats, "entropy-lambda", lam=ZHANG_LAMBDA)
    assert imported.neurons == ours.neurons
    assert imported.model == ours.model == mask_path.name.removeprefix("mask.")


# ---- Tang et al. 2024: LAPE masks ----------------------------------------------------------------------
@pytest.mark.parametrize("model", sorted(TANG_FILES))
def test_tang_file_imports_selects_one_percent_and_round_trips(model, tmp_path):
    path = need(TANG / f"{model}.neuron.pth")
    languages, size = TANG_FILES[model]
    original = torch.load(path, weights_only=True)
    ns = import_tang(path, languages, intermediate_size=size)
    assert ns.model == model and ns.num_layers == len(original[0])
    selected = sum(len(layer) for layer in ns.selected)
    assert selected == ns.n_distinct() == round(0.01 * ns.num_layers * size)
    inferred = import_tang(path, languages)
    assert inferred.params["intermediate_size_inferred"] is True
    assert inferred.intermediate_size <= size and inferred.neurons == ns.neurons
    ns.save(tmp_path / "set.json")
    export_tang(NeuronSet.load(tmp_path / "set.json"), tmp_path / "back.pth")
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert type(back) is list and len(back) == len(original)
    for lang_orig, lang_back in zip(original, back, strict=True):
        assert type(lang_back) is list and len(lang_back) == len(lang_orig)
        for a, b in zip(lang_orig, lang_back, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def test_llama2_7b_reference_numbers():
    path = need(TANG / "LLaMA-2-7B.neuron.pth")
    ns = import_tang(path, TANG7, intermediate_size=11008)
    counts = {lang: ns.count(lang) for lang in TANG7}
    assert counts == {"en": 95, "zh": 583, "fr": 1022, "es": 838, "vi": 836, "id": 1068, "ja": 582}
    assert ns.n_distinct() == 3523 == round(0.01 * 32 * 11008)
    assert ns.n_pairs() == 5024
    per_layer = [sum(ns.counts_per_layer(lang)[layer] for lang in TANG7) for layer in range(32)]
    shares = [sum(per_layer[:8]) / 5024, sum(per_layer[8:24]) / 5024, sum(per_layer[24:]) / 5024]
    assert [round(x, 2) for x in shares] == [0.28, 0.32, 0.40]


# ---- the same through the command line -------------------------------------------------------------------
@pytest.fixture
def cli():
    from typer.testing import CliRunner

    from langneurons.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_cli_convert_identify_matches_the_released_mask(tmp_path, cli):
    run = tmp_path / "run"
    result = cli("convert", "zhang2025", need(ZHANG / "activations"), "--out", run)
    assert result.exit_code == 0, result.output
    out = tmp_path / "set.json"
    result = cli("identify", run, "--method", "entropy-lambda", "--lambda", str(ZHANG_LAMBDA), "--out", out)
    assert result.exit_code == 0, result.output
    ns = NeuronSet.load(out)
    assert set_triples(ns) == mask_triples(released_zhang_mask())
    assert json.loads(out.read_text())["source"]["corpus"] == "zhang2025-mgsm-release"
    shown = cli("show", out)
    assert shown.exit_code == 0 and "Jaccard" in shown.output


def test_cli_import_export_tang_round_trip(tmp_path, cli):
    path = need(TANG / "LLaMA-2-7B.neuron.pth")
    out = tmp_path / "llama.json"
    result = cli("import", "tang", path, "--languages", ",".join(TANG7), "--out", out)
    assert result.exit_code == 0, result.output
    assert "inferred" in result.output
    pth = tmp_path / "llama.pth"
    assert cli("export", out, "--format", "tang", "--out", pth).exit_code == 0
    for a_lang, b_lang in zip(
        torch.load(path, weights_only=True), torch.load(pth, weights_only=True), strict=True
    ):
        assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(a_lang, b_lang, strict=True))
    wrong = cli("import", "tang", path, "--languages", "en,zh", "--out", tmp_path / "x.json")
    assert wrong.exit_code == 2 and "Traceback" not in wrong.output
    assert "holds 7 languages but 2 were given" in wrong.output
