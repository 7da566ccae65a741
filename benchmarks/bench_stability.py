"""Time the `stability` bootstrap on synthetic per-shard counts: the embedded model's shape and a 70B shape.

Usage: python benchmarks/bench_stability.py [--out benchmarks/results/stability.json] [--large-resamples 10]
                                           [--threads N]
Cases: 18 layers × 2,048 neurons × 10 languages × 20 shards, 200 resamples (LAPE, and entropy−λ with
AutoSweep re-run in every resample) timed whole; 80 × 28,672 × 10 × 20 shards (LLaMA-2-70B's MLP),
``--large-resamples`` resamples timed one by one, the 200-resample figure = 200 × their median (plus the
one-off setup). The JSON holds every time, the machine and its load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from bench_identify import synthetic_stats
from common import write_result

from langneurons.formats.shards import Shards
from langneurons.formats.stats import Stats
from langneurons.identification.stability import bootstrap


def synthetic_shards(layers: int, neurons: int, languages: int, shards: int, seed: int = 0) -> tuple[Stats, Shards]:
    """Per-shard counts around the rates of `bench_identify.synthetic_stats` (normal approximation per shard)."""
    base = synthetic_stats(layers, neurons, languages, seed)
    p = base.count.to(torch.float64) / base.n_tokens.to(torch.float64).view(-1, 1, 1)
    n_shard = (base.n_tokens // shards).clamp(min=1)
    gen = torch.Generator().manual_seed(seed + 1)
    count = torch.empty((shards, languages, layers, neurons), dtype=torch.int32)
    for s in range(shards):
        n = n_shard.to(torch.float64).view(-1, 1, 1)
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        count[s] = (n * p + (n * p * (1 - p)).sqrt_() * noise).round_().clamp_(min=0).minimum(n).to(torch.int32)
    n_tokens = n_shard.view(1, -1).expand(shards, -1).contiguous()
    zeros = torch.zeros(1, dtype=torch.float64).expand(count.shape[1:])
    stats = Stats(count.sum(0, dtype=torch.int64), zeros, zeros, n_tokens.sum(0), base.manifest)
    return stats, Shards(count, n_tokens)


def timed(fn):
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - start, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "stability.json")
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--large-resamples", type=int, default=10)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads [torch's default]")
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    results: dict = {}

    stats, shards = synthetic_shards(18, 2048, 10, args.shards)
    for name, method, params in (("lape", "lape", {}), ("entropy-lambda auto", "entropy-lambda", {"lam": "auto"})):
        wall, cpu, res = timed(lambda m=method, p=params: bootstrap(stats, shards, m, p, resamples=args.resamples))
        results[f"18x2048x10, {name}"] = {"resamples": args.resamples, "wall_s": wall, "cpu_s": cpu,
                                          "jaccard_mean": res.summary["jaccard_mean"]}  # fmt: skip
        print(f"18 × 2048 × 10 × {args.shards} shards, {name}: {args.resamples} resamples in {wall:.1f} s "
              f"({cpu:.1f} s cpu), mean Jaccard {res.summary['jaccard_mean']:.3f}")  # fmt: skip

    if not args.skip_large:
        t = time.perf_counter()
        stats, shards = synthetic_shards(80, 28_672, 10, args.shards)
        make_s = time.perf_counter() - t
        per: list[float] = []

        def tick(_n: int, marks=[time.perf_counter()]) -> None:  # noqa: B006 - a closure's clock
            now = time.perf_counter()
            per.append(now - marks[0])
            marks[0] = now

        wall, cpu, res = timed(lambda: bootstrap(stats, shards, "lape", {}, resamples=args.large_resamples,
                                                 progress=tick))  # fmt: skip
        first = per[0]
        steady = statistics.median(per[1:]) if len(per) > 1 else first
        results["80x28672x10, lape"] = {
            "resamples": args.large_resamples,
            "wall_s": wall,
            "cpu_s": cpu,
            "per_resample_s": per,
            "median_per_resample_s": steady,
            "estimated_200_resamples_s": (wall - sum(per)) + first + 199 * steady,
            "synthetic_data_s": make_s,
            "jaccard_mean": res.summary["jaccard_mean"],
        }
        print(f"80 × 28672 × 10 × {args.shards} shards, lape: {args.large_resamples} resamples in {wall:.1f} s, "
              f"median {steady:.2f} s per resample → 200 resamples ≈ "
              f"{results['80x28672x10, lape']['estimated_200_resamples_s'] / 60:.1f} min")  # fmt: skip

    report = {
        "benchmark": "stability",
        "shards": args.shards,
        "results": results,
    }
    write_result(args.out, report, load_before)


if __name__ == "__main__":
    main()
