"""The options every command shares, declared once so they mean the same thing everywhere.

Command modules ``import langneurons.cli.options as opt`` and name a shared option by its type:
``overwrite: opt.Overwrite = False`` is ``--overwrite`` with its help text (``typing.Annotated`` aliases,
which typer reads; the default stays in the signature). Where the help says what this command writes,
``opt.out_option(help)`` goes inside the ``Annotated``: ``out: Annotated[Path, opt.out_option("...")]``.
The six model options come as one value: decorate the command with :func:`model_options` and give it a
parameter ``model: opt.ModelOptions = opt.ModelOptions()``. Options only one command has stay in its
signature; the checks and messages the commands share are in ``cli.common``.

Conventions (README, "Command-line conventions"):
- ``-o/--out`` names what a command writes; an existing result is replaced only with ``--overwrite``.
- ``--corpus`` names the text (``--texts`` is a hidden alias); ``--sentences N`` takes the first N
  sentences per language, N ≥ 1 (0 or less is an error); leaving it out takes all.
- ``--max-length`` defaults to 512 and is capped at the model's own maximum.
- Model options are the same on every command that loads a model: ``--model``, ``--revision``,
  ``--device``, ``--dtype``, ``--device-map``, ``--trust-remote-code``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from langneurons.cli.common import say
from langneurons.errors import LangneuronsError

MODEL_HELP = "'embedded' (Gemma-3-270M, offline), a hub id, a local model folder or a .gguf file"
CORPUS_HELP = (
    "ntrex[:identify|dev|all], a <lang>.txt folder, a .jsonl (text, or prompt/response records), hf:NAME[:SPLIT], "
    "or tasks[:translate|continue|arithmetic] (built-in prompts)"
)
NEURONS_HELP = "Neuron-set JSON (from `identify`)."
MAX_LENGTH = 512

# ---- model options (see model_options) --------------------------------------------------------------
Model = Annotated[str, typer.Option("--model", help=MODEL_HELP)]
Revision = Annotated[str | None, typer.Option("--revision", help="Hub revision (branch, tag or commit).")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Dtype = Annotated[
    str,
    typer.Option(
        "--dtype", help="auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16 (or fp32, bf16, fp16)."
    ),
]
DeviceMap = Annotated[str | None, typer.Option("--device-map", help="'auto' to spread a large model over the GPUs.")]
TrustRemoteCode = Annotated[
    bool, typer.Option("--trust-remote-code", help="Allow the model's own code (off by default).")
]

# ---- text ------------------------------------------------------------------------------------------
Corpus = Annotated[str, typer.Option("--corpus", help=CORPUS_HELP)]
Texts = Annotated[str | None, typer.Option("--texts", hidden=True, help="The old name of --corpus.")]
Languages = Annotated[str | None, typer.Option("--languages", help="Comma-separated codes, in order (default: all).")]
Sentences = Annotated[
    int | None, typer.Option("--sentences", help="Sentences per language (the first N, N ≥ 1).")
]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Sequences per forward pass.")]
MaxLength = Annotated[int, typer.Option("--max-length", help="Tokens per sequence (capped at the model's maximum).")]

# ---- neuron sets and their controls ----------------------------------------------------------------
Neurons = Annotated[Path, typer.Option("--neurons", help=NEURONS_HELP)]
Site = Annotated[str | None, typer.Option("--site", help="act or down_in (default: the set's site).")]
AnySite = Annotated[bool, typer.Option("--any-site", help="Allow a site other than the set's.")]
Controls = Annotated[
    int,
    typer.Option(
        "--controls",
        help="Matched random control sets (0: none); R > 1 gives p-values, down to 1/(R+1).",
    ),
]
NoControls = Annotated[bool, typer.Option("--no-controls", hidden=True, help="Same as --controls 0.")]
Seed = Annotated[
    int, typer.Option("--seed", help="Seed of the command's random draws (controls, sampling, resamples, splits).")
]

# ---- output ----------------------------------------------------------------------------------------
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing result.")]


def out_option(help: str) -> Any:
    """``-o/--out``, with this command's help: ``out: Annotated[Path, out_option("Result JSON to write.")]``."""
    return typer.Option("--out", "-o", help=help)


# ---- the model options as one value ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """``--model``, ``--revision``, ``--device``, ``--dtype``, ``--device-map``, ``--trust-remote-code``."""

    model: str = "embedded"
    revision: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    device_map: str | None = None
    trust_remote_code: bool = False

    def check(self) -> ModelOptions:
        """These options with ``--dtype`` spelled out (fp16 → float16), after the checks that need neither torch nor
        the model: a model path that does not exist, a hub id neither cached nor reachable, an unknown dtype or
        device fail at once, before any input file, output or the model is read."""
        from langneurons.modelspec import check_device_name, check_hub_model, check_model_spec, dtype_name

        check_model_spec(self.model)
        options = dataclasses.replace(self, dtype=dtype_name(self.dtype))
        check_device_name(self.device)
        check_hub_model(self.model)
        return options

    def join_world(self) -> tuple[ModelOptions, Any]:
        """Under torchrun / accelerate: join the process group and pick this rank's device.

        Returns ``(options, world)``, the options with this process's device; a plain run gets a one-process
        world. ``--device-map`` spreads one model over all GPUs, so it is refused with several processes.
        """
        from langneurons.recording.distributed import init_world, launched_world_size, local_device

        device = self.device
        if launched_world_size() > 1:
            if self.device_map is not None:
                raise LangneuronsError("--device-map spreads one model over all GPUs; run it as a single process")
            if device == "auto":
                device = local_device()  # cuda:LOCAL_RANK: one GPU per process
        return dataclasses.replace(self, device=device), init_world(device)

    def load(self):
        """Load the model (prints one 'loading model …' line; transformers' own bars and warnings are silenced)."""
        import os

        from langneurons.models.loading import load_model, quiet_transformers

        quiet_transformers()
        if int(os.environ.get("RANK", "0")) == 0:
            say(f"loading model {self.model} …")
        return load_model(
            self.model,
            revision=self.revision,
            device=self.device,
            dtype=self.dtype,
            trust_remote_code=self.trust_remote_code,
            device_map=self.device_map,
        )


MODEL_FLAGS = {
    "model": Model,
    "revision": Revision,
    "device": Device,
    "dtype": Dtype,
    "device_map": DeviceMap,
    "trust_remote_code": TrustRemoteCode,
}


def model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the six model options, checked (a model path that does not exist fails at once) and
    received as one :class:`ModelOptions`.

    The command's parameter ``model: ModelOptions = ModelOptions()`` stands, in ``--help`` and on the
    command line, for the six flags of :data:`MODEL_FLAGS` (their defaults from the parameter's default)::

        @app.command("ppl")
        @one_line_errors
        @model_options
        def ppl_cmd(..., model: ModelOptions = ModelOptions(), ...):
            ...
            loaded = model.load()
    """
    signature = inspect.signature(command, eval_str=True)
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        if parameter.name != "model":
            parameters.append(parameter)
            continue
        defaults = parameter.default if isinstance(parameter.default, ModelOptions) else ModelOptions()
        parameters += [
            inspect.Parameter(name, parameter.kind, default=getattr(defaults, name), annotation=annotation)
            for name, annotation in MODEL_FLAGS.items()
        ]

    @functools.wraps(command)
    def with_model(**kwargs: Any) -> Any:
        options = ModelOptions(**{name: kwargs.pop(name) for name in MODEL_FLAGS})
        options = options.check()  # before anything heavy is imported: a wrong model, dtype or device fails at once
        return command(model=options, **kwargs)

    with_model.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_model.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": signature.return_annotation}
    return with_model
