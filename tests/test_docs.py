"""The documentation cannot rot: the site builds with ``mkdocs build --strict`` (the API reference comes from
the docstrings), and the adapter example of docs/adapters.md runs as written on a family langneurons does not
know."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import COMMON, word_tokenizer
from transformers import AutoConfig, AutoModelForCausalLM

import langneurons as ln
from langneurons.models import ADAPTERS

ROOT = Path(__file__).parents[1]


def test_mkdocs_site_builds_strict_with_api_reference(tmp_path):
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (site / "api" / "index.html").read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    # record's signature and its docstring, as mkdocstrings rendered them from src/
    assert 'id="langneurons.api.record"' in page
    assert re.search(r"record\(\s*model: LoadedModel,\s*corpus: Corpus,", text), "record's signature"
    assert "Count how each neuron fires on each language's text" in text
    for name in ("langneurons.formats.neuronset.NeuronSet", "langneurons.formats.stats.Stats",
                 "langneurons.recording.RecordSettings", "langneurons.evaluation.ppl.PPLSettings",
                 "langneurons.evaluation.steer.SteerSettings", "langneurons.models.base.Adapter",
                 "langneurons.models.register_adapter", "langneurons.formats.neuronset.NeuronSet.to_mask"):  # fmt: skip
        assert f'id="{name}"' in page, name
    assert (site / "adapters" / "index.html").is_file() and (site / "methods" / "index.html").is_file()


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_adapter_example_registers_an_unknown_family(tmp_path):
    block = next(b for b in python_blocks(ROOT / "docs" / "adapters.md") if "register_adapter" in b)
    sizes = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=128)
    config = AutoConfig.for_model("starcoder2", **COMMON, **sizes)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tokenizer = word_tokenizer()
    assert "starcoder2" not in ln.models.supported_model_types(), "starcoder2 is built in now: pick another family"
    with pytest.raises(ln.LangneuronsError) as info:
        ln.load_model(model, tokenizer)
    message = str(info.value)
    assert "\n" not in message and "'starcoder2'" in message and "register_adapter" in message
    assert "docs/adapters.md" in message
    before = list(ADAPTERS)
    namespace = {"model": model, "tokenizer": tokenizer}
    try:
        exec(compile(block, "docs/adapters.md", "exec"), namespace)
        lm = namespace["lm"]
        assert type(lm.adapter).__name__ == "Starcoder2Adapter" and lm.adapter.num_layers == 2
        assert lm.adapter.intermediate_size == 48
        (tmp_path / "corpus").mkdir()
        (tmp_path / "corpus" / "aa.txt").write_text("a1 a2 s1 a3\na4 s2 a5 a6 a7\n")
        (tmp_path / "corpus" / "bb.txt").write_text("b1 b2 s1 b3\nb4 s2 b5 b6 b7\n")
        stats = ln.record(lm, ln.load_corpus(str(tmp_path / "corpus")), progress=False)
        assert stats.count.shape[-2:] == (2, 48) and stats.n_tokens.min() > 0
        neurons = ln.identify(stats, "lape")
        with ln.intervene(lm, ln.deactivate(neurons, "aa")):  # the act hook of the new family edits
            batch = tokenizer(["a1 a2 a3"], return_tensors="pt")
            assert lm.model(input_ids=batch["input_ids"]).logits.shape[-1] == config.vocab_size
    finally:
        ADAPTERS[:] = before  # the registration is global: leave the other tests a pristine list
