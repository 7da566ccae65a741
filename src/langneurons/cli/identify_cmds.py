"""CLI commands of the `identify` stage: identify, show, import tang, export, convert zhang2025."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

import langneurons.cli.options as opt
from langneurons.cli.app import app, one_line_errors
from langneurons.cli.common import (
    check_out,
    check_out_folder,
    make_console,
    next_hint,
    note_output,
    same_as_before,
    say,
    warn,
)
from langneurons.errors import LangneuronsError
from langneurons.modelspec import model_flag

if TYPE_CHECKING:
    from langneurons.formats.neuronset import NeuronSet

# The neuron classes (formats.neuronset.CLASSES), here so that `--help` imports no torch.
CLASSES = ("specific", "related", "agnostic", "unassigned")
STATS_METHODS = (
    "lape, entropy-lambda or diffmean (residual directions, a direction set; key-neurons and ap: "
    "`identify-sentences`); attribution on an `attribute` run (--unit neurons|heads|experts)"
)

import_app = typer.Typer(help="Import neuron sets written by other tools.", no_args_is_help=True)
convert_app = typer.Typer(
    help="Convert statistics released by other tools into a run directory.", no_args_is_help=True
)
app.add_typer(import_app, name="import")
app.add_typer(convert_app, name="convert")

EXPORT_FORMATS = ("tang",)


def split_languages(value: str | None) -> list[str] | None:
    """``"en, fr,,de"`` → ``["en", "fr", "de"]``; None/empty → None."""
    if not value:
        return None
    return [lang.strip() for lang in value.split(",") if lang.strip()] or None


# ---- tables ----------------------------------------------------------------------------------------
def language_table(ns: NeuronSet, title: str) -> Table:
    """Per language: neurons, and how many of them are specific / related / agnostic."""
    masks = ns.class_masks()
    table = Table(title=escape(title))
    table.add_column("language")
    table.add_column("neurons", justify="right")
    for name in ("specific", "related", "agnostic"):
        table.add_column(name, justify="right")
    for lang in ns.languages:
        mask = ns.mask(lang)
        row = [str(int((mask & masks[name]).sum())) for name in ("specific", "related", "agnostic")]
        table.add_row(escape(lang), str(ns.count(lang)), *row)
    counts = ns.class_counts()
    table.add_section()
    table.add_row(
        "distinct", str(ns.n_distinct()), *(str(counts[n]) for n in ("specific", "related", "agnostic"))
    )
    return table


def layer_bands(num_layers: int, per_row: int) -> list[tuple[int, int]]:
    """Consecutive layer ranges ``[start, end]`` of ``per_row`` layers each."""
    return [(s, min(s + per_row, num_layers) - 1) for s in range(0, num_layers, per_row)]


def layer_table(ns: NeuronSet, per_row: int | None = None) -> tuple[Table, Table]:
    """Per layer (or band of layers): neurons per language, and per class; runs of empty rows merged."""
    per_row = per_row or max(1, math.ceil(ns.num_layers / 32))
    by_language = [ns.counts_per_layer(lang) for lang in ns.languages]
    by_class = [m.sum(1).tolist() for m in ns.class_masks().values()]
    suffix = f" ({per_row} layers per row)" if per_row > 1 else ""
    return (
        _band_table(f"neurons per layer and language{suffix}", ns.languages, by_language, per_row),
        _band_table(f"neurons per layer and class{suffix}", list(CLASSES), by_class, per_row),
    )


def _band_table(title: str, names: list[str], columns: list[list[int]], per_row: int) -> Table:
    """Rows of layer bands (a run of all-empty bands becomes one row), one column per name."""
    num_layers = len(columns[0]) if columns else 0
    rows: list[tuple[str, list[int]]] = []
    for start, end in layer_bands(num_layers, per_row):
        values = [sum(col[start : end + 1]) for col in columns]
        if rows and not any(values) and not any(rows[-1][1]):
            rows[-1] = (f"{rows[-1][0].split('–')[0]}–{end}", values)
        else:
            rows.append((str(start) if start == end else f"{start}–{end}", values))
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("layers")
    for name in names:
        table.add_column(name, justify="right")
    for label, values in rows:
        table.add_row(label, *(str(v) if v else "·" for v in values))
    return table


def overlap_tables(ns: NeuronSet) -> tuple[Table, Table]:
    """Shared neurons for each language pair, as counts and as Jaccard index."""
    shared = ns.overlap()
    own = shared.diagonal()
    counts = Table(title="overlap (shared neurons)", box=box.SIMPLE_HEAD, pad_edge=False)
    jaccard = Table(title="overlap (Jaccard)", box=box.SIMPLE_HEAD, pad_edge=False)
    for table in (counts, jaccard):
        table.add_column("")
        for lang in ns.languages:
            table.add_column(lang, justify="right")
    for i, lang in enumerate(ns.languages):
        union = own[i] + own - shared[i]
        ratios = [f"{int(s) / int(u):.2f}" if int(u) else "·" for s, u in zip(shared[i], union, strict=True)]
        counts.add_row(lang, *(str(int(v)) for v in shared[i]))
        jaccard.add_row(lang, *ratios)
    return counts, jaccard


def describe(ns: NeuronSet) -> str:
    """One line: model, site, shape, method and its main parameters."""
    keys = ("lambda", "lambda_mode", "top_rate", "filter_rate", "bar_ratio", "bar")
    params = ", ".join(
        f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in ns.params.items() if k in keys
    )
    return (
        f"model {ns.model or '?'}, site {ns.site or '?'}, {ns.num_layers} layers × {ns.intermediate_size} "
        f"neurons; method {ns.method}" + (f" ({params})" if params else "")
    )


# ---- commands --------------------------------------------------------------------------------------
@app.command("identify")
@one_line_errors
def identify_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (stats.safetensors + manifest.json; attribution: "
                                                 "an `attribute` folder).")],
    method: Annotated[str, typer.Option("--method", "-m", help=f"{STATS_METHODS}.")],
    out: Annotated[
        Path | None,
        opt.out_option("Neuron-set (diffmean: direction-set) JSON file to write (default: RUN_DIR/<method>.json)."),
    ] = None,
    top_rate: float | None = typer.Option(
        None, "--top-rate", help="Share of all neurons to select, in (0, 1]; default 0.01."
    ),
    filter_rate: float | None = typer.Option(None, "--filter-rate", help="lape: filter quantile; default 0.95."),
    bar_ratio: float | None = typer.Option(None, "--bar-ratio", help="Quantile of p assigning a language; 0.95."),
    lam: str | None = typer.Option(None, "--lambda", help="entropy-lambda: λ ≥ 0, or 'auto' (AutoSweep, default)."),
    lambda_range: str | None = typer.Option(
        None,
        "--lambda-range",
        help="entropy-lambda with --lambda auto: the AutoSweep search range LO,HI (default 0,0.2).",
    ),
    languages: str | None = typer.Option(None, "--languages", help="Comma-separated subset; default all."),
    overwrite: opt.Overwrite = False,
    condition: str | None = typer.Option(
        None,
        "--condition",
        help="MoE runs: unconditional (p = count / tokens, the default) or routed (p = count / tokens routed "
        "to the neuron's expert).",
    ),
    unit: str | None = typer.Option(
        None, "--unit", help="attribution: neurons (default), heads or experts (a head / expert set)."
    ),
    ablation: str | None = typer.Option(
        None, "--ablation", help="attribution: the scores of zero (default) or mean ablation."
    ),
    match: Path | None = typer.Option(
        None, "--match", help="attribution: take each language's count from this neuron set (e.g. LAPE's)."
    ),
) -> None:
    """Find language neurons in recorded statistics and write a neuron-set file (diffmean: residual
    directions, a direction-set file; attribution: an `attribute` run, a neuron, head or expert set)."""
    if method.strip().lower() == "attribution":
        if any(v is not None for v in (filter_rate, bar_ratio, lam, lambda_range, condition)):
            raise LangneuronsError("method attribution takes --unit, --ablation, --top-rate or --match only")
        _identify_attribution(run_dir, out, overwrite, languages, unit or "neurons", ablation or "zero", top_rate,
                              match)  # fmt: skip
        return
    for flag, value in (("--unit", unit), ("--ablation", ablation), ("--match", match)):
        if value is not None:
            raise LangneuronsError(f"{flag} applies to method attribution only")
    if method.strip().lower() == "diffmean":
        if condition is not None:
            raise LangneuronsError("--condition does not apply to method diffmean")
        _identify_diffmean(run_dir, out, overwrite, languages, top_rate, filter_rate, bar_ratio, lam, lambda_range)
        return
    from langneurons.formats.stats import load_stats
    from langneurons.identification import get_method, identify, method_parameters
    from langneurons.identification.common import check_rate
    from langneurons.identification.entropy_lambda import parse_lambda

    spec = get_method(method)
    if spec.input != "stats":
        raise LangneuronsError(
            f"method {spec.name} works on pooled sentence vectors: run `langneurons identify-sentences "
            f"RUN_DIR --method {spec.name}` on a `langneurons similarity` run"
        )
    given = {"top_rate": top_rate, "filter_rate": filter_rate, "bar_ratio": bar_ratio, "lam": lam}
    given = {name: value for name, value in given.items() if value is not None}
    if lambda_range is not None:
        given |= _lambda_range(lambda_range, spec.name, lam)
    for name, value in given.items():
        if name not in method_parameters(spec):
            flag = "--lambda" if name == "lam" else "--" + name.replace("_", "-")
            raise LangneuronsError(f"{flag} does not apply to method {spec.name}")
        if name == "lam":
            parse_lambda(value)
        elif name.startswith("sweep_"):
            pass
        else:
            check_rate(name, value)
    out = out or run_dir / f"{spec.name}.json"
    if out.exists() and not out.is_file():
        raise LangneuronsError(f"{out} exists and is not a file")
    stats = load_stats(run_dir)
    ns = identify(stats, spec.name, languages=split_languages(languages), condition=condition, **given)
    ns.source["run"] = str(run_dir.resolve())
    if (few := few_tokens_warning(stats, ns)) is not None:
        ns.params["warnings"] = [*ns.params.get("warnings", []), few]
    if same_as_before(out, ns.to_dict(), overwrite, "a neuron set"):  # a re-run: the same set, nothing to write
        note_output(out)
        say(f"{out} is up to date (same statistics and parameters); kept it")
        next_hint(f"langneurons ppl{model_flag(ns.model)} --neurons {out} && langneurons report {run_dir}")
        return
    ns.save(out)
    note_output(out)
    console = make_console()
    console.print(language_table(ns, f"{spec.name} on {run_dir}"))
    console.print(escape(describe(ns)), highlight=False)
    unassigned = ns.class_counts()["unassigned"]
    selected = sum(len(layer) for layer in ns.selected)
    console.print(
        f"selected {selected} neurons ({unassigned} with no language); wrote {escape(str(out))}",
        highlight=False,
    )
    for message in ns.params.get("warnings", []):
        warn(message)
    next_hint(f"langneurons ppl{model_flag(ns.model)} --neurons {out} && langneurons report {run_dir}")


# Fewer tokens than this per language, or than TOKENS_PER_NEURON × the neurons selected for the language, and
# the activation probabilities behind the selection are too noisy to trust (docs/methods.md, "Enough text").
MIN_TOKENS = 5_000
TOKENS_PER_NEURON = 10


def few_tokens_warning(stats, ns: NeuronSet) -> str | None:
    """One sentence naming the languages with fewer than ``max(MIN_TOKENS, TOKENS_PER_NEURON × their neurons)``
    recorded tokens (None when every language has enough)."""
    tokens = dict(zip(stats.languages, stats.n_tokens.tolist(), strict=True))
    short = []
    for lang in ns.languages:
        need = max(MIN_TOKENS, TOKENS_PER_NEURON * ns.count(lang))
        if lang in tokens and tokens[lang] < need:
            short.append(f"{lang} {int(tokens[lang]):,} < {need:,}")
    if not short:
        return None
    return (
        f"few tokens per language for {sum(len(layer) for layer in ns.selected):,} selected neurons "
        f"({'; '.join(short)}; wanted ≥ {MIN_TOKENS:,} and ≥ {TOKENS_PER_NEURON} × the language's neurons): "
        "record more text (--sentences) before trusting this set"
    )


def _lambda_range(text: str, method: str, lam: str | None) -> dict[str, float]:
    """``--lambda-range LO,HI`` → the AutoSweep bounds; refused where AutoSweep does not run."""
    from langneurons.identification.entropy_lambda import parse_lambda

    if method != "entropy-lambda":
        raise LangneuronsError(f"--lambda-range does not apply to method {method} (entropy-lambda's AutoSweep only)")
    if lam is not None and parse_lambda(lam) is not None:
        raise LangneuronsError(f"--lambda-range does not apply to a fixed --lambda {lam} (AutoSweep only)")
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise LangneuronsError(f"--lambda-range must be LO,HI with 0 ≤ LO < HI, got {text!r}") from None
    if not (math.isfinite(hi) and 0 <= lo < hi):
        raise LangneuronsError(f"--lambda-range must be LO,HI with 0 ≤ LO < HI, got {text!r}")
    return {"sweep_lo": lo, "sweep_hi": hi}


def _identify_attribution(run_dir: Path, out: Path | None, overwrite: bool, languages: str | None, unit: str,
                          ablation: str, top_rate: float | None, match: Path | None) -> None:  # fmt: skip
    from langneurons.formats.attribution import UNITS, load_attribution
    from langneurons.formats.neuronset import load_neuronset
    from langneurons.identification.attribution import attribution_set, matched_budget
    from langneurons.identification.common import check_rate

    if unit not in UNITS:
        raise LangneuronsError(f"--unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if ablation not in ("zero", "mean"):
        raise LangneuronsError(f"--ablation must be zero or mean, got {ablation!r}")
    if top_rate is not None:
        check_rate("top_rate", top_rate)
        if match is not None:
            raise LangneuronsError("give --top-rate or --match, not both")
    out = out or run_dir / f"{unit}.json"
    if out.name == "attribution.json" and out.parent.resolve() == run_dir.resolve():
        raise LangneuronsError(f"{out} is the attribution run's own file; write the set elsewhere")
    check_out(out, overwrite)
    attr = load_attribution(run_dir)
    per_language = matched_budget(load_neuronset(match)) if match is not None else None
    ns = attribution_set(attr, unit=unit, ablation=ablation, top_rate=top_rate, per_language=per_language,
                         languages=split_languages(languages))  # fmt: skip
    ns.source["run"] = str(run_dir.resolve())
    ns.save(out)
    console = make_console()
    table = Table(title=escape(f"attribution ({unit}, {ablation} ablation) on {run_dir}"))
    for col in ("language", unit, "summed effect on own language (nats/token)"):
        table.add_column(col)
    for lang in ns.languages:
        table.add_row(escape(lang), str(ns.count(lang)), f"{ns.params['selected_effect'][lang]:.4f}")
    console.print(table)
    short = ns.params.get("short") or {}
    if short:
        warn("fewer units with a positive selectivity than the budget: " +
             ", ".join(f"{lang} {n} short" for lang, n in short.items()))  # fmt: skip
    console.print(f"wrote {escape(str(out))}", highlight=False)
    flag = "--neurons" if unit == "neurons" else f"--{unit}"
    next_hint(f"langneurons ppl {flag} {out}")


def _identify_diffmean(run_dir: Path, out: Path | None, overwrite: bool, languages: str | None,
                       *neuron_options) -> None:  # fmt: skip
    from langneurons.formats.stats import load_stats
    from langneurons.identification.common import subset_languages
    from langneurons.identification.diffmean import diffmean

    flags = ("--top-rate", "--filter-rate", "--bar-ratio", "--lambda", "--lambda-range")
    for flag, value in zip(flags, neuron_options, strict=True):
        if value is not None:
            raise LangneuronsError(f"{flag} does not apply to method diffmean (it selects no neurons)")
    out = out or run_dir / "diffmean.json"
    if out.exists() and not out.is_file():
        raise LangneuronsError(f"{out} exists and is not a file")
    stats = subset_languages(load_stats(run_dir), split_languages(languages))
    ds = diffmean(stats)
    hint = f"langneurons steer{model_flag(stats.manifest.get('model'))} --directions {out} --to {ds.languages[0]}"
    tensors = out.with_suffix(".safetensors")
    if tensors.is_file() and same_as_before(out, ds.to_dict(tensors.name), overwrite, "a direction set"):
        note_output(out, tensors)
        say(f"{out} is up to date (same statistics); kept it")
        next_hint(hint)
        return
    ds.save(out)
    note_output(out, tensors)
    norms = ds.norms()
    table = Table(title=escape(f"diffmean on {run_dir}: ‖d‖ / r_l per layer"))
    table.add_column("layer", justify="right")
    for lang in ds.languages:
        table.add_column(escape(lang), justify="right")
    for layer in range(ds.num_layers):
        r = float(ds.resid_norm[layer]) or 1.0
        table.add_row(str(layer), *(f"{float(norms[k, layer]) / r:.3f}" for k in range(len(ds.languages))))
    console = make_console()
    console.print(table)
    console.print(
        escape(f"{len(ds.languages)} languages × {ds.num_layers} layers × hidden {ds.hidden_size}; wrote {out} "
               f"and {out.with_suffix('.safetensors').name}"),
        highlight=False,
    )  # fmt: skip
    next_hint(hint)


@app.command("show")
@one_line_errors
def show_cmd(
    neuron_set: Path = typer.Argument(..., help="Neuron-set JSON file."),
    layers_per_row: int | None = typer.Option(
        None, "--layers-per-row", min=1, help="Layers per table row; default fits 32 rows."
    ),
) -> None:
    """Show a neuron set: per-language and per-layer counts, classes, and pairwise overlap."""
    from langneurons.formats.neuronset import NeuronSet

    ns = NeuronSet.load(neuron_set)
    console = make_console()
    console.print(escape(f"{neuron_set}: {describe(ns)}"), highlight=False)
    if ns.source:
        src = ", ".join(f"{k}={v}" for k, v in ns.source.items() if v is not None)
        console.print(escape(f"source: {src}"), highlight=False)
    console.print(language_table(ns, "neurons per language"))
    counts = ns.class_counts()
    console.print("classes: " + ", ".join(f"{name} {counts[name]}" for name in CLASSES), highlight=False)
    for table in (*layer_table(ns, layers_per_row), *overlap_tables(ns)):
        console.print(table)
    cards = neuron_set.with_name(f"{neuron_set.stem}.cards.json")  # from `explain SET.json`
    if cards.is_file():
        from langneurons.cli.explain_cmds import writes_table
        from langneurons.formats.card import load_cards

        data = load_cards(cards)
        if data.get("writes_by_layer"):
            console.print(writes_table(data["writes_by_layer"], ns.num_layers))
            console.print(escape(f"(from {cards}; {data['writes_by_layer'].get('rule', '')})"), highlight=False)
    else:
        console.print(escape(f"which neurons write their own language: langneurons explain {neuron_set}"),
                      highlight=False)  # fmt: skip


@import_app.command("tang")
@one_line_errors
def import_tang_cmd(
    file: Annotated[
        Path, typer.Argument(help="Tang et al. mask file: per language, per layer, a tensor of neuron indices.")
    ],
    languages: Annotated[str, typer.Option("--languages", help="Comma-separated, in the file's order.")],
    out: Annotated[Path, opt.out_option("Neuron-set JSON file to write.")],
    model: str | None = typer.Option(None, "--model", help="Model name; default from the file name."),
    intermediate_size: int | None = typer.Option(
        None,
        "--intermediate-size",
        min=1,
        help="MLP size; default inferred as largest index + 1 (a lower bound).",
    ),
    method: str = typer.Option("lape", "--method", help="Method that made the file."),
    overwrite: opt.Overwrite = False,
) -> None:
    """Import a Tang et al. (LAPE) mask file as a neuron set."""
    from langneurons.formats.tang import import_tang

    check_out(out, overwrite)
    ns = import_tang(
        file,
        split_languages(languages) or [],
        model=model,
        intermediate_size=intermediate_size,
        method=method,
    )
    ns.save(out)
    note_output(out)
    console = make_console()
    console.print(language_table(ns, f"imported {file.name}"))
    console.print(escape(describe(ns)), highlight=False)
    if ns.params.get("intermediate_size_inferred"):
        console.print(
            f"intermediate size {ns.intermediate_size} was inferred (a lower bound); "
            "give --intermediate-size to set it",
            highlight=False,
        )
    console.print(f"wrote {escape(str(out))}", highlight=False)


@app.command("export")
@one_line_errors
def export_cmd(
    neuron_set: Annotated[Path, typer.Argument(help="Neuron-set JSON file.")],
    out: Annotated[Path, opt.out_option("File to write.")],
    format: str = typer.Option("tang", "--format", help=f"One of: {', '.join(EXPORT_FORMATS)}."),
    overwrite: opt.Overwrite = False,
) -> None:
    """Export a neuron set in another tool's format (tang: per language, per layer, an index tensor)."""
    from langneurons.formats.neuronset import NeuronSet
    from langneurons.formats.tang import export_tang

    if format.lower() not in EXPORT_FORMATS:
        raise LangneuronsError(f"unknown export format {format!r} (choose from: {', '.join(EXPORT_FORMATS)})")
    check_out(out, overwrite)
    ns = NeuronSet.load(neuron_set)
    export_tang(ns, out)
    make_console().print(
        f"wrote {escape(str(out))} ({len(ns.languages)} languages: {','.join(ns.languages)})", highlight=False
    )


@convert_app.command("zhang2025")
@one_line_errors
def convert_zhang_cmd(
    directory: Annotated[Path, typer.Argument(help="Folder with activation.<lang>.*.pt and prefix.activation.*.")],
    out: Annotated[Path, opt.out_option("Run directory to write.")],
    languages: str | None = typer.Option(
        None, "--languages", help="Comma-separated, in the files' order (default: the paper's 10)."
    ),
    overwrite: opt.Overwrite = False,
) -> None:
    """Convert Zhang et al. 2025 activation counts into response-token statistics (a run directory)."""
    from langneurons.formats.stats import MANIFEST_FILE, save_stats
    from langneurons.formats.zhang import ZHANG_LANGUAGES, convert_zhang2025

    check_out_folder(out, overwrite, MANIFEST_FILE, "finished statistics")
    stats = convert_zhang2025(directory, split_languages(languages) or list(ZHANG_LANGUAGES))
    save_stats(out, stats)
    table = Table(title="response tokens per language")
    table.add_column("language")
    table.add_column("tokens", justify="right")
    for lang, n in zip(stats.languages, stats.n_tokens.tolist(), strict=True):
        table.add_row(lang, str(n))
    console = make_console()
    console.print(table)
    m = stats.manifest
    console.print(
        f"model {escape(str(m['model']))}, {stats.num_layers} layers × {stats.intermediate_size} neurons; "
        f"{m['negative_differences_clamped']} negative differences clamped to 0; wrote {escape(str(out))}",
        highlight=False,
    )
