"""CLI: `lens` (latent language through the logit / tuned lens) and `lens-train` (fit a tuned lens), §16."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import langneurons.cli.options as opt
from langneurons.cli.app import app, one_line_errors
from langneurons.cli.common import (
    capped_max_length,
    check_max_length,
    check_out,
    check_positive,
    check_sentences,
    pick_corpus,
    say,
    write_result,
)
from langneurons.errors import LangneuronsError

TASK_HELP = "translation, repetition or cloze (Wendler's word tasks), or text (natural text, no word list)."


@app.command("lens")
@one_line_errors
@opt.model_options
def lens_cmd(
    out: Annotated[Path, opt.out_option("Result JSON to write (the figure goes beside it as .png).")],
    task: str = typer.Option("translation", "--task", help=TASK_HELP),
    source: str | None = typer.Option(None, "--from", help="Language of the given word (translation, cloze)."),
    target: str | None = typer.Option(None, "--to", help="Language of the answer (word tasks)."),
    words: Path | None = typer.Option(
        None, "--words", help='Word list JSONL ({"id", "lang", "word"} lines; default: the built-in nouns).'
    ),
    shots: int = typer.Option(4, "--shots", help="Few-shot examples per prompt."),
    prompts: int | None = typer.Option(None, "--prompts", help="At most this many prompts (default: every kept word)."),
    corpus: opt.Corpus = "ntrex:dev",
    texts: opt.Texts = None,
    languages: opt.Languages = None,
    sentences: int = typer.Option(20, "--sentences", help="--task text: sentences per language (the first N)."),
    max_length: int = typer.Option(64, "--max-length", help="--task text: tokens per sentence."),
    tuned: Path | None = typer.Option(None, "--tuned", help="A tuned lens (from `lens-train`) to read through."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the 95 % intervals."),
    seed: opt.Seed = 0,
    batch_size: opt.BatchSize = 8,
    figure: bool = typer.Option(True, "--figure/--no-figure", help="Write the curves as OUT.png."),
    count: str = typer.Option(
        "all", "--count", help="--task text, prompt/response records: read all, the response's or the prompt's tokens."
    ),
    chat_template: bool = typer.Option(
        False, "--chat-template", help="--task text: format prompt/response records with the tokenizer's chat template."
    ),
    model: opt.ModelOptions = opt.ModelOptions(),
    overwrite: opt.Overwrite = False,
) -> None:
    """Where the model thinks in which language: per layer, the lens's probability of the target word, its
    English translation and the source word (word tasks), or the language of its top-1 tokens (text).

    Under `torchrun --nproc-per-node N -m langneurons lens ...` the prompts are shared out and rank 0
    writes the same result as one process.
    """
    from langneurons.analysis.lens import TASKS, WORD_TASKS, LensSettings, check_words
    from langneurons.data import load_corpus, parse_languages
    from langneurons.data.words import load_words
    from langneurons.formats.tuned_lens import TunedLens
    from langneurons.recording.distributed import shutdown

    check_out(out, overwrite)
    if task not in TASKS:
        raise LangneuronsError(f"unknown --task {task!r}; choose one of {', '.join(TASKS)}")
    check_positive(batch_size=batch_size, bootstrap=bootstrap)
    lens = TunedLens.load(tuned) if tuned is not None else None
    if task in WORD_TASKS and (count != "all" or chat_template):
        raise LangneuronsError("--count and --chat-template apply to --task text (prompt/response records)")
    if task in WORD_TASKS:
        if languages is not None:
            raise LangneuronsError("--languages is for --task text; word tasks take --from and --to")
        settings = LensSettings(task=task, source=source, target=target, shots=shots, prompts=prompts,
                                batch_size=batch_size, bootstrap=bootstrap, seed=seed)  # fmt: skip
        word_list = load_words(words)
        check_words(word_list, settings)
    else:
        if source is not None or target is not None or words is not None:
            raise LangneuronsError(
                "--task text reads natural text: give --corpus and --languages, not --from/--to/--words"
            )
        check_sentences(sentences)
        check_max_length(max_length)
        text = load_corpus(pick_corpus(corpus, texts), parse_languages(languages), sentences)
        from langneurons.recording.spans import check_responses

        check_responses(text, count, chat_template=chat_template)
    model, world = model.join_world()
    try:
        loaded = model.load()
        if task in WORD_TASKS:
            from langneurons.analysis.lens import word_task

            result = word_task(loaded, word_list, settings, tuned=lens, tuned_path=str(tuned) if tuned else None,
                               world=world)  # fmt: skip
        else:
            from langneurons.analysis.lens_text import text_task
            from langneurons.recording.spans import apply_chat_template, check_chat_template

            if chat_template:
                check_chat_template(loaded.tokenizer, loaded.name)
                text = apply_chat_template(text, loaded.tokenizer)
            result = text_task(loaded, text, batch_size=batch_size, max_length=capped_max_length(max_length, loaded),
                               tuned=lens, tuned_path=str(tuned) if tuned else None, world=world,
                               count=count)  # fmt: skip
    finally:
        shutdown(world)
    if result is None:  # another rank: rank 0 writes
        return
    write_result(out, result)
    summarise(result)
    if figure:
        from langneurons.formats.atomic import write_bytes
        from langneurons.reporting.lens_figure import lens_figure

        png = out.with_suffix(".png")
        write_bytes(png, lens_figure(result))
        say(f"wrote {png}")


def summarise(result: dict) -> None:
    """A few lines: the words kept, each curve's peak (word tasks) or the own/English share by depth (text)."""
    if result["task"] != "text":
        w = result["words"]
        say(f"  {w['kept']} of {w['concepts']} words kept by the filter, {w['prompts']} prompts ({w['list']})")
        for curve, peak in result["peaks"].items():
            say(f"  p_{curve}: peak {peak['value']:.3f} at layer {peak['layer']}, last layer "
                f"{result['mean'][curve][-1]:.3f}")  # fmt: skip
    else:
        for lang, per in result["share"].items():
            mid = len(per["own"]) // 2
            say(f"  {lang} text: own-language top-1 share {per['own'][mid]:.0%} at layer {mid}, "
                f"{per['own'][-1]:.0%} at the last; English {per['en'][mid]:.0%} / {per['en'][-1]:.0%}")  # fmt: skip
    kl = result.get("kl", {})
    if "tuned" in kl:
        say("  KL(final ‖ lens) per layer, logit: " + " ".join(f"{v:.2f}" for v in kl["logit"]))
        say("                          tuned: " + " ".join(f"{v:.2f}" for v in kl["tuned"]))


@app.command("lens-train")
@one_line_errors
@opt.model_options
def lens_train_cmd(
    out: Annotated[Path, opt.out_option("Tuned lens to write (.safetensors).")],
    corpus: opt.Corpus = "ntrex:identify",
    texts: opt.Texts = None,
    languages: opt.Languages = None,
    sentences: int = typer.Option(10, "--sentences", help="Sentences per language (first N; every 5th held out)."),
    max_length: int = typer.Option(64, "--max-length", help="Tokens per sentence."),
    steps: int = typer.Option(250, "--steps", help="Optimiser steps."),
    batch_tokens: int = typer.Option(64, "--batch-tokens", help="Token positions per step."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    top_k: int = typer.Option(16, "--top-k", help="Final-distribution tokens per position in a step's vocabulary."),
    negatives: int = typer.Option(2048, "--negatives", help="Random tokens added to each step's vocabulary."),
    seed: opt.Seed = 0,
    batch_size: opt.BatchSize = 8,
    model: opt.ModelOptions = opt.ModelOptions(),
    overwrite: opt.Overwrite = False,
) -> None:
    """Fit a tuned lens (per-layer affine maps of the residual stream, §16) on held-out multilingual text;
    rerun the same command to resume from OUT.partial. Use it with `lens --tuned OUT`."""
    from langneurons.analysis.tuned_lens import TunedLensSettings, train_tuned_lens
    from langneurons.data import load_corpus, parse_languages

    check_out(out, overwrite)
    if out.suffix != ".safetensors":
        raise LangneuronsError(f"--out must end in .safetensors, got {out.name}")
    check_sentences(sentences)
    check_max_length(max_length)
    settings = TunedLensSettings(steps=steps, batch_tokens=batch_tokens, lr=lr, top_k=top_k, negatives=negatives,
                                 max_length=max_length, batch_size=batch_size, seed=seed)  # fmt: skip
    settings.validate()
    text = load_corpus(pick_corpus(corpus, texts), parse_languages(languages), sentences)
    loaded = model.load()
    settings.max_length = capped_max_length(max_length, loaded)
    if Path(str(out) + ".partial").exists():
        say(f"resuming from {out}.partial")
    lens = train_tuned_lens(loaded, text, settings, out=out)
    say(f"wrote {out} ({lens.info['wall_seconds']:.1f} s, {lens.info['texts']['train_positions']} training positions)")
    kl = lens.info["kl_validation"]
    say("  KL(final ‖ lens) per layer on held-out positions (nats):")
    say("  layer  " + " ".join(f"{i:>5d}" for i in range(len(kl["logit"]))))
    say("  logit  " + " ".join(f"{v:5.2f}" for v in kl["logit"]))
    say("  tuned  " + " ".join(f"{v:5.2f}" for v in kl["tuned"]))
