"""Gemma 1/2/3 (text): LLaMA-style gated MLP with a GELU(tanh) activation."""

import torch

from langneurons.models.base import Adapter


class GemmaAdapter(Adapter):
    model_types = ("gemma", "gemma2", "gemma3_text")

    def final_norm_gain(self) -> torch.Tensor:
        """Gemma's RMSNorm scales by ``1 + weight`` (its weight is stored as an offset from one)."""
        return 1.0 + self.final_norm().weight.detach().float()
