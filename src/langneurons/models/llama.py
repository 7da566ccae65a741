"""LLaMA-style gated MLP (LLaMA, Mistral, Qwen2, Qwen3): act = act_fn(gate_proj(x)), down_in = act * up."""

from langneurons.models.base import Adapter


class LlamaAdapter(Adapter):
    model_types = ("llama", "mistral", "qwen2", "qwen3", "olmo", "olmo2", "granite", "cohere")
