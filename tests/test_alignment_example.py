"""examples/alignment.py (base vs LoRA-aligned, Zhang et al.'s workflow) runs end to end on a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_distributed import run_env
from tiny import tiny_model

EXAMPLE = Path(__file__).parents[1] / "examples" / "alignment.py"
pytest.importorskip("peft")


def test_alignment_example_tunes_saves_and_compares(tmp_path):
    loaded = tiny_model("llama")
    loaded.model.save_pretrained(tmp_path / "model")
    loaded.tokenizer.save_pretrained(tmp_path / "model")
    train = [{"lang": "aa", "prompt": "s1 s2", "response": " a1 a2 a3"},
             {"lang": "bb", "prompt": "s3", "response": " b1 b2"}]
    evaluation = [{"lang": lang, "prompt": f"s{i} s{i + 1}", "response": f" {lang[0]}{i} {lang[0]}{i + 2} s4"}
                  for lang in ("aa", "bb") for i in range(5)]  # fmt: skip
    for name, records in (("train", train), ("eval", evaluation)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out"
    cmd = [sys.executable, str(EXAMPLE), "--out", str(out), "--model", str(tmp_path / "model"), "--train", "aa",
           "--eval", "aa,bb", "--train-file", str(tmp_path / "train.jsonl"),
           "--eval-file", str(tmp_path / "eval.jsonl"), "--steps", "8", "--batch-size", "2", "--lr", "0.01",
           "--top-rate", "0.2"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss_last"] < summary["loss_first"]  # the LoRA learned something
    assert set(summary["per_language"]) == {"aa", "bb"} and summary["per_language"]["aa"]["in_fine_tuning"]
    assert (out / "adapter" / "adapter_config.json").exists()
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tmp_path / "model")
    # the adapter folder is a --model: base + merged LoRA, and it differs from the base
    import torch

    from langneurons.formats.stats import load_stats
    from langneurons.models.loading import load_model

    tuned = load_model(str(out / "adapter"), device="cpu", dtype="float32")
    assert "+ LoRA" in tuned.name
    base, aligned = load_stats(out / "base"), load_stats(out / "aligned")
    assert torch.equal(base.n_tokens, aligned.n_tokens) and not torch.equal(base.sum, aligned.sum)
    assert summary["class_transitions"] is not None
