"""The HTML report: self-contained, escaped, every figure present, and it renders in a real browser."""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess

import pytest
from test_analyze import SET, manifest, write_run
from typer.testing import CliRunner

from langneurons.cli import app
from langneurons.report import write_report

EVIL = '<script>alert("x")</script>&"\''
PNG = b"\x89PNG\r\n\x1a\n"


def full_run(tmp_path):
    sim = {
        "format": "langneurons-similarity/1", "model": EVIL, "site": "act", "corpus": "ntrex",
        "corpus_sha256": "ab" * 32, "languages": ["en", "fr", "de"], "sentences": {"en": 5, "fr": 5, "de": 5},
        "pairs": {"same_language": 60},
        "per_layer": {"lrds": [0.1, 0.3, None, 0.2], "sads": [0.0, 0.4, 0.5, 0.1]},
        "whole_model": {"lrds": 0.2, "sads": 0.3}, "peaks": {"lrds": {"layer": 1}, "sads": {"layer": 2}},
    }  # fmt: skip
    # the formats `langneurons ppl` and `langneurons steer` write
    rows = {"none": [0, 0, 0], "neurons:en": [3.0, 0.1, 0.2], "neurons:fr": [0.1, 5.0, 0.3], "random:en": [0, 0, 0]}
    delta = {row: dict(zip(["en", "fr", "de"], values, strict=True)) for row, values in rows.items()}
    ppl = {"format": "langneurons-ppl/1", "languages": ["en", "fr", "de"], "delta_relative": delta,
           "ppl": {row: {k: 10 * (1 + v) for k, v in d.items()} for row, d in delta.items()},
           "provenance": {"model": EVIL}}  # fmt: skip
    judged = {"success": 0.8, "languages": {"fr": 4, EVIL: 1}, "distinct_2": 0.9, "continuation_ppl_median": 12.5}
    steer = {"format": "langneurons-steer/1", "source": "en", "targets": ["fr"], "results": {"fr": {
        "baseline": {**judged, "success": 0.0, "languages": {"en": 5}},
        "strengths": {"1": {"steered": judged, "random": {**judged, "success": 0.2}}}}}}  # fmt: skip
    m = manifest(["en", "fr", "de"], model=EVIL) | {"corpus": "ntrex", "corpus_sha256": "cd" * 32}
    set_ = copy.deepcopy(SET)
    set_.model = EVIL
    return write_run(tmp_path / "run", set_, m,
                     {"similarity.json": sim, "ppl.json": ppl, "steer-fr.json": steer})  # fmt: skip


def test_report_is_self_contained_and_escaped(tmp_path):
    run = full_run(tmp_path)
    out = tmp_path / "report.html"
    write_report(run, out)
    page = out.read_text(encoding="utf-8")
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the report's own status script
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 5  # heatmap, classes, overlap, ΔPPL matrix, similarity
    assert all(base64.b64decode(img)[:8] == PNG for img in images)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing outside the file
    assert page.count("<figcaption>") == 5 and "sha256 cdcdcdcdcdcd" in page
    assert "success" in page and "<td>steered</td>" in page and "<td>0.8</td>" in page  # the steering table
    assert "<td>random</td>" in page and "<td>0.2</td>" in page and "<td>baseline</td>" in page


def test_png_format_writes_the_figures_alone(tmp_path):
    run = full_run(tmp_path)
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "figs"), "--format", "png"])
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in (tmp_path / "figs").glob("*.png"))
    assert pngs == [
        "lape-classes.png",
        "lape-heatmap.png",
        "lape-overlap.png",
        "ppl-matrix.png",
        "similarity.png",
    ]
    captions = json.loads((tmp_path / "figs" / "captions.json").read_text())
    assert EVIL in captions["similarity.png"]["caption"]


def test_report_of_a_directory_without_results_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "no langneurons results" in result.output


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(chromium() is None, reason="no chromium here (CI installs Debian's chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    run = full_run(tmp_path)
    out = tmp_path / "report.html"
    write_report(run, out)
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
           out.resolve().as_uri()]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    root = re.search(r"<html[^>]*>", dom)
    assert root, f"no DOM dumped (rc {proc.returncode}): {proc.stderr[-2000:]}"
    assert 'data-report-status="ok"' in root.group(0), root.group(0)
    assert 'data-images="5"' in root.group(0)
    assert "data-report-error" not in root.group(0)
