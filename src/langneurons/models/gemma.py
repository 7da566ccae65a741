"""Gemma 1/2/3 (text): LLaMA-style gated MLP with a GELU(tanh) activation."""

from langneurons.models.base import Adapter


class GemmaAdapter(Adapter):
    model_types = ("gemma", "gemma2", "gemma3_text")
