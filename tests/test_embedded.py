"""End to end on the real embedded Gemma-3-270M, through the CLI as a user runs it (slow: minutes)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.stats import load_stats

LANGS = ["en", "fr", "de", "ru", "zh", "ja"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "langneurons", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_record_and_identify_on_embedded_gemma(tmp_path):
    run = tmp_path / "gemma"
    done = cli("record", "--model", "embedded", "--languages", ",".join(LANGS), "--sentences", "40",
               "--batch-size", "4", "--out", str(run))
    assert done.returncode == 0, done.stderr
    stats = load_stats(run)
    m = stats.manifest
    assert m["languages"] == LANGS and m["num_layers"] == 18 and m["intermediate_size"] == 2048
    assert m["family"] == "gemma3_text" and m["site"] == "act" and m["sentences"]["zh"] == 40
    assert (stats.n_tokens > 100).all()
    # a GELU neuron fires on some tokens and not others: probabilities are neither all 0 nor all 1
    p = stats.probability()
    assert 0.05 < p.mean() < 0.95 and stats.count.max() <= stats.n_tokens.max()

    lape = run / "lape.json"
    done = cli("identify", str(run), "--method", "lape", "--out", str(lape))
    assert done.returncode == 0, done.stderr
    neurons = NeuronSet.load(lape)
    assert neurons.num_layers == 18 and neurons.intermediate_size == 2048
    assert int(neurons.selected_mask().sum()) == round(0.01 * 18 * 2048)  # top_rate 1 %
    assert 0 < neurons.n_distinct() <= round(0.01 * 18 * 2048)
    assert all(neurons.count(lang) > 0 for lang in LANGS)
    # scripts of their own (zh, ja, ru) get language-specific neurons
    specific = neurons.class_counts()["specific"]
    assert specific > 0

    # The causal signature (docs/methods.md, "What a correct pipeline shows"): switching off a language's
    # neurons hurts its own held-out text far more than a matched random set does.
    ppl = run / "ppl.json"
    done = cli("ppl", "--model", "embedded", "--neurons", str(lape), "--languages", "ru,zh,ja",
               "--sentences", "4", "--out", str(ppl))  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(ppl.read_text())["summary"]
    for lang in ("ru", "zh", "ja"):  # three scripts of their own
        own, control = summary[lang]["self"], summary[lang]["random_self"]
        assert own > 0.5 and own > 5 * max(control, 0.02), (lang, own, control)
        assert own > summary[lang]["others_median"], (lang, summary[lang])

    again = cli("record", "--model", "embedded", "--languages", "en", "--out", str(run))
    assert again.returncode != 0 and "holds a finished run of other inputs: languages" in again.stderr
    assert "Traceback" not in again.stderr
