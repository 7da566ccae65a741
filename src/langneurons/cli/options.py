"""The options every command shares, defined once so they mean the same thing everywhere.

Conventions (README, "Command-line conventions"):
- ``-o/--out`` names what a command writes; an existing result is replaced only with ``--overwrite``.
- ``--corpus`` names the text (``--texts`` is a hidden alias); ``--sentences N`` takes the first N
  sentences per language, N ≥ 1 (0 or less is an error); leaving it out takes all.
- ``--max-length`` defaults to 512 and is capped at the model's own maximum.
- Model options are the same on every command that loads a model: ``--model``, ``--revision``,
  ``--device``, ``--dtype``, ``--device-map``, ``--trust-remote-code``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from langneurons.errors import LangneuronsError

MODEL_HELP = "'embedded' (Gemma-3-270M, offline), a hub id, a local model folder or a .gguf file"
CORPUS_HELP = "ntrex[:identify|dev|all], a <lang>.txt folder, a .jsonl, or hf:NAME[:SPLIT]"
MAX_LENGTH = 512


def model_option() -> Any:
    return typer.Option("embedded", "--model", help=MODEL_HELP)


def revision_option() -> Any:
    return typer.Option(None, "--revision", help="Hub revision (branch, tag or commit).")


def device_option() -> Any:
    return typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")


def dtype_option() -> Any:
    return typer.Option("auto", "--dtype", help="auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16.")


def device_map_option() -> Any:
    return typer.Option(None, "--device-map", help="'auto' to spread a large model over the GPUs.")


def trust_remote_code_option() -> Any:
    return typer.Option(False, "--trust-remote-code", help="Allow the model's own code (off by default).")


def corpus_option(default: str) -> Any:
    """``--corpus`` (pair it with :func:`texts_alias_option` and :func:`pick_corpus` for ``--texts``)."""
    return typer.Option(default, "--corpus", help=CORPUS_HELP)


def texts_alias_option() -> Any:
    """``--texts``: the old name of ``--corpus``, accepted but not listed in ``--help``."""
    return typer.Option(None, "--texts", hidden=True)


def pick_corpus(corpus: str, texts: str | None) -> str:
    """The corpus named by ``--corpus`` or its hidden alias ``--texts``."""
    return texts if texts is not None else corpus


def languages_option(help: str = "Comma-separated codes, in order (default: all).") -> Any:
    return typer.Option(None, "--languages", help=help)


def batch_size_option(default: int = 8) -> Any:
    return typer.Option(default, "--batch-size", help="Sequences per forward pass.")


def sentences_option(default: int | None, what: str = "Sentences per language") -> Any:
    suffix = " (default: all)." if default is None else f" (default {default}; the first N, N ≥ 1)."
    text = f"{what}, the first N{suffix}" if default is None else f"{what}{suffix}"
    return typer.Option(default, "--sentences", help=text)


def max_length_option() -> Any:
    return typer.Option(MAX_LENGTH, "--max-length", help="Tokens per sequence (capped at the model's maximum).")


def out_option(help: str, default: Any = ...) -> Any:
    return typer.Option(default, "--out", "-o", help=help)


def overwrite_option() -> Any:
    return typer.Option(False, "--overwrite", help="Replace an existing result.")


def check_out(out: Path, overwrite: bool) -> None:
    """The one overwrite policy: an existing output is replaced only with ``--overwrite``."""
    if out.exists() and not overwrite:
        raise LangneuronsError(f"{out} exists; pass --overwrite to replace it")


def check_positive(**values: int | float | None) -> None:
    """``check_positive(batch_size=8)``: each given number must be > 0 (one-line error naming the flag)."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise LangneuronsError(f"--{name.replace('_', '-')} must be positive, got {value}")


def say(message: str) -> None:
    """One plain line on stderr (progress notes, 'loading model …', 'next: …' hints)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(escape(message), highlight=False)


def warn(message: str) -> None:
    """A one-line warning on stderr (scientific traps: the run goes on, but the user should know)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def join_world(device: str, device_map: str | None) -> tuple[str, Any]:
    """Under torchrun / accelerate: join the process group and pick this rank's device.

    Returns ``(device, world)``; a plain run gets a one-process world. ``--device-map`` spreads one
    model over all GPUs, so it is refused with several processes.
    """
    from langneurons.recording.distributed import init_world, launched_world_size, local_device

    if launched_world_size() > 1:
        if device_map is not None:
            raise LangneuronsError("--device-map spreads one model over all GPUs; run it as a single process")
        if device == "auto":
            device = local_device()  # cuda:LOCAL_RANK: one GPU per process
    return device, init_world(device)


def next_hint(command: str) -> None:
    """The one-line 'next: langneurons …' hint after a stage (rank 0 only, under torchrun)."""
    say(f"next: {command}")


def check_model(model: str) -> None:
    """A model path that does not exist fails at once, before the corpus or torch loads."""
    from langneurons.modelspec import check_model_spec

    check_model_spec(model)


def check_sentences(sentences: int | None) -> None:
    """``--sentences`` is a positive count everywhere (leave it out for all)."""
    if sentences is not None and sentences <= 0:
        raise LangneuronsError(f"--sentences must be positive (leave it out for all), got {sentences}")


def load_model_from_options(
    model: str,
    revision: str | None,
    device: str,
    dtype: str,
    device_map: str | None = None,
    trust_remote_code: bool = False,
):
    """Load the model the shared options name (prints one 'loading model …' line; transformers' own
    bars and warnings are silenced)."""
    import os

    from langneurons.models.loading import load_model, quiet_transformers

    quiet_transformers()
    if int(os.environ.get("RANK", "0")) == 0:
        say(f"loading model {model} …")
    return load_model(
        model,
        revision=revision,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        device_map=device_map,
    )


def capped_max_length(max_length: int, loaded: Any) -> int:
    """``--max-length`` capped at the model's own maximum (short-context models do not fail)."""
    if max_length <= 1:
        raise LangneuronsError(f"--max-length must be greater than 1, got {max_length}")
    return min(max_length, int(loaded.max_length))
