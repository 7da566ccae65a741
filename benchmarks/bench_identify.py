"""Time LAPE and entropy-λ (fixed λ and AutoSweep) on synthetic LLaMA-2-70B-sized statistics.

Usage: python benchmarks/bench_identify.py [--out benchmarks/results/identify.json] [--repeats 5]
                                          [--threads N]
Default shape 80 layers × 28,672 neurons × 10 languages; the JSON holds medians (wall and process CPU
time) and machine info. On a shared, oversubscribed machine, --threads 1 gives the steadier figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from common import write_result

from langneurons.formats.stats import Stats
from langneurons.identification import identify


def synthetic_stats(layers: int, neurons: int, languages: int, seed: int = 0) -> Stats:
    """Binomial-like counts: skewed base rate per neuron, per-language noise, 2 % language-leaning neurons,
    2 % neurons busy in every language (so that AutoSweep has something to avoid)."""
    gen = torch.Generator().manual_seed(seed)
    n_tokens = torch.randint(200_000, 700_000, (languages,), generator=gen)
    base = torch.rand(layers, neurons, generator=gen, dtype=torch.float64).pow_(3).mul_(0.45)
    tilt = torch.empty(languages, layers, neurons, dtype=torch.float64).log_normal_(0.0, 0.3, generator=gen)
    # language-leaning neurons: rarely on, mostly for one language
    leaning = torch.rand(layers, neurons, generator=gen) < 0.02
    favourite = torch.randint(0, languages, (layers, neurons), generator=gen)
    boost = torch.where(torch.arange(languages).view(-1, 1, 1) == favourite, 4.0, 0.3)
    tilt = torch.where(leaning, tilt * boost, tilt)
    base = torch.where(leaning, base.clamp(max=0.1), base)
    # busy neurons: on for most tokens of every language
    busy = torch.rand(layers, neurons, generator=gen) < 0.02
    busy_rate = 0.8 + 0.19 * torch.rand(layers, neurons, generator=gen, dtype=torch.float64)
    base = torch.where(busy, busy_rate, base)
    tilt = torch.where(busy, tilt.pow(0.2), tilt)
    p = (base * tilt).clamp_(0.0, 1.0)
    n = n_tokens.to(torch.float64).view(-1, 1, 1)
    mean, std = n * p, (n * p * (1 - p)).sqrt_()
    noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
    count = (mean + std * noise).round_().clamp_(min=0).minimum(n).to(torch.int64)
    zeros = torch.zeros(count.shape, dtype=torch.float64)
    manifest = {
        "languages": [f"l{i}" for i in range(languages)],
        "model": "synthetic",
        "site": "act",
        "num_layers": layers,
        "intermediate_size": neurons,
    }
    return Stats(count, zeros, zeros, n_tokens, manifest)


def time_runs(fn, repeats: int) -> tuple[list[float], list[float], object]:
    """Wall-clock and process CPU seconds of ``repeats`` calls after one warm-up call, and the last result.

    CPU time (all threads) is reported too: on a shared machine it is the steadier of the two.
    """
    result = fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "identify.json")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", type=int, default=80)
    parser.add_argument("--neurons", type=int, default=28_672)
    parser.add_argument("--languages", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads [torch's default]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    stats = synthetic_stats(args.layers, args.neurons, args.languages, args.seed)
    cases = {
        "lape": {"method": "lape"},
        "entropy-lambda (lambda 0.1)": {"method": "entropy-lambda", "lam": 0.1},
        "entropy-lambda (lambda auto)": {"method": "entropy-lambda", "lam": "auto"},
    }
    load_before = os.getloadavg()
    results = {}
    for name, kwargs in cases.items():
        kwargs = dict(kwargs)
        method = kwargs.pop("method")
        times, cpu, ns = time_runs(lambda m=method, kw=kwargs: identify(stats, m, **kw), args.repeats)
        results[name] = {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "median_cpu_s": statistics.median(cpu),
            "runs_s": times,
            "selected": sum(len(layer) for layer in ns.selected),
            "pairs": ns.n_pairs(),
            "lambda": ns.params.get("lambda"),
            "autosweep_evaluations": len(ns.params.get("autosweep", {}).get("steps", [])) or None,
        }
        print(
            f"{name:30s} median {statistics.median(times):.3f} s wall, {statistics.median(cpu):.3f} s cpu"
            f"  (runs {', '.join(f'{t:.3f}' for t in times)})"
        )
    report = {
        "benchmark": "identify",
        "shape": {"layers": args.layers, "neurons": args.neurons, "languages": args.languages},
        "repeats": args.repeats,
        "results": results,
    }
    write_result(args.out, report, load_before)


if __name__ == "__main__":
    main()
