"""`torchrun --nproc-per-node 2 -m langneurons ppl|steer|similarity` (gloo on CPU) writes exactly what one
process writes: the work is shared out across ranks and gathered on rank 0."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from test_distributed import make_inputs, run_env

from langneurons.data import load_corpus
from langneurons.formats.pooled import load_pooled
from langneurons.identification import identify
from langneurons.models.loading import load_model
from langneurons.recording import RecordSettings, record

LAUNCHER = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("disteval")
    model, corpus = make_inputs(root, sentences=10)
    loaded = load_model(model, device="cpu")
    record(loaded, load_corpus(corpus), root / "run", RecordSettings(batch_size=4, max_length=32), progress=False)
    from langneurons.formats.stats import load_stats

    ns = identify(load_stats(root / "run"), "lape", top_rate=0.2, filter_rate=0.5, bar_ratio=0.5)
    ns.save(root / "run" / "set.json")
    (root / "prompts.txt").write_text("a1 a2 s1\nb3 s2\na4\ns5 s6 a0\nb1\n")
    return {"root": root, "model": model, "corpus": corpus}


def run(args: list[str], launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = [*(launcher or [sys.executable]), "-m", "langneurons", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def both(args: list[str], out_one: str, out_many: str) -> tuple[subprocess.CompletedProcess, ...]:
    return run([*args, "--out", out_one]), run([*args, "--out", out_many], LAUNCHER)


def test_ppl_split_across_ranks_equals_one_process(inputs):
    root = inputs["root"]
    args = ["ppl", "--model", inputs["model"], "--neurons", str(root / "run" / "set.json"), "--corpus",
            inputs["corpus"], "--batch-size", "3", "--max-length", "32", "--device", "cpu"]  # fmt: skip
    one, many = both(args, str(root / "ppl1.json"), str(root / "ppl2.json"))
    a, b = (json.loads((root / name).read_text()) for name in ("ppl1.json", "ppl2.json"))
    assert a["ppl"] == b["ppl"] and a["tokens"] == b["tokens"] and a["interventions"] == b["interventions"]
    assert len(a["interventions"]) == 7 and b["provenance"]["processes"] == 2
    assert many.stderr.count("wrote ") == 1  # rank 0 alone writes and reports


def test_steer_split_across_ranks_equals_one_process(inputs):
    root = inputs["root"]
    args = ["steer", "--model", inputs["model"], "--neurons", str(root / "run" / "set.json"), "--from", "aa",
            "--to", "bb,cc", "--prompts", str(root / "prompts.txt"), "--max-new-tokens", "5", "--batch-size", "2",
            "--device", "cpu", "--dev-prompts", "2"]  # fmt: skip  (calibrated: the default without --strength)
    one, many = both(args, str(root / "steer1.json"), str(root / "steer2.json"))
    a, b = (json.loads((root / name).read_text()) for name in ("steer1.json", "steer2.json"))
    assert a["results"] == b["results"] and a["baseline_generations"] == b["baseline_generations"]
    cal_a, cal_b = ({k: v for k, v in x["calibration"].items() if k != "wall_seconds"} for x in (a, b))
    assert cal_a == cal_b and len(cal_a["curve"]["cc"]) == 8 and len(cal_a["test_prompts"]) == 3
    assert set(a["results"]) == {"bb", "cc"} and b["provenance"]["processes"] == 2
    assert many.stderr.count("wrote ") == 1


def test_similarity_split_across_ranks_equals_one_process(inputs):
    root = inputs["root"]
    args = ["similarity", "--model", inputs["model"], "--corpus", inputs["corpus"], "--batch-size", "3",
            "--max-length", "32", "--device", "cpu"]  # fmt: skip
    both(args, str(root / "sim1"), str(root / "sim2"))
    a, b = load_pooled(root / "sim1"), load_pooled(root / "sim2")
    assert torch.equal(a.pooled, b.pooled) and torch.equal(a.n_tokens, b.n_tokens) and a.ids == b.ids
    assert a.pooled.abs().sum() > 0 and b.manifest["processes"] == 2
    sa, sb = (json.loads((root / d / "similarity.json").read_text()) for d in ("sim1", "sim2"))
    assert sa["per_layer"] == sb["per_layer"] and sa["whole_model"] == sb["whole_model"]


def test_controls_with_p_values_split_across_ranks_equal_one_process(inputs):
    """`--controls R` (R >= 2): the null-draw cells are shared out too; rank 0 gathers the per-sentence NLLs."""
    root = inputs["root"]
    args = ["ppl", "--model", inputs["model"], "--neurons", str(root / "run" / "set.json"), "--corpus",
            inputs["corpus"], "--batch-size", "3", "--max-length", "32", "--device", "cpu",
            "--controls", "3"]  # fmt: skip
    both(args, str(root / "pplc1.json"), str(root / "pplc2.json"))
    a, b = (json.loads((root / name).read_text()) for name in ("pplc1.json", "pplc2.json"))
    assert a["ppl"] == b["ppl"] and a["significance"] == b["significance"]
    assert a["significance"]["per_language"] and b["provenance"]["processes"] == 2
    args = ["steer", "--model", inputs["model"], "--neurons", str(root / "run" / "set.json"), "--from", "aa",
            "--to", "bb", "--prompts", str(root / "prompts.txt"), "--max-new-tokens", "3", "--batch-size", "2",
            "--device", "cpu", "--controls", "2", "--strength", "1"]  # fmt: skip
    both(args, str(root / "steerc1.json"), str(root / "steerc2.json"))
    a, b = (json.loads((root / name).read_text()) for name in ("steerc1.json", "steerc2.json"))
    assert a["results"] == b["results"] and "significance" in next(iter(a["results"]["bb"]["strengths"].values()))
