"""CLI: `attribute` (causal scores of neurons, heads and experts per language, docs/methods.md §17)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import langneurons.cli.options as opt
from langneurons.cli.app import app, one_line_errors
from langneurons.cli.common import capped_max_length, check_max_length, check_sentences, next_hint, pick_corpus, say


@app.command("attribute")
@one_line_errors
@opt.model_options
def attribute_cmd(
    out: Annotated[Path, opt.out_option("Folder to write (attribution.safetensors + attribution.json).")],
    corpus: opt.Corpus = "ntrex",
    texts: opt.Texts = None,
    languages: opt.Languages = None,
    sentences: opt.Sentences = None,
    units: str = typer.Option("neurons,heads", "--units", help="Comma-separated: neurons, heads, experts (MoE)."),
    method: str = typer.Option("patching", "--method", help="patching (first order) or ig (integrated gradients)."),
    steps: int | None = typer.Option(None, "--steps", help="Integrated-gradient steps (--method ig; default 4)."),
    site: str = typer.Option("act", "--site", help="Neuron site: act or down_in."),
    validate: int = typer.Option(
        0, "--validate", help="Ablate this many sampled units per type exactly (half top-scored, half random) "
        "and report Spearman and the error on the largest effects."
    ),
    validate_ablations: str = typer.Option(
        "zero,mean", "--validate-ablations", help="Which ablations --validate runs exactly: zero, mean or both."
    ),
    count: str = typer.Option(
        "all", "--count", help="Prompt/response records: the NLL of all, the response's or the prompt's tokens."
    ),
    chat_template: bool = typer.Option(
        False, "--chat-template", help="Format prompt/response records with the tokenizer's chat template."
    ),
    model: opt.ModelOptions = opt.ModelOptions(),
    batch_size: opt.BatchSize = 8,
    max_length: opt.MaxLength = opt.MAX_LENGTH,
    seed: opt.Seed = 0,
    overwrite: opt.Overwrite = False,
) -> None:
    """Estimate, per language, how much each unit's ablation raises that language's NLL (attribution patching).

    Zero- and mean-ablation (the unit replaced by its mean on the other languages), in nats per token;
    gradients reach only the sites. An interrupted run resumes after its last finished language (an
    interrupted --validate: straight at the validation). Under `torchrun --nproc-per-node N -m langneurons
    attribute ...` each language's batches (and --validate's units) are shared out; rank 0 writes.
    """
    check_sentences(sentences)
    check_max_length(max_length)
    from langneurons.data import load_corpus, parse_languages
    from langneurons.recording.attribute import attribute
    from langneurons.recording.attribution import AttributionSettings

    settings = AttributionSettings(
        units=tuple(u.strip() for u in units.split(",") if u.strip()), method=method,
        steps=steps if steps is not None else (4 if method == "ig" else 1), site=site, batch_size=batch_size,
        max_length=max_length, validate=validate, seed=seed, count=count,
        validate_ablations=tuple(a.strip() for a in validate_ablations.split(",") if a.strip()),
    )  # fmt: skip
    settings.check()
    texts_ = load_corpus(pick_corpus(corpus, texts), parse_languages(languages), sentences)
    from langneurons.recording.spans import apply_chat_template, check_chat_template, check_responses

    check_responses(texts_, count, chat_template=chat_template)
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} exists and is not a directory")
    from langneurons.formats.attribution import ATTRIBUTION_JSON

    if (out / ATTRIBUTION_JSON).exists() and not overwrite:
        from langneurons.errors import LangneuronsError

        raise LangneuronsError(f"{out} already holds an attribution run; pass --overwrite to replace it")
    from langneurons.recording.distributed import shutdown

    model, world = model.join_world()
    try:
        loaded = model.load()
        if chat_template:
            check_chat_template(loaded.tokenizer, loaded.name)
            texts_ = apply_chat_template(texts_, loaded.tokenizer)
        import dataclasses

        settings = dataclasses.replace(settings, max_length=capped_max_length(max_length, loaded))
        result = attribute(loaded, texts_, out, settings, overwrite=overwrite, progress=world.is_main, world=world)
    except KeyboardInterrupt:
        if world.is_main:
            say(f"interrupted: finished languages are kept in {out}; rerun the same command to resume")
        raise SystemExit(130) from None
    finally:
        shutdown(world)
    if not world.is_main:
        return
    p = result.meta["provenance"]
    say(f"wrote {out}: {', '.join(result.units)} × {len(result.languages)} languages, {settings.method}, "
        f"{p['estimate_seconds']:.1f} s to estimate, {p['wall_seconds']:.1f} s in all")  # fmt: skip
    if "validation" in result.meta:
        _print_validation(result.meta["validation"])
    unit = "heads" if "heads" in result.units and "neurons" not in result.units else "neurons"
    next_hint(f"langneurons identify {out} --method attribution --unit {unit}")


def _print_validation(validation: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from langneurons.recording.attribution_validation import validation_table

    table = Table(title="estimate vs exact ablation (nats/token)")
    for col in ("unit", "ablation", "estimator", "units", "Spearman", "largest: mean |err|", "median rel. err",
                "median est/exact"):  # fmt: skip
        table.add_column(col)

    def f(x, fmt="{:.3f}"):
        return "–" if x is None else fmt.format(x)

    for row in validation_table(validation):
        table.add_row(row["unit"], row["ablation"], row["estimator"], str(row["units"]), f(row["spearman"]),
                      f(row["largest_mean_abs_error"], "{:.2e}"), f(row["largest_median_relative_error"]),
                      f(row["largest_median_ratio"]))  # fmt: skip
    Console(stderr=True).print(table)


@app.command("faithfulness")
@one_line_errors
@opt.model_options
def faithfulness_cmd(
    neurons: Annotated[Path | None, typer.Option("--neurons", help=opt.NEURONS_HELP)] = None,
    heads: Annotated[Path | None, typer.Option("--heads", help="Head-set JSON (site heads).")] = None,
    out: Annotated[Path | None, opt.out_option("Result JSON (default: faithfulness-<set>.json by the set).")] = None,
    model: opt.ModelOptions = opt.ModelOptions(),
    corpus: opt.Corpus = "ntrex:dev",
    texts: opt.Texts = None,
    sentences: opt.Sentences = 50,
    batch_size: opt.BatchSize = 8,
    max_length: opt.MaxLength = opt.MAX_LENGTH,
    overwrite: opt.Overwrite = False,
) -> None:
    """Share of the whole-layer effect a set recovers: its units off vs every unit of those layers off."""
    from langneurons.cli.common import check_out, write_result
    from langneurons.errors import LangneuronsError

    if (neurons is None) == (heads is None):
        raise LangneuronsError("give --neurons (a neuron set) or --heads (a head set)")
    check_sentences(sentences)
    check_max_length(max_length)
    path: Path = neurons if neurons is not None else heads  # type: ignore[assignment]
    out = out or path.with_name(f"faithfulness-{path.stem}.json")
    check_out(out, overwrite)
    from langneurons.data import load_corpus
    from langneurons.evaluation.faithfulness import faithfulness
    from langneurons.formats.neuronset import NeuronSet

    ns = NeuronSet.load(path)
    if (heads is not None) != (ns.site == "heads"):
        raise LangneuronsError(f"{path} is a {'head' if ns.site == 'heads' else 'neuron'} set: pass it with "
                               f"{'--heads' if ns.site == 'heads' else '--neurons'}")  # fmt: skip
    text = load_corpus(pick_corpus(corpus, texts), list(ns.languages), sentences)
    loaded = model.load()
    result = faithfulness(loaded, ns, text, batch_size=batch_size, max_length=capped_max_length(max_length, loaded),
                          neurons_path=str(path))  # fmt: skip
    write_result(out, result)
    for lang, row in result["per_language"].items():
        share = "–" if row["share"] is None else f"{100 * row['share']:.0f} %"
        say(f"  {lang}: {row['size']} of {row['layer_units']} units in {len(row['layers'])} layers; ΔNLL set "
            f"{row['delta_set']:+.4f}, whole layers {row['delta_layers']:+.4f} nats/token; share {share}")
