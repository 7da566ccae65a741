"""A recording killed mid-way resumes from its checkpoint and ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import torch
from safetensors import safe_open
from test_distributed import NAMES, make_inputs, run_env

from langneurons.formats.stats import load_stats
from langneurons.recording.recorder import CHECKPOINT_FILE, UNIT_DELAY_ENV

# 2 languages × 40 sentences, 4 per unit: 20 units.
ARGS = ["--batch-size", "2", "--chunk-batches", "2", "--max-length", "32", "--sentences", "40",
        "--languages", "aa,bb", "--device", "cpu"]  # fmt: skip


def command(model: str, corpus: str, out) -> list[str]:
    return [sys.executable, "-m", "langneurons", "record", "--model", model, "--corpus", corpus, *ARGS,
            "--out", str(out)]  # fmt: skip


def next_unit(path) -> int:
    with safe_open(str(path), "pt") as fh:
        return json.loads(fh.metadata()["state"])["next_unit"]


def start_and_interrupt(cmd: list[str], checkpoint, sig: int, after_unit: int = 3) -> subprocess.Popen:
    """Start a slowed recording that checkpoints every unit; send ``sig`` once one is past ``after_unit``."""
    env = run_env() | {UNIT_DELAY_ENV: "0.4"}
    proc = subprocess.Popen([*cmd, "--checkpoint-every-units", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline:
        if checkpoint.exists() and next_unit(checkpoint) >= after_unit:
            break
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc


def test_sigkill_then_rerun_equals_uninterrupted(tmp_path):
    model, corpus = make_inputs(tmp_path)
    full = subprocess.run(command(model, corpus, tmp_path / "full"), capture_output=True, text=True,
                          env=run_env(), timeout=300)  # fmt: skip
    assert full.returncode == 0, full.stderr
    out = tmp_path / "killed"
    checkpoint = out / CHECKPOINT_FILE
    proc = start_and_interrupt(command(model, corpus, out), checkpoint, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    done = next_unit(checkpoint)
    assert 3 <= done < 20
    # Resume with the plain command (no checkpoint options): same fingerprint, picks up at `done`.
    again = subprocess.run(command(model, corpus, out), capture_output=True, text=True, env=run_env(),
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert not checkpoint.exists()
    a, b = load_stats(tmp_path / "full"), load_stats(out)
    for name in NAMES:  # equal n_tokens and counts: no unit counted twice or skipped
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_ctrl_c_keeps_checkpoint_and_says_so(tmp_path):
    model, corpus = make_inputs(tmp_path)
    out = tmp_path / "run"
    proc = start_and_interrupt(command(model, corpus, out), out / CHECKPOINT_FILE, signal.SIGINT, after_unit=2)
    stderr = proc.stderr.read()
    assert proc.returncode == 130
    assert "checkpoint" in stderr and "resume" in stderr and "Traceback" not in stderr
    assert (out / CHECKPOINT_FILE).exists() and not (out / "manifest.json").exists()
    assert next_unit(out / CHECKPOINT_FILE) >= 2


def test_finished_run_is_kept_without_overwrite_and_checkpoint_of_other_settings_refused(tmp_path):
    model, corpus = make_inputs(tmp_path, sentences=8)
    out = tmp_path / "run"
    first = subprocess.run(command(model, corpus, out), capture_output=True, text=True, env=run_env(), timeout=300)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = subprocess.run(command(model, corpus, out), capture_output=True, text=True, env=run_env(), timeout=300)
    assert again.returncode == 0 and "reused it; pass --overwrite to record again" in again.stderr  # the same job
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # A checkpoint left by other settings is never silently mixed in.
    (out / "manifest.json").unlink()
    (out / "stats.safetensors").rename(out / CHECKPOINT_FILE)  # wrong metadata: reads as corrupt
    bad = subprocess.run(command(model, corpus, out), capture_output=True, text=True, env=run_env(), timeout=300)
    assert bad.returncode == 2 and "checkpoint" in bad.stderr and "Traceback" not in bad.stderr
    forced = subprocess.run([*command(model, corpus, out), "--overwrite"], capture_output=True, text=True,
                            env=run_env(), timeout=300)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert not (out / CHECKPOINT_FILE).exists() and (out / "manifest.json").exists()


def test_checkpoint_of_other_settings_is_refused_by_its_fingerprint(tmp_path):
    """A valid checkpoint written with --max-length 32 must not be resumed by a run with --max-length 24."""
    model, corpus = make_inputs(tmp_path)
    out = tmp_path / "run"
    checkpoint = out / CHECKPOINT_FILE
    proc = start_and_interrupt(command(model, corpus, out), checkpoint, signal.SIGKILL, after_unit=2)
    assert proc.returncode == -signal.SIGKILL and next_unit(checkpoint) >= 2  # a readable checkpoint
    other = [*command(model, corpus, out)]
    other[other.index("--max-length") + 1] = "24"
    bad = subprocess.run(other, capture_output=True, text=True, env=run_env(), timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "different model, corpus or settings" in bad.stderr and "corrupt" not in bad.stderr
    assert checkpoint.exists() and not (out / "manifest.json").exists()  # nothing was mixed in or lost
