"""The benchmark on a tiny model: every method gets every cell (no silent gaps), the run is
reproducible bit for bit with a seed, an interrupted run resumes from its stage files, bad input fails."""

from __future__ import annotations

import json
import random

import pytest
from tiny import WORDS, tiny_model
from typer.testing import CliRunner

from langneurons.cli import app
from langneurons.data.prompts import split_prompts
from langneurons.errors import LangneuronsError
from langneurons.evaluation.benchmark import METHODS, STEERING_ONLY, BenchmarkSettings, benchmark
from langneurons.reporting import write_report
from langneurons.reporting.benchmark import benchmark_figure, markdown_table

# three "languages" of the tiny vocabulary: aa words, bb words, and the shared words as cc
LANGS = {"aa": WORDS["aa"], "bb": WORDS["bb"], "cc": WORDS["shared"]}
# small sets for a 3-layer × 48-neuron model (the reference defaults select all or nothing there)
PARAMS = {"lape": {"top_rate": 0.2}, "entropy-lambda": {"lam": "auto", "top_rate": 0.2}, "ap": {"n": 6},
          "key-neurons": {"threshold": 1.38}, "attribution-neurons": {"top_rate": 0.2}}  # fmt: skip
TIMING = {"wall_seconds", "identify_seconds", "data_seconds", "record_seconds", "pooled_seconds", "created",
          "seconds", "attribution_seconds"}  # fmt: skip


def write_corpus(folder, n, seed):
    rng = random.Random(seed)
    folder.mkdir()
    for lang, words in LANGS.items():
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) for _ in range(n)]
        (folder / f"{lang}.txt").write_text("\n".join(lines) + "\n")


def settings(tmp_path) -> BenchmarkSettings:
    if not (tmp_path / "ident").exists():
        write_corpus(tmp_path / "ident", 30, 0)
        write_corpus(tmp_path / "held", 30, 1)
        (tmp_path / "prompts.txt").write_text("a1 a2 a3\na4 a5\na6 a7 a0\na1 s1\n")
    return BenchmarkSettings(
        languages=["aa", "bb", "cc"], source="aa", identify_corpus=str(tmp_path / "ident"),
        heldout_corpus=str(tmp_path / "held"), sentences=30, attribution_sentences=8, eval_sentences=4, prompts=2,
        dev_prompts=2, prompts_spec=str(tmp_path / "prompts.txt"), strengths=[1.0, 2.0], head_strengths=[2.0],
        direction_strengths=[1.0, 4.0], clas_strengths=[1.0, 4.0],
        translate_sentences=3, shots=1, max_new_tokens=4, translate_max_new_tokens=4, batch_size=4,
        max_length=64, bootstrap=20, method_params=PARAMS,
    )  # fmt: skip


def strip_timing(value):
    if isinstance(value, dict):
        return {k: strip_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [strip_timing(v) for v in value]
    return value


def cells(value, path=""):
    """Every leaf of the summary, with its path."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from cells(v, f"{path}/{k}")
    else:
        yield path, value


def hand_median(values):
    v = sorted(values)
    k = len(v)
    return v[k // 2] if k % 2 else (v[k // 2 - 1] + v[k // 2]) / 2


def check_summaries_by_hand(result):
    """Every summary cell recomputed from the raw numbers: the median of the ratios over the other
    languages (never their mean), selectivity = own / that median, medians over languages."""
    langs, source = result["languages"], result["source"]
    p = result["perplexity"]["ppl"]
    base = p["none"]
    for method, row in result["summary"].items():
        if method in STEERING_ONLY:  # a steering recipe: no deactivation cells
            assert row["ppl_own"] is None and row["chrf_drop_own"] is None
            continue
        own, others, geo, select = [], [], [], []
        for lang in langs:
            off = p[f"{method}/off:{lang}"]
            ratios = [off[o] / base[o] for o in langs if o != lang]
            own.append(off[lang] / base[lang] - 1)
            others.append(hand_median(ratios) - 1)
            prod = 1.0
            for r in ratios:
                prod *= r
            geo.append(prod ** (1 / len(ratios)) - 1)
            select.append((off[lang] / base[lang]) / hand_median(ratios))
        assert row["ppl_own"] == pytest.approx(hand_median(own), rel=1e-12), method
        assert row["ppl_others"] == pytest.approx(hand_median(others), rel=1e-12), method
        assert row["ppl_others_geomean"] == pytest.approx(hand_median(geo), rel=1e-9), method
        assert row["ppl_selectivity"] == pytest.approx(hand_median(select), rel=1e-12), method
        scores = result["translation"]["scores"]
        targets = [x for x in langs if x != source]
        drops = []
        for lang in targets:
            cells_ = scores[f"{method}/off:{lang}"]
            drops.append(hand_median([v["drop"] for pair, v in cells_.items() if pair != f"{source}-{lang}"]))
        assert row["chrf_drop_others"] == pytest.approx(hand_median(drops), abs=1e-12), method


def check_intervals(result):
    """Every cell has its interval; the paired tests cover every pair of methods on the same items, and the
    steering success interval is Wilson's over the pooled test generations."""
    from itertools import combinations

    from langneurons.intervals import wilson

    for method, row in result["summary"].items():
        cells_ = result["intervals"][method]
        hits, n = row["steer_successes"]
        assert n == 2 * 2 and cells_["steer_success_pooled_wilson"] == pytest.approx(list(wilson(hits, n)))
        if method in STEERING_ONLY:
            continue
        for key in ("ppl_own", "ppl_others", "ppl_selectivity", "ppl_random_own", "chrf_drop_own"):
            lo, hi = cells_[key]
            assert lo <= hi, (method, key)
    for name, test in result["paired"].items():
        methods = [m for m in result["methods"] if name.startswith("steer") or m not in STEERING_ONLY]
        assert set(test["pairs"]) <= {f"{a} vs {b}" for a, b in combinations(methods, 2)}
        assert test["best"] in methods and test["resamples"] == result["provenance"]["settings"]["bootstrap"]


def test_split_prompts():
    prompts = [f"p{i}" for i in range(30)]
    dev, test = split_prompts(prompts, 10, 20)
    assert dev == [f"p{i}" for i in range(0, 30, 3)] and len(test) == 20 and not set(dev) & set(test)
    with pytest.raises(LangneuronsError, match="need 31 steering prompts"):
        split_prompts(prompts, 11, 20)


def test_every_cell_and_bit_for_bit(tmp_path):
    loaded = tiny_model("llama")
    first = benchmark(loaded, tmp_path / "one", settings(tmp_path), progress=False)
    assert list(first["summary"]) == list(METHODS)
    check_summaries_by_hand(first)
    gaps = [path for path, value in cells(first["summary"]) if value is None and path.split("/")[1] not in
            STEERING_ONLY]  # fmt: skip
    assert not gaps, gaps
    for method, facts in first["identification"].items():  # every method found units on distinct languages
        assert sum(facts["size"]["per_language"].values()) > 0, (method, facts["size"])
    assert first["identification"]["attribution-heads"]["size"]["unit"] == "heads"
    check_intervals(first)
    table = markdown_table(first)
    assert all(line.count("n/a") == (7 if "| diffmean-clas |" in line else 0) for line in table.splitlines()
               if line.startswith("| ") and "method" not in line)  # fmt: skip
    rows = [line for line in table.splitlines() if line.startswith("| ") and "method" not in line]
    assert sum(line.count("**") for line in rows) == 2 * len(first["paired"])  # one best per headline test
    assert benchmark_figure(first)[:4] == b"\x89PNG"
    write_report(tmp_path / "one", tmp_path / "report.html")  # the report reads the benchmark folder
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Benchmark</h2>" in page and "Benchmark: every method" in page
    on_disk = json.loads((tmp_path / "one" / "benchmark.json").read_text())
    assert strip_timing(on_disk) == strip_timing(json.loads(json.dumps(first)))
    second = benchmark(tiny_model("llama"), tmp_path / "two", settings(tmp_path), progress=False)
    assert json.dumps(strip_timing(second), sort_keys=True) == json.dumps(strip_timing(first), sort_keys=True)


def test_resume_reuses_finished_stages(tmp_path):
    loaded = tiny_model("llama")
    out = tmp_path / "b"
    first = benchmark(loaded, out, settings(tmp_path), progress=False)
    (out / "benchmark.json").unlink()
    (out / "stage-translate.json").unlink()  # "interrupted" during translation
    stamp = (out / "stage-steer.json").stat().st_mtime_ns
    again = benchmark(loaded, out, settings(tmp_path), progress=False)
    assert (out / "stage-steer.json").stat().st_mtime_ns == stamp  # reused, not recomputed
    assert strip_timing(again["summary"]) == strip_timing(first["summary"])
    data_stamp = (out / "stage-data.json").stat().st_mtime_ns
    changed = settings(tmp_path)
    changed.seed = 1  # other settings: the evaluations are recomputed, the identification data reused
    benchmark(loaded, out, changed, progress=False)
    assert (out / "stage-steer.json").stat().st_mtime_ns != stamp
    assert (out / "stage-data.json").stat().st_mtime_ns == data_stamp


def test_bad_settings(tmp_path):
    with pytest.raises(LangneuronsError, match="source"):
        BenchmarkSettings(languages=["fr", "de"]).validate()
    with pytest.raises(LangneuronsError, match="unknown method"):
        BenchmarkSettings(methods=["lape", "magic"]).validate()
    with pytest.raises(LangneuronsError, match="prompts"):
        BenchmarkSettings(prompts=0).validate()
    with pytest.raises(LangneuronsError, match="attribution-sentences"):
        BenchmarkSettings(sentences=10, attribution_sentences=20).validate()
    runner = CliRunner()
    result = runner.invoke(app, ["benchmark", "--languages", "fr,de", "-o", str(tmp_path / "b")])
    assert result.exit_code == 2 and "source" in result.output
    result = runner.invoke(app, ["benchmark", "--strengths", "a,b", "-o", str(tmp_path / "b")])
    assert result.exit_code == 2
    result = runner.invoke(app, ["benchmark", "--methods", "lape", "--head-strengths", "2", "-o", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--head-strengths does not apply" in result.output
    result = runner.invoke(app, ["benchmark", "--clas-ranges", "5", "-o", str(tmp_path / "b")])
    assert result.exit_code == 2 and "first-last" in result.output
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "benchmark.json").write_text("{}")
    result = runner.invoke(app, ["benchmark", "-o", str(tmp_path / "done")])
    assert result.exit_code == 2 and "--overwrite" in result.output


def test_cli_end_to_end(tmp_path):
    s = settings(tmp_path)
    loaded = tiny_model("llama")
    loaded.model.save_pretrained(tmp_path / "model")
    loaded.tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "bench"
    args = ["benchmark", "--model", str(tmp_path / "model"), "--device", "cpu", "--languages", "aa,bb,cc",
            "--from", "aa", "--methods", "lape,diffmean", "--corpus", s.identify_corpus, "--heldout",
            s.heldout_corpus, "--prompt-file", s.prompts_spec, "--sentences", "30", "--eval-sentences", "3",
            "--prompts", "2", "--dev-prompts", "2", "--strengths", "1", "--direction-strengths", "1",
            "--direction-layers", "1",
            "--translate-sentences", "2", "--shots", "1", "--bootstrap", "10", "--max-length", "64",
            "-o", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert {"benchmark.json", "benchmark.md", "benchmark.png"} <= {p.name for p in out.iterdir()}
    table = (out / "benchmark.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len(rows) == 4 and "| diffmean |" in table and "1 @ layer 1" in table and "Paired tests" in table
    assert table.strip() in res.output  # not a terminal: the Markdown table is printed whole, not squeezed
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
