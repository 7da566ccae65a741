"""One error style on the command line: click's usage errors are one `error:` line with a did-you-mean, like
every other error; `--help` shows no `<bool>` for flags and every option says what it does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import typer.main
from test_distributed import run_env
from typer.testing import CliRunner

from langneurons.cli import app
from langneurons.cli.app import click_exceptions


def cli(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def commands() -> list[tuple[str, object, object]]:
    """Every command, sub-commands of groups (`import tang`) included, as (name, command, context)."""
    found, todo = [], [("", typer.main.get_command(app))]
    while todo:
        prefix, group = todo.pop()
        ctx = typer.Context(group, info_name="langneurons")
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if hasattr(command, "list_commands"):
                todo.append((f"{prefix}{name} ", command))
            else:
                found.append((f"{prefix}{name}", command, ctx))
    return found


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["record", "--corpsu", "x"],
         "error: no such option --corpsu (did you mean --corpus?); see 'langneurons record --help'"),
        (["steer", "--direction", "x"], "error: no such option --direction (did you mean --directions?)"),
        (["record", "--bogus", "x"], "error: no such option --bogus; see 'langneurons record --help'"),
        (["recrd"], "error: no such command recrd (did you mean record?); see 'langneurons --help'"),
        (["identify"], "error: missing argument 'run_dir'"),
        (["record", "-o", "x", "--batch-size", "many"], "error: invalid value for '--batch-size'"),
    ],
)
def test_usage_errors_are_one_line_with_a_suggestion(args, expected):
    result = cli(*args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith(expected), result.output
    assert not any(c in result.output for c in "╭│╰") and "Usage:" not in result.output


def test_usage_error_from_the_console_entry_point_is_one_line():
    """`python -m langneurons` goes through `main()`: the same single line, the program named `langneurons`."""
    done = subprocess.run([sys.executable, "-m", "langneurons", "record", "--langauges", "en"],
                          capture_output=True, text=True, env=run_env(), timeout=60)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == ("error: no such option --langauges (did you mean --languages?); "
                                   "see 'langneurons record --help'")  # fmt: skip


def test_help_and_version_still_exit_zero():
    assert cli("--help").exit_code == 0 and cli("record", "--help").exit_code == 0
    assert cli("--version").exit_code == 0


def test_every_option_of_every_command_has_help_and_flags_show_no_type():
    missing, flag_types = [], []
    for name, command, ctx in commands():
        for param in command.get_params(ctx):
            if getattr(param, "hidden", False):
                continue
            if not (getattr(param, "help", None) or "").strip():
                missing.append(f"{name} {param.name}")
            if getattr(param, "is_flag", False) and param.metavar != "":
                flag_types.append(f"{name} {param.name}")
        page = cli(*name.split(), "--help")
        assert page.exit_code == 0 and "<bool>" not in page.output, (name, page.output)
    assert not missing, f"options without help text: {missing}"
    assert not flag_types, flag_types
    assert "<bool>" not in cli("--help").output


# ---- inputs before outputs, before torch, before the model -------------------------------------------
def write_sets(folder):
    """A neuron set (lape.json, site act, languages aa/bb) and a direction set header, with outputs already there."""
    from langneurons.formats.neuronset import NeuronSet

    NeuronSet(languages=["aa", "bb"], num_layers=2, intermediate_size=8, neurons={"aa": [[1], [2]], "bb": [[3], []]},
              selected=[[1, 3], [2]], method="lape", site="act", model="toy").save(folder / "lape.json")  # fmt: skip
    (folder / "diffmean.json").write_text(json.dumps({"format": "langneurons-directions/1", "languages": ["aa", "bb"],
                                                      "tensors": "diffmean.safetensors"}))  # fmt: skip
    for name in ("steer-lape.json", "steer-diffmean.json", "ppl-lape.json"):
        (folder / name).write_text("{}")  # an earlier result: the input mistake must still be named first


STEER = ["steer", "--model", "{d}"]
INPUT_FIRST = {
    "directions given a neuron set": (
        [*STEER, "--directions", "{d}/lape.json", "--to", "aa"],
        "is a neuron set (from `identify --method lape`), not a direction set: pass it as --neurons",
    ),
    "neurons given a direction set": (
        [*STEER, "--neurons", "{d}/diffmean.json", "--to", "aa"],
        "is a direction set (from `identify --method diffmean`), not a neuron set: pass it as --directions",
    ),
    "target not in the set": ([*STEER, "--neurons", "{d}/lape.json", "--to", "de"],
                              "--to de: not a language of"),  # fmt: skip
    "target close to one in the set": ([*STEER, "--directions", "{d}/diffmean.json", "--to", "AA,b"],
                                       "did you mean bb?"),  # fmt: skip
    "site of another set": ([*STEER, "--neurons", "{d}/lape.json", "--to", "aa", "--site", "down_in"],
                            "add --any-site to apply it at 'down_in' anyway"),  # fmt: skip
    "unknown site": (["ppl", "--model", "{d}", "--neurons", "{d}/lape.json", "--site", "mlp"], "unknown --site 'mlp'"),
    "unknown dtype": ([*STEER, "--neurons", "{d}/lape.json", "--to", "aa", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    "unknown device": ([*STEER, "--neurons", "{d}/lape.json", "--to", "aa", "--device", "gpu"],
                       "unknown device 'gpu'"),  # fmt: skip
    "unknown mode": ([*STEER, "--neurons", "{d}/lape.json", "--to", "aa", "--from", "bb", "--mode", "foo"],
                     "unknown --mode 'foo'"),  # fmt: skip
    "source not in the set": ([*STEER, "--neurons", "{d}/lape.json", "--to", "aa"],
                              "source 'en' is not in the neuron set: pass --keep-source"),  # fmt: skip
    "missing set": ([*STEER, "--neurons", "{d}/nope.json", "--to", "aa"], "--neurons"),
    "record, corpus missing": (["record", "--corpus", "{d}/missing.jsonl", "-o", "{d}"], "does not exist"),
    "record, codes without commas": (["record", "--languages", "en fr", "-o", "{d}"], "separate language codes"),
    "ppl site of another set": (["ppl", "--model", "{d}", "--neurons", "{d}/lape.json", "--site", "down_in"],
                                "--any-site"),  # fmt: skip
}


@pytest.mark.parametrize("row", list(INPUT_FIRST))
def test_input_mistakes_are_named_before_an_existing_output_and_before_torch(row, tmp_path):
    """The real mistake, not "output exists", and found without importing torch (so in well under 2 s)."""
    write_sets(tmp_path)
    args, expected = INPUT_FIRST[row]
    argv = [a.format(d=tmp_path) for a in args]
    code = ("import sys; from langneurons.cli import main; sys.argv = ['langneurons', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    print(exc.code, 'torch' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=run_env(),
                          timeout=60)  # fmt: skip
    assert done.stdout.split() == ["2", "False"], (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr
    assert "--overwrite" not in done.stderr


def test_dtype_aliases_are_accepted():
    from langneurons.modelspec import dtype_name

    assert [dtype_name(d) for d in ("fp16", "BF16", "fp32", "half", "float16", "auto")] == [
        "float16", "bfloat16", "float32", "float16", "float16", "auto"]


def test_dtype_alias_reaches_the_model_load(tmp_path, monkeypatch):
    """`--dtype bf16` passes the checks and is handed to the loader spelled out."""
    import langneurons.cli.options as opt

    seen = {}

    def load(self):
        seen["dtype"] = self.dtype
        raise SystemExit(0)

    monkeypatch.setattr(opt.ModelOptions, "load", load)
    write_sets(tmp_path)
    result = cli("steer", "--model", tmp_path, "--neurons", tmp_path / "lape.json", "--to", "aa", "--keep-source",
                 "--mode", "none", "--dtype", "bf16", "-o", tmp_path / "new.json")  # fmt: skip
    assert result.exit_code == 0 and seen == {"dtype": "bfloat16"}, result.output


# ---- no silent partial result ------------------------------------------------------------------------
def test_compare_with_nothing_comparable_is_an_error_and_similarity_only_is_a_warning(tmp_path):
    from test_analyze import SET, manifest, write_run

    a = write_run(tmp_path / "a", SET, manifest(["en", "fr", "de"]))
    b = write_run(tmp_path / "b", None, manifest(["en", "fr", "de"]), {"ppl-x.json": {"eval_languages": ["en"]}})
    result = cli("compare", a, b, "-o", tmp_path / "cmp")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: nothing to compare: no neuron set is in every run") and \
        f"{b}: no neuron set" in result.output and "identify" in result.output  # fmt: skip
    assert not (tmp_path / "cmp").exists()
    sim = {"format": "langneurons-similarity/1", "languages": ["en", "fr", "de"],
           "per_layer": {"lrds": [0.1] * 8, "sads": [0.2] * 8}, "whole_model": {"lrds": 0.1, "sads": 0.2}}  # fmt: skip
    for run in (a, b):
        (run / "similarity.json").write_text(json.dumps(sim))
    result = cli("compare", a, b, "-o", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    assert "warning: no neuron set is in every run: compared the similarity curves only" in result.output


def test_report_shows_a_direction_set_found_in_the_run(tmp_path):
    from test_analyze import manifest

    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps(manifest(["aa", "bb"], layers=3)))
    (run / "diffmean.json").write_text(json.dumps({
        "format": "langneurons-directions/1", "method": "diffmean", "model": "tiny", "site": "residual",
        "languages": ["aa", "bb"], "num_layers": 3, "hidden_size": 16, "tensors": "diffmean.safetensors",
        "norms": {"aa": [1.0, 2.0, 3.0], "bb": [4.0, 1.0, 1.0]}, "resid_norm": [10.0, 10.0, 10.0]}))  # fmt: skip
    result = cli("report", run)
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text()
    assert "Direction set: diffmean" in page and "Files not used" not in page
    assert "<td>aa</td><td>0.100</td><td>0.200</td><td>0.300</td><td>2 (0.300)</td>" in page.replace("\n", "")
    assert "langneurons steer --model tiny --directions diffmean.json --to aa" in page


def test_corpus_file_named_by_a_language_name_is_refused_with_a_hint(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "english.txt").write_text("hello there\n")
    (corpus / "fr.txt").write_text("bonjour\n")
    (corpus / "pt-BR.txt").write_text("olá\n")
    result = cli("record", "--corpus", corpus, "-o", tmp_path / "run")
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: corpus folder {corpus}: english.txt not named by a language code (name "
                                     "each file <code>.txt: en.txt, fr.txt, pt-BR.txt; rename english.txt → en.txt)")
    (corpus / "english.txt").rename(corpus / "en.txt")
    from langneurons.data import load_corpus

    assert list(load_corpus(str(corpus)).languages) == ["en", "fr", "pt-BR"]


# ---- re-runs -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory):
    from test_distributed import make_inputs

    root = tmp_path_factory.mktemp("rerun")
    model, corpus = make_inputs(root, sentences=6)
    return root, model, corpus


def test_the_readme_first_command_runs_twice(tiny_inputs, tmp_path):
    """record && identify && report, twice: the second time the run and the set are kept (said so), the report
    regenerated; a changed input is refused with the difference named."""
    _, model, corpus = tiny_inputs
    run = tmp_path / "run"
    record = ["record", "--model", model, "--corpus", corpus, "--max-length", "32", "--out", run]
    chain = [record, ["identify", run, "--method", "lape"], ["report", run]]
    first = [cli(*args) for args in chain]
    assert [r.exit_code for r in first] == [0, 0, 0], [r.output for r in first]
    stamp = (run / "stats.safetensors").stat().st_mtime_ns, (run / "lape.json").stat().st_mtime_ns
    second = [cli(*args) for args in chain]
    assert [r.exit_code for r in second] == [0, 0, 0], [r.output for r in second]
    assert f"{run} already holds this run (same model, corpus and settings): reused it" in second[0].output
    assert f"{run / 'lape.json'} is up to date (same statistics and parameters); kept it" in second[1].output
    assert "(replaced the earlier one)" in second[2].output
    assert ((run / "stats.safetensors").stat().st_mtime_ns, (run / "lape.json").stat().st_mtime_ns) == stamp
    changed = cli(*record, "--sentences", "3")
    assert changed.exit_code == 2
    assert changed.output.strip().splitlines()[-1].startswith(
        f"error: {run} holds a finished run of other inputs: sentences.aa 6 → 3; sentences.bb 6 → 3")
    assert cli(*record, "--sentences", "3", "--overwrite").exit_code == 0
    changed = cli("identify", run, "--method", "lape")  # the statistics changed under the set
    assert changed.exit_code == 2 and f"error: {run / 'lape.json'} holds a neuron set of other inputs: source." \
        in changed.output, changed.output  # fmt: skip


def test_a_report_path_holding_something_else_needs_overwrite(tmp_path):
    from test_analyze import SET, manifest, write_run

    run = write_run(tmp_path / "run", SET, manifest(["en", "fr", "de"]))
    (tmp_path / "notes.html").write_text("<html>my notes</html>")
    result = cli("report", run, "-o", tmp_path / "notes.html")
    assert result.exit_code == 2 and "is not a langneurons report or figure; pass --overwrite" in result.output
    assert cli("report", run, "-o", tmp_path / "notes.html", "--overwrite").exit_code == 0


# ---- output: factors as in the report, tables not dicts, no wrapped paths, pasteable next commands -----
def test_ppl_prints_ratios_and_the_next_command_with_the_real_model(tiny_inputs, tmp_path):
    _, model, corpus = tiny_inputs
    run = tmp_path / "run"
    assert cli("record", "--model", model, "--corpus", corpus, "--max-length", "32", "--shards", "3",
               "-o", run).exit_code == 0  # fmt: skip
    assert cli("identify", run, "--method", "lape", "--top-rate", "0.1").exit_code == 0
    done = cli("ppl", "--model", model, "--neurons", run / "lape.json", "--corpus", corpus, "--sentences", "3",
               "--max-length", "32")  # fmt: skip
    assert done.exit_code == 0, done.output
    rows = [line for line in done.output.splitlines() if "neurons off:" in line]
    assert len(rows) == 3 and all("PPL on" in r and " ×" in r and "%" not in r for r in rows), rows
    assert f"next: langneurons steer --model {model} --neurons {run / 'lape.json'} --to aa && " \
           f"langneurons report {run}" in done.output  # fmt: skip
    sens = cli("stability", run, "--bootstrap", "3", "--split-half", "0", "--no-data-size")
    assert sens.exit_code == 0, sens.output
    assert "threshold sensitivity: 25 settings against the default (top_rate=0.01" in sens.output
    assert "{'" not in sens.output and "mean Jaccard with the default" in sens.output
    assert sens.output.rstrip().endswith(f"next: langneurons report {run}")


def test_a_log_file_never_has_a_path_wrapped(tiny_inputs):
    """Written to a pipe, rich would wrap at 80 columns: the long path must stay on its line."""
    _, model, corpus = tiny_inputs
    deep = Path(model).parent / ("a-rather-long-folder-name-" * 3) / "run"
    args = ["record", "--model", model, "--corpus", corpus, "--max-length", "32", "-o", str(deep)]
    assert cli(*args).exit_code == 0
    done = subprocess.run([sys.executable, "-m", "langneurons", "identify", str(deep), "--method", "diffmean"],
                          capture_output=True, text=True, env=run_env(), timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"wrote {deep / 'diffmean.json'} and diffmean.safetensors" in done.stdout
    assert f"next: langneurons steer --model {model} --directions {deep / 'diffmean.json'} --to aa" in done.stderr


# ---- --quiet and --json on every command -------------------------------------------------------------
def test_every_command_has_quiet_and_json():
    for name, command, ctx in commands():
        opts = {o for p in command.get_params(ctx) for o in p.opts}
        assert {"--quiet", "-q", "--json"} <= opts, name


def test_json_prints_one_summary_on_stdout_and_quiet_prints_nothing_but_problems(tiny_inputs, tmp_path):
    _, model, corpus = tiny_inputs
    run = tmp_path / "run"
    args = [sys.executable, "-m", "langneurons", "record", "--model", model, "--corpus", corpus, "--max-length", "32",
            "-o", str(run)]  # fmt: skip
    env = run_env() | {"LANGNEURONS_PROGRESS_SECONDS": "0"}
    done = subprocess.run([*args, "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # stdout is the JSON object alone
    assert summary["command"] == "record" and summary["ok"] and summary["outputs"] == [str(run)]
    assert summary["next"] == f"langneurons identify {run} --method lape"
    quiet = subprocess.run([*args, "-q"], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == "", quiet.stderr
    wrong = subprocess.run([sys.executable, "-m", "langneurons", "identify", str(run), "--method", "lape",
                            "--top-rate", "2", "--json", "-q"], capture_output=True, text=True, env=env, timeout=60)
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: ")
    assert json.loads(wrong.stdout) | {"error": ""} == {
        "command": "identify", "ok": False, "exit_code": 2, "outputs": [], "next": None, "warnings": [], "notes": [],
        "error": ""}  # fmt: skip


# ---- progress -----------------------------------------------------------------------------------------
def test_eta_follows_the_recent_rate_not_a_slow_start(monkeypatch, capsys):
    """A 60 s load before the first unit, then 1 unit/s: the ETA is the ~400 s left, not 2.7× that (the mean
    since the start would say ~1,100 s)."""
    import langneurons.progress as progress

    bar = progress.LineProgress("units", interval=1e9)
    task = bar.add_task("recording", total=1000)
    clock = [bar.tasks[task].started]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    clock[0] += 60.0
    bar.update(task, completed=1)
    for done in range(2, 601):  # 1 unit per second for ~10 minutes
        clock[0] += 1.0
        bar.update(task, completed=done)
    line = bar.line(bar.tasks[task])
    left = line.rsplit(", ", 1)[1]
    assert left.endswith(" left") and left in ("6m40s left", "6m39s left", "6m41s left"), line


def test_record_progress_moves_per_batch_not_per_unit(tiny_inputs, tmp_path):
    """One unit of 3 batches: the log shows the sentences of each batch, not one jump per unit."""
    _, model, corpus = tiny_inputs
    env = run_env() | {"LANGNEURONS_PROGRESS_SECONDS": "0"}
    done = subprocess.run([sys.executable, "-m", "langneurons", "record", "--model", model, "--corpus", corpus,
                           "--languages", "aa", "--batch-size", "2", "--chunk-batches", "3", "--max-length", "32",
                           "-o", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    counts = [line.split(": ")[1].split(" ")[0] for line in done.stderr.splitlines() if line.startswith("recording")]
    assert counts[:3] == ["2/6", "4/6", "6/6"], done.stderr


# ---- Ctrl-C -------------------------------------------------------------------------------------------
def test_first_ctrl_c_says_what_it_does_and_the_checkpoint_named_exists(tmp_path):
    import signal

    from test_distributed import make_inputs
    from test_resume import command

    from langneurons.recording.recorder import CHECKPOINT_FILE, UNIT_DELAY_ENV

    model, corpus = make_inputs(tmp_path)
    out = tmp_path / "run"
    env = run_env() | {UNIT_DELAY_ENV: "0.3", "LANGNEURONS_PROGRESS_SECONDS": "0"}
    proc = subprocess.Popen(command(model, corpus, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    seen = []
    for line in proc.stderr:  # wait for the counting to run, then press Ctrl-C once
        seen.append(line)
        if line.startswith("recording "):
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)[1], None
    log = "".join(seen) + rest
    assert proc.returncode == 130, log
    assert "Ctrl-C: finishing the current unit of work (2 batches at most), then saving a checkpoint; press " \
        "Ctrl-C again to stop now" in log  # fmt: skip
    assert f"interrupted: the checkpoint {out / CHECKPOINT_FILE} is kept; rerun the same command to resume" in log
    assert (out / CHECKPOINT_FILE).is_file() and not (out / "manifest.json").exists()


def test_interrupted_before_any_checkpoint_names_none(tmp_path):
    from langneurons.cli.record_cmds import interrupted_message

    assert interrupted_message(tmp_path / "never-made") == (
        "interrupted before the first checkpoint: nothing was saved; rerun the same command to start again")


# ---- every documented command line parses ----------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
STOP = {"&&", "||", "|", ";", ">", ">>", "2>&1", "#", "\\"}


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, arguments after `langneurons`) for every command line in README.md and docs/*.md: fenced code
    lines and inline code spans that run `langneurons SUBCOMMAND ...` (also as `-m langneurons` or .venv/bin/)."""
    import re
    import shlex

    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        fenced = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
        candidates = [line for block in fenced for line in block.replace("\\\n", " ").splitlines()]
        candidates += re.findall(r"`([^`\n]*langneurons [a-z][^`\n]*)`", text)
        for line in candidates:
            if re.search(r"(import|install|from) langneurons", line):
                continue
            for match in re.finditer(r"(?:^|\s|/|-m )langneurons ((?:[a-z][a-z-]*)(?: .*)?)$", line.split(" # ")[0]):
                words = []
                for word in shlex.split(match.group(1).replace("[", " ").replace("]", " ")):
                    if word in STOP or word.startswith("#"):
                        break
                    words.append(word)
                found.append((f"{doc.name}: {line.strip()[:80]}", words))
    return found


def parse_only(words: list[str]) -> None:
    """Parse a command line as the CLI would, without running it: an unknown command, an unknown option or an
    extra argument raises; a placeholder value (N, RUN_DIR) and a left-out required option do not."""
    group = typer.main.get_command(app)
    ctx = group.make_context("langneurons", list(words))
    args = [*ctx._protected_args, *ctx.args]
    while hasattr(group, "list_commands"):
        name, command, args = group.resolve_command(ctx, args)
        values = {o for p in command.get_params(ctx) if not getattr(p, "is_flag", False) for o in p.opts}
        cleaned = []
        for word in args:  # an elision: "--model ..." keeps a value, "record ... --lid-filter" drops it
            if word in ("...", "…") or word.endswith(("...", "…")):
                if cleaned and cleaned[-1] in values:
                    cleaned.append("X")
                continue
            cleaned.append(word)
        try:
            ctx = command.make_context(name, cleaned, parent=ctx)
        except (typer.BadParameter, click_exceptions.MissingParameter):
            return
        group, args = command, [*getattr(ctx, "_protected_args", []), *ctx.args]


def test_the_documented_commands_exist():
    assert len(documented_commands()) > 30  # README and docs show many; the extraction must find them


@pytest.mark.parametrize(("where", "words"), documented_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_documented_command_line_parses(where, words):
    try:
        parse_only(words)
    except click_exceptions.UsageError as exc:
        pytest.fail(f"{where}: {exc.format_message()}")


def test_the_parser_check_catches_an_unknown_option():
    with pytest.raises(click_exceptions.NoSuchOption):
        parse_only(["record", "--model", "embedded", "--langauges", "en", "-o", "x"])
    with pytest.raises(click_exceptions.UsageError):
        parse_only(["recrod", "-o", "x"])
    parse_only(["record", "--sentences", "N", "-o", "RUN"])  # a placeholder value is fine


# ---- figures ------------------------------------------------------------------------------------------
def test_a_direction_sweep_is_drawn_as_an_alpha_by_layer_heatmap():
    import langneurons.reporting.evaluation as ev
    from langneurons.reporting.sections.steering import steer_section

    strengths = {f"{a} @ layer {layer}": {"steered": {"success": a * layer / 10, "n": 4}, "random": {"success": 0.0}}
                 for a in (0.1, 0.5) for layer in (2, 4, 6)}  # fmt: skip
    data = {"results": {"fr": {"strengths": strengths, "baseline": {"success": 0.25, "n": 4}}}}
    sweep = ev.direction_sweep(data)
    assert sweep["alphas"] == [0.1, 0.5] and sweep["layers"] == [2, 4, 6]
    assert [round(v, 6) for row in sweep["targets"]["fr"]["steered"] for v in row] == [0.02, 0.1, 0.04, 0.2, 0.06, 0.3]
    assert sweep["targets"]["fr"]["baseline"] == 0.25
    section = steer_section("steer-diffmean", data)
    assert [f.name for f in section.figures] == ["steer-diffmean-sweep.png"]
    assert section.figures[0].png[:8] == b"\x89PNG\r\n\x1a\n"
    assert ev.direction_sweep({"results": {"fr": {"strengths": {"1.0": {}}}}}) is None  # neuron steering: bars


# ---- similarity: bootstrap bands, peaks only where they stand out ------------------------------------------
def test_a_weighted_resample_equals_the_scores_of_the_drawn_rows():
    import torch
    from test_similarity import meaning_data

    from langneurons.analysis.similarity import SIDES, cosine_matrix, pair_masks, resample_weights, resampled_scores

    langs, ids, x = meaning_data(n_lang=3, n_sent=5)
    sim = cosine_matrix(x[:, 0])
    masks = pair_masks(langs, ids)
    w = resample_weights(ids, 4, seed=3)
    pairs = {name: ((w @ masks[name].double()) * w).sum(1) for name in SIDES}
    got = resampled_scores(sim, masks, w, pairs)
    for b in range(4):  # the drawn rows written out, copies of one row never paired with each other
        rows = [i for i in range(len(ids)) for _ in range(int(w[b, i]))]
        sums = dict.fromkeys(SIDES, 0.0)
        counts = dict.fromkeys(SIDES, 0)
        for p in range(len(rows)):
            for q in range(len(rows)):
                i, j = rows[p], rows[q]
                for name in SIDES:
                    if i != j and masks[name][i, j]:
                        sums[name] += float(sim[i, j])
                        counts[name] += 1
        mean = {name: sums[name] / counts[name] for name in SIDES}
        assert float(got["lrds"][b]) == pytest.approx(mean["same_language"] - mean["different_language"], abs=1e-12)
        assert float(got["sads"][b]) == pytest.approx(mean["same_meaning"] - mean["different_meaning"], abs=1e-12)
    assert torch.equal(w.sum(1), torch.full((4,), float(len(ids))))  # every resample draws as many rows


def test_a_peak_is_claimed_only_where_it_stands_outside_the_bands():
    import torch
    from test_similarity import meaning_data, synthetic

    from langneurons.analysis.similarity import similarity

    langs, ids, x = meaning_data(n_lang=3, n_sent=30)
    base, noise = x[:, 0], torch.randn(x.shape[0], 6, x.shape[2], generator=torch.Generator().manual_seed(5))
    peaked = torch.stack([(2.0 if layer == 3 else 0.15) * base + noise[:, layer] for layer in range(6)], 1)
    flat = torch.stack([0.5 * base + noise[:, layer] for layer in range(6)], 1)
    one = similarity(synthetic(langs, ids, peaked), bootstrap=100)
    assert one["peaks"]["sads"]["layer"] == 3 and one["peaks"]["sads"]["stands_out"] is True
    lo, hi = one["per_layer_ci95"]["sads"][3]
    assert lo < one["per_layer"]["sads"][3] < hi and one["bootstrap"]["resamples"] == 100
    assert similarity(synthetic(langs, ids, flat), bootstrap=100)["peaks"]["sads"]["stands_out"] is False
    assert "stands_out" not in similarity(synthetic(langs, ids, flat), bootstrap=0)["peaks"]["sads"]
