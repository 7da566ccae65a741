"""Bad input row by row through the real CLI: one-line error, exit 2, no traceback, nothing written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_distributed import make_inputs, run_env
from tiny import COMMON, tiny_model

from langneurons.formats.stats import MANIFEST_FILE, STATS_FILE
from langneurons.recording import RecordSettings, record


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad")
    model, corpus = make_inputs(root, sentences=6)
    (root / "empty_corpus").mkdir()
    (root / "empty_corpus" / "aa.txt").write_text("\n  \n")
    (root / "no_txt").mkdir()
    (root / "not_a_model").mkdir()
    (root / "not_a_model" / "weights.bin").write_bytes(b"\0" * 64)
    (root / "fake_config").mkdir()
    (root / "fake_config" / "config.json").write_text(json.dumps({"model_type": "no_such_family"}))
    _save_mamba(root / "mamba", model)
    # A finished stats run, then broken copies of it.
    loaded = tiny_model("llama")
    from langneurons.data import load_corpus

    record(loaded, load_corpus(corpus), root / "stats_ok", RecordSettings(batch_size=4, max_length=32),
           progress=False)  # fmt: skip
    shutil.copytree(root / "stats_ok", root / "stats_truncated")
    blob = (root / "stats_truncated" / STATS_FILE).read_bytes()
    (root / "stats_truncated" / STATS_FILE).write_bytes(blob[: len(blob) // 2])
    shutil.copytree(root / "stats_ok", root / "stats_garbage")
    (root / "stats_garbage" / STATS_FILE).write_bytes(b"this is not safetensors at all" * 10)
    shutil.copytree(root / "stats_ok", root / "stats_badjson")
    (root / "stats_badjson" / MANIFEST_FILE).write_text("{not json")
    _other_model_neurons(root / "other.json")
    return {"root": str(root), "model": model, "corpus": corpus}


def _save_mamba(path, llama_dir: str) -> None:
    """A causal LM of a family without an adapter (Mamba: no MLP neurons)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.for_model("mamba", **COMMON, hidden_size=16, num_hidden_layers=2, state_size=4)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(llama_dir).save_pretrained(path)


def _other_model_neurons(path) -> None:
    try:
        from langneurons.formats.neuronset import NeuronSet
    except ImportError:
        return
    layers = 7
    NeuronSet(languages=["aa", "bb"], num_layers=layers, intermediate_size=100,
              neurons={"aa": [[1]] * layers, "bb": [[2]] * layers}, selected=[[1, 2]] * layers,
              method="lape", site="act", model="some-other-model").save(path)  # fmt: skip


REC = ["record", "--model", "{model}", "--corpus", "{corpus}", "--out", "{out}", "--max-length", "32"]
ROWS = {
    "missing corpus": (
        ["record", "--model", "{model}", "--corpus", "{root}/nope", "--out", "{out}"],
        "does not exist",
    ),
    "empty corpus": (
        ["record", "--model", "{model}", "--corpus", "{root}/empty_corpus", "--out", "{out}"],
        "empty",
    ),
    "corpus folder without txt": (
        ["record", "--model", "{model}", "--corpus", "{root}/no_txt", "--out", "{out}"],
        "no <lang>.txt",
    ),
    "unknown language (ntrex)": (
        ["record", "--model", "{model}", "--corpus", "ntrex", "--languages", "xx", "--out", "{out}"],
        "unknown language",
    ),
    "unknown language (folder)": ([*REC, "--languages", "aa,zz"], "no text for zz"),
    "model path not a model": (
        ["record", "--model", "{root}/not_a_model", "--corpus", "{corpus}", "--out", "{out}"],
        "not a model",
    ),
    "model path is a file": (
        ["record", "--model", "{root}/not_a_model/weights.bin", "--corpus", "{corpus}", "--out", "{out}"],
        "model",
    ),
    "fake config": (
        ["record", "--model", "{root}/fake_config", "--corpus", "{corpus}", "--out", "{out}"],
        "cannot load model",
    ),
    "unsupported architecture": (
        ["record", "--model", "{root}/mamba", "--corpus", "{corpus}", "--out", "{out}"],
        "mamba",
    ),
    "sentences 0": ([*REC, "--sentences", "0"], "--sentences"),
    "model path that does not exist": (
        ["record", "--model", "./no-such-model", "--corpus", "{corpus}", "--out", "{out}"],
        "does not exist",
    ),
    "hub id not in the cache, offline": (
        ["record", "--model", "nobody-ux/no-such-model", "--corpus", "{corpus}", "--out", "{out}"],
        "HF_HUB_OFFLINE",
    ),
    "identify onto an existing file": (
        ["identify", "{root}/stats_ok", "--method", "lape", "--out", "{root}/other.json"],
        "--overwrite",
    ),
    "ppl sentences 0": (
        ["ppl", "--neurons", "{root}/other.json", "--model", "{model}", "--corpus", "{corpus}",
         "--sentences", "0", "--out", "{out}/ppl.json"],
        "--sentences",
    ),
    "tokens -1": ([*REC, "--tokens", "-1"], "--tokens"),
    "batch size 0": ([*REC, "--batch-size", "0"], "--batch-size"),
    "chunk batches 0": ([*REC, "--chunk-batches", "0"], "--chunk-batches"),
    "checkpoint minutes 0": ([*REC, "--checkpoint-minutes", "0"], "--checkpoint"),
    "max length 0": ([*REC[:-2], "--max-length", "0"], "--max-length"),
    "unknown site": ([*REC, "--site", "mlp_out"], "site"),
    "unknown dtype": ([*REC, "--dtype", "float8"], "dtype"),
    "cuda without cuda": ([*REC, "--device", "cuda:3"], "CUDA"),
    "merge truncated stats": (
        ["merge", "{root}/stats_ok", "{root}/stats_truncated", "--out", "{out}"],
        "truncated or corrupt",
    ),
    "merge garbage stats": (["merge", "{root}/stats_garbage", "--out", "{out}"], "corrupt"),
    "merge bad manifest": (["merge", "{root}/stats_ok", "{root}/stats_badjson", "--out", "{out}"], "JSON"),
    "merge not a run": (["merge", "{root}/no_txt", "--out", "{out}"], "not a run directory"),
    "identify truncated stats": (
        ["identify", "{root}/stats_truncated", "--method", "lape", "--out", "{out}/set.json"],
        "truncated or corrupt",
    ),
    "ppl neuron set of another model": (
        [
            "ppl",
            "--neurons",
            "{root}/other.json",
            "--model",
            "{model}",
            "--corpus",
            "{corpus}",
            "--out",
            "{out}/ppl.json",
            "--no-controls",
        ],
        "layer",
    ),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_bad_input_gives_one_line_error(row, files, tmp_path):
    args, expected = ROWS[row]
    if row.startswith("ppl") and not (Path(files["root"]) / "other.json").exists():
        pytest.skip("NeuronSet (formats/neuronset.py) not available yet")
    out = tmp_path / "out"
    argv = [a.format(out=out, **files) for a in args]
    proc = subprocess.run([sys.executable, "-m", "langneurons", *argv], capture_output=True, text=True,
                          env=run_env(), timeout=300)  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, (row, proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(errors) == 1 and proc.stderr.rstrip().endswith(errors[0]), proc.stderr[-2000:]
    assert expected.lower() in errors[0].lower(), (row, errors[0])
    written = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert written == [], (row, written)
