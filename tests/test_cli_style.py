"""One error style on the command line: click's usage errors are one `error:` line with a did-you-mean, like
every other error; `--help` shows no `<bool>` for flags and every option says what it does."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
import typer.main
from test_distributed import run_env
from typer.testing import CliRunner

from langneurons.cli import app


def cli(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def commands() -> list[tuple[str, object, object]]:
    group = typer.main.get_command(app)
    ctx = typer.Context(group, info_name="langneurons")
    return [(name, group.get_command(ctx, name), ctx) for name in group.list_commands(ctx)]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["record", "--corpu", "x"],
         "error: no such option --corpu (did you mean --corpus?); see 'langneurons record --help'"),
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
        page = cli(name, "--help")
        assert page.exit_code == 0 and "<bool>" not in page.output, (name, page.output)
    assert not missing, f"options without help text: {missing}"
    assert not flag_types, flag_types
    assert "<bool>" not in cli("--help").output
