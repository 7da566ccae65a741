"""GPT-2: non-gated MLP; the down projection is a Conv1D whose weight is stored [F, hidden]."""

from langneurons.models.base import NonGatedAdapter


class GPT2Adapter(NonGatedAdapter):
    model_types = ("gpt2",)
    down_path = "mlp.c_proj"
    intermediate_attr = ("n_inner",)
    o_path = "attn.c_proj"  # Conv1D: weight [in, out]

    def down_weight(self, layer: int):
        return self.down_module(layer).weight.T  # Conv1D keeps [in, out]
