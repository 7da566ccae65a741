"""CLI commands of the `analyze` stage: similarity, identify-sentences (key neurons, AP experts), compare."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

import langneurons.cli.options as opt
from langneurons.cli.app import app, one_line_errors
from langneurons.cli.common import (
    capped_max_length,
    check_max_length,
    check_out,
    check_positive,
    check_sentences,
    make_console,
    next_hint,
    note_output,
    pick_corpus,
    warn,
)
from langneurons.errors import LangneuronsError

SENTENCE_METHODS = ("key-neurons", "ap")
COLUMNS = ("lrds", "sads", "same_language", "different_language", "same_meaning", "different_meaning")


@app.command("similarity")
@one_line_errors
@opt.model_options
def similarity_cmd(
    out: Annotated[Path, opt.out_option("Run directory (pooled.safetensors, pooled.json, similarity.json).")],
    model: opt.ModelOptions = opt.ModelOptions(),
    corpus: opt.Corpus = "ntrex",
    texts: opt.Texts = None,
    languages: opt.Languages = None,
    sentences: opt.Sentences = 100,
    site: str = typer.Option("act", "--site", help="act or down_in."),
    batch_size: opt.BatchSize = 8,
    max_length: opt.MaxLength = opt.MAX_LENGTH,
    count_bos: bool = typer.Option(False, "--count-bos", help="Also pool the BOS position."),
    store_dtype: str = typer.Option("float32", "--store-dtype", help="float32 or float16 for pooled.safetensors."),
    reuse: bool = typer.Option(
        False, "--reuse", help="Recompute the scores from an existing pooled file only (no model)."
    ),
    count: str = typer.Option(
        "all", "--count", help="Prompt/response corpora: pool over all, the response's or the prompt's tokens."
    ),
    chat_template: bool = typer.Option(
        False, "--chat-template", help="Format each prompt/response record with the tokenizer's chat template."
    ),
    bootstrap: int = typer.Option(
        200, "--bootstrap", help="Resamples of the sentences (meaning groups) for 95 % bands per layer (0: none)."
    ),
    seed: opt.Seed = 0,
    overwrite: opt.Overwrite = False,
) -> None:
    """Pool each sentence's activations per layer and score language (LRDS) vs meaning (SADS) similarity.

    Under `torchrun --nproc-per-node N -m langneurons similarity ...` the sentences are shared out and
    rank 0 writes the same files as one process.
    """
    from langneurons.analysis.similarity import SIMILARITY_FILE, save_similarity, similarity
    from langneurons.data import load_corpus, parse_languages
    from langneurons.formats.pooled import POOLED_MANIFEST, load_pooled
    from langneurons.recording.distributed import shutdown
    from langneurons.recording.pooled import record_pooled
    from langneurons.recording.spans import apply_chat_template, check_responses

    if site not in ("act", "down_in"):
        raise LangneuronsError(f"unknown site {site!r}; choose act or down_in")
    check_sentences(sentences)
    if bootstrap < 0:
        raise LangneuronsError(f"--bootstrap must be 0 or more, got {bootstrap}")
    if reuse:
        pooled = load_pooled(out)
    else:
        if (out / POOLED_MANIFEST).exists() and not overwrite:
            raise LangneuronsError(f"{out} already holds pooled activations; pass --overwrite or --reuse")
        check_positive(batch_size=batch_size)
        check_max_length(max_length)
        text = load_corpus(pick_corpus(corpus, texts), parse_languages(languages), sentences)
        check_responses(text, count, chat_template=chat_template)
        model, world = model.join_world()
        try:
            loaded = model.load()
            if chat_template:
                text = apply_chat_template(text, loaded.tokenizer)
            pooled = record_pooled(
                loaded,
                text,
                out,
                site=site,
                batch_size=batch_size,
                max_length=capped_max_length(max_length, loaded),
                count_bos=count_bos,
                store_dtype=store_dtype,
                overwrite=overwrite,
                world=world,
                count=count,
            )
        finally:
            shutdown(world)
        if pooled is None:  # another rank: rank 0 writes
            return
    result = similarity(pooled, progress=True, bootstrap=bootstrap, seed=seed)
    save_similarity(out / SIMILARITY_FILE, result)
    console = make_console()
    table = Table(title=escape(f"similarity: {result['model']}, site {result['site']}, {result['corpus']}"))
    for col in ("layer", "LRDS", "SADS", "same lang", "diff lang", "same meaning", "diff meaning"):
        table.add_column(col, justify="right")
    per = result["per_layer"]
    for layer in range(result["num_layers"]):
        table.add_row(str(layer), *(_fmt(per[k][layer]) for k in COLUMNS))
    w = result["whole_model"]
    table.add_section()
    table.add_row("all", *(_fmt(w[k]) for k in COLUMNS))
    console.print(table)
    console.print(escape(f"meaning groups (SADS) from sentence ids: {result['id_source']}"), highlight=False)
    peaks = result["peaks"]
    wall = pooled.manifest.get("wall_seconds")
    console.print(
        f"highest LRDS at layer {peaks['lrds']['layer']} ({_fmt(peaks['lrds']['value'])}{_stands(peaks['lrds'])}), "
        f"highest SADS at layer {peaks['sads']['layer']} ({_fmt(peaks['sads']['value'])}{_stands(peaks['sads'])}); "
        + (f"pooling {wall:.1f} s; " if wall else "")
        + escape(f"wrote {out / SIMILARITY_FILE}"),
        highlight=False,
    )


@app.command("identify-sentences")
@one_line_errors
def identify_sentences_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory holding pooled.safetensors (from `similarity`).")],
    method: Annotated[str, typer.Option("--method", "-m", help="key-neurons (Zeng et al.) or ap (Kojima et al.).")],
    out: Annotated[
        Path | None, opt.out_option("Neuron-set JSON file to write (default: RUN_DIR/<method>.json).")
    ] = None,
    threshold: float | None = typer.Option(
        None, "--threshold", help="key-neurons: z-score threshold (default 2; needs ≥ 6 languages)."
    ),
    n: int | None = typer.Option(
        None, "--n", help="ap: units per language, n/2 highest AP and n/2 lowest (default 1000)."
    ),
    overwrite: opt.Overwrite = False,
) -> None:
    """Find language neurons from pooled sentence vectors (key linguistic neurons or AP experts)."""
    from langneurons.formats.pooled import load_pooled

    key = method.strip().lower().replace("_", "-")
    if key not in SENTENCE_METHODS:
        raise LangneuronsError(
            f"unknown sentence method {method!r} (choose from: {', '.join(SENTENCE_METHODS)})"
        )
    if key == "ap" and threshold is not None:
        raise LangneuronsError("--threshold does not apply to method ap")
    if key == "key-neurons" and n is not None:
        raise LangneuronsError("--n does not apply to method key-neurons")
    out = out or run_dir / f"{key}.json"
    check_out(out, overwrite)
    pooled = load_pooled(run_dir)
    if key == "ap":
        from langneurons.identification.ap import ap_experts

        ns = ap_experts(pooled, n=1000 if n is None else n)
    else:
        from langneurons.identification.key_neurons import key_neurons

        ns = key_neurons(pooled, threshold=2.0 if threshold is None else threshold)
    ns.source["run"] = str(run_dir.resolve())
    ns.save(out)
    table = Table(title=escape(f"{ns.method} on {run_dir}"))
    table.add_column("language")
    table.add_column("neurons", justify="right")
    for lang in ns.languages:
        table.add_row(lang, str(ns.count(lang)))
    make_console().print(table)
    make_console().print(escape(f"wrote {out}"), highlight=False)
    next_hint(f"langneurons show {out}")


@app.command("compare")
@one_line_errors
def compare_cmd(
    out: Annotated[Path, opt.out_option("Folder to write compare.json (and figures with --figures).")],
    runs: Annotated[list[Path], typer.Argument(help="Two or more run directories (the first is the baseline).")],
    neuron_set: str | None = typer.Option(None, "--set", help="Compare only this neuron-set name (file stem)."),
    bins: int = typer.Option(10, "--bins", min=2, help="Relative-depth bins."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Also write comparison PNGs."),
    overwrite: opt.Overwrite = False,
) -> None:
    """Compare runs: neuron-set overlap, depth shift, class moves, LRDS/SADS curves."""
    from langneurons.analysis.compare import COMPARE_FILE, compare_runs
    from langneurons.formats.atomic import write_json
    from langneurons.formats.run import load_run

    if len(runs) < 2:
        raise LangneuronsError("compare needs two or more run directories (the first is the baseline)")
    loaded = [load_run(path) for path in runs]  # the inputs first, then the output
    result = compare_runs(loaded, set_name=neuron_set, bins=bins)
    with_similarity = [run for run, label in zip(loaded, result["similarity"], strict=True)
                       if result["similarity"][label] is not None]  # fmt: skip
    if not result["sets"] and len(with_similarity) < len(loaded):
        have = "; ".join(f"{run.path}: {', '.join(sorted(run.neuron_sets)) or 'no neuron set'}" for run in loaded)
        raise LangneuronsError(
            f"nothing to compare: no neuron set is in every run and not every run has similarity.json ({have}); "
            f"run `langneurons identify RUN --method lape` on each run first"
        )
    if out.exists() and not out.is_dir():
        raise LangneuronsError(f"{out} exists and is not a directory")
    check_out(out / COMPARE_FILE, overwrite)
    write_json(out / COMPARE_FILE, result)
    written = [COMPARE_FILE]
    if figures:
        from langneurons.reporting.figures import comparison_figures

        for name, png in comparison_figures(result).items():
            (out / name).write_bytes(png)
            written.append(name)
    console = make_console()
    for name, data in result["sets"].items():
        for label, versus in data["versus_baseline"].items():
            table = Table(title=escape(f"{name}: {label} vs {result['runs'][0]['name']}"))
            for col in ("language", "Δ neurons", "Δ mean depth", "depth L1", "Jaccard"):
                table.add_column(col, justify="right")
            for lang, shift in versus["depth_shift"].items():
                jac = versus.get("overlap", {}).get("per_language", {}).get(lang, {}).get("jaccard")
                table.add_row(
                    lang,
                    str(shift["count_change"]),
                    _fmt(shift["mean_depth_shift"]),
                    _fmt(shift["histogram_l1"]),
                    _fmt(jac),
                )
            console.print(table)
            if versus.get("languages_left_out"):
                console.print(
                    escape(f"{name}: left out (not in both sets): {','.join(versus['languages_left_out'])}"),
                    highlight=False,
                )
    if not result["sets"]:
        warn("no neuron set is in every run: compared the similarity curves only "
             "(run `langneurons identify RUN --method lape` on each run to compare neuron sets)")  # fmt: skip
    note_output(*(out / w for w in written))
    console.print(escape(f"wrote {', '.join(str(out / w) for w in written)}"), highlight=False)


def _stands(peak: dict) -> str:
    """Whether the bootstrap bands let the highest layer be called a peak (nothing said without bands)."""
    if "stands_out" not in peak:
        return ""
    return ", a peak outside the other layers' 95 % bands" if peak["stands_out"] else ", not a clear peak"


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.3f}" if isinstance(value, float) else str(value)
