"""examples/notebook.py (the notebook API's worked example) runs start to finish on a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_distributed import make_inputs, run_env

EXAMPLE = Path(__file__).parents[1] / "examples" / "notebook.py"


def test_notebook_example_runs(tmp_path):
    model, corpus = make_inputs(tmp_path, sentences=12)
    run = tmp_path / "run"
    env = run_env() | {
        "LANGNEURONS_EXAMPLE_MODEL": model,
        "LANGNEURONS_EXAMPLE_CORPUS": corpus,
        "LANGNEURONS_EXAMPLE_LANGUAGES": "aa,bb,cc",
        "LANGNEURONS_EXAMPLE_SENTENCES": "12",
        "LANGNEURONS_EXAMPLE_RUN": str(run),
    }
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    # every object printed as one short line, never a tensor
    assert "LoadedModel('" in out and "Corpus('" in out and "Stats(3 languages aa,bb,cc" in out
    assert "NeuronSet(lape, 3 languages" in out and "Result(ppl:" in out and "Result(steer from aa" in out
    assert "tensor(" not in out and max(len(line) for line in out.splitlines()) < 300
    names = {p.name for p in run.iterdir()}
    assert {"stats.safetensors", "manifest.json", "lape.json", "ppl-lape.json", "steer-lape.json",
            "pooled.safetensors", "similarity.json", "report.html"} <= names  # fmt: skip
    ns = json.loads((run / "lape.json").read_text())
    assert ns["source"]["run"] == str(run.resolve())  # the set knows its run
