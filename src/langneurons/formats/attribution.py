"""The attribution run: per language, the estimated effect of ablating each unit (docs/formats.md).

A folder with two files, written atomically (the JSON last: its presence marks a finished run):

``attribution.safetensors`` (float32 tensors, nats per token, positive = the ablation raises the
language's mean next-token NLL, i.e. hurts):

  neurons.<lang>          [layers, neurons]  zero-ablation estimate (the run's method: patching or ig)
  heads.<lang>            [layers, heads]    zero-ablation estimate of each attention head
  experts.<lang>          [layers, experts]  MoE only: zero-ablation of all of an expert's neurons
  mean.<unit>.<lang>      same shapes        mean-ablation estimate (first order): the unit replaced by
                                             its mean on the other languages
  patching.<unit>.<lang>  same shapes        ig runs only: the first-order zero-ablation estimate
  activation_mean.neurons.<lang>  [layers, neurons]        mean activation on the language's counted tokens
  activation_mean.heads.<lang>    [layers, heads, head_dim] mean head output on them

``attribution.json``: format, languages, units, method, steps, site, layout (num_layers, neurons,
heads, experts, head_layers, moe), per-language baseline ``nll`` and ``tokens``, ``validation`` (exact
ablation of sampled units, when asked), and ``provenance``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import read_json, read_safetensors, write_json, write_safetensors
from langneurons.formats.neuronset import column_groups

ATTRIBUTION_FORMAT = "langneurons-attribution/1"
ATTRIBUTION_FILE = "attribution.safetensors"
ATTRIBUTION_JSON = "attribution.json"
UNITS = ("neurons", "heads", "experts")
ABLATIONS = ("zero", "mean")


@dataclass
class Attribution:
    """The tensors and the JSON of an attribution run."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def languages(self) -> list[str]:
        return list(self.meta["languages"])

    @property
    def units(self) -> list[str]:
        return list(self.meta["units"])

    def __repr__(self) -> str:
        shapes = ", ".join(f"{u} {tuple(self.score(u, self.languages[0]).shape)}" for u in self.units)
        return (f"Attribution({self.meta.get('method')}, {len(self.languages)} languages "
                f"({','.join(self.languages)}), {shapes})")  # fmt: skip

    def score(self, unit: str, lang: str, ablation: str = "zero") -> torch.Tensor:
        """The estimated effect of ablating each unit on ``lang``'s mean NLL (nats per token)."""
        if unit not in self.units:
            raise LangneuronsError(f"this attribution run has no {unit} (it has: {', '.join(self.units)})")
        if lang not in self.languages:
            have = ",".join(self.languages)
            raise LangneuronsError(f"language {lang!r} is not in this attribution run (have: {have})")
        if ablation not in ABLATIONS:
            raise LangneuronsError(f"unknown ablation {ablation!r}; choose {' or '.join(ABLATIONS)}")
        key = f"{unit}.{lang}" if ablation == "zero" else f"mean.{unit}.{lang}"
        return self.tensors[key]

    def scores(self, unit: str, ablation: str = "zero") -> torch.Tensor:
        """``[K, layers, units]``: every language's scores, in the run's language order."""
        return torch.stack([self.score(unit, lang, ablation) for lang in self.languages])

    def existing(self, unit: str) -> torch.Tensor:
        """[layers, units] bool: the units that exist (an MoE model's padded neuron columns and the layers
        without heads or experts do not), the ones identification ranks and validation samples."""
        layout = self.meta["layout"]
        n_layers = layout["num_layers"]
        if unit == "neurons":
            groups = column_groups(layout.get("moe"), n_layers, layout["neurons"])
            return torch.ones(n_layers, layout["neurons"], dtype=torch.bool) if groups is None else groups >= 0
        mask = torch.zeros(n_layers, layout[unit], dtype=torch.bool)
        mask[layout["head_layers"] if unit == "heads" else layout["moe"]["moe_layers"]] = True
        return mask

    def save(self, out: str | Path) -> None:
        out = Path(out)
        write_safetensors(out / ATTRIBUTION_FILE, {k: v.float().contiguous() for k, v in self.tensors.items()},
                          metadata={"format": ATTRIBUTION_FORMAT})  # fmt: skip
        write_json(out / ATTRIBUTION_JSON, {"format": ATTRIBUTION_FORMAT, **self.meta})
        self.path = str(out)


def load_attribution(run: str | Path) -> Attribution:
    """Read an attribution run folder (or its JSON / safetensors file); one-line errors."""
    run = Path(run)
    folder = run.parent if run.name in (ATTRIBUTION_FILE, ATTRIBUTION_JSON) else run
    meta_path = folder / ATTRIBUTION_JSON
    if not meta_path.is_file():
        raise LangneuronsError(f"no attribution run at {folder} (no {ATTRIBUTION_JSON}; make one with `attribute`)")
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("format") != ATTRIBUTION_FORMAT:
        raise LangneuronsError(f"{meta_path}: not a {ATTRIBUTION_FORMAT} file")
    meta = {k: v for k, v in meta.items() if k != "format"}
    tensors = read_safetensors(folder / ATTRIBUTION_FILE)
    for unit in meta.get("units", []):
        for lang in meta.get("languages", []):
            if f"{unit}.{lang}" not in tensors:
                raise LangneuronsError(f"{folder / ATTRIBUTION_FILE} lacks the tensor {unit}.{lang}")
    return Attribution(tensors, meta, str(folder))


def is_attribution_run(path: str | Path) -> bool:
    path = Path(path)
    return (path / ATTRIBUTION_JSON).is_file() or path.name == ATTRIBUTION_JSON


__all__ = ["ABLATIONS", "ATTRIBUTION_FILE", "ATTRIBUTION_FORMAT", "ATTRIBUTION_JSON", "UNITS", "Attribution",
           "is_attribution_run", "load_attribution"]
