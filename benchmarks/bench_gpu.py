"""GPU throughput: a 7B-shaped LLaMA in bf16 (random weights), bare body forward vs recording.

Interleaved A B (C) repetitions, medians, CUDA-synchronised timing. Needs one GPU with ~16 GB.
  A  bare body forward     B  langneurons counting (eager)     C  counting via torch.compile (the CUDA default)
  B+r, C+r  the same with the residual-stream sums `record` takes by default (DiffMean)
Sums are float32 per batch folded into float64 (docs/scaling.md, "Precision of the sums"); targets
(issue 25): eager and default ≥ 0.95 of the bare body.
Usage: python benchmarks/bench_gpu.py [--batch-size 8] [--seq 512] [--reps 5] [--no-compile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import LLAMA_7B, counting_runner, interleaved, llama_from_config, token_batches, write_result  # noqa: E402

from langneurons.recording.counter import batch_statistics, compiled_statistics  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--layers", type=int, default=32, help="fewer layers for a quick look")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        write_result("gpu", {"status": "not run: no GPU"})
        return
    loaded, vocab = llama_from_config(LLAMA_7B | {"num_hidden_layers": args.layers}, torch.bfloat16, "cuda")
    batches = token_batches(loaded, vocab, args.batches, args.batch_size, args.seq, device="cuda")
    counted = torch.ones(args.batch_size, args.seq, dtype=torch.bool)
    counted[:, : args.seq // 8] = False  # some uncounted positions, like padding
    body = loaded.adapter.body()

    def bare():
        with torch.inference_mode():
            for b in batches:
                body(**b, use_cache=False)

    def counting(update, residual=False):
        return counting_runner(loaded, batches, counted, "act", update, residual=residual)

    variants = {"bare_body": bare, "langneurons": counting(batch_statistics),
                "langneurons_residual": counting(batch_statistics, residual=True)}  # fmt: skip
    if not args.no_compile:
        variants["langneurons_compiled"] = counting(compiled_statistics())
        variants["langneurons_compiled_residual"] = counting(compiled_statistics(), residual=True)
        a, c = variants["langneurons"](), variants["langneurons_compiled"]()
        assert torch.equal(a.count, c.count) and torch.equal(a.n_tokens, c.n_tokens)
        assert torch.allclose(a.sum, c.sum, rtol=1e-3, atol=1e-2)  # two float32 summation orders
    tokens = args.batches * args.batch_size * args.seq
    res = interleaved(variants, args.reps, tokens, sync=torch.cuda.synchronize)
    ratio = [b / a for a, b in zip(res["bare_body"]["tok_s"], res["langneurons"]["tok_s"], strict=True)]
    summary = {
        "model": f"LLaMA-7B shape, {args.layers} layers, bf16, random weights",
        "batch": f"{args.batches} x {args.batch_size} x {args.seq} tokens",
        "reps": args.reps,
        "results": res,
        "overhead_ratio_median": statistics.median(ratio),
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20,
    }
    bare_tok_s = res["bare_body"]["median_tok_s"]
    for name in res:
        if name != "bare_body":
            summary[f"ratio_{name}"] = res[name]["median_tok_s"] / bare_tok_s
    if "langneurons_compiled" in res:
        summary["compiled_ratio"] = res["langneurons_compiled"]["median_tok_s"] / bare_tok_s
    for name, r in res.items():
        print(f"{name:22s} {r['median_tok_s']:10.1f} tok/s")
    write_result("gpu", summary)


if __name__ == "__main__":
    main()
