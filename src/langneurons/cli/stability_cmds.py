"""CLI: `stability` (bootstrap over shards, split halves, data-size curve, threshold sensitivity of a neuron set)."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

import langneurons.cli.options as opt
from langneurons.cli.app import app, one_line_errors
from langneurons.cli.common import (
    check_out,
    make_console,
    next_hint,
    note_output,
)
from langneurons.errors import LangneuronsError

STABILITY_FORMAT = "langneurons-stability/1"
console = make_console(stderr=True)


def companion_paths(out: Path) -> tuple[Path, Path]:
    """The frequency tensors and the stable-core neuron set written beside ``out`` (X.json → X.frequency.
    safetensors, X.core.json)."""
    stem = out.name.removesuffix(".json")
    return out.with_name(f"{stem}.frequency.safetensors"), out.with_name(f"{stem}.core.json")


def parse_fractions(text: str) -> list[float]:
    """``"1/16,1/8,0.5,1"`` → floats in (0, 1]."""
    try:
        values = [float(Fraction(x.strip())) for x in text.split(",") if x.strip()]
    except (ValueError, ZeroDivisionError):
        raise LangneuronsError(
            f"--fractions must be numbers or n/d fractions separated by commas, got {text!r}"
        ) from None
    if not values or min(values) <= 0 or max(values) > 1:
        raise LangneuronsError(f"--fractions must lie in (0, 1], got {text!r}")
    return values


@app.command("stability")
@one_line_errors
def stability_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory recorded with --shards S.")],
    out: Annotated[
        Path | None,
        opt.out_option("Result JSON (default RUN_DIR/stability.json; beside it X.frequency.safetensors, X.core.json)."),
    ] = None,
    method: str = typer.Option("lape", "--method", "-m", help="lape or entropy-lambda."),
    top_rate: float | None = typer.Option(None, "--top-rate", help="As for identify (default 0.01)."),
    filter_rate: float | None = typer.Option(None, "--filter-rate", help="lape: as for identify (default 0.95)."),
    bar_ratio: float | None = typer.Option(None, "--bar-ratio", help="As for identify (default 0.95)."),
    lam: str | None = typer.Option(
        None, "--lambda", help="entropy-lambda: 'auto' (default) re-runs AutoSweep in every resample; a number fixes λ."
    ),
    resamples: int = typer.Option(200, "--bootstrap", help="Bootstrap resamples of the shards (0: skip)."),
    seed: opt.Seed = 0,
    splits: int = typer.Option(
        50, "--split-half", help="Random splits of the shards into two disjoint halves (0: skip)."
    ),
    resampling: str = typer.Option(
        "auto", "--resampling",
        help="auto (paired on a parallel corpus: one draw shared by all languages), paired or independent.",
    ),  # fmt: skip
    threshold: float = typer.Option(
        0.9, "--threshold", help="Stable core: selected in at least this share of resamples."
    ),
    data_size: bool = typer.Option(
        True, "--data-size/--no-data-size", help="Identification on nested shard fractions."
    ),
    fractions: str = typer.Option("1/16,1/8,1/4,1/2,1", "--fractions", help="Data-size fractions of the shards."),
    repeats: int = typer.Option(5, "--repeats", help="Data-size: random shard orders averaged."),
    sens: bool = typer.Option(True, "--sensitivity/--no-sensitivity", help="The method over a grid of its thresholds."),
    overwrite: opt.Overwrite = False,
) -> None:
    """How much to trust a neuron set: bootstrap selection frequencies and stable core, split-half
    reproducibility, data-size curve, threshold sensitivity (docs/methods.md §15, docs/stability.md)."""
    # heavy modules (torch) load here, not at import: `langneurons --help` stays fast
    from langneurons.formats.atomic import write_json, write_safetensors
    from langneurons.formats.provenance import now, software
    from langneurons.formats.shards import has_shards, load_shards
    from langneurons.formats.stats import load_stats
    from langneurons.identification import identify
    from langneurons.identification.common import check_rate
    from langneurons.identification.stability import (
        bootstrap,
        check_method,
        data_size_curve,
        resampling_plan,
        sensitivity,
        split_half,
        stable_core,
    )
    from langneurons.progress import progress_bar

    method = check_method(method)
    out = out if out is not None else run_dir / "stability.json"
    params = _params(method, top_rate, filter_rate, bar_ratio, lam)
    freq_path, core_path = companion_paths(out)
    for path in (out, freq_path, core_path):
        check_out(path, overwrite)
    if resamples < 0 or repeats <= 0 or splits < 0:
        raise LangneuronsError("--bootstrap and --split-half must be ≥ 0 and --repeats positive")
    check_rate("threshold", threshold)
    fraction_list = parse_fractions(fractions)
    if not (resamples or splits or data_size or sens):
        raise LangneuronsError(
            "nothing to do: --bootstrap 0 and --split-half 0 with --no-data-size and --no-sensitivity"
        )
    stats = load_stats(run_dir)
    plan = resampling_plan(stats.manifest, resampling)
    needs_shards = resamples > 0 or splits > 0 or data_size
    if needs_shards and not has_shards(run_dir):
        raise LangneuronsError(
            f"{run_dir} has no per-shard counts: record it with --shards S (or pass --bootstrap 0 --split-half 0 "
            "--no-data-size for the threshold sensitivity alone)"
        )
    shards = load_shards(run_dir, stats) if needs_shards else None
    started = time.time()
    full = identify(stats, method, **params)
    result: dict[str, Any] = {
        "format": STABILITY_FORMAT,
        "run": str(run_dir),
        "method": method,
        "params": {("lambda" if k == "lam" else k): v for k, v in params.items()},
        "languages": stats.languages,
        "resampling": plan,
        "full": {
            "pairs_per_language": {lang: full.count(lang) for lang in full.languages},
            "distinct": full.n_distinct(),
            "params": _scalars(full.params),
        },  # fmt: skip
    }
    timings: dict[str, float] = {}
    total = resamples + splits + (len(fraction_list) * repeats if data_size else 0)
    bar = progress_bar(True, "{task.fields[what]}")
    with bar:
        task = bar.add_task("stability", total=total or None, what="")
        if resamples and shards is not None:
            bar.update(task, description=f"bootstrap {method}", what="resamples")
            t = time.time()
            boot = bootstrap(stats, shards, method, params, resamples=resamples, seed=seed, threshold=threshold,
                             full=full, resampling=plan, progress=lambda n: bar.advance(task, n))  # fmt: skip
            timings["bootstrap"] = round(time.time() - t, 3)
            core = stable_core(boot, full, source={"run": str(run_dir), "stability": str(out)})
            core.save(core_path)
            tensors = {"frequency": boot.frequency, "selected_frequency": boot.selected_frequency}
            write_safetensors(
                freq_path, tensors, metadata={"format": STABILITY_FORMAT, "languages": ",".join(stats.languages)}
            )
            result["bootstrap"] = {
                **boot.summary,
                "jaccard_per_resample": {
                    lang: [round(float(x), 6) for x in boot.jaccard[:, k]] for k, lang in enumerate(stats.languages)
                },  # fmt: skip
                "frequency_file": freq_path.name,
                "core_file": core_path.name,
                "core_pairs": core.n_pairs(),
            }
        if splits and shards is not None:
            bar.update(task, description="split halves", what="splits")
            t = time.time()
            result["split_half"] = split_half(stats, shards, method, params, splits=splits, seed=seed,
                                              resampling=plan, progress=lambda n: bar.advance(task, n))  # fmt: skip
            timings["split_half"] = round(time.time() - t, 3)
        if data_size and shards is not None:
            bar.update(task, description="data-size curve", what="fractions")
            t = time.time()
            result["data_size"] = data_size_curve(stats, shards, method, params, fractions=fraction_list,
                                                  repeats=repeats, seed=seed, full=full,
                                                  progress=lambda n: bar.advance(task, n))  # fmt: skip
            timings["data_size"] = round(time.time() - t, 3)
        if sens:
            bar.update(task, description="threshold sensitivity", what="")
            t = time.time()
            result["sensitivity"] = sensitivity(stats, method, params, full=full)
            timings["sensitivity"] = round(time.time() - t, 3)
    result["provenance"] = {
        "stats": str(run_dir),
        "model": stats.manifest.get("model"),
        "site": stats.manifest.get("site"),
        "corpus": stats.manifest.get("corpus"),
        "corpus_sha256": stats.manifest.get("corpus_sha256"),
        "shards": None if shards is None else shards.num_shards,
        "settings": {
            "bootstrap": resamples,
            "split_half": splits,
            "resampling": resampling,
            "seed": seed,
            "threshold": threshold,
            "data_size": data_size,
            "fractions": fraction_list,
            "repeats": repeats,
            "sensitivity": sens,
        },  # fmt: skip
        "wall_seconds": round(time.time() - started, 3),
        "timings": timings,
        "created": now(),
        **software(),
    }
    write_json(out, result)
    note_output(out, *(p for p in (freq_path, core_path) if p.exists()))
    _print(result, out)
    next_hint(f"langneurons report {run_dir}")


def _params(method: str, top_rate, filter_rate, bar_ratio, lam) -> dict[str, Any]:
    from langneurons.identification.common import check_rate
    from langneurons.identification.entropy_lambda import parse_lambda

    given: dict[str, Any] = {"top_rate": top_rate, "bar_ratio": bar_ratio}
    if method == "lape":
        if lam is not None:
            raise LangneuronsError("--lambda does not apply to method lape")
        given["filter_rate"] = filter_rate
    else:
        if filter_rate is not None:
            raise LangneuronsError("--filter-rate does not apply to method entropy-lambda")
        given["lam"] = lam
    given = {k: v for k, v in given.items() if v is not None}
    for name, value in given.items():
        if name == "lam":
            given[name] = "auto" if parse_lambda(value) is None else parse_lambda(value)
        else:
            check_rate(name, value)
    return given


def _scalars(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if not isinstance(v, (dict, list))}


def _print(result: dict[str, Any], out: Path) -> None:
    boot, curve = result.get("bootstrap"), result.get("data_size")
    table = Table(title=f"{result['method']} on {result['run']}")
    table.add_column("language")
    table.add_column("full set", justify="right")
    if boot:
        table.add_column(f"bootstrap Jaccard (mean, 5–95 %, {boot['successful']} resamples)", justify="right")
        table.add_column(f"stable core (≥ {boot['threshold']:g})", justify="right")
    if curve:
        first = curve["points"][0]
        table.add_column(f"Jaccard at {first['shards']}/{curve['shards']} shards", justify="right")
    for lang, size in result["full"]["pairs_per_language"].items():
        row = [lang, str(size)]
        if boot:
            b = boot["per_language"][lang]
            j = b["jaccard"]
            row += [f"{j['mean']:.2f} ({j['p05']:.2f}–{j['p95']:.2f})", str(b["core_size"])]
        if curve:
            mean = curve["points"][0]["per_language"][lang]["jaccard"]["mean"]
            row.append("n/a" if mean is None else f"{mean:.2f}")
        table.add_row(*row)
    make_console().print(table)
    halves = result.get("split_half")
    if halves:
        _print_split_half(halves)
    sens = result.get("sensitivity")
    if sens and sens.get("points"):
        _print_sensitivity(sens)
    wall = result["provenance"]["wall_seconds"]
    console.print(f"wrote {out} ({wall:.1f} s)" + (f", {boot['core_file']}" if boot else ""), highlight=False)


def _print_sensitivity(sens: dict[str, Any]) -> None:
    """One row per threshold setting: its parameters, the pairs it selects, the mean Jaccard with the default set."""
    names = list(dict.fromkeys(k for p in sens["points"] for k in p["params"]))
    default = sens.get("default", {}).get("params", {})
    table = Table(title=f"threshold sensitivity: {len(sens['points'])} settings against the default "
                  f"({', '.join(f'{k}={_num(default.get(k))}' for k in names if k in default)})")  # fmt: skip
    for name in [*names, "pairs", "mean Jaccard with the default"]:
        table.add_column(name, justify="right")
    for p in sens["points"]:
        tail = ["–", p["error"]] if "error" in p else [str(p.get("pairs", "–")), f"{p['jaccard_mean']:.2f}"]
        table.add_row(*(_num(p["params"].get(k)) for k in names), *tail)
    make_console().print(table)


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _print_split_half(halves: dict[str, Any]) -> None:
    """Per language: mean split-half Jaccard, its 5–95 % range over the splits, the full-size extrapolation."""
    table = Table(
        title=f"split halves: {halves['successful']} random splits into 2 × {halves['shards_per_half']} of "
        f"{halves['shards']} shards ({halves['resampling']} resampling)"
    )
    table.add_column("language")
    table.add_column("split-half Jaccard (mean)", justify="right")
    table.add_column("5–95 %", justify="right")
    table.add_column("full size ≈ 2J/(1+J)", justify="right")
    for lang, p in halves["per_language"].items():
        j, e = p["jaccard"], p["extrapolated"]
        table.add_row(lang, f"{j['mean']:.2f}", f"{j['p05']:.2f}–{j['p95']:.2f}", f"{e['mean']:.2f}")
    make_console().print(table)
    console.print(f"resampling: {halves['resampling']} ({halves['resampling_reason']}); extrapolation: "
                  f"{halves['extrapolation']}", highlight=False)  # fmt: skip
