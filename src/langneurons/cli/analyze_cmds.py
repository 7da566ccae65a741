"""CLI commands of the `analyze` stage: similarity, identify-sentences (key neurons, AP experts), compare."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from langneurons.analyze.compare import COMPARE_FILE, compare_runs
from langneurons.analyze.similarity import SIMILARITY_FILE, save_similarity, similarity
from langneurons.cli import app, one_line_errors
from langneurons.data import load_corpus, parse_languages
from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import write_json
from langneurons.formats.run import load_run
from langneurons.record.pooled import POOLED_MANIFEST, load_pooled, record_pooled

MODEL_HELP = "'embedded' (Gemma-3-270M, offline), a hub id, a local model folder or a .gguf file"
SENTENCE_METHODS = ("key-neurons", "ap")
COLUMNS = ("lrds", "sads", "same_language", "different_language", "same_meaning", "different_meaning")


@app.command("similarity")
@one_line_errors
def similarity_cmd(
    out: Path = typer.Option(
        ..., "--out", help="Run directory (pooled.safetensors, pooled.json, similarity.json)."
    ),
    model: str = typer.Option("embedded", "--model", help=MODEL_HELP),
    revision: str | None = typer.Option(None, "--revision", help="Hub revision (branch, tag or commit)."),
    corpus: str = typer.Option(
        "ntrex", "--corpus", help="Parallel corpus: ntrex[:identify|dev|all], folder, .jsonl"
    ),
    languages: str | None = typer.Option(
        None, "--languages", help="Comma-separated codes, in order (default: all)."
    ),
    sentences: int | None = typer.Option(100, "--sentences", help="Sentences per language."),
    site: str = typer.Option("act", "--site", help="act or down_in."),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
    batch_size: int = typer.Option(8, "--batch-size"),
    max_length: int = typer.Option(512, "--max-length"),
    count_bos: bool = typer.Option(False, "--count-bos", help="Also pool the BOS position."),
    store_dtype: str = typer.Option(
        "float32", "--store-dtype", help="float32 or float16 for pooled.safetensors."
    ),
    reuse: bool = typer.Option(
        False, "--reuse", help="Recompute the scores from an existing pooled file only."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace pooled activations already in --out."),
) -> None:
    """Pool each sentence's activations per layer and score language (LRDS) vs meaning (SADS) similarity."""
    if site not in ("act", "down_in"):
        raise LangneuronsError(f"unknown site {site!r}; choose act or down_in")
    if reuse:
        pooled = load_pooled(out)
    else:
        if (out / POOLED_MANIFEST).exists() and not overwrite:
            raise LangneuronsError(f"{out} already holds pooled activations; pass --overwrite or --reuse")
        texts = load_corpus(corpus, parse_languages(languages), sentences)
        from langneurons.models.loading import load_model

        loaded = load_model(model, revision=revision, device=device, dtype=dtype)
        pooled = record_pooled(
            loaded,
            texts,
            out,
            site=site,
            batch_size=batch_size,
            max_length=max_length,
            count_bos=count_bos,
            store_dtype=store_dtype,
            overwrite=overwrite,
        )
    result = similarity(pooled, progress=True)
    save_similarity(out / SIMILARITY_FILE, result)
    console = Console()
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
        f"peak LRDS layer {peaks['lrds']['layer']} ({_fmt(peaks['lrds']['value'])}), peak SADS layer "
        f"{peaks['sads']['layer']} ({_fmt(peaks['sads']['value'])}); "
        + (f"pooling {wall:.1f} s; " if wall else "")
        + escape(f"wrote {out / SIMILARITY_FILE}"),
        highlight=False,
    )


@app.command("identify-sentences")
@one_line_errors
def identify_sentences_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory holding pooled.safetensors (from `similarity`)."),
    method: str = typer.Option(
        ..., "--method", "-m", help="key-neurons (Zeng et al.) or ap (Kojima et al.)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Neuron-set JSON file to write."),
    threshold: float = typer.Option(2.0, "--threshold", help="key-neurons: z-score threshold."),
    n: int = typer.Option(1000, "--n", help="ap: units per language (n/2 highest AP, n/2 lowest)."),
) -> None:
    """Find language neurons from pooled sentence vectors (key linguistic neurons or AP experts)."""
    key = method.strip().lower().replace("_", "-")
    if key not in SENTENCE_METHODS:
        raise LangneuronsError(
            f"unknown sentence method {method!r} (choose from: {', '.join(SENTENCE_METHODS)})"
        )
    pooled = load_pooled(run_dir)
    if key == "ap":
        from langneurons.identify.ap import ap_experts

        ns = ap_experts(pooled, n=n)
    else:
        from langneurons.identify.key_neurons import key_neurons

        ns = key_neurons(pooled, threshold=threshold)
    ns.source["run"] = str(run_dir)
    ns.save(out)
    table = Table(title=escape(f"{ns.method} on {run_dir}"))
    table.add_column("language")
    table.add_column("neurons", justify="right")
    for lang in ns.languages:
        table.add_row(lang, str(ns.count(lang)))
    Console().print(table)
    Console().print(escape(f"wrote {out}"), highlight=False)


@app.command("compare")
@one_line_errors
def compare_cmd(
    runs: list[Path] = typer.Argument(..., help="Two or more run directories (the first is the baseline)."),
    out: Path = typer.Option(..., "--out", help="Folder to write compare.json (and figures with --figures)."),
    neuron_set: str | None = typer.Option(
        None, "--set", help="Compare only this neuron-set name (file stem)."
    ),
    bins: int = typer.Option(10, "--bins", min=2, help="Relative-depth bins."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Also write comparison PNGs."),
) -> None:
    """Compare runs: neuron-set overlap, depth shift, class moves, LRDS/SADS curves."""
    loaded = [load_run(path) for path in runs]
    result = compare_runs(loaded, set_name=neuron_set, bins=bins)
    if out.exists() and not out.is_dir():
        raise LangneuronsError(f"{out} exists and is not a directory")
    write_json(out / COMPARE_FILE, result)
    written = [COMPARE_FILE]
    if figures:
        from langneurons.report.figures import comparison_figures

        for name, png in comparison_figures(result).items():
            (out / name).write_bytes(png)
            written.append(name)
    console = Console()
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
        console.print("no neuron set present in every run; compared similarity only", highlight=False)
    console.print(escape(f"wrote {', '.join(str(out / w) for w in written)}"), highlight=False)


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.3f}" if isinstance(value, float) else str(value)
