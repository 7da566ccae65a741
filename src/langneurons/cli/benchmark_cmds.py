"""CLI: `benchmark` (every method through the same causal tests: one JSON, one table, one figure)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

import langneurons.cli.options as opt
from langneurons.cli.app import app, one_line_errors
from langneurons.cli.common import (
    capped_max_length,
    check_out_folder,
    check_positive,
    check_sentences,
    make_console,
)
from langneurons.errors import LangneuronsError


def _numbers(text: str | None, cast, flag: str) -> list | None:
    if text is None:
        return None
    try:
        values = [cast(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LangneuronsError(f"{flag} must be numbers separated by commas, got {text!r}") from None
    if not values:
        raise LangneuronsError(f"{flag} is empty")
    return values


def _ranges(text: str | None) -> list[list[int]] | None:
    """``0-17,4-12`` → [[0, 17], [4, 12]] (CLaS layer ranges, first-last inclusive)."""
    if text is None:
        return None
    out = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        first, sep, last = item.partition("-")
        if not sep or not first.isdigit() or not last.isdigit():
            raise LangneuronsError(f"--clas-ranges must be first-last layer ranges separated by commas, got {item!r}")
        out.append([int(first), int(last)])
    if not out:
        raise LangneuronsError("--clas-ranges is empty")
    return out


# sweep option → the methods it applies to
SWEEPS = {
    "--strengths": ("lape", "entropy-lambda", "ap", "key-neurons", "attribution-neurons"),
    "--head-strengths": ("attribution-heads",),
    "--direction-strengths": ("diffmean",),
    "--direction-layers": ("diffmean",),
    "--clas-strengths": ("diffmean-clas",),
    "--clas-ranges": ("diffmean-clas",),
}


def _refuse_unused(methods: list[str] | None, given: dict[str, str | None]) -> None:
    """Sweep options of a method family that --methods leaves out are refused, not ignored."""
    if methods is None:
        return
    for flag, value in given.items():
        if value is not None and not set(methods) & set(SWEEPS[flag]):
            raise LangneuronsError(
                f"{flag} does not apply to --methods {','.join(methods)} (it sweeps {','.join(SWEEPS[flag])})"
            )


@app.command("benchmark")
@one_line_errors
@opt.model_options
def benchmark_cmd(
    out: Annotated[Path, opt.out_option("Folder to write (benchmark.json, benchmark.md, benchmark.png, stage files).")],
    languages: str = typer.Option("en,fr,ru,zh", "--languages", help="Comma-separated; must include --from."),
    source: str = typer.Option("en", "--from", help="Source language of steering and translation."),
    methods: str | None = typer.Option(
        None,
        "--methods",
        help="Subset of lape,entropy-lambda,ap,key-neurons,attribution-neurons,attribution-heads,diffmean,"
        "diffmean-clas (default: all).",
    ),
    corpus: str = typer.Option("ntrex:identify", "--corpus", help="Identification text (" + opt.CORPUS_HELP + ")."),
    heldout: str = typer.Option("ntrex:dev", "--heldout", help="Held-out parallel text for PPL and translation."),
    prompt_file: str = typer.Option("default", "--prompt-file", help="Steering prompts (one a line) or 'default'."),
    sentences: int | None = typer.Option(None, "--sentences", help="Identification sentences per language (100)."),
    eval_sentences: int | None = typer.Option(
        None, "--eval-sentences", help="Held-out PPL sentences per language (8)."
    ),
    attribution_sentences: int | None = typer.Option(
        None, "--attribution-sentences", help="Of the identification sentences, the first N per language that "
        "`attribute` scores (24)."
    ),
    prompts: int | None = typer.Option(None, "--prompts", help="Steering test prompts per target (20)."),
    dev_prompts: int | None = typer.Option(
        None, "--dev-prompts", help="Steering dev prompts for the sweep (10), evenly spaced among the first "
        "dev + test prompts."
    ),
    strengths: str | None = typer.Option(None, "--strengths", help="Neuron steering strengths swept on dev (0.5,1,2)."),
    head_strengths: str | None = typer.Option(
        None, "--head-strengths", help="Attribution heads: amplification factors swept on dev (2,4,8)."
    ),
    clas_strengths: str | None = typer.Option(
        None, "--clas-strengths", help="diffmean-clas: absolute strengths β swept on dev (default: CLAS_STRENGTHS)."
    ),
    clas_ranges: str | None = typer.Option(
        None, "--clas-ranges", help="diffmean-clas: layer ranges swept on dev, e.g. 0-17,4-12 (default: every layer "
        "and the middle half)."
    ),
    direction_strengths: str | None = typer.Option(
        None, "--direction-strengths", help="DiffMean α swept on dev (0.05,0.1,0.25)."
    ),
    direction_layers: str | None = typer.Option(
        None, "--direction-layers", help="DiffMean layers swept on dev (default: 1/4, 1/2, 3/4 of the depth)."
    ),
    translate_sentences: int | None = typer.Option(None, "--translate-sentences", help="Test lines per pair (6)."),
    shots: int | None = typer.Option(None, "--shots", help="Few-shot translation examples (3)."),
    bootstrap: int | None = typer.Option(None, "--bootstrap", help="Bootstrap resamples, intervals and paired tests "
                                         "(1000)."),
    full: bool = typer.Option(False, "--full", help="GPU budget: 1000 sentences, 40 test + 20 dev prompts, 50 lines, "
                              "wider sweeps."),
    seed: opt.Seed = 0,
    batch_size: opt.BatchSize = 16,
    max_length: opt.MaxLength = 256,
    model: opt.ModelOptions = opt.ModelOptions(),
    overwrite: opt.Overwrite = False,
) -> None:
    """Rank LAPE, entropy−λ, AP, key neurons, attribution neurons and heads, and DiffMean by two recipes (each
    beside its random control) on the same tests, with 95 % intervals and paired tests between methods."""
    from langneurons.data import parse_languages
    from langneurons.evaluation.benchmark import FULL, BenchmarkSettings, benchmark
    from langneurons.reporting.benchmark import benchmark_figure, markdown_table, table_rows

    check_out_folder(out, overwrite, "benchmark.json", "a finished benchmark")
    for value in (sentences, eval_sentences, translate_sentences, attribution_sentences):
        check_sentences(value)
    check_positive(batch_size=batch_size, max_length=max_length)
    given = {
        "languages": parse_languages(languages),
        "source": source,
        "identify_corpus": corpus,
        "heldout_corpus": heldout,
        "prompts_spec": prompt_file,
        "methods": parse_languages(methods),
        "sentences": sentences,
        "eval_sentences": eval_sentences,
        "attribution_sentences": attribution_sentences,
        "prompts": prompts,
        "dev_prompts": dev_prompts,
        "strengths": _numbers(strengths, float, "--strengths"),
        "head_strengths": _numbers(head_strengths, float, "--head-strengths"),
        "clas_strengths": _numbers(clas_strengths, float, "--clas-strengths"),
        "clas_ranges": _ranges(clas_ranges),
        "direction_strengths": _numbers(direction_strengths, float, "--direction-strengths"),
        "direction_layers": _numbers(direction_layers, int, "--direction-layers"),
        "translate_sentences": translate_sentences,
        "shots": shots,
        "bootstrap": bootstrap,
        "seed": seed,
        "batch_size": batch_size,
    }
    _refuse_unused(given["methods"], {"--strengths": strengths, "--head-strengths": head_strengths,
                                      "--direction-strengths": direction_strengths,
                                      "--direction-layers": direction_layers, "--clas-strengths": clas_strengths,
                                      "--clas-ranges": clas_ranges})  # fmt: skip
    settings = BenchmarkSettings(**({**FULL} if full else {}) | {k: v for k, v in given.items() if v is not None})
    settings.validate()
    if overwrite:
        for stale in out.glob("stage-*.json"):
            stale.unlink()
    loaded = model.load()
    settings.max_length = capped_max_length(max_length, loaded)
    for first, last in settings.clas_ranges or []:
        if last >= loaded.adapter.num_layers:
            raise LangneuronsError(f"--clas-ranges: {first}-{last} is not in 0..{loaded.adapter.num_layers - 1}")
    if settings.direction_layers is not None:
        for layer in settings.direction_layers:
            if not 0 <= layer < loaded.adapter.num_layers:
                raise LangneuronsError(f"--direction-layers: {layer} is not in 0..{loaded.adapter.num_layers - 1}")
    result = benchmark(loaded, out, settings)
    (out / "benchmark.md").write_text(markdown_table(result), encoding="utf-8")
    (out / "benchmark.png").write_bytes(benchmark_figure(result))
    console = make_console()
    rows = table_rows(result, markdown=False)
    if console.is_terminal and console.width >= 40 + 10 * len(rows[0]):
        table = Table(title=escape(f"benchmark on {result['provenance']['model']} ({','.join(settings.languages)})"))
        for header in rows[0]:
            table.add_column(escape(header), justify="left" if header == "method" else "right")
        for row in rows[1:]:
            table.add_row(*(escape(c) for c in row))
        console.print(table)
    else:  # a log file or a narrow terminal: the Markdown table reads better than a squeezed one
        print(markdown_table(result))
    console.print(
        f"wrote {out}/benchmark.json, benchmark.md, benchmark.png ({result['provenance']['wall_seconds']:.0f} s)",
        highlight=False,
    )
