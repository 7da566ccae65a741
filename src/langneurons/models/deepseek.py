"""DeepSeek-V2/V3: the first ``first_k_dense_replace`` layers are dense MLPs (ordinary neurons), the rest
MoE with shared experts (``mlp.shared_experts``, ``n_shared_experts`` expert slots). V2 routes by
softmax (greedy or group-limited), V3 by sigmoid scores with a bias-corrected group-limited choice."""

from langneurons.models.moe import MoeAdapter, deepseek_v2_route, deepseek_v3_route, sigmoid_probs


class DeepseekV2Adapter(MoeAdapter):
    model_types = ("deepseek_v2",)
    shared_attr = "shared_experts"
    route = staticmethod(deepseek_v2_route)


class DeepseekV3Adapter(MoeAdapter):
    model_types = ("deepseek_v3",)
    shared_attr = "shared_experts"
    route = staticmethod(deepseek_v3_route)
    probs = staticmethod(sigmoid_probs)
