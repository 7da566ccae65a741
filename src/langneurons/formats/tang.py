"""Tang et al. 2024 mask files: ``List[lang][layer] -> LongTensor`` of neuron indices (torch.save).

Read only with ``torch.load(..., weights_only=True)``. The file does not name its languages, its model
or its intermediate size: the languages must be given, the model defaults to the file name, and the
intermediate size, unless given, is inferred as a lower bound (largest index + 1) and marked as such.
The files hold no unassigned neurons, so an imported set's ``selected`` is the union of its languages.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet
from langneurons.version import __version__

TANG_FORMAT = "tang2024"


def model_name_from_file(path: Path) -> str:
    """``LLaMA-2-7B.neuron.pth`` → ``LLaMA-2-7B``; ``mask.Mistral-<hash>`` → ``Mistral-<hash>``."""
    name = path.name
    for suffix in (".pth", ".pt", ".neuron"):
        name = name.removesuffix(suffix)
    return name.removeprefix("mask.") or path.name


def read_tang(path: str | Path) -> list[list[torch.Tensor]]:
    """Load and check the structure of a Tang-style mask file: K lists of L one-dimensional int tensors."""
    path = Path(path)
    if not path.is_file():
        raise LangneuronsError(f"no such file: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise LangneuronsError(f"{path} is not a loadable torch file ({first})") from None
    shape_error = LangneuronsError(f"{path} is not List[lang][layer] -> LongTensor (Tang et al. format)")
    if not isinstance(data, list | tuple) or not data:
        raise shape_error
    if not all(isinstance(layers, list | tuple) and layers for layers in data):
        raise shape_error
    if len({len(layers) for layers in data}) != 1:
        raise LangneuronsError(f"{path}: the languages have different numbers of layers")
    for layers in data:
        for t in layers:
            if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.is_floating_point() or t.is_complex():
                raise shape_error
            if t.numel() and int(t.min()) < 0:
                raise LangneuronsError(f"{path} holds a negative neuron index")
    return [list(layers) for layers in data]


def import_tang(
    path: str | Path,
    languages: Sequence[str],
    model: str | None = None,
    intermediate_size: int | None = None,
    method: str = "lape",
    site: str | None = "act",
) -> NeuronSet:
    """A NeuronSet from a Tang et al. file; ``languages`` must match the file's number of languages."""
    path = Path(path)
    languages = [lang.strip() for lang in languages if lang.strip()]
    data = read_tang(path)
    if len(languages) != len(data):
        raise LangneuronsError(
            f"{path.name} holds {len(data)} languages but {len(languages)} were given ({','.join(languages)})"
        )
    if len(set(languages)) != len(languages):
        raise LangneuronsError(f"a language is repeated in {','.join(languages)}")
    num_layers = len(data[0])
    largest = max((int(t.max()) for layers in data for t in layers if t.numel()), default=-1)
    inferred = intermediate_size is None
    size = largest + 1 if inferred else int(intermediate_size)
    if size <= 0:
        raise LangneuronsError(f"{path.name} holds no neurons; give --intermediate-size")
    if largest >= size:
        raise LangneuronsError(f"{path.name} has neuron index {largest} ≥ intermediate size {size}")
    neurons = {
        lang: [torch.unique(t.to(torch.long)).tolist() for t in layers]
        for lang, layers in zip(languages, data, strict=True)
    }
    selected = [
        torch.unique(torch.cat([data[k][layer].to(torch.long) for k in range(len(data))])).tolist()
        for layer in range(num_layers)
    ]
    params = {
        "imported_from": TANG_FORMAT,
        "file": path.name,
        "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "intermediate_size_inferred": inferred,
        "selected": "union of the languages' neurons (the file records no unassigned neurons)",
    }
    if inferred:
        params["intermediate_size_note"] = "lower bound: largest index + 1 (give --intermediate-size)"
    return NeuronSet(
        languages=languages,
        num_layers=num_layers,
        intermediate_size=size,
        neurons=neurons,
        selected=selected,
        method=method,
        params=params,
        site=site,
        model=model or model_name_from_file(path),
        source={"file": str(path), "identified_with": f"langneurons {__version__}"},
    )


def to_tang(neuron_set: NeuronSet) -> list[list[torch.Tensor]]:
    """The set as ``List[lang][layer] -> LongTensor`` (languages in the set's order, sorted indices)."""
    return [
        [torch.tensor(layer, dtype=torch.int64) for layer in neuron_set.neurons[lang]]
        for lang in neuron_set.languages
    ]


def export_tang(neuron_set: NeuronSet, path: str | Path) -> None:
    """Write the set as a Tang et al. file (torch.save of plain lists of int64 tensors), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(to_tang(neuron_set), tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


__all__ = ["export_tang", "import_tang", "model_name_from_file", "read_tang", "to_tang"]
