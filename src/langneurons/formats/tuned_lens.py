"""The tuned-lens file (docs/methods.md §16): per decoder layer an affine map of the residual stream.

``NAME.safetensors`` holds
  weight  float32 [L, H, H]  A_l (identity at the start of training; the last layer stays identity)
  bias    float32 [L, H]     b_l
and in its metadata (``__metadata__``) the key ``langneurons`` = JSON with ``format``
(``langneurons-tuned-lens/1``), ``model``, ``num_layers``, ``hidden_size``, the training settings, the
per-layer KL on held-out text before and after training, progress (``steps_done``) and provenance.
The lens of layer l is ``softmax(W_U · norm_final(A_l h_l + b_l))``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import read_safetensors, write_safetensors

TUNED_LENS_FORMAT = "langneurons-tuned-lens/1"


@dataclass
class TunedLens:
    """Per-layer affine maps ``A_l h + b_l`` of the residual stream."""

    weight: torch.Tensor  # float32 [L, H, H]
    bias: torch.Tensor  # float32 [L, H]
    info: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        done = self.info.get("steps_done")
        return (f"TunedLens({self.info.get('model')!r}, {self.num_layers} layers × {self.hidden_size}, "
                f"{done} steps)")  # fmt: skip

    @classmethod
    def identity(cls, num_layers: int, hidden_size: int, info: dict[str, Any] | None = None) -> TunedLens:
        eye = torch.eye(hidden_size).expand(num_layers, hidden_size, hidden_size).clone()
        return cls(eye, torch.zeros(num_layers, hidden_size), dict(info or {}))

    @property
    def num_layers(self) -> int:
        return int(self.weight.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.weight.shape[1])

    def apply(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden [..., L, H]`` (one residual per layer) → ``A_l h_l + b_l`` per layer, float32."""
        w, b = self.weight.to(hidden.device), self.bias.to(hidden.device)
        return torch.einsum("...lh,lgh->...lg", hidden.float(), w) + b

    def check_compatible(self, num_layers: int, hidden_size: int, model: str | None = None) -> None:
        if (num_layers, hidden_size) != (self.num_layers, self.hidden_size):
            raise LangneuronsError(
                f"the tuned lens has {self.num_layers} layers × {self.hidden_size} (for {self.info.get('model')}), "
                f"the model {model or ''} has {num_layers} × {hidden_size}: train one for this model (lens-train)"
            )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        meta = {"langneurons": json.dumps({"format": TUNED_LENS_FORMAT, **self.info}, allow_nan=False)}
        write_safetensors(path, {"weight": self.weight.float().contiguous(), "bias": self.bias.float().contiguous()},
                          meta)  # fmt: skip
        return path

    @classmethod
    def load(cls, path: str | Path) -> TunedLens:
        path = Path(path)
        if not path.is_file():
            raise LangneuronsError(f"tuned lens {path} does not exist (train one with `langneurons lens-train`)")
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
            tensors = read_safetensors(path)
            info = json.loads(meta.get("langneurons", "{}"))
        except Exception:  # noqa: BLE001 - any unreadable file is one message
            raise LangneuronsError(f"{path} is not a tuned-lens safetensors file") from None
        if info.get("format") != TUNED_LENS_FORMAT or not {"weight", "bias"} <= set(tensors):
            raise LangneuronsError(f"{path} is not a langneurons tuned lens (format {info.get('format')!r})")
        info.pop("format")
        return cls(tensors["weight"].float(), tensors["bias"].float(), info)
