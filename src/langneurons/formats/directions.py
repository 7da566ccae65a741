"""The direction-set file: per language and layer a residual-stream direction (DiffMean, docs/methods.md §13).

``NAME.json`` (format ``langneurons-directions/1``) + ``NAME.safetensors`` beside it:
  directions  float32 [K, L, H]  d[k, l] = μ[k, l] − mean_{j≠k} μ[j, l] (not normalised)
  resid_norm  float32 [L]        r_l, the mean residual norm at layer l (mean over languages)
  mean        float32 [L, H]     the mean over languages of μ[k, l] (the centre of directional ablation; optional)
The JSON carries languages, model, site (``residual``: output of decoder block l), the norms ‖d‖ per
language and layer, the method's parameters, the source run and provenance (docs/formats.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import read_json, read_safetensors, write_json, write_safetensors

DIRECTIONS_FORMAT = "langneurons-directions/1"
RESIDUAL_SITE = "residual"


@dataclass
class DirectionSet:
    """One residual direction per language and layer, and the residual norms that scale steering."""

    languages: list[str]
    directions: torch.Tensor  # float32 [K, L, H]
    resid_norm: torch.Tensor  # float32 [L]
    method: str = "diffmean"
    model: str | None = None
    site: str = RESIDUAL_SITE
    params: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    mean: torch.Tensor | None = None  # float32 [L, H]: mean over languages of the language means

    @property
    def num_layers(self) -> int:
        return int(self.directions.shape[1])

    @property
    def hidden_size(self) -> int:
        return int(self.directions.shape[2])

    def norms(self) -> torch.Tensor:
        """‖d[k, l]‖ as float [K, L]."""
        return torch.linalg.vector_norm(self.directions.double(), dim=-1).float()

    def index(self, lang: str) -> int:
        if lang not in self.languages:
            raise LangneuronsError(f"language {lang!r} is not in the direction set (have: {','.join(self.languages)})")
        return self.languages.index(lang)

    def direction(self, lang: str, layer: int) -> torch.Tensor:
        """d[lang, layer] (float32 [H])."""
        self.check_layer(layer)
        return self.directions[self.index(lang), layer]

    def unit(self, lang: str, layer: int) -> torch.Tensor:
        """d/‖d‖ for ``lang`` at ``layer`` (an error for a zero direction)."""
        d = self.direction(lang, layer).double()
        norm = float(torch.linalg.vector_norm(d))
        if norm == 0.0:
            raise LangneuronsError(f"the {lang} direction at layer {layer} is zero")
        return (d / norm).float()

    def check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.num_layers:
            raise LangneuronsError(f"layer {layer} is out of range 0..{self.num_layers - 1}")

    def check_compatible(self, num_layers: int, hidden_size: int, model: str | None = None) -> None:
        """Refuse a set made for another shape of model (or, when both are named, another model)."""
        if (self.num_layers, self.hidden_size) != (num_layers, hidden_size):
            raise LangneuronsError(
                f"the direction set is for {self.num_layers} layers × hidden {self.hidden_size}, the model has "
                f"{num_layers} × {hidden_size}"
            )
        if model and self.model and model != self.model:
            raise LangneuronsError(f"the direction set was made for {self.model!r}, not {model!r}")

    def validate(self) -> None:
        k = len(self.languages)
        d, r = self.directions, self.resid_norm
        if d.dim() != 3 or d.shape[0] != k or r.dim() != 1 or r.shape[0] != d.shape[1]:
            raise LangneuronsError(
                f"invalid direction set: {k} languages, directions {tuple(d.shape)}, resid_norm {tuple(r.shape)}"
            )
        if self.mean is not None and tuple(self.mean.shape) != tuple(d.shape[1:]):
            raise LangneuronsError(
                f"invalid direction set: mean {tuple(self.mean.shape)} for directions {tuple(d.shape)}"
            )
        if not bool(torch.isfinite(d).all()) or not bool(torch.isfinite(r).all()):
            raise LangneuronsError("invalid direction set: non-finite values")

    def to_dict(self, tensors_file: str) -> dict[str, Any]:
        norms = self.norms()
        return {
            "format": DIRECTIONS_FORMAT,
            "method": self.method,
            "model": self.model,
            "site": self.site,
            "languages": self.languages,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "tensors": tensors_file,
            "norms": {lang: [round(float(v), 6) for v in norms[k]] for k, lang in enumerate(self.languages)},
            "resid_norm": [round(float(v), 6) for v in self.resid_norm],
            "params": self.params,
            "source": self.source,
            "provenance": self.provenance,
        }

    def save(self, path: str | Path) -> None:
        """Write the tensors, then the JSON that names them (the JSON marks a finished file)."""
        self.validate()
        path = Path(path)
        tensors = path.with_suffix(".safetensors")
        meta = {"format": DIRECTIONS_FORMAT}
        data = {"directions": self.directions.float(), "resid_norm": self.resid_norm.float()}
        if self.mean is not None:
            data["mean"] = self.mean.float()
        write_safetensors(tensors, data, meta)
        write_json(path, self.to_dict(tensors.name))

    @classmethod
    def load(cls, path: str | Path) -> DirectionSet:
        """Read and check a direction set; one-line errors for anything wrong."""
        path = Path(path)
        if not path.is_file():
            raise LangneuronsError(f"no direction set at {path}")
        data = read_json(path)
        if not isinstance(data, dict) or data.get("format") != DIRECTIONS_FORMAT:
            raise LangneuronsError(f"{path} is not a direction set (format {DIRECTIONS_FORMAT})")
        tensors_path = path.parent / str(data.get("tensors", ""))
        if not tensors_path.is_file():
            raise LangneuronsError(f"{path} names tensors {tensors_path.name!r}, which are missing")
        tensors = read_safetensors(tensors_path)
        if {"directions", "resid_norm"} - tensors.keys():
            raise LangneuronsError(f"{tensors_path} lacks the directions or resid_norm tensor")
        out = cls(
            list(data.get("languages") or []),
            tensors["directions"],
            tensors["resid_norm"],
            method=str(data.get("method", "diffmean")),
            model=data.get("model"),
            site=str(data.get("site", RESIDUAL_SITE)),
            params=dict(data.get("params") or {}),
            source=dict(data.get("source") or {}),
            provenance=dict(data.get("provenance") or {}),
            mean=tensors.get("mean"),
        )
        out.validate()
        return out


def is_direction_file(path: str | Path) -> bool:
    """True when ``path`` is a JSON file of the direction-set format."""
    try:
        data = read_json(Path(path))
    except (LangneuronsError, OSError):
        return False
    return isinstance(data, dict) and data.get("format") == DIRECTIONS_FORMAT
