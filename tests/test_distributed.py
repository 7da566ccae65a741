"""`torchrun --nproc-per-node 2 -m langneurons record` (gloo on CPU) equals one process bit for bit."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
import torch
from tiny import WORDS, tiny_model

from langneurons.formats.stats import load_stats

NAMES = ("count", "sum", "sum_sq", "n_tokens")


def make_inputs(root, sentences: int = 60) -> tuple[str, str]:
    """A tiny LLaMA saved like a hub model, and a <lang>.txt corpus folder with three languages."""
    loaded = tiny_model("llama")
    loaded.model.save_pretrained(root / "model")
    loaded.tokenizer.save_pretrained(root / "model")
    rng = random.Random(1)
    (root / "corpus").mkdir()
    for lang, words in (("aa", WORDS["aa"]), ("bb", WORDS["bb"]), ("cc", WORDS["shared"])):
        lines = [" ".join(rng.choices(words + WORDS["shared"], k=rng.randint(1, 25))) for _ in range(sentences)]
        (root / "corpus" / f"{lang}.txt").write_text("\n".join(lines) + "\n")
    return str(root / "model"), str(root / "corpus")


def run_env() -> dict[str, str]:
    # One intra-op thread in every process: float GEMMs are only reproducible at equal thread counts
    # (torchrun sets OMP_NUM_THREADS=1 itself).
    return os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


@pytest.mark.parametrize("nproc", [2])
def test_torchrun_equals_one_process_bit_for_bit(tmp_path, nproc):
    model, corpus = make_inputs(tmp_path)
    # 3 languages × 60 sentences / (4 × 2) = 24 units: an odd last round per language, ranks idle at the end.
    args = ["record", "--model", model, "--corpus", corpus, "--batch-size", "4", "--chunk-batches", "2",
            "--max-length", "32", "--sentences", "59", "--device", "cpu"]  # fmt: skip
    one = subprocess.run([sys.executable, "-m", "langneurons", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=run_env(), timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]
    many = subprocess.run([*launcher, "-m", "langneurons", *args, "--out", str(tmp_path / "many")],
                          capture_output=True, text=True, env=run_env(), timeout=300)  # fmt: skip
    assert many.returncode == 0, many.stderr
    a, b = load_stats(tmp_path / "one"), load_stats(tmp_path / "many")
    for name in NAMES:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.n_tokens.tolist() == [b.n_tokens[k].item() for k in range(3)] and a.n_tokens.min() > 0
    assert many.stderr.count("wrote ") == 1  # only rank 0 reports
    assert not (tmp_path / "many" / "checkpoint.safetensors").exists()
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["manifest.json", "stats.safetensors"]


def test_packing_counts_every_token_exactly_once(tmp_path):
    """--packing: rows are full, nothing is truncated, BOS/EOS separators are not counted."""
    from test_record import GROUPS, corpus
    from tiny import planted_model

    from langneurons.recording import RecordSettings, record

    loaded = planted_model(GROUPS, num_layers=1)
    plain = record(loaded, corpus(), tmp_path / "a", RecordSettings(batch_size=2, max_length=64), progress=False)
    packed = record(loaded, corpus(), tmp_path / "b", RecordSettings(batch_size=2, max_length=4, packing=True),
                    progress=False)  # fmt: skip
    # The planted neurons fire on the token itself whatever its context: counts must agree exactly.
    assert torch.equal(plain.count, packed.count) and torch.equal(plain.n_tokens, packed.n_tokens)
    assert packed.manifest["settings"]["packing"] is True


def test_more_processes_than_gpus_is_a_one_line_error(monkeypatch):
    """torchrun --nproc-per-node 2 on a 1-GPU node: rank 1 says what to do instead of a CUDA error."""
    from langneurons.errors import LangneuronsError
    from langneurons.recording.distributed import local_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert local_device() == "cuda:0"
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(LangneuronsError, match="has 1 GPU.*--nproc-per-node.*--device cpu"):
        local_device()
