"""No flag is silently ignored (issue "Controls that match, statistics that agree", parts 4 and 13).

Each flag that a path of a command does not use is refused in one line (exit code 2) before any model loads;
AutoSweep at the edge of its range and too few tokens per language are warned about and recorded.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from test_identify import make_stats
from typer.testing import CliRunner

import langneurons.cli.options as opt
from langneurons.cli import app
from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.stats import save_stats
from langneurons.identification import identify
from langneurons.reporting.sections.neuron_sets import neuron_set_section, warnings_text

# An existing folder: the model checks pass, so only a model load could touch it (and loading is patched to fail).
MODEL = ["--model", "{d}"]
STEER_DIR = ["steer", "--directions", "{d}/diffmean.json", "--to", "fr", *MODEL]
STEER_NS = ["steer", "--neurons", "{d}/lape.json", "--to", "fr", *MODEL]
PPL = ["ppl", "--neurons", "{d}/lape.json", *MODEL]
TRANSLATE = ["translate", "--pairs", "en-fr", "-o", "{d}/t.json", *MODEL]
BENCH = ["benchmark", "-o", "{d}/bench", *MODEL]
IDENTIFY = ["identify", "{d}/run"]

# (arguments, the flag the one-line error must name)
REFUSED = {
    "steer-directions-mode": ([*STEER_DIR, "--mode", "add"], "--mode"),
    "steer-directions-keep-source": ([*STEER_DIR, "--keep-source"], "--keep-source"),
    "steer-directions-deactivate-source": ([*STEER_DIR, "--deactivate-source"], "--deactivate-source"),
    "steer-directions-site": ([*STEER_DIR, "--site", "act"], "--site"),
    "steer-directions-any-site": ([*STEER_DIR, "--any-site"], "--any-site"),
    "steer-directions-stats": ([*STEER_DIR, "--stats", "{d}/run"], "--stats"),
    "steer-directions-controls-5": ([*STEER_DIR, "--controls", "5"], "--controls"),
    "steer-directions-route": ([*STEER_DIR, "--route", "bias:*:5:2"], "--route"),
    "steer-route-positions-without-route": ([*STEER_NS, "--route-positions", "prompt"], "--route-positions"),
    "steer-neurons-layers": ([*STEER_NS, "--layers", "3"], "--layers"),
    "steer-neurons-any-site-without-site": ([*STEER_NS, "--any-site"], "--any-site"),
    "steer-temperature-without-sample": ([*STEER_DIR, "--temperature", "0.7"], "--temperature"),
    "ppl-any-site-without-site": ([*PPL, "--any-site"], "--any-site"),
    "translate-no-controls-without-component": ([*TRANSLATE, "--no-controls"], "--no-controls"),
    "translate-controls-without-component": ([*TRANSLATE, "--controls"], "--controls"),
    "benchmark-strengths-diffmean-only": ([*BENCH, "--methods", "diffmean", "--strengths", "1"], "--strengths"),
    "benchmark-direction-strengths-no-diffmean": (
        [*BENCH, "--methods", "lape", "--direction-strengths", "0.1"],
        "--direction-strengths",
    ),
    "benchmark-direction-layers-no-diffmean": ([*BENCH, "--methods", "lape", "--direction-layers", "2"],
                                               "--direction-layers"),  # fmt: skip
    "identify-lape-lambda": ([*IDENTIFY, "--method", "lape", "--lambda", "0.1"], "--lambda"),
    "identify-lape-lambda-range": ([*IDENTIFY, "--method", "lape", "--lambda-range", "0,1"], "--lambda-range"),
    "identify-entropy-filter-rate": ([*IDENTIFY, "--method", "entropy-lambda", "--filter-rate", "0.9"],
                                     "--filter-rate"),  # fmt: skip
    "identify-fixed-lambda-range": (
        [*IDENTIFY, "--method", "entropy-lambda", "--lambda", "0.1", "--lambda-range", "0,1"],
        "--lambda-range",
    ),
    "identify-diffmean-top-rate": ([*IDENTIFY, "--method", "diffmean", "--top-rate", "0.01"], "--top-rate"),
    "identify-diffmean-lambda-range": ([*IDENTIFY, "--method", "diffmean", "--lambda-range", "0,1"],
                                       "--lambda-range"),  # fmt: skip
    "identify-diffmean-condition": ([*IDENTIFY, "--method", "diffmean", "--condition", "routed"], "--condition"),
}


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(self):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(opt.ModelOptions, "load", refuse)


@pytest.mark.parametrize("row", list(REFUSED))
def test_unused_flag_is_refused_before_the_model_loads(row, tmp_path, no_model_load):
    args, flag = REFUSED[row]
    result = CliRunner().invoke(app, [a.format(d=tmp_path) for a in args])
    assert result.exit_code == 2, (row, result.exit_code, result.output, result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.output.strip().endswith(errors[0]), result.output
    assert flag in errors[0], (row, errors[0])
    assert not list(tmp_path.rglob("*")), list(tmp_path.rglob("*"))  # nothing written


def specific_stats(n_tokens: int = 100):
    """K = 2, 2 layers × 4 neurons, each active in one language only: no λ ever gives an all-language neuron."""
    return make_stats([[[90, 80, 0, 0], [50, 0, 0, 0]], [[0, 0, 70, 60], [0, 0, 0, 40]]], [n_tokens, n_tokens])


def test_autosweep_at_the_top_of_its_range_is_recorded():
    ns = identify(specific_stats(), "entropy-lambda", lam="auto", top_rate=0.5, bar_ratio=0.5)
    assert ns.params["lambda"] == 0.2
    assert ns.params["autosweep"]["at_edge"] == "upper"
    assert "--lambda-range 0,0.4" in ns.params["warnings"][0]
    inside = identify(specific_stats(), "entropy-lambda", lam=0.1, top_rate=0.5, bar_ratio=0.5)
    assert "warnings" not in inside.params and "autosweep" not in inside.params


def test_identify_cli_warns_at_the_edge_and_for_few_tokens(tmp_path):
    save_stats(tmp_path / "run", specific_stats())
    args = ["identify", str(tmp_path / "run"), "--method", "entropy-lambda", "--top-rate", "0.5",
            "--bar-ratio", "0.5"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.output
    assert "--lambda-range" in warnings[0] and "few tokens" in warnings[1], warnings
    params = json.loads((tmp_path / "run" / "entropy-lambda.json").read_text())["params"]
    assert params["autosweep"]["at_edge"] == "upper" and len(params["warnings"]) == 2
    # --lambda-range widens the search (the toy qualifies everywhere, so it stops at the new top).
    result = CliRunner().invoke(app, [*args, "--lambda-range", "0,0.5", "--overwrite"])
    assert result.exit_code == 0, result.output
    ns = NeuronSet.load(tmp_path / "run" / "entropy-lambda.json")
    assert ns.params["lambda"] == 0.5 and ns.params["autosweep"]["hi"] == 0.5
    # The report's neuron-set section says so.
    section = neuron_set_section(SimpleNamespace(info={}), "entropy-lambda", ns)
    assert "Warning: AutoSweep chose lambda = 0.5, the top of its range" in section.intro
    assert "few tokens" in section.intro


def test_enough_tokens_and_an_inner_lambda_give_no_warning(tmp_path):
    save_stats(tmp_path / "run", specific_stats(n_tokens=100_000))
    result = CliRunner().invoke(app, ["identify", str(tmp_path / "run"), "--method", "lape", "--top-rate", "0.5"])
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.output
    assert warnings_text(NeuronSet.load(tmp_path / "run" / "lape.json")) == ""


def test_inputs_are_checked_before_outputs_and_codes_are_forgiving(tmp_path):
    """A missing corpus is named even when the output folder already holds a run; 'en fr' asks for commas;
    upper-case codes are read as lower-case."""
    from langneurons.data import parse_languages

    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    res = CliRunner().invoke(app, ["record", "--corpus", str(tmp_path / "missing.jsonl"), "-o", str(out)])
    assert res.exit_code == 2 and "missing.jsonl does not exist" in res.output and "--overwrite" not in res.output
    res = CliRunner().invoke(app, ["record", "--languages", "en fr", "-o", str(tmp_path / "new")])
    assert res.exit_code == 2 and "separate language codes with commas: 'en,fr'" in res.output
    assert parse_languages("EN,Fr,pt-BR") == ["en", "Fr", "pt-BR"] and parse_languages("ZH") == ["zh"]


def test_an_unreachable_hub_id_fails_at_once_with_a_suggestion(monkeypatch, tmp_path):
    import time

    from langneurons.modelspec import check_hub_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.chdir(tmp_path)
    (tmp_path / "embeded").mkdir()
    (tmp_path / "embeded" / "config.json").write_text("{}")
    started = time.monotonic()
    with pytest.raises(LangneuronsError, match="not in the local cache and HF_HUB_OFFLINE is set: did you mean"):
        check_hub_model("someone/embeded")
    assert time.monotonic() - started < 2.0
    with pytest.raises(LangneuronsError, match="'embeded', 'embedded'"):  # the close local folder, then embedded
        check_hub_model("someone/embeded")
    check_hub_model("embedded")  # not a hub id: nothing to check
    check_hub_model(str(tmp_path / "embeded"))  # a local folder
