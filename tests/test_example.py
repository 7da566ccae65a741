"""examples/notebook.py (the notebook API's worked example) runs start to finish on a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
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


NOTEBOOK = Path(__file__).parents[1] / "examples" / "notebook.ipynb"


def test_jupyter_notebook_runs(tmp_path):
    """examples/notebook.ipynb, executed as Jupyter does: a transformers model loaded in the notebook (the
    embedded Gemma as a transformers folder), handed to langneurons, French neurons found and switched off."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.nbformat == 4 and all(c.cell_type != "code" or not c.outputs for c in nb.cells), "commit it clean"
    # the kernel is this interpreter ("python" in the spec means sys.executable) with this environment
    nb.cells.append(nbformat.v4.new_code_cell('print("FRAME", frame.to_json(orient="records"))'))  # for the checks
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    client.execute(env=os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"})
    outputs = {i: "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in c.outputs)
               for i, c in enumerate(nb.cells) if c.cell_type == "code"}  # fmt: skip
    text = "\n".join(outputs.values())
    assert "LoadedModel(" in text and "gemma3_text" in text and "Stats(3 languages en,fr,zh" in text
    assert "NeuronSet(lape, 3 languages" in text and "Result(ppl: 3 interventions × 3 languages" in text
    assert "French off:" in text and "tensor(" not in text
    # the last cell's frame: rows for the deactivated language, whose own perplexity rose (and far more than
    # under its random control)
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(json.loads(outputs[len(nb.cells) - 1].split("FRAME", 1)[1]))
    fr = frame[(frame.intervention == "neurons") & (frame.of == "fr")].set_index("language")
    control = frame[(frame.intervention == "random") & (frame.of == "fr")].set_index("language")
    base = frame[frame.intervention == "none"].set_index("language")
    assert set(fr.index) == {"en", "fr", "zh"} and set(control.index) == set(fr.index)
    assert fr.loc["fr", "ppl"] > 1.5 * base.loc["fr", "ppl"]
    assert fr.loc["fr", "delta_relative"] > control.loc["fr", "delta_relative"] + 0.2
    assert fr.loc["fr", "delta_relative"] > fr.loc["en", "delta_relative"]
