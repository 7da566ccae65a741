"""Calibrated steering (evaluation/calibrate.py) on planted ground truth, and `steer --calibrate` at the CLI.

The steerable model (tests/tiny.py) writes fluent bb text when neuron 0 is forced on, loops on "b0" when
neuron 1 is, and aa text otherwise. Two targets, both judged as the bb language: ``bb`` forces neuron 0 alone
(so it succeeds from a strength on and never loops), ``cc`` forces neuron 0 at 5 × and neuron 1 at 0.5 × the
strength (its per-unit values, like an AP set's ``on_p50``): at 0.02 nothing switches, at 0.2 neuron 0 switches
to fluent bb while neuron 1 is still too weak to loop, from 2 on neuron 1 makes it loop. The truth per target:
bb succeeds at 2 and 5 (the rule picks the weaker, 2), cc only at 0.2. Greedy decoding: no random draw.
"""

from __future__ import annotations

import importlib
import json

import pytest
from tiny import planted_language, steerable_model, tiny_model
from typer.testing import CliRunner

from langneurons.cli import app
from langneurons.data.prompts import split_prompts
from langneurons.errors import LangneuronsError
from langneurons.evaluation.calibrate import (
    CALIBRATION_RULE,
    DEFAULT_GRID,
    calibrate,
    calibration_grid,
    choose,
    steer_calibrated,
)
from langneurons.evaluation.steer import SteerSettings
from langneurons.formats.neuronset import NeuronSet

steer_module = importlib.import_module("langneurons.evaluation.steer")
PROMPTS = ["a1 a2", "s3", "a5 a6 a7", "a0", "s1 a2", "a3 s4"]
GRID = [("force", 0.02), ("force", 0.2), ("force", 2.0), ("force", 5.0)]


@pytest.fixture(scope="module")
def model():
    return steerable_model()


@pytest.fixture(autouse=True)
def planted_identifier(monkeypatch):
    monkeypatch.setattr(steer_module, "identify_language", planted_language)
    monkeypatch.setattr(steer_module, "to_label", lambda target: "bb" if target in ("bb", "cc") else target)


def planted_set(model) -> NeuronSet:
    f = model.adapter.intermediate_size
    return NeuronSet(["aa", "bb", "cc"], 1, f, {"aa": [[7]], "bb": [[0]], "cc": [[0, 1]]}, [[0, 1, 7]], "planted",
                     params={"on_p50": {"cc": [[5.0, 0.5]]}, "force": "on_p50"}, site="act",
                     model=model.name)  # fmt: skip


def settings() -> SteerSettings:
    return SteerSettings(mode="force", max_new_tokens=8, batch_size=4)


def test_calibration_picks_the_setting_the_planted_truth_says_succeeds_per_target(model):
    cal = calibrate(model, planted_set(model), None, PROMPTS[:4], "aa", ["bb", "cc"], settings(), GRID,
                    progress=False)  # fmt: skip
    success = {t: [p["success"] for p in points] for t, points in cal["curve"].items()}
    assert success == {"bb": [0.0, 0.0, 1.0, 1.0], "cc": [0.0, 1.0, 0.0, 0.0]}
    assert [p["fluent_rate"] for p in cal["curve"]["cc"]] == [1.0, 1.0, 0.0, 0.0]  # the loops: in bb, not fluent
    assert [p["language_rate"] for p in cal["curve"]["cc"]] == [0.0, 1.0, 1.0, 1.0]
    assert all(p["n"] == 4 and p["mode"] == "force" for points in cal["curve"].values() for p in points)
    assert (cal["chosen"]["bb"]["strength"], cal["chosen"]["cc"]["strength"]) == (2.0, 0.2)  # bb: the weaker of 2, 5
    assert cal["rule"] == CALIBRATION_RULE and cal["dev_baseline"] == {"bb": 0.0, "cc": 0.0}
    assert cal["grid"] == [{"mode": m, "strength": s} for m, s in GRID]


def test_the_test_split_runs_each_targets_own_setting_with_its_control(model):
    result = steer_calibrated(model, planted_set(model), None, PROMPTS, "aa", ["bb", "cc"], settings(),
                              dev_prompts=4, grid=GRID, progress=False)  # fmt: skip
    assert result["format"] == "langneurons-steer/1"
    bb, cc = (result["results"][t]["strengths"] for t in ("bb", "cc"))
    assert set(bb) == {"force 2"} and set(cc) == {"force 0.2"}  # one setting per target, its own
    for rows in (bb, cc):
        [row] = rows.values()
        assert row["steered"]["success"] == 1.0 and row["steered"]["n"] == 2
        assert row["random"]["language_rate"] == 0.0  # the matched control does not switch
    dev, test = split_prompts(PROMPTS, 4)
    for rows in (bb, cc):
        [row] = rows.values()
        assert [g["prompt"] for g in row["steered"]["generations"]] == test
    cal = result["calibration"]
    assert cal["dev_prompts"] == dev and cal["test_prompts"] == test and len(test) == len(PROMPTS) - 4
    assert set(cal) >= {"grid", "curve", "chosen", "rule", "dev_baseline", "wall_seconds"}
    assert result["provenance"]["n_prompts"] == 2 and result["provenance"]["settings"]["mode"] == "calibrated"
    assert [g["prompt"] for g in result["baseline_generations"]] == test


def test_report_shows_the_calibration_curve(model, tmp_path):
    from langneurons.reporting.sections.steering import steer_section

    result = steer_calibrated(model, planted_set(model), None, PROMPTS, "aa", ["bb", "cc"], settings(),
                              dev_prompts=4, grid=GRID, progress=False)  # fmt: skip
    section = steer_section("steer-planted", json.loads(json.dumps(result)))
    table = section.data["calibration"]
    assert len(table.rows) == 2 * len(GRID)
    chosen = [row[:2] for row in table.rows if row[-1] == "chosen"]
    assert chosen == [["→ bb", "force 2"], ["→ cc", "force 0.2"]]
    assert "Calibrated" in section.intro and "calibrated mode and strength" in section.intro
    assert [f.name for f in section.figures] == ["steer-planted-success.png", "steer-planted-calibration.png"]


@pytest.mark.parametrize(
    ("curve", "want"),
    [
        # the highest success wins, whatever its fluency
        ([(1.0, 0.5, 0.4), (1.0, 0.6, 0.9)], 1.0),
        # equal success: the higher fluent rate
        ([(1.0, 0.6, 0.6), (2.0, 0.6, 0.9)], 2.0),
        # equal success and fluency: the weaker strength, wherever it stands in the grid
        ([(4.0, 0.6, 0.9), (1.0, 0.6, 0.9), (2.0, 0.6, 0.9)], 1.0),
    ],
)
def test_ties_are_resolved_as_documented(curve, want):
    points = [{"mode": "add", "strength": st, "success": su, "fluent_rate": fl} for st, su, fl in curve]
    assert choose(points)["strength"] == want
    same = [{"mode": m, "strength": 1.0, "success": 0.5, "fluent_rate": 1.0} for m in ("replace", "add")]
    assert choose(same)["mode"] == "replace"  # then the grid's order


def test_grid_and_split():
    assert calibration_grid() == list(DEFAULT_GRID)
    assert calibration_grid() == [("replace", 0.5), ("replace", 1.0), ("replace", 1.5), ("replace", 2.0),
                                  ("add", 0.5), ("add", 0.75), ("add", 1.0), ("add", 2.0)]  # fmt: skip
    assert calibration_grid("add") == [("add", 0.5), ("add", 0.75), ("add", 1.0), ("add", 2.0)]
    assert calibration_grid(None, [1.0, 3.0]) == [("replace", 1.0), ("replace", 3.0)]
    assert calibration_grid("force", [2.0]) == [("force", 2.0)]
    with pytest.raises(LangneuronsError, match="--strength"):
        calibration_grid("force")
    assert split_prompts(list("abcde"), 3) == (["a", "c", "d"], ["b", "e"])  # evenly spaced: 0, 5/3, 10/3 rounded
    with pytest.raises(LangneuronsError, match="more than --dev-prompts 5"):
        split_prompts(list("abcde"), 5)


# ---- CLI ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from langneurons.data import Corpus
    from langneurons.models.loading import load_model
    from langneurons.recording import RecordSettings, record

    root = tmp_path_factory.mktemp("calibrate-cli")
    loaded = tiny_model("llama")
    loaded.model.save_pretrained(root / "model")
    loaded.tokenizer.save_pretrained(root / "model")
    reloaded = load_model(str(root / "model"), device="cpu")
    texts = {"aa": ["a1 a2 s1 a3", "a0 a4", "s2 a5 a6 a7"], "bb": ["b1 s1", "b0 b2 b3 b4 b5", "s5 s6 b6"]}
    corpus = Corpus("test", {k: [(str(i), t) for i, t in enumerate(v)] for k, v in texts.items()})
    record(reloaded, corpus, root / "run", RecordSettings(batch_size=2, chunk_batches=1, max_length=64),
           progress=False)  # fmt: skip
    a = reloaded.adapter
    NeuronSet(["aa", "bb"], a.num_layers, a.intermediate_size, {"aa": [[1, 4]] * a.num_layers,
              "bb": [[5, 6]] * a.num_layers}, [[1, 4, 5, 6]] * a.num_layers, "test", site="act",
              model=reloaded.name).save(root / "run" / "set.json")  # fmt: skip
    (root / "three.txt").write_text("a1 a2\ns1 a3\na4\n")
    (root / "four.txt").write_text("a1 a2\ns1 a3\na4\na5 a6\n")
    (root / "dirs.json").write_text("{}")
    return root


def base(saved, prompts: str, out: str) -> list[str]:
    return ["steer", "--model", str(saved / "model"), "--neurons", str(saved / "run" / "set.json"), "--from", "aa",
            "--to", "bb", "--prompts", str(saved / prompts), "--device", "cpu", "--max-new-tokens", "3",
            "--out", str(saved / out)]  # fmt: skip


def one_error(res) -> str:
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 2 and len(errors) == 1 and "Traceback" not in res.output, res.output
    return errors[0]


def test_cli_calibrates_by_default_and_writes_the_block(saved):
    res = CliRunner().invoke(app, [*base(saved, "four.txt", "cal.json"), "--dev-prompts", "2"])
    assert res.exit_code == 0, res.output
    data = json.loads((saved / "cal.json").read_text())
    cal = data["calibration"]
    assert len(cal["dev_prompts"]) == 2 and len(cal["test_prompts"]) == 2
    assert [(p["mode"], p["strength"]) for p in cal["curve"]["bb"]] == list(DEFAULT_GRID)
    chosen = cal["chosen"]["bb"]
    assert set(data["results"]["bb"]["strengths"]) == {f"{chosen['mode']} {chosen['strength']:g}"}
    assert set(data["results"]["bb"]["strengths"][f"{chosen['mode']} {chosen['strength']:g}"]) == {"steered",
                                                                                                     "random"}
    assert "chose" in res.output and "dev success" in res.output


def test_cli_an_explicit_strength_or_mode_turns_calibration_off(saved):
    res = CliRunner().invoke(app, [*base(saved, "three.txt", "plain.json"), "--mode", "add"])
    assert res.exit_code == 0, res.output  # three prompts would be too few to calibrate
    data = json.loads((saved / "plain.json").read_text())
    assert "calibration" not in data and set(data["results"]["bb"]["strengths"]) == {"1"}


def test_cli_calibrate_with_strengths_makes_them_the_grid(saved):
    res = CliRunner().invoke(app, [*base(saved, "four.txt", "grid.json"), "--calibrate", "--strength", "1,2",
                                   "--dev-prompts", "3"])  # fmt: skip
    assert res.exit_code == 0, res.output
    cal = json.loads((saved / "grid.json").read_text())["calibration"]
    assert cal["grid"] == [{"mode": "replace", "strength": 1.0}, {"mode": "replace", "strength": 2.0}]
    assert len(cal["test_prompts"]) == 1


@pytest.mark.parametrize(
    ("extra", "prompts", "needle"),
    [
        ([], "three.txt", "more than --dev-prompts 10 prompts"),  # the default is on: 3 prompts are too few
        (["--dev-prompts", "3"], "three.txt", "got 3"),
        (["--strength", "1", "--dev-prompts", "2"], "four.txt", "--dev-prompts applies with calibration only"),
        (["--calibrate", "--mode", "force", "--dev-prompts", "2"], "four.txt", "--strength"),
    ],
)
def test_cli_one_line_errors(saved, extra, prompts, needle):
    res = CliRunner().invoke(app, [*base(saved, prompts, "err.json"), *extra])
    assert needle in one_error(res)
    assert not (saved / "err.json").exists()


def test_cli_calibrate_refuses_directions(saved):
    res = CliRunner().invoke(app, ["steer", "--directions", str(saved / "dirs.json"), "--to", "bb", "--calibrate"])
    assert "--calibrate applies to --neurons only" in one_error(res)


def test_the_api_calibrates_on_request(model):
    import langneurons as ln

    result = ln.steer(model, planted_set(model), "bb,cc", source="aa", prompts=PROMPTS, settings=settings(),
                      calibrate=True, dev_prompts=4, grid=GRID, progress=False)  # fmt: skip
    assert {t: c["strength"] for t, c in result["calibration"]["chosen"].items()} == {"bb": 2.0, "cc": 0.2}
    plain = ln.steer(model, planted_set(model), "bb", source="aa", prompts=PROMPTS, settings=settings(),
                     progress=False)  # fmt: skip
    assert "calibration" not in plain and set(plain["results"]["bb"]["strengths"]) == {"1"}


def test_a_calibrated_result_turns_into_a_tidy_frame(model):
    import langneurons as ln

    result = ln.steer(model, planted_set(model), "bb,cc", source="aa", prompts=PROMPTS, settings=settings(),
                      calibrate=True, dev_prompts=4, grid=GRID, progress=False)  # fmt: skip
    frame = result.to_pandas()
    steered = frame[frame["condition"] == "steered"].set_index("target")
    assert steered.loc["bb", "mode"] == "force" and steered.loc["bb", "strength"] == 2.0
    assert steered.loc["cc", "strength"] == 0.2 and steered.loc["cc", "success"] == 1.0


def test_default_prompts_and_their_first_n():
    """The default English file: 60 prompts whose first 20 are the set the README's earlier runs used
    (`--prompts default:20`); a bad count is a one-line error."""
    from langneurons.data.prompts import load_prompts

    every = load_prompts("default", "en")
    assert len(every) == 60 and len(set(every)) == 60
    assert every[0] == "Yesterday I went to the market and" and every[19] == "The new museum in the centre of town"
    assert load_prompts("default:20", "en") == every[:20]
    for bad in ("default:0", "default:x", "default:61"):
        with pytest.raises(LangneuronsError, match="default"):
            load_prompts(bad, "en")
