"""`torchrun --nproc-per-node 2 -m langneurons attribute` (gloo on CPU) equals one process: each language's
batches are shared out and the float64 sums added across ranks (equal up to the order of float64 additions),
the validation's exact ablations are shared out by unit (the same numbers)."""

from __future__ import annotations

import subprocess
import sys

import torch
from test_distributed import make_inputs, run_env

from langneurons.formats.attribution import load_attribution


def test_torchrun_attribute_equals_one_process(tmp_path):
    model, corpus = make_inputs(tmp_path, sentences=21)
    # 3 languages × 21 sentences in batches of 4: 6 batches each, the last one short; rank 1 gets 3 of them
    args = ["attribute", "--model", model, "--corpus", corpus, "--units", "neurons,heads", "--batch-size", "4",
            "--max-length", "32", "--validate", "4", "--device", "cpu"]  # fmt: skip
    one = subprocess.run([sys.executable, "-m", "langneurons", *args, "-o", str(tmp_path / "one")],
                         capture_output=True, text=True, env=run_env(), timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    many = subprocess.run([*launcher, "-m", "langneurons", *args, "-o", str(tmp_path / "many")],
                          capture_output=True, text=True, env=run_env(), timeout=300)  # fmt: skip
    assert many.returncode == 0, many.stderr
    a, b = load_attribution(tmp_path / "one"), load_attribution(tmp_path / "many")
    assert a.languages == b.languages == ["aa", "bb", "cc"] and set(a.tensors) == set(b.tensors)
    for name, value in a.tensors.items():  # float32 files of float64 sums added in another order
        torch.testing.assert_close(b.tensors[name], value, rtol=1e-5, atol=1e-9, msg=name)
        assert value.abs().max() > 0, name
    assert a.meta["tokens"] == b.meta["tokens"]
    assert all(abs(a.meta["nll"][k] - b.meta["nll"][k]) < 1e-12 for k in a.languages)
    assert b.meta["provenance"]["processes"] == 2 and a.meta["provenance"]["processes"] == 1
    va, vb = a.meta["validation"]["per_unit"], b.meta["validation"]["per_unit"]
    for unit in ("neurons", "heads"):
        assert va[unit]["units"] == vb[unit]["units"]
        torch.testing.assert_close(torch.tensor(vb[unit]["zero"]["exact"]), torch.tensor(va[unit]["zero"]["exact"]))
    assert many.stderr.count("wrote ") == 1  # only rank 0 reports
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["attribution.json", "attribution.safetensors"]
