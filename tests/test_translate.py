"""Translation: chrF equals sacrebleu's and a hand computation; prompts never show a test line; the
intervals bracket the score; `translate` runs every condition on a tiny model; CLI input errors."""

from __future__ import annotations

from collections import Counter

import pytest
import sacrebleu
import torch
from tiny import tiny_model
from typer.testing import CliRunner

from langneurons.cli import app
from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.evaluation.translate import (
    TranslateSettings,
    bootstrap_chrf,
    build_prompts,
    chrf,
    parse_pairs,
    translate,
)
from langneurons.intervention import deactivate

HYPS = ["the cat sat on the mat", "a dog barks", "hello"]
REFS = ["the cat is on the mat", "the dog barked", "hello world"]


def hand_chrf(hyps, refs, order=6, beta=2.0):
    """chrF by hand: character n-grams (spaces removed) counted over the corpus, precision and recall
    averaged over the orders both sides have, then F_beta."""
    precisions, recalls = [], []
    for n in range(1, order + 1):
        hyp_total = ref_total = match = 0
        for h, r in zip(hyps, refs, strict=True):
            h, r = h.replace(" ", ""), r.replace(" ", "")
            hc = Counter(h[i : i + n] for i in range(len(h) - n + 1))
            rc = Counter(r[i : i + n] for i in range(len(r) - n + 1))
            hyp_total += sum(hc.values())
            ref_total += sum(rc.values())
            match += sum((hc & rc).values())
        if hyp_total and ref_total:
            precisions.append(match / hyp_total)
            recalls.append(match / ref_total)
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    return 100 * (1 + beta**2) * p * r / (beta**2 * p + r)


def test_chrf_equals_sacrebleu_and_a_hand_computation():
    assert chrf(HYPS, REFS) == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score, abs=1e-9)
    assert chrf(HYPS, REFS) == pytest.approx(hand_chrf(HYPS, REFS), abs=1e-9)
    assert chrf(REFS, REFS) == pytest.approx(100.0)


def test_bootstrap_brackets_the_score_and_the_paired_drop():
    worse = ["the", "dog", "x"]
    out = bootstrap_chrf(worse, REFS, HYPS, n=200, seed=0)
    assert out["chrf"] == pytest.approx(chrf(worse, REFS))
    assert out["drop"] == pytest.approx(chrf(HYPS, REFS) - chrf(worse, REFS))
    assert out["chrf_ci"][0] <= out["chrf"] <= out["chrf_ci"][1]
    assert out["drop_ci"][0] <= out["drop"] <= out["drop_ci"][1] and out["drop_ci"][0] > 0
    assert bootstrap_chrf(worse, REFS, HYPS, n=200, seed=0) == out  # seeded


def parallel(n=10) -> Corpus:
    en = [(str(i), f"a{i % 8} s{i % 8} a{(i + 1) % 8}" + " a0" * (i % 3)) for i in range(n)]
    fr = [(str(i), f"b{i % 8} s{i % 8} b{(i + 1) % 8}") for i in range(n)]
    return Corpus("par", {"en": en, "fr": fr})


def test_prompts_use_other_lines_as_shots():
    s = TranslateSettings(sentences=4, shots=2)
    prompts, sources, refs = build_prompts(parallel(), "en", "fr", s)
    assert len(prompts) == 4 and sources == [t for _, t in parallel().items["en"][:4]]
    for p, src in zip(prompts, sources, strict=True):
        assert p.endswith(f"English: {src}\nFrench:")
        head = p[: -len(f"English: {src}\nFrench:")]
        assert head.count("English:") == 2 and not any(f"English: {t}\n" in head for t in sources)
    with pytest.raises(LangneuronsError, match="parallel lines"):
        build_prompts(parallel(5), "en", "fr", TranslateSettings(sentences=4, shots=2))


def test_translate_runs_every_condition_on_a_tiny_model():
    loaded = tiny_model("llama")
    mask = deactivate(torch.ones(3, 48, dtype=torch.bool))
    s = TranslateSettings(sentences=3, shots=1, max_new_tokens=4, bootstrap=20, batch_size=2)
    out = translate(loaded, parallel(), [("en", "fr")], {"off:fr": [mask]}, s, progress=False)
    assert out["conditions"] == ["none", "off:fr"]
    assert set(out["scores"]["off:fr"]["en-fr"]) == {"chrf", "chrf_ci", "drop", "drop_ci"}
    assert len(out["hypotheses"]["off:fr"]["en-fr"]) == 3
    assert all("\n" not in h for h in out["hypotheses"]["none"]["en-fr"])
    again = translate(loaded, parallel(), [("en", "fr")], {"off:fr": [mask]}, s, progress=False)
    assert again["scores"] == out["scores"]


def test_translate_cli_input_errors(tmp_path):
    assert parse_pairs("en-fr, en-de") == [("en", "fr"), ("en", "de")]
    for bad in ("en", "en-en", "en-fr-de", ","):
        with pytest.raises(LangneuronsError):
            parse_pairs(bad)
    runner = CliRunner()
    result = runner.invoke(app, ["translate", "--pairs", "en-en", "--out", str(tmp_path / "t.json")])
    assert result.exit_code == 2 and "two different languages" in result.output
    result = runner.invoke(app, ["translate", "--pairs", "en-fr", "--sentences", "0", "-o", str(tmp_path / "t.json")])
    assert result.exit_code == 2
