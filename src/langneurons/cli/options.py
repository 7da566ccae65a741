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
    return typer.Option(default, "--corpus", "--texts", help=CORPUS_HELP)


def sentences_option(default: int | None, what: str = "Sentences per language") -> Any:
    suffix = " (default: all)." if default is None else "."
    return typer.Option(default, "--sentences", help=f"{what}, the first N{suffix}")


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
    """Load the model the shared options name (prints one 'loading model …' line)."""
    from rich.console import Console

    from langneurons.models.loading import load_model

    Console(stderr=True).print(f"loading model {model} …", highlight=False)
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
