"""Tiny models of every supported family, a word-level tokenizer, and a planted-neuron model.

Everything is built from configs in memory: no network, a few KB of weights each.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from langneurons.models.loading import LoadedModel, wrap_model

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
# Two "languages" with their own words, and words both use.
WORDS = {"aa": [f"a{i}" for i in range(8)], "bb": [f"b{i}" for i in range(8)], "shared": [f"s{i}" for i in range(8)]}
VOCAB = SPECIALS + [w for group in WORDS.values() for w in group]


def word_tokenizer(add_bos: bool = True) -> PreTrainedTokenizerFast:
    """Whitespace word tokenizer over VOCAB; prepends <bos> like LLaMA/Gemma tokenizers do."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 1)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


V, H, F, LAYERS = len(VOCAB), 32, 48, 3
COMMON = dict(vocab_size=V, bos_token_id=1, eos_token_id=2, pad_token_id=0)
CONFIGS: dict[str, dict] = {
    "llama": dict(hidden_size=H, intermediate_size=F, num_hidden_layers=LAYERS, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128),
    "mistral": dict(hidden_size=H, intermediate_size=F, num_hidden_layers=LAYERS, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=128),
    "qwen2": dict(hidden_size=H, intermediate_size=F, num_hidden_layers=LAYERS, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128),
    "qwen3": dict(hidden_size=H, intermediate_size=F, num_hidden_layers=LAYERS, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, max_position_embeddings=128),
    "gemma": dict(hidden_size=H, intermediate_size=F, num_hidden_layers=LAYERS, num_attention_heads=4,
                  num_key_value_heads=1, head_dim=8, max_position_embeddings=128),
    "gemma2": dict(hidden_size=H, intermediate_size=F, num_hidden_layers=LAYERS, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=8, max_position_embeddings=128, sliding_window=16),
    "gemma3_text": dict(hidden_size=H, intermediate_size=F, num_hidden_layers=LAYERS, num_attention_heads=4,
                        num_key_value_heads=1, head_dim=8, max_position_embeddings=128, sliding_window=16),
    "phi3": dict(hidden_size=H, intermediate_size=F, num_hidden_layers=LAYERS, num_attention_heads=4,
                 num_key_value_heads=4, max_position_embeddings=128, original_max_position_embeddings=128),
    "bloom": dict(hidden_size=H, n_layer=LAYERS, n_head=4),
    "bloom_slow": dict(hidden_size=H, n_layer=LAYERS, n_head=4, pretraining_tp=2, slow_but_exact=True),
    "gpt2": dict(n_embd=H, n_layer=LAYERS, n_head=4, n_positions=128, n_inner=F),
    "gpt_neox": dict(hidden_size=H, intermediate_size=F, num_hidden_layers=LAYERS, num_attention_heads=4,
                     max_position_embeddings=128),
    "opt": dict(hidden_size=H, ffn_dim=F, num_hidden_layers=LAYERS, num_attention_heads=4,
                word_embed_proj_dim=H, max_position_embeddings=128),
    "phi": dict(hidden_size=H, intermediate_size=F, num_hidden_layers=LAYERS, num_attention_heads=4,
                max_position_embeddings=128),
    "falcon": dict(hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=4, new_decoder_architecture=False,
                   multi_query=True, ffn_hidden_size=F, max_position_embeddings=128),
}
FAMILIES = list(CONFIGS)


def tiny_model(family: str, seed: int = 0) -> LoadedModel:
    """A randomly initialised tiny model of ``family`` (fp32, CPU) with the word tokenizer."""
    model_type = family.removesuffix("_slow")
    config = AutoConfig.for_model(model_type, **COMMON, **CONFIGS[family])
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # norms start at identity; make them non-trivial so every path is exercised
        for name, param in model.named_parameters():
            if "norm" in name or "ln" in name:
                param.add_(0.1 * torch.randn_like(param))
    return wrap_model(model, word_tokenizer(add_bos=family not in ("gpt2", "opt_nobos")), f"tiny-{family}")


def planted_model(groups: dict[int, set[str]], num_layers: int = 2) -> LoadedModel:
    """A LLaMA whose neuron j fires (act > 0) exactly on the words in ``groups[j]``, in every layer.

    Embeddings are one-hot, attention and MLP outputs are zero, so every layer's MLP sees the
    normalised one-hot of the current token; gate row j is +1 on its words and −1 elsewhere.
    """
    config = AutoConfig.for_model(
        "llama", **COMMON, hidden_size=V, intermediate_size=F, num_hidden_layers=num_layers,
        num_attention_heads=1, num_key_value_heads=1, head_dim=V, max_position_embeddings=128, rms_norm_eps=1e-12,
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(V))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
            gate = -torch.ones(F, V)
            for j, words in groups.items():
                gate[j, [VOCAB.index(w) for w in words]] = 1.0
            layer.mlp.gate_proj.weight.copy_(gate)
            layer.mlp.up_proj.weight.fill_(0.5)  # up: any positive value (down_in fires where act does)
        model.lm_head.weight.copy_(integer_pattern(model.lm_head.weight.shape, seed=1))
    return wrap_model(model, word_tokenizer(), "planted-llama")


def integer_pattern(shape: tuple[int, ...] | torch.Size, seed: int = 0) -> torch.Tensor:
    """Weights in {−1, −0.75, …, 1} from a closed-form integer hash of each entry's index: the same values
    on every CPU and under any random stream (unlike ``randn``, whose vectorised kernels and float rounding
    may differ between processors), for planted fixtures whose assertions depend on the values."""
    n = 1
    for d in shape:
        n *= int(d)
    h = (torch.arange(n, dtype=torch.int64) + (seed + 1) * 1_000_003) % 2**32
    for _ in range(2):  # an integer mixing hash: neighbouring indices get unrelated values
        h = ((h ^ (h >> 16)) * 0x45D9F3B) % 2**32
    h = h ^ (h >> 16)
    return ((h % 9) - 4).to(torch.float32).reshape(tuple(shape)) / 4


def planted_language(text: str) -> tuple[str, float]:
    """The language identifier of the steering tests' planted vocabulary: "bb" when most words are b-words,
    else "aa" (with the share as the score); "none" for an empty text."""
    words = text.split()
    if not words:
        return "none", 0.0
    share_b = sum(w.startswith("b") for w in words) / len(words)
    return ("bb", share_b) if share_b > 0.5 else ("aa", 1 - share_b)


def steerable_model() -> LoadedModel:
    """A one-layer LLaMA whose output language is set by two MLP neurons (ground truth for steering).

    Residual = one-hot of the current token plus two "mode" dimensions. The LM head continues any
    word ``x_i`` with ``a_{i+1}`` (logit 2) over ``b_{i+1}`` (logit 1): left alone, the model writes
    aa words, cycling a1 a2 a3 … (fluent: no repeated bigram within 8 tokens). Neuron 0 writes into
    mode dimension 1, which adds 3 to every ``b`` word: forced on, the model writes b-words, still
    cycling (fluent bb). Neuron 1 writes into mode dimension 2, which adds 6 to ``b0`` alone: forced
    on, the model loops "b0 b0 b0 …" (bb, but not fluent). Both neurons stay off (gate −1 everywhere).
    """
    hidden = V + 2
    config = AutoConfig.for_model(
        "llama", **COMMON, hidden_size=hidden, intermediate_size=F, num_hidden_layers=1, num_attention_heads=1,
        num_key_value_heads=1, head_dim=hidden, max_position_embeddings=128, rms_norm_eps=1e-12,
        tie_word_embeddings=False,
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    index = {w: VOCAB.index(w) for w in VOCAB}
    with torch.no_grad():
        embed = torch.zeros(V, hidden)
        embed[:, :V] = torch.eye(V)
        model.model.embed_tokens.weight.copy_(embed)
        layer = model.model.layers[0]
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.gate_proj.weight.copy_(-torch.ones(F, hidden))  # every neuron off (act = silu(−x) ≈ 0⁻)
        layer.mlp.up_proj.weight.copy_(torch.ones(F, hidden) / hidden**0.5)
        down = torch.zeros(hidden, F)
        down[V, 0], down[V + 1, 1] = 1.0, 1.0
        layer.mlp.down_proj.weight.copy_(down)
        head = torch.zeros(V, hidden)
        for group in ("aa", "bb", "shared"):
            for i, word in enumerate(WORDS[group]):
                nxt = (i + 1) % len(WORDS[group])
                head[index[f"a{nxt}"], index[word]] = 2.0
                head[index[f"b{nxt}"], index[word]] = 1.0
        head[[index[w] for w in WORDS["bb"]], V] = 3.0
        head[index["b0"], V + 1] = 6.0
        model.lm_head.weight.copy_(head / hidden**0.5)  # the final RMSNorm scales a one-hot by √hidden
    return wrap_model(model, word_tokenizer(), "steerable-llama")


def planted_attribution_model(neuron: int = 5, head: int = 2) -> LoadedModel:
    """A one-layer LLaMA where MLP neuron ``neuron`` carries language aa and attention head ``head`` carries
    bb, by construction (ground truth for attribution).

    Residual = one-hot of the token plus two mode dimensions (aa at V, bb at V + 1). Queries and keys are
    zero, so every head attends uniformly to the prefix; only ``head``'s values are non-zero: 1 on b-words,
    so its output is the share of b-words so far, written into the bb mode. Only ``neuron`` fires (on
    a-words; every other gate is −1) and writes into the aa mode. The LM head adds 3 × the aa mode to every
    a-word and 3 × the bb mode to every b-word: without the neuron aa text is predicted worse, without the
    head bb text is. Every other neuron and head has a zero output column (its ablation changes nothing).
    """
    hidden, n_heads = V + 4, 4
    d = hidden // n_heads
    config = AutoConfig.for_model(
        "llama", **COMMON, hidden_size=hidden, intermediate_size=F, num_hidden_layers=1,
        num_attention_heads=n_heads, num_key_value_heads=n_heads, head_dim=d, max_position_embeddings=128,
        rms_norm_eps=1e-12, tie_word_embeddings=False,
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    a_cols = [VOCAB.index(w) for w in WORDS["aa"]]
    b_cols = [VOCAB.index(w) for w in WORDS["bb"]]
    scale = hidden**0.5  # the RMSNorm turns a one-hot into √hidden · one-hot
    with torch.no_grad():
        embed = torch.zeros(V, hidden)
        embed[:, :V] = torch.eye(V)
        model.model.embed_tokens.weight.copy_(embed)
        attn, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
        attn.q_proj.weight.zero_()
        attn.k_proj.weight.zero_()
        attn.v_proj.weight.zero_()
        attn.v_proj.weight[head * d, b_cols] = 1.0 / scale
        attn.o_proj.weight.zero_()
        attn.o_proj.weight[V + 1, head * d] = 1.0
        gate = -torch.ones(F, hidden) / scale
        gate[neuron, a_cols] = 1.0 / scale
        mlp.gate_proj.weight.copy_(gate)
        mlp.up_proj.weight.copy_(torch.ones(F, hidden) / scale)
        down = torch.zeros(hidden, F)
        down[V, neuron] = 1.0 / 4
        mlp.down_proj.weight.copy_(down)
        lm = torch.zeros(V, hidden)
        lm[a_cols, V] = 3.0 / scale
        lm[b_cols, V + 1] = 3.0 / scale
        model.lm_head.weight.copy_(lm)
    return wrap_model(model.eval(), word_tokenizer(), "planted-attribution-llama")
