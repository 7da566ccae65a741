"""gpt-oss: router ``mlp.router`` (top-k of the logits, then softmax), experts with transposed, interleaved
``gate_up_proj`` and biases; act = clamp(gate)·σ(α·clamp(gate)), down_in = (clamp(up) + 1)·act."""

from langneurons.models.moe import MoeAdapter, topk_softmax


class GptOssAdapter(MoeAdapter):
    model_types = ("gpt_oss",)
    router_attr = "router"
    route = staticmethod(topk_softmax)
