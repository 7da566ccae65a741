"""Tiny random mixture-of-experts models of every supported MoE family, and a planted MoE.

Built from configs in memory (no hub): 4 experts of 8 neurons, top-2, a shared expert where the family
has one, and a dense first layer where the family allows it.
"""

from __future__ import annotations

import torch
from tiny import COMMON, VOCAB, V, integer_pattern, word_tokenizer
from transformers import AutoConfig, AutoModelForCausalLM

from langneurons.models.loading import LoadedModel, wrap_model

H, E, FE, TOPK, LAYERS = 32, 4, 8, 2, 3
ATTN = dict(hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=128)  # fmt: skip
ROPE = {"rope_type": "default", "rope_theta": 10000.0}
MLA = dict(kv_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8, n_group=2, topk_group=1)
MOE_CONFIGS: dict[str, dict] = {
    "mixtral": dict(ATTN, intermediate_size=FE, num_local_experts=E, num_experts_per_tok=TOPK),
    "qwen2_moe": dict(ATTN, intermediate_size=24, moe_intermediate_size=FE, num_experts=E,
                      num_experts_per_tok=TOPK, shared_expert_intermediate_size=2 * FE, mlp_only_layers=[0],
                      norm_topk_prob=True),
    "qwen3_moe": dict(ATTN, intermediate_size=24, moe_intermediate_size=FE, num_experts=E, num_experts_per_tok=TOPK,
                      head_dim=8, mlp_only_layers=[0]),
    "olmoe": dict(ATTN, intermediate_size=FE, num_experts=E, num_experts_per_tok=TOPK),
    "deepseek_v2": dict(ATTN | {"num_key_value_heads": 4}, **MLA, intermediate_size=40, moe_intermediate_size=FE,
                        n_routed_experts=E, num_experts=E, num_experts_per_tok=TOPK, n_shared_experts=1,
                        first_k_dense_replace=1, q_lora_rank=None, topk_method="group_limited_greedy"),
    "deepseek_v3": dict(ATTN | {"num_key_value_heads": 4}, **MLA, rope_parameters=ROPE, intermediate_size=40,
                        moe_intermediate_size=FE, n_routed_experts=E, num_experts_per_tok=TOPK, n_shared_experts=2,
                        first_k_dense_replace=1, q_lora_rank=8),
    "gpt_oss": dict(ATTN, intermediate_size=FE, num_local_experts=E, num_experts_per_tok=TOPK, head_dim=8,
                    rope_parameters=ROPE, sliding_window=16,
                    layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
    # families the same adapters cover
    "glm4_moe": dict(ATTN, intermediate_size=40, moe_intermediate_size=FE, n_routed_experts=E, num_experts_per_tok=TOPK,
                     n_shared_experts=1, first_k_dense_replace=1, n_group=2, topk_group=1, head_dim=8,
                     rope_parameters=ROPE),
    "dots1": dict(ATTN, intermediate_size=40, moe_intermediate_size=FE, n_routed_experts=E, num_experts_per_tok=TOPK,
                  n_shared_experts=1, first_k_dense_replace=1, n_group=2, topk_group=1, head_dim=8,
                  rope_parameters=ROPE),
    "flex_olmo": dict(ATTN, intermediate_size=FE, num_experts=E, num_experts_per_tok=TOPK, rope_parameters=ROPE),
    "qwen3_next": dict(ATTN, intermediate_size=24, moe_intermediate_size=FE, num_experts=E, num_experts_per_tok=TOPK,
                       shared_expert_intermediate_size=FE, head_dim=8, mlp_only_layers=[0],
                       layer_types=["linear_attention", "full_attention", "linear_attention"],
                       linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
                       linear_value_head_dim=8, rope_parameters=ROPE | {"partial_rotary_factor": 0.5}),
}  # fmt: skip
MOE_FAMILIES = list(MOE_CONFIGS)


def tiny_moe(family: str, seed: int = 0, implementation: str | None = None):
    """A randomly initialised tiny MoE of ``family`` (fp32, CPU), not yet wrapped (no adapter)."""
    config = AutoConfig.for_model(family, **COMMON, **MOE_CONFIGS[family])
    torch.manual_seed(seed)
    kwargs = {} if implementation is None else {"experts_implementation": implementation}
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, **kwargs)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
            elif param.dim() == 3 or "bias" in name or "router" in name or name.endswith("gate.weight"):
                param.copy_(0.3 * torch.randn_like(param))  # experts are created empty: give them values
        for name, buf in model.named_buffers():
            if "e_score_correction_bias" in name:
                buf.copy_(0.05 * torch.randn_like(buf))
    return model.eval()


def tiny_moe_loaded(family: str, seed: int = 0) -> LoadedModel:
    return wrap_model(tiny_moe(family, seed), word_tokenizer(), f"tiny-{family}")


def planted_moe(routes: dict[int, set[str]], groups: dict[tuple[int, int], set[str]], num_layers: int = 2,
                experts: int = 4, top_k: int = 2, size: int = 8) -> LoadedModel:  # fmt: skip
    """A Mixtral whose router sends word w to the experts e with ``w in routes[e]`` and whose expert e's
    neuron j fires (act > 0) exactly on the words in ``groups[(e, j)]``, in every layer.

    Embeddings are one-hot, attention and expert outputs are zero, so every layer sees the normalised
    one-hot of the current token. Router row e is +10 on its words; gate row j of expert e is +1 on its
    words and −1 elsewhere. Every word must be routed to exactly ``top_k`` experts.
    """
    for w in VOCAB[4:]:
        assert sum(w in r for r in routes.values()) == top_k, w
    config = AutoConfig.for_model(
        "mixtral", **COMMON, hidden_size=V, intermediate_size=size, num_hidden_layers=num_layers,
        num_attention_heads=1, num_key_value_heads=1, head_dim=V, max_position_embeddings=128,
        rms_norm_eps=1e-12, num_local_experts=experts, num_experts_per_tok=top_k,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(V))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            router = torch.zeros(experts, V)
            for e, words in routes.items():
                router[e, [VOCAB.index(w) for w in words]] = 10.0
            layer.mlp.gate.weight.copy_(router)
            gate_up = torch.zeros(experts, 2 * size, V)
            gate_up[:, :size] = -1.0
            for (e, j), words in groups.items():
                gate_up[e, j, [VOCAB.index(w) for w in words]] = 1.0
            gate_up[:, size:] = 0.5  # up: any non-zero value
            layer.mlp.experts.gate_up_proj.copy_(gate_up)
            layer.mlp.experts.down_proj.zero_()
        model.lm_head.weight.copy_(integer_pattern(model.lm_head.weight.shape, seed=1))
    return wrap_model(model, word_tokenizer(), "planted-moe")
