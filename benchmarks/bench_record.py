"""Recording overhead and the nnsight comparison, interleaved in one process.

  A  bare body forward (adapter.body(), no hooks)            — the bar
  B  langneurons counting: the Counter hooks + body forward — what `record` runs per batch
  C  the same counting written with nnsight (trace of the full model) — what many users reach for
  (B' with --compile: the counting update through torch.compile)

Each repetition runs A B C once over the same batches; figures are medians of the repetitions.
Usage: python benchmarks/bench_record.py --model llama|embedded [--reps 5] [--nnsight] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import counting_runner, interleaved, load, token_batches, write_result  # noqa: E402

from langneurons.recording.counter import batch_statistics, compiled_statistics  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama", choices=["llama", "embedded"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batches", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--site", default="act")
    ap.add_argument("--nnsight", action="store_true", help="also time the nnsight version")
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile'd counting update")
    ap.add_argument("--name", default=None, help="results/<name>.json (default: record_<model>)")
    args = ap.parse_args()

    loaded, vocab = load(args.model)
    batches = token_batches(loaded, vocab, args.batches, args.batch_size, args.seq)
    tokens = args.batches * args.batch_size * args.seq
    body = loaded.adapter.body()
    counted = torch.ones(args.batch_size, args.seq, dtype=torch.bool)

    def bare():
        with torch.inference_mode():
            for b in batches:
                body(**b, use_cache=False)

    def counting(update):
        return counting_runner(loaded, batches, counted, args.site, update)

    variants = {"bare_body": bare, "langneurons": counting(batch_statistics)}
    if args.compile:
        variants["langneurons_compiled"] = counting(compiled_statistics())
        eager, compiled = variants["langneurons"](), variants["langneurons_compiled"]()
        assert torch.equal(eager.count, compiled.count) and torch.equal(eager.n_tokens, compiled.n_tokens)
        assert torch.allclose(eager.sum, compiled.sum) and torch.allclose(eager.sum_sq, compiled.sum_sq)
    if args.nnsight:
        variants["nnsight"] = nnsight_counting(loaded, batches, counted, args.site)
        ours, theirs = variants["langneurons"](), variants["nnsight"]()
        assert torch.equal(ours.count, theirs[0]), "nnsight counts differ"

    res = interleaved(variants, args.reps, tokens)
    ratio = [b / a for a, b in zip(res["bare_body"]["tok_s"], res["langneurons"]["tok_s"], strict=True)]
    summary = {
        "model": loaded.name,
        "layers": loaded.adapter.num_layers,
        "neurons_per_layer": loaded.adapter.intermediate_size,
        "dtype": str(loaded.dtype),
        "site": args.site,
        "batch": f"{args.batches} x {args.batch_size} x {args.seq} tokens",
        "reps": args.reps,
        "results": res,
        "overhead_ratio_median": statistics.median(ratio),  # recording / bare, per repetition
        "overhead_ratio_of_medians": res["langneurons"]["median_tok_s"] / res["bare_body"]["median_tok_s"],
    }
    if "nnsight" in res:
        summary["speedup_vs_nnsight"] = res["langneurons"]["median_tok_s"] / res["nnsight"]["median_tok_s"]
    if "langneurons_compiled" in res:
        summary["compiled_ratio"] = res["langneurons_compiled"]["median_tok_s"] / res["bare_body"]["median_tok_s"]
    for name, r in res.items():
        print(f"{name:22s} {r['median_tok_s']:10.1f} tok/s")
    print({k: v for k, v in summary.items() if "ratio" in k or "speedup" in k})
    write_result(args.name or f"record_{args.model}", summary)


def nnsight_counting(loaded, batches, counted, site):
    """The counting job written the nnsight way: trace the model, read each layer's act_fn output."""
    import nnsight
    from nnsight import LanguageModel

    assert site == "act", "the nnsight version reads act_fn outputs"
    lm = LanguageModel(loaded.model, tokenizer=loaded.tokenizer)
    layers = loaded.adapter.num_layers
    index = counted.reshape(-1).nonzero().squeeze(1)

    def run():
        acc = [None] * layers
        with torch.inference_mode():
            for b in batches:
                with lm.trace(b):
                    stats = nnsight.save([])
                    for i in range(layers):
                        act = lm.model.layers[i].mlp.act_fn.output
                        stats.append(batch_statistics(act.reshape(-1, act.shape[-1]), index))
                for i, s in enumerate(stats):
                    acc[i] = s if acc[i] is None else tuple(a + c for a, c in zip(acc[i], s, strict=True))
        return torch.stack([a[0] for a in acc]), acc

    return run


if __name__ == "__main__":
    main()
