"""CLI: `record` (corpus → stats file) and `merge` (stats files → one)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from langneurons.cli import app, one_line_errors
from langneurons.data import load_corpus, parse_languages
from langneurons.errors import LangneuronsError
from langneurons.formats.stats import MANIFEST_FILE, load_stats, merge_stats, save_stats
from langneurons.models.loading import load_model
from langneurons.record import RecordSettings, record
from langneurons.record.distributed import init_world, launched_world_size, local_device, shutdown

console = Console(stderr=True)

MODEL_HELP = "'embedded' (Gemma-3-270M, offline), a hub id, a local model folder or a .gguf file"


@app.command("record")
def record_cmd(
    out: Path = typer.Option(..., "--out", help="Run directory to write (stats.safetensors + manifest.json)."),
    model: str = typer.Option("embedded", "--model", help=MODEL_HELP),
    revision: str | None = typer.Option(None, "--revision", help="Hub revision (branch, tag or commit)."),
    corpus: str = typer.Option(
        "ntrex", "--corpus", help="ntrex[:identify|dev|all], a <lang>.txt folder, .jsonl, hf:NAME"
    ),
    languages: str | None = typer.Option(None, "--languages", help="Comma-separated codes, in order (default: all)."),
    sentences: int | None = typer.Option(None, "--sentences", help="At most this many sentences per language."),
    tokens: int | None = typer.Option(None, "--tokens", help="Stop each language after this many counted tokens."),
    site: str = typer.Option("act", "--site", help="act (LAPE default) or down_in."),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option(
        "auto", "--dtype", help="auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16."
    ),
    batch_size: int = typer.Option(8, "--batch-size"),
    max_length: int = typer.Option(512, "--max-length", help="Tokens per sequence (longer texts are truncated)."),
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
    residual: bool = typer.Option(
        True, "--residual/--no-residual", help="Also sum the residual stream per layer (DiffMean; ~4 % time)."
    ),
    device_map: str | None = typer.Option(None, "--device-map", help="'auto' to spread a large model over GPUs."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run in --out."),
) -> None:
    """Count how often every MLP neuron fires on each language's text.

    Runs under `torchrun --nproc-per-node N -m langneurons record ...` (or `accelerate launch`) too:
    each process takes its share of the work and the totals equal a one-process run bit for bit.
    """
    settings = RecordSettings(
        site=site, batch_size=batch_size, max_length=max_length, count_bos=count_bos, tokens=tokens,
        chunk_batches=chunk_batches, checkpoint_minutes=checkpoint_minutes,
        checkpoint_every_units=checkpoint_every_units, compile=compile_, packing=packing,
        residual=residual,
    )  # fmt: skip
    settings.validate()  # before the corpus and the model load: bad input fails at once
    if (out / MANIFEST_FILE).exists() and not overwrite:
        raise LangneuronsError(f"{out} already holds a finished run; pass --overwrite to replace it")
    several = launched_world_size() > 1
    if several and device_map is not None:
        raise LangneuronsError("--device-map spreads one model over all GPUs; run it as a single process")
    if several and device == "auto":
        device = local_device()  # cuda:LOCAL_RANK: one GPU per process
    texts = load_corpus(corpus, parse_languages(languages), sentences)
    world = init_world()
    try:
        loaded = load_model(
            model,
            revision=revision,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            device_map=device_map,
        )
        try:
            stats = record(loaded, texts, out, settings, overwrite=overwrite, world=world)
        except KeyboardInterrupt:
            if world.is_main:
                console.print(f"interrupted: the checkpoint in {out} is kept; rerun the same command to resume")
            raise SystemExit(130) from None
    finally:
        shutdown(world)
    if world.is_main:
        m = stats.manifest
        console.print(
            f"wrote {out}: {len(m['languages'])} languages, {int(stats.n_tokens.sum()):,} tokens, "
            f"{m['num_layers']} layers × {m['intermediate_size']} neurons, site {site}, {m['wall_seconds']:.1f} s"
        )


@app.command("merge")
@one_line_errors
def merge_cmd(
    runs: list[Path] = typer.Argument(..., help="Run directories of the same model and site."),
    out: Path = typer.Option(..., "--out"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Add runs: the same language sums up, new languages are appended."""
    if (out / MANIFEST_FILE).exists() and not overwrite:
        raise LangneuronsError(f"{out} already holds a finished run; pass --overwrite to replace it")
    merged = merge_stats([load_stats(run) for run in runs])
    save_stats(out, merged)
    console.print(f"wrote {out}: languages {','.join(merged.languages)}")
