"""DeepSeek-V2/V3: the first ``first_k_dense_replace`` layers are dense MLPs (ordinary neurons), the rest
MoE with shared experts (``mlp.shared_experts``, ``n_shared_experts`` expert slots). V2 routes by
softmax (greedy or group-limited), V3 by sigmoid scores with a bias-corrected group-limited choice
(as GLM-4.5 MoE and dots.llm1, which share V3's layout)."""

from langneurons.models.moe import MoeAdapter, deepseek_v2_route, deepseek_v3_route, sigmoid_probs


class DeepseekV2Adapter(MoeAdapter):
    model_types = ("deepseek_v2",)
    shared_attr = "shared_experts"
    route = staticmethod(deepseek_v2_route)


class DeepseekV3Adapter(MoeAdapter):
    model_types = ("deepseek_v3", "glm4_moe", "dots1")  # GLM-4.5 and dots.llm1 route the same way
    shared_attr = "shared_experts"
    route = staticmethod(deepseek_v3_route)
    probs = staticmethod(sigmoid_probs)
