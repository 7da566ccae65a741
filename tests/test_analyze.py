"""Neuron-set analytics, run loading and run comparison on constructed sets."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from langneurons.analysis.compare import compare_runs, depth_histogram, mean_depth
from langneurons.analysis.sets import (
    class_distribution,
    class_transitions,
    language_overlap,
    layer_distribution,
    method_overlap,
    phase_profile,
    segment_profile,
)
from langneurons.cli import app
from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.run import load_run


def make_set(
    neurons: dict[str, dict[int, list[int]]], num_layers=8, size=10, method="lape", model="m"
) -> NeuronSet:
    """A set from {lang: {layer: [neurons]}}; selected = union of the languages."""
    per = {lang: [sorted(layers.get(i, [])) for i in range(num_layers)] for lang, layers in neurons.items()}
    selected = [sorted({j for lang in per for j in per[lang][i]}) for i in range(num_layers)]
    return NeuronSet(list(neurons), num_layers, size, per, selected, method, {"top_rate": 0.01}, "act", model)


SET = make_set(
    {
        "en": {0: [1, 2], 7: [3]},
        "fr": {0: [1], 1: [4, 5], 7: [3]},
        "de": {0: [1], 6: [9], 7: [3]},
    }
)


def test_distributions_and_classes():
    assert layer_distribution(SET)["fr"] == [1, 2, 0, 0, 0, 0, 0, 1]
    classes = class_distribution(SET)
    assert classes["agnostic"] == [1, 0, 0, 0, 0, 0, 0, 1]  # (0,1) and (7,3) belong to all three
    assert classes["specific"] == [1, 2, 0, 0, 0, 0, 1, 0]
    assert classes["related"] == [0] * 8


def test_language_overlap_counts_and_jaccard():
    ov = language_overlap(SET)
    assert ov["shared"][0] == [3, 2, 2]  # en: 3 neurons; shares (0,1),(7,3) with fr and de
    assert ov["jaccard"][0][1] == pytest.approx(2 / (3 + 4 - 2))
    assert ov["jaccard"][2][2] == 1.0


def test_segmentation_finds_planted_bands():
    profile = [9, 10, 9, 1, 0, 1, 1, 0, 8, 9, 2, 2]
    assert segment_profile(profile, 4) == [(0, 2), (3, 7), (8, 9), (10, 11)]
    assert segment_profile([5.0] * 3, 4) == [(0, 0), (1, 1), (2, 2)]  # never more bands than layers


def test_phase_profile_of_a_four_phase_set():
    per_layer = [6, 6, 5, 0, 1, 0, 1, 0, 7, 8, 1, 0]
    neurons = {"en": {i: list(range(n)) for i, n in enumerate(per_layer)}, "fr": {}}
    ns = make_set(neurons, num_layers=12, size=10)
    phases = phase_profile(ns)
    assert phases["n_phases"] == 4 and "BIC" in phases["chosen_by"]  # the data choose four here
    # by hand: RSS of the best 1..5-band fits (bands ≥ 2 layers), BIC = n ln(RSS/n) + 2k ln n
    rss = {1: 110.9167, 2: 80.6667, 3: 51.8667, 4: 2.8667, 5: 2.8333}
    for k, value in rss.items():
        assert phases["rss"][str(k)] == pytest.approx(value, abs=1e-3)
        assert phases["bic"][str(k)] == pytest.approx(12 * math.log(value / 12) + 2 * k * math.log(12), abs=1e-2)
    assert [b["layers"] for b in phases["bands"]] == [[0, 2], [3, 7], [8, 9], [10, 11]]
    assert [b["level"] for b in phases["bands"]] == ["high", "low", "high", "low"]
    assert sum(b["share"] for b in phases["bands"]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("per_layer", "want"),
    [([3] * 18, 1), ([8] * 9 + [1] * 9, 2), ([5, 5, 0, 0, 0, 0, 5, 5], 3)],
)
def test_phases_are_chosen_not_imposed(per_layer, want):
    """A flat profile is one phase, a step two: no single-layer phases at the ends of the model."""
    neurons = {"en": {i: list(range(n)) for i, n in enumerate(per_layer)}, "fr": {}}
    ns = make_set(neurons, num_layers=len(per_layer), size=10)
    phases = phase_profile(ns)
    assert phases["n_phases"] == want and len(phases["bands"]) == want
    assert all(b["layers"][1] - b["layers"][0] >= 1 for b in phases["bands"])  # at least 2 layers each
    assert phase_profile(ns, n_phases=4)["n_phases"] == 4 and phase_profile(ns, n_phases=4)["chosen_by"] == "imposed"


def test_phases_of_a_one_layer_model_are_one_band():
    ns = make_set({"en": {0: [1, 2]}, "fr": {}}, num_layers=1, size=10)
    assert [b["layers"] for b in phase_profile(ns)["bands"]] == [[0, 0]]


def test_method_overlap_and_class_transitions():
    other = make_set({"en": {0: [1]}, "fr": {0: [1], 1: [4]}, "de": {0: [1], 7: [3]}}, method="ap")
    ov = method_overlap(SET, other)
    assert ov["per_language"]["en"] == {"a": 3, "b": 1, "shared": 1, "jaccard": pytest.approx(1 / 3)}
    assert ov["selected"]["shared"] == 3  # (0,1), (1,4), (7,3)
    moved = class_transitions(SET, other)
    assert moved["agnostic"]["agnostic"] == 1  # (0,1)
    assert moved["agnostic"]["specific"] == 1  # (7,3): all three → de only
    assert moved["specific"]["none"] == 3  # (0,2), (1,5), (6,9)
    assert moved["specific"]["specific"] == 1  # (1,4)
    with pytest.raises(LangneuronsError):
        method_overlap(SET, make_set({"en": {}}, num_layers=4))


def test_depth_histogram_spreads_layers_over_relative_depth():
    assert depth_histogram([1, 1], bins=4) == pytest.approx([0.25, 0.25, 0.25, 0.25])
    assert depth_histogram([0, 0, 0, 4], bins=2) == pytest.approx([0.0, 1.0])
    assert sum(depth_histogram([3, 0, 5, 1, 2], bins=7)) == pytest.approx(1.0)
    assert mean_depth([1, 0, 0, 1]) == pytest.approx(0.5)
    assert mean_depth([0, 0]) is None


def write_run(path, ns: NeuronSet | None, manifest: dict | None = None, extra: dict | None = None):
    path.mkdir(parents=True)
    if manifest is not None:
        (path / "manifest.json").write_text(json.dumps(manifest))
    if ns is not None:
        ns.save(path / "lape.json")
    for name, data in (extra or {}).items():
        (path / name).write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def manifest(langs, layers=8, model="m"):
    return {"languages": langs, "model": model, "site": "act", "num_layers": layers, "intermediate_size": 10}


def test_load_run_reads_defensively(tmp_path):
    run = load_run(
        write_run(
            tmp_path / "r",
            SET,
            manifest(["en", "fr", "de"]),
            {
                "ppl.json": {"eval_languages": ["en"], "ppl": [[1.0]]},
                "steer-fr.json": {"success": 0.5},
                "broken.json": "{not json",
                "other.json": [1, 2],
            },
        )
    )
    assert set(run.neuron_sets) == {"lape"} and "ppl" in run.ppl and "steer-fr" in run.steer
    assert set(run.skipped) == {"broken.json", "other.json"}
    assert run.languages == ["en", "fr", "de"] and run.num_layers == 8
    with pytest.raises(LangneuronsError, match="no langneurons results"):
        load_run(write_run(tmp_path / "empty", None))


def test_compare_same_shape_runs(tmp_path):
    other = make_set({"en": {0: [1]}, "fr": {0: [1], 1: [4]}, "de": {0: [1], 7: [3]}})
    a = write_run(tmp_path / "a", SET, manifest(["en", "fr", "de"]))
    b = write_run(tmp_path / "b", other, manifest(["en", "fr", "de"]))
    result = compare_runs([load_run(a), load_run(b)])
    versus = result["sets"]["lape"]["versus_baseline"]["b"]
    assert versus["same_shape"]
    assert versus["overlap"]["per_language"]["de"]["jaccard"] == pytest.approx(2 / 3)
    assert versus["depth_shift"]["en"]["count_change"] == -2
    assert versus["class_transitions"]["agnostic"]["specific"] == 1


def test_compare_models_of_different_depth_by_relative_depth(tmp_path):
    shallow = make_set({"en": {0: [1], 3: [2]}, "fr": {3: [1]}}, num_layers=4)
    deep = make_set({"en": {0: [1], 1: [2], 6: [3], 7: [4]}, "fr": {5: [1], 6: [2]}}, num_layers=8)
    a = write_run(tmp_path / "small", shallow, manifest(["en", "fr"], 4))
    b = write_run(tmp_path / "large", deep, manifest(["en", "fr"], 8))
    result = compare_runs([load_run(a), load_run(b)])
    versus = result["sets"]["lape"]["versus_baseline"]["large"]
    assert not versus["same_shape"] and "overlap" not in versus
    assert versus["depth_shift"]["en"]["mean_depth_shift"] == pytest.approx(0.0)
    assert versus["depth_shift"]["fr"]["mean_depth_shift"] == pytest.approx(0.75 - 0.875)
    assert versus["depth_shift"]["en"]["histogram_l1"] == pytest.approx(0.0)


def test_compare_refuses_different_languages(tmp_path):
    a = write_run(tmp_path / "a", None, manifest(["en", "fr"]))
    b = write_run(tmp_path / "b", None, manifest(["en", "de"]))
    with pytest.raises(LangneuronsError, match="different languages"):
        compare_runs([load_run(a), load_run(b)])
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "different languages" in result.output
    assert "Traceback" not in result.output


def test_compare_command_writes_json_and_figures(tmp_path):
    sim = {
        "format": "langneurons-similarity/1",
        "languages": ["en", "fr", "de"],
        "per_layer": {"lrds": [0.1] * 8, "sads": [0.2] * 8},
        "whole_model": {"lrds": 0.1, "sads": 0.2},
    }
    a = write_run(tmp_path / "a", SET, manifest(["en", "fr", "de"]), {"similarity.json": sim})
    b = write_run(tmp_path / "b", SET, manifest(["de", "en", "fr"]), {"similarity.json": sim})
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "compare.json").read_text())
    assert data["sets"]["lape"]["versus_baseline"]["b"]["overlap"]["per_language"]["en"]["jaccard"] == 1.0
    assert (out / "compare-similarity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "compare-lape-depth.png").exists()


def test_compare_set_with_fewer_languages_than_its_run(tmp_path):
    """Review item 7: a set identified on a subset of the run's languages compares on the shared ones."""
    two = make_set({"en": {0: [1]}, "fr": {0: [1], 1: [4]}})
    a = write_run(tmp_path / "a", SET, manifest(["en", "fr", "de"]))
    b = write_run(tmp_path / "b", two, manifest(["en", "fr", "de"]))
    result = compare_runs([load_run(a), load_run(b)])
    versus = result["sets"]["lape"]["versus_baseline"]["b"]
    assert versus["languages_compared"] == ["en", "fr"] and versus["languages_left_out"] == ["de"]
    assert set(versus["depth_shift"]) == {"en", "fr"} and set(versus["overlap"]["per_language"]) == {"en", "fr"}
    out = tmp_path / "cmp"
    cli = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    assert "left out" in cli.output and "de" in cli.output
