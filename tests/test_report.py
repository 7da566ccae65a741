"""The HTML report: self-contained, escaped, every figure present, readable numbers, and it renders in a browser."""

from __future__ import annotations

import base64
import copy
import importlib
import json
import math
import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest
import torch
from test_analyze import SET, make_set, manifest, write_run
from typer.testing import CliRunner

import langneurons.reporting.evaluation as ev
from langneurons.analysis.activity import activation_rate, profile_similarity
from langneurons.cli import app
from langneurons.formats.run import load_run
from langneurons.formats.stats import Stats, save_stats
from langneurons.intervals import wilson
from langneurons.reporting.html import build_sections, environment, write_report

EVIL = '<script>alert("x")</script>&"\''
PNG = b"\x89PNG\r\n\x1a\n"
LANGS = ["en", "fr", "de"]


def ppl_file(model=EVIL, neurons_path="lape.json"):
    """A `langneurons ppl` result: base PPL 10, 20, 40; fr neurons off doubles fr (+100 %), de ×381 on de."""
    base = {"en": 10.0, "fr": 20.0, "de": 40.0}
    factor = {
        "none": [1, 1, 1],
        "neurons:en": [1.02, 1.01, 1.0],
        "neurons:fr": [1.1, 2.01, 1.3],
        "neurons:de": [1.05, 1.2, 381.0],
        "random:en": [0.99, 1.0, 1.0],
        "random:fr": [1.0, 1.01, 1.0],
        "random:de": [1.0, 1.0, 1.05],
    }
    ppl = {row: {lang: base[lang] * f for lang, f in zip(LANGS, fs, strict=True)} for row, fs in factor.items()}
    delta = {row: {lang: v / base[lang] - 1 for lang, v in d.items()} for row, d in ppl.items()}
    return {"format": "langneurons-ppl/1", "interventions": list(factor), "languages": LANGS, "ppl": ppl,
            "delta_relative": delta, "provenance": {"model": model, "neurons": {"path": neurons_path}}}  # fmt: skip


def gens(n, lang, fluent=True):
    return [{"prompt": f"Prompt {i} {EVIL}", "text": f" suite {i}", "lang": lang, "fluent": fluent, "ppl": 9.5}
            for i in range(n)]  # fmt: skip


def steer_file(neurons_path="lape.json"):
    """A `langneurons steer` result for targets fr and de, 20 prompts, with the raw language rate."""

    def judged(success, rate, g):
        return {"success": success, "language_rate": rate, "n": 20, "languages": {"fr": 17, EVIL: 3},
                "distinct_2": 0.8, "continuation_ppl_median": 12.5, "generations": g}  # fmt: skip

    results = {
        target: {
            "baseline": judged(0.0, 0.0, []),
            "strengths": {
                "1": {
                    "steered": judged(0.85, 0.9, gens(3, "en", False)[:1] + gens(17, target)),
                    "random": judged(0.05, 0.05, gens(20, "en")),
                }
            },  # fmt: skip
        }
        for target in ("fr", "de")
    }
    prov = {"model": EVIL, "n_prompts": 20, "neurons": {"path": neurons_path}, "settings": {"mode": "replace"},
            "success_rule": "identified as the target and fluent"}  # fmt: skip
    return {"format": "langneurons-steer/1", "source": "en", "targets": ["fr", "de"], "results": results,
            "provenance": prov}  # fmt: skip


def planted_stats(langs=LANGS, layers=8, size=10) -> Stats:
    """Counts with a known firing rate per (language, layer): language k fires (k+1)·(l+1) of 100 tokens in
    every neuron; de's profile is fr's plus a constant pattern shift, so their correlation is known."""
    k = len(langs)
    n_tokens = torch.full((k,), 100, dtype=torch.int64)
    count = torch.zeros(k, layers, size, dtype=torch.int64)
    pattern = torch.arange(layers * size).view(layers, size) % 7  # per-neuron variation
    count[0] = pattern * 3 + 1  # en
    count[1] = pattern * 2 + 5  # fr: a linear function of en's pattern (r = 1 with en)
    count[2] = 40 - pattern * 4  # de: the opposite pattern (r = -1 with en and fr)
    m = manifest(langs, layers) | {"sentences": dict.fromkeys(langs, 12), "corpus": "ntrex", "corpus_sha256": "cd" * 32}
    zeros = torch.zeros(k, layers, size, dtype=torch.float64)
    return Stats(count, zeros, zeros.clone(), n_tokens, m)


def full_run(tmp_path):
    sim = {
        "format": "langneurons-similarity/1", "model": EVIL, "site": "act", "corpus": "ntrex",
        "corpus_sha256": "ab" * 32, "languages": LANGS, "sentences": {"en": 5, "fr": 5, "de": 5},
        "pairs": {"same_language": 60},
        "per_layer": {"lrds": [0.1, 0.3, None, 0.2], "sads": [0.0, 0.4, 0.5, 0.1]},
        "whole_model": {"lrds": 0.2, "sads": 0.3}, "peaks": {"lrds": {"layer": 1}, "sads": {"layer": 2}},
    }  # fmt: skip
    set_ = copy.deepcopy(SET)
    set_.model = EVIL
    run = write_run(tmp_path / "run", set_, None,
                    {"similarity.json": sim, "ppl.json": ppl_file(), "steer-fr.json": steer_file()})  # fmt: skip
    stats = planted_stats()
    stats.manifest["model"] = EVIL
    save_stats(run, stats)
    return run


FIGURES = [
    "lape-heatmap.png", "lape-classes.png", "lape-overlap.png", "ppl-matrix.png", "steer-fr-success.png",
    "similarity.png", "recording-activation-rate.png", "recording-profile-correlation.png", "recording-tokens.png",
]  # fmt: skip


def test_report_is_self_contained_and_escaped(tmp_path):
    run = full_run(tmp_path)
    out = tmp_path / "report.html"
    write_report(run, out)
    page = out.read_text(encoding="utf-8")
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the report's own status script
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(FIGURES)
    assert all(base64.b64decode(img)[:8] == PNG for img in images)
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # nothing outside the file
    assert re.findall(r'<figure id="([^"]+)"', page) == FIGURES  # main set, evaluation, similarity, recording
    assert page.count("<figcaption>") == len(FIGURES) and "sha256 cdcdcdcdcdcd" in page


def test_untrusted_text_in_result_files_is_escaped_by_the_templates(tmp_path):
    """Model, corpus, language codes and paths come from result files: the template engine escapes them all."""
    evil = "<script>alert(1)</script>"
    sim = {"format": "langneurons-similarity/1", "model": evil, "site": "act", "corpus": evil,
           "corpus_sha256": "ab" * 32, "languages": LANGS, "sentences": dict.fromkeys(LANGS, 5),
           "per_layer": {"lrds": [0.1, 0.3], "sads": [0.0, 0.4]}, "whole_model": {"lrds": 0.2}}  # fmt: skip
    steer = steer_file(neurons_path=evil)
    steer["provenance"]["model"] = evil
    run = write_run(tmp_path / "run", SET, manifest(LANGS) | {"model": evil, "corpus": evil},
                    {"similarity.json": sim, "ppl.json": ppl_file(model=evil, neurons_path=evil),
                     "steer-fr.json": steer})  # fmt: skip
    (run / "<img src=x onerror=alert(2)>.json").write_text("{}")  # a file name, shown under "Files not used"
    write_report(run, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "alert(1)" in page  # the text is there ...
    assert "<script>alert(1)" not in page and "</script>alert" not in page  # ... never as markup
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5  # title, header, captions, table, intro
    assert "<title>langneurons report: &lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    assert page.count("<script>") == 1
    assert "<td>&lt;img src=x onerror=alert(2)&gt;.json</td>" in page and "<img src=x" not in page


def test_every_section_template_is_in_the_package_and_escapes():
    env = environment()
    names = set(env.list_templates())
    assert {"report.html", "section.html", "macros.html"} <= names
    for module in ("benchmark", "neuron_sets", "perplexity", "recording", "routing", "similarity", "stability",
                   "steering"):  # fmt: skip
        assert importlib.import_module(f"langneurons.reporting.sections.{module}").TEMPLATE in names
    assert env.from_string("{{ x }}").render(x="<b>&") == "&lt;b&gt;&amp;"


def test_steering_is_shown_as_percentages_with_intervals_and_examples(tmp_path):
    run = full_run(tmp_path)
    write_report(run, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    low, high = wilson(17, 20)
    assert f"85 % [{100 * low:.0f}–{100 * high:.0f}] of 20" in page  # success 0.85 of 20, Wilson interval
    assert "90 % [" in page and "steered: in target language" in page  # the raw language rate beside it
    assert "<td>0 % [0–16] of 20</td>" in page  # baseline: 0 of 20 is not 0 % certain
    # two examples per target, successes first (the first generation of each target is English, not fluent)
    assert page.count('<div class="gen">') == 4 and "Examples → fr" in page and "Examples → de" in page
    assert "identified as fr; fluent" in page and "identified as en" not in page
    assert "langneurons-steer/1" not in page  # no raw format table
    assert "&lt;script&gt;" in page.split("Examples → fr")[1]  # prompts are escaped


def test_wilson_interval_matches_the_closed_form():
    assert wilson(18, 20) == pytest.approx((0.6990, 0.9721), abs=1e-4)
    assert wilson(0, 20) == pytest.approx((0.0, 0.1611), abs=1e-4)
    assert wilson(20, 20)[1] == 1.0 and wilson(0, 0) is None


def test_ppl_ratios_are_read_from_the_file_and_formatted_one_way():
    m = ev.ppl_ratios(ppl_file())
    assert m.rows == ["neurons:en", "neurons:fr", "neurons:de", "random:en", "random:fr", "random:de"]
    assert m.base == {"en": 10.0, "fr": 20.0, "de": 40.0}
    assert m.ratio[1, 1] == pytest.approx(2.01) and m.ratio[2, 2] == pytest.approx(381.0)
    # the same matrix from delta_relative alone (no ppl table)
    only_delta = {k: v for k, v in ppl_file().items() if k != "ppl"}
    np.testing.assert_allclose(ev.ppl_ratios(only_delta).ratio, m.ratio)
    assert [ev.ratio_text(r) for r in (0.98, 1.0, 2.01, 62.31, 381.0, 12345.0)] == [
        "×0.98", "×1", "×2.01", "×62.3", "×381", "×12,345",
    ]  # fmt: skip
    summary = ev.ppl_summary(m)
    assert "fr ×2.01" in summary and "de ×381" in summary and "×0.99 to ×1.05" in summary


def test_ppl_colours_keep_a_doubling_visible_next_to_x381(tmp_path):
    """Log scale centred at ×1, compressed: a doubling is clearly coloured, and every label contrasts."""
    import matplotlib

    m = ev.ppl_ratios(ppl_file())
    span = math.log10(381.0)
    norm = matplotlib.colors.FuncNorm((ev._signed_sqrt, ev._signed_square), vmin=-span, vmax=span)
    assert float(norm(0.0)) == pytest.approx(0.5)  # ×1 is the centre (white)
    assert float(norm(math.log10(2.01))) - 0.5 > 0.12  # +101 % is not washed out by ×381
    cmap = matplotlib.colormaps["RdBu_r"]
    from langneurons.reporting.figures import text_colour

    assert text_colour(cmap(norm(math.log10(381.0)))) == "white"  # dark red cell, white text
    assert text_colour(cmap(norm(0.0))) == "black"  # white cell, black text
    assert ev.ppl_ratio_figure(m, "t")[:8] == PNG


def test_report_of_a_bare_recording_shows_what_the_statistics_say(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    stats = planted_stats()
    save_stats(run, stats)
    rate = activation_rate(stats)
    expected = (stats.count.double() / 100).mean(2)
    torch.testing.assert_close(rate, expected)
    corr = profile_similarity(stats)
    assert corr[0, 1] == pytest.approx(1.0) and corr[0, 2] == pytest.approx(-1.0) and corr[1, 2] == pytest.approx(-1.0)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text(encoding="utf-8")  # the default output
    assert re.findall(r'<figure id="([^"]+)"', page) == FIGURES[-3:]
    assert "No figure" not in page and "12 sentences" in page and "300 counted tokens" in page


def test_results_kept_elsewhere_join_the_report_and_the_main_set_comes_first(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    save_stats(run, planted_stats())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = make_set({"en": {0: [1]}, "fr": {1: [2]}, "de": {2: [3]}}, method="entropy-lambda")
    other.save(elsewhere / "entropy.json")
    SET.save(elsewhere / "lape.json")
    (elsewhere / "p.json").write_text(json.dumps(ppl_file(neurons_path=str(elsewhere / "entropy.json"))))
    (elsewhere / "s.json").write_text(json.dumps(steer_file()))
    args = ["report", str(run), "-o", str(tmp_path / "r.html"), "--neurons", str(elsewhere / "lape.json"),
            "--neurons", str(elsewhere / "entropy.json"), "--ppl", str(elsewhere / "p.json"),
            "--steer", str(elsewhere / "s.json")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    ids = re.findall(r'<section id="([^"]+)"', page)
    assert ids == ["set-lape", "set-entropy", "ppl-p", "steer-s", "recording"]  # given order first
    again = CliRunner().invoke(app, args)  # a report is derived: regenerated without --overwrite
    assert again.exit_code == 0 and "(replaced the earlier one)" in again.output, again.output
    # without --neurons, the set the ppl result used comes first
    run2 = write_run(tmp_path / "run2", SET, manifest(LANGS), {"ppl.json": ppl_file(neurons_path="/x/entropy.json")})
    other.save(run2 / "entropy.json")
    ids = [s.anchor for s in build_sections(load_run(run2))]
    assert ids == ["set-entropy", "set-lape", "ppl-ppl"]


@pytest.mark.parametrize(
    ("flag", "content", "message"),
    [
        ("--neurons", None, "does not exist (given with --neurons)"),
        ("--ppl", {"format": "langneurons-steer/1"}, "is not a ppl result"),
        ("--steer", "{not json", "is unreadable"),
    ],
)
def test_a_result_file_given_by_name_must_be_right(tmp_path, flag, content, message):
    run = write_run(tmp_path / "run", SET, manifest(LANGS))
    given = tmp_path / "given.json"
    if content is not None:
        given.write_text(content if isinstance(content, str) else json.dumps(content))
    result = CliRunner().invoke(app, ["report", str(run), flag, str(given)])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_an_empty_set_is_explained_in_words(tmp_path):
    empty = make_set({lang: {} for lang in ["en", "fr", "de", "es", "ru"]}, method="key-neurons")
    run = write_run(tmp_path / "run", None, manifest(["en", "fr", "de", "es", "ru"]))
    empty.save(run / "key.json")
    write_report(run, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "selects no neuron" in page and "at least 6 languages" in page and "<img" not in page


def test_figures_raise_no_warning(tmp_path):
    run = full_run(tmp_path)
    one_language = write_run(tmp_path / "one", make_set({"en": {0: [1]}}), None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len([f for s in build_sections(load_run(run)) for f in s.figures]) == len(FIGURES)
        assert [f.name for s in build_sections(load_run(one_language)) for f in s.figures] == [
            "lape-heatmap.png",
            "lape-classes.png",
        ]


def test_png_format_writes_the_figures_alone(tmp_path):
    run = full_run(tmp_path)
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "figs"), "--format", "png"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "figs").glob("*.png")) == sorted(FIGURES)
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
    assert 'data-report-status="ok"' in root.group(0), root.group(0)  # every image decoded, non-zero width
    assert f'data-images="{len(FIGURES)}"' in root.group(0)
    assert "data-report-error" not in root.group(0)
    for name in FIGURES:  # each figure is in the rendered document, with its image
        assert re.search(rf'<figure id="{re.escape(name)}"><img src="data:image/png;base64,', dom), name
