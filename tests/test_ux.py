"""The user's side: one CLI convention everywhere, readable logs, default inputs/outputs, the notebook API."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_distributed import make_inputs, run_env
from test_record import GROUPS, corpus, settings
from tiny import planted_model
from typer.testing import CliRunner

import langneurons as ln
from langneurons.cli import app
from langneurons.errors import LangneuronsError
from langneurons.formats.stats import load_stats
from langneurons.progress import LineProgress
from langneurons.recording import record


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ux")
    model, text = make_inputs(root, sentences=8)
    return {"root": root, "model": Path(model), "corpus": Path(text)}


def cli(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


# ---- logs --------------------------------------------------------------------------------------------
def test_record_log_file_shows_plain_progress_lines_and_the_next_step(files, tmp_path):
    """`record > log 2>&1`: one 'loading model' line, periodic plain lines in sentences with tok/s,
    the summary and the next command; no bar, no transformers output."""
    env = run_env() | {"LANGNEURONS_PROGRESS_SECONDS": "0"}
    env.pop("PYTHONWARNINGS")  # transformers' warnings must be silenced by us, not by the test
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "langneurons", "record", "--model", str(files["model"]),
                           "--corpus", str(files["corpus"]), "--batch-size", "2", "--chunk-batches", "1",
                           "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, timeout=300)  # fmt: skip
    log = proc.stdout
    assert proc.returncode == 0, log
    lines = log.splitlines()
    assert lines[0] == f"loading model {files['model']} …" and log.count("loading model") == 1
    progress = [line for line in lines if line.startswith("recording ")]
    assert len(progress) >= 3, log  # one per unit of work here (interval 0), not one final bar
    assert progress[-1].startswith("recording cc: 24/24 sentences (100%), ") and " tok/s" in progress[-1]
    assert "/24 sentences" in progress[0] and not any("━" in line or "\r" in line for line in lines)
    assert lines[-1] == f"next: langneurons identify {out} --method lape"
    assert not any(word in log.lower() for word in ("warning", "loading checkpoint", "it/s", "traceback"))


def test_line_progress_prints_what_done_total_rate_and_eta(capsys):
    bar = LineProgress("sentences", interval=0.0)
    with bar:
        task = bar.add_task("pooling", total=200, tokens=0)
        bar.update(task, advance=50, tokens=1000)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("pooling: 50/200 sentences (25%), ") and "tok/s" in err[0] and err[0].endswith("left")
    assert len(err) == 1  # the final line is not repeated when nothing changed


# ---- CLI conventions ---------------------------------------------------------------------------------
def test_help_and_version_are_fast_imports():
    """`--help` must not import torch or transformers (cli modules import them lazily)."""
    code = "import sys, langneurons.cli; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=run_env())
    assert done.stdout.strip() == "[]", done.stderr
    version = cli("--version")
    assert version.exit_code == 0 and version.output.strip() == f"langneurons {ln.__version__}"


@pytest.mark.parametrize("command", ["record", "ppl", "steer", "similarity"])
def test_every_model_command_takes_the_same_model_options_and_conventions(command):
    text = " ".join(cli(command, "--help").output.split())
    for flag in ("--model", "--revision", "--device", "--dtype", "--device-map", "--trust-remote-code",
                 "--out", "-o", "--overwrite"):  # fmt: skip
        assert flag in text, (command, flag)
    if command != "steer":
        assert "--corpus" in text and "--sentences" in text and "--max-length" in text
        assert "--texts" not in text  # a hidden alias


def test_identify_and_report_default_outputs_and_overwrite(tmp_path):
    run = tmp_path / "run"
    record(planted_model(GROUPS), corpus(), run, settings(), progress=False)
    first = cli("identify", run, "--method", "lape", "--top-rate", "0.1", "--filter-rate", "0.5")
    assert first.exit_code == 0, first.output
    assert (run / "lape.json").exists() and "next: langneurons ppl --model " in first.output
    assert f"--neurons {run / 'lape.json'} && langneurons report {run}" in first.output
    again = cli("identify", run, "--method", "lape")  # other parameters than the file's: refused, naming them
    assert again.exit_code == 2 and "params.top_rate 0.1 → 0.01" in again.output and "--overwrite" in again.output
    assert cli("identify", run, "--method", "lape", "--overwrite").exit_code == 0
    ns = ln.load_neurons(run / "lape.json")
    assert ns.source["run"] == str(run.resolve())
    report = cli("report", run)
    assert report.exit_code == 0, report.output
    assert (run / "report.html").exists()
    again = cli("report", run)  # derived: regenerated without --overwrite
    assert again.exit_code == 0 and "(replaced the earlier one)" in again.output, again.output


def test_max_length_is_capped_at_the_model_maximum_and_texts_is_an_alias(files, tmp_path):
    done = cli("record", "--model", files["model"], "--texts", files["corpus"], "--max-length", "100000",
               "--sentences", "2", "-o", tmp_path / "r")  # fmt: skip
    assert done.exit_code == 0, done.output
    stats = load_stats(tmp_path / "r")
    assert stats.manifest["settings"]["max_length"] == 128  # the tiny model's max_position_embeddings
    assert stats.manifest["sentences"] == {"aa": 2, "bb": 2, "cc": 2}


def test_ppl_warns_when_evaluating_on_the_identification_text(files, tmp_path):
    run = tmp_path / "run"
    assert cli("record", "--model", files["model"], "--corpus", files["corpus"], "--max-length", "32",
               "-o", run).exit_code == 0  # fmt: skip
    assert cli("identify", run, "--method", "lape", "--top-rate", "0.2", "--filter-rate", "0.5").exit_code == 0
    same = cli("ppl", "--model", files["model"], "--neurons", run / "lape.json", "--corpus", files["corpus"],
               "--sentences", "2", "--max-length", "32", "--no-controls", "--device", "cpu")  # fmt: skip
    assert same.exit_code == 0, same.output
    assert "warning: the evaluation text" in " ".join(same.output.split())
    assert (run / "ppl-lape.json").exists()  # default output next to the set
    other = tmp_path / "held_out"
    shutil.copytree(files["corpus"], other)
    for file in other.iterdir():
        file.write_text("\n".join(reversed(file.read_text().splitlines())) + "\n")
    fresh = cli("ppl", "--model", files["model"], "--neurons", run / "lape.json", "--corpus", other,
                "--sentences", "2", "--max-length", "32", "--no-controls", "--device", "cpu", "-o", tmp_path / "p.json")
    assert fresh.exit_code == 0 and "warning" not in fresh.output


def test_steer_finds_mean_activations_of_a_moved_set_through_its_run(files, tmp_path):
    run = tmp_path / "run"
    assert cli("record", "--model", files["model"], "--corpus", files["corpus"], "--max-length", "32",
               "-o", run).exit_code == 0  # fmt: skip
    assert cli("identify", run, "--method", "lape", "--top-rate", "0.2", "--filter-rate", "0.5").exit_code == 0
    moved = tmp_path / "elsewhere" / "set.json"
    moved.parent.mkdir()
    shutil.move(run / "lape.json", moved)
    (tmp_path / "p.txt").write_text("a1 a2\ns1 b3\n")
    done = cli("steer", "--model", files["model"], "--neurons", moved, "--from", "aa", "--to", "bb",
               "--prompts", tmp_path / "p.txt", "--max-new-tokens", "3", "--no-controls", "--device", "cpu",
               "--no-calibrate")
    assert done.exit_code == 0, done.output
    result = json.loads((moved.parent / "steer-set.json").read_text())
    assert result["provenance"]["stats"] == str(run.resolve())


def test_key_neurons_refuse_fewer_languages_than_the_z_bound_allows():
    from langneurons.formats.pooled import Pooled
    from langneurons.identification.key_neurons import key_neurons, min_languages

    assert [min_languages(t) for t in (2.0, 1.5, 1.0, 0.5, 3.0)] == [6, 4, 3, 2, 11]

    def pooled(k: int) -> Pooled:
        x = torch.rand(k * 4, 2, 5, generator=torch.Generator().manual_seed(0)) * 0.1
        x[:4, 1, 3] += 2.0  # language 0's own neuron
        langs = [f"l{i}" for i in range(k) for _ in range(4)]
        return Pooled(x, [str(j) for _ in range(k) for j in range(4)], langs, torch.ones(k * 4, dtype=torch.int64),
                      {"languages": sorted(set(langs))})  # fmt: skip

    with pytest.raises(LangneuronsError, match="at least 6 languages"):
        key_neurons(pooled(5))
    assert 3 in key_neurons(pooled(6)).neurons["l0"][1]  # z = sqrt(5) > 2 is reachable with 6


# ---- files -------------------------------------------------------------------------------------------
def test_result_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        stats = record(planted_model(GROUPS), corpus(), tmp_path / "run", settings(), progress=False)
    finally:
        os.umask(old)
    for name in ("stats.safetensors", "manifest.json"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o644, name
    assert stats.path == str(tmp_path / "run")


# ---- notebook API ------------------------------------------------------------------------------------
def test_record_in_memory_equals_on_disk_and_a_finished_run_is_reused(tmp_path):
    loaded = planted_model(GROUPS)
    one_unit = ln.RecordSettings(batch_size=2, chunk_batches=1)
    memory = ln.record(loaded, corpus(), progress=False, settings=one_unit)
    assert not list(tmp_path.iterdir())
    disk = ln.record(loaded, corpus(), tmp_path / "run", progress=False, settings=one_unit)
    assert torch.equal(memory.count, disk.count) and torch.equal(memory.sum, disk.sum)
    before = (tmp_path / "run" / "manifest.json").stat().st_mtime_ns
    again = ln.record(loaded, corpus(), tmp_path / "run", progress=False, settings=one_unit)
    assert (tmp_path / "run" / "manifest.json").stat().st_mtime_ns == before  # reused, not redone
    assert torch.equal(again.count, disk.count)
    with pytest.raises(LangneuronsError, match="finished run"):  # another job: refused, not silently reused
        ln.record(loaded, corpus(), tmp_path / "run", progress=False, settings=replace(one_unit, batch_size=1))


def test_short_reprs_and_activate_without_naming_the_language_twice(tmp_path):
    loaded = planted_model(GROUPS)
    stats = ln.record(loaded, corpus(), tmp_path / "run", progress=False, batch_size=2)
    ns = ln.identify(tmp_path / "run", "lape", top_rate=0.1, filter_rate=0.5)
    for obj, start in ((loaded, "LoadedModel('planted-llama', llama, 2 layers × 48 neurons"),
                       (stats, "Stats(2 languages aa,bb, 2 layers × 48 neurons, 36 tokens"),
                       (ns, "NeuronSet(lape, 2 languages"), (corpus(), "Corpus('test', 2 languages: aa 5, bb 5")):
        text = repr(obj)
        assert text.startswith(start) and "tensor" not in text and "\n" not in text, text
    ivs = ((ln.deactivate(ns, "aa"), "Intervention(off aa: "), (ln.activate(ns, "bb", stats), "Intervention("))
    for iv, start in ivs:
        assert repr(iv).startswith(start) and "tensor" not in repr(iv) and "\n" not in repr(iv), repr(iv)
    old = ln.activate(ns.mask("aa"), stats, "aa", "add", 2.0)
    new = ln.activate(ns, "aa", stats, "add", 2.0)
    assert torch.equal(old.mask, new.mask) and torch.equal(old.shift, new.shift) and old.site == new.site
    off = ln.deactivate(ns, "bb")
    assert torch.equal(off.mask, ns.mask("bb")) and off.scale[off.mask].eq(0).all()
    with pytest.raises(LangneuronsError):
        ln.activate(ns, stats, "aa")  # the language must come first with a neuron set
