"""Recording an MoE model against its bare body forward, interleaved in one process (issue 13).

  A  bare body forward with the default experts implementation (grouped_mm where transformers can, no hooks)
  B  langneurons recording: the Counter (per-expert neurons + routing statistics) + body forward, which runs
     the "langneurons" experts implementation (the eager per-expert loop with the sites exposed)
  C  bare body forward with the eager experts implementation (the loop B must reproduce bit for bit)

Each repetition runs A B C once over the same batches; figures are medians of the repetitions. The ratio
B/A is the recording speed relative to the fastest bare forward; B/C isolates the counting itself.
Usage: python benchmarks/bench_moe.py [--family qwen3_moe] [--reps 5] [--batch-size 4] [--seq 256]
       python benchmarks/bench_moe.py --family qwen3_moe_30b --device cuda --dtype bfloat16 --batch-size 8 --seq 1024
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import _DummyTokenizer, counting_runner, interleaved, token_batches, write_result  # noqa: E402

from langneurons.recording.counter import batch_statistics  # noqa: E402

# A Qwen3-MoE shape scaled to a shared 2-core CPU: 32 experts of 384 neurons, top-4 (Qwen3-30B-A3B: 128 × 768,
# top-8), so that the experts dominate the forward as in the real model.
SHAPES = {
    "qwen3_moe": dict(hidden_size=768, intermediate_size=2048, moe_intermediate_size=384, num_experts=32,
                      num_experts_per_tok=4, num_hidden_layers=4, num_attention_heads=12, num_key_value_heads=4,
                      head_dim=64, vocab_size=32000, max_position_embeddings=2048),
    # Qwen3-30B-A3B's own layer shape (128 experts × 768, top-8), 8 of its 48 layers: for a GPU.
    "qwen3_moe_30b": dict(hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768, num_experts=128,
                          num_experts_per_tok=8, num_hidden_layers=8, num_attention_heads=32, num_key_value_heads=4,
                          head_dim=128, vocab_size=32000, max_position_embeddings=4096),
    "mixtral": dict(hidden_size=768, intermediate_size=1536, num_local_experts=8, num_experts_per_tok=2,
                    num_hidden_layers=4, num_attention_heads=12, num_key_value_heads=4, vocab_size=32000,
                    max_position_embeddings=2048),
}  # fmt: skip


def moe_from_config(family: str, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    from transformers import AutoConfig, AutoModelForCausalLM

    from langneurons.models.loading import wrap_model

    config = AutoConfig.for_model(family.removesuffix("_30b"), **SHAPES[family])
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    with torch.no_grad():  # fused experts are created empty
        for name, p in model.named_parameters():
            if p.dim() == 3 or name.endswith("gate.weight"):
                p.normal_(0.0, 0.02)
    default = model.config._experts_implementation
    return wrap_model(model, _DummyTokenizer(), f"{family}-config-{config.hidden_size}"), default


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="qwen3_moe", choices=sorted(SHAPES))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batches", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--site", default="act")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--name", default=None, help="results/<name>.json (default: record_moe_<family>)")
    args = ap.parse_args()

    loaded, default = moe_from_config(args.family, getattr(torch, args.dtype), args.device)
    adapter = loaded.adapter
    batches = token_batches(loaded, 32000, args.batches, args.batch_size, args.seq, device=args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    tokens = args.batches * args.batch_size * args.seq
    body = adapter.body()
    counted = torch.ones(args.batch_size, args.seq, dtype=torch.bool)
    taps = [adapter._experts(i)._langneurons_taps for i in adapter.moe_layers]

    def bare(implementation: str):
        def run():
            for t in taps:  # with nothing attached, the experts run this implementation
                t.fallback = implementation
            with torch.inference_mode():
                for b in batches:
                    body(**b, use_cache=False)
            for t in taps:
                t.fallback = default

        return run

    variants = {
        f"bare_body_{default}": bare(default),
        "langneurons": counting_runner(loaded, batches, counted, args.site, batch_statistics),
        "bare_body_eager": bare("eager"),
    }
    a, b, c = variants
    res = interleaved(variants, args.reps, tokens, sync=sync)
    ratio = [y / x for x, y in zip(res[a]["tok_s"], res[b]["tok_s"], strict=True)]
    ratio_eager = [y / x for x, y in zip(res[c]["tok_s"], res[b]["tok_s"], strict=True)]
    summary = {
        "model": loaded.name,
        "default_experts_implementation": default,
        "layers": adapter.num_layers,
        "experts": adapter.num_experts,
        "expert_neurons": adapter.expert_intermediate_size,
        "top_k": int(adapter._router(adapter.moe_layers[0]).top_k),
        "neurons_per_layer": adapter.intermediate_size,
        "site": args.site,
        "device": torch.cuda.get_device_name() if sync else "cpu",
        "dtype": args.dtype,
        "batch": f"{args.batches} x {args.batch_size} x {args.seq} tokens",
        "reps": args.reps,
        "results": res,
        "ratio_vs_default_median": statistics.median(ratio),  # recording / bare default, per repetition
        "ratio_vs_eager_median": statistics.median(ratio_eager),  # recording / bare eager, per repetition
        "eager_vs_default_of_medians": res[c]["median_tok_s"] / res[a]["median_tok_s"],
    }
    for name, r in res.items():
        print(f"{name:22s} {r['median_tok_s']:10.1f} tok/s")
    print({k: v for k, v in summary.items() if "ratio" in k or "_vs_" in k})
    write_result(args.name or f"record_moe_{args.family}", summary)


if __name__ == "__main__":
    main()
