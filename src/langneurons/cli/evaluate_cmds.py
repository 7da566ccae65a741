"""CLI: `ppl` (perplexity matrix under neuron deactivation) and `steer` (language steering)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from langneurons.cli import app, one_line_errors
from langneurons.data import load_corpus, parse_languages
from langneurons.data.prompts import load_prompts
from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import write_json
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.stats import MANIFEST_FILE, STATS_FILE, load_stats
from langneurons.models.loading import load_model

console = Console(stderr=True)
MODEL_HELP = "'embedded' (Gemma-3-270M, offline), a hub id, a local model folder or a .gguf file"


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise LangneuronsError(f"{out} exists; pass --overwrite to replace it")


@app.command("ppl")
@one_line_errors
def ppl_cmd(
    neurons: Path = typer.Option(..., "--neurons", help="Neuron-set JSON (from `identify`)."),
    out: Path = typer.Option(..., "--out", help="Result JSON to write."),
    model: str = typer.Option("embedded", "--model", help=MODEL_HELP),
    revision: str | None = typer.Option(None, "--revision"),
    texts: str = typer.Option(
        "ntrex:dev", "--texts", help="Evaluation corpus (default: NTREX lines held out from identification)."
    ),
    languages: str | None = typer.Option(
        None, "--languages", help="Evaluation languages (default: the set's)."
    ),
    sentences: int | None = typer.Option(50, "--sentences", help="Sentences per language (0 = all)."),
    site: str | None = typer.Option(None, "--site", help="act or down_in (default: the set's site)."),
    any_site: bool = typer.Option(False, "--any-site", help="Allow a site other than the set's."),
    strength: float = typer.Option(0.0, "--strength", help="Deactivation multiplies by this (0 = zero)."),
    controls: bool = typer.Option(True, "--controls/--no-controls", help="Also run matched random controls."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random controls."),
    batch_size: int = typer.Option(8, "--batch-size"),
    max_length: int = typer.Option(256, "--max-length"),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Perplexity of each language with each language's neurons (and a random control) deactivated."""
    from langneurons.evaluate.ppl import PPLSettings, ppl_matrix

    _check_out(out, overwrite)
    if batch_size <= 0 or max_length <= 1:
        raise LangneuronsError("--batch-size must be positive and --max-length > 1")
    ns = NeuronSet.load(neurons)
    langs = parse_languages(languages) or [lang for lang in ns.languages]
    corpus = load_corpus(texts, langs, sentences or None)
    loaded = load_model(model, revision=revision, device=device, dtype=dtype)
    settings = PPLSettings(site=site, strength=strength, controls=controls, seed=seed, batch_size=batch_size,
                           max_length=max_length, any_site=any_site)  # fmt: skip
    result = ppl_matrix(loaded, ns, corpus, settings, neurons_path=str(neurons))
    write_json(out, result)
    console.print(f"wrote {out} ({result['provenance']['wall_seconds']:.1f} s)")
    for lang, row in result["summary"].items():
        console.print(
            f"  {lang} neurons off: ΔPPL on {lang} {_pct(row['self'])}, on the others (median) "
            f"{_pct(row.get('others_median'))}, "
            f"matched random control on {lang} {_pct(row['random_self'])}"
        )


def _pct(value: float | None) -> str:
    """A relative change as a signed percentage; "n/a" where the language was not evaluated."""
    return "n/a" if value is None else f"{value:+.1%}"


def _stats_for(stats: Path | None, neurons: Path):
    """--stats, else the run folder the neuron set sits in (runs/x/lape.json next to runs/x/stats...)."""
    if stats is not None:
        return load_stats(stats), str(stats)
    folder = neurons.parent
    if (folder / STATS_FILE).exists() and (folder / MANIFEST_FILE).exists():
        return load_stats(folder), str(folder)
    return None, None


def _floats(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LangneuronsError(f"--strength must be numbers separated by commas, got {text!r}") from None
    if not values:
        raise LangneuronsError("--strength is empty")
    return values


@app.command("steer")
@one_line_errors
def steer_cmd(
    neurons: Path | None = typer.Option(None, "--neurons", help="Neuron-set JSON (from `identify`)."),
    directions: Path | None = typer.Option(
        None, "--directions", help="Direction-set JSON (`identify --method diffmean`), instead of --neurons."
    ),
    layers: str | None = typer.Option(
        None, "--layers", help="--directions: layer(s) to add the direction at; a comma list sweeps (default: middle)."
    ),
    to: str = typer.Option(..., "--to", help="Target language(s), comma-separated."),
    out: Path = typer.Option(..., "--out", help="Result JSON to write."),
    source: str | None = typer.Option(
        "en", "--from", help="Language of the prompts (its neurons are deactivated)."
    ),
    prompts: str = typer.Option("default", "--prompts", help="Text file, one prompt per line, or 'default'."),
    model: str = typer.Option("embedded", "--model", help=MODEL_HELP),
    revision: str | None = typer.Option(None, "--revision"),
    stats: Path | None = typer.Option(
        None, "--stats", help="Run folder with mean activations (default: the set's folder)."
    ),
    mode: str = typer.Option(
        "replace", "--mode", help="replace | add | diffmean | force | none (deactivate only)."
    ),
    strength: str = typer.Option("1", "--strength", help="Activation strength; a comma list sweeps."),
    deactivate_source: bool = typer.Option(True, "--deactivate-source/--keep-source"),
    positions: str = typer.Option("all", "--positions", help="all | prompt | generated."),
    site: str | None = typer.Option(None, "--site", help="act or down_in (default: the set's site)."),
    any_site: bool = typer.Option(False, "--any-site", help="Allow a site other than the set's."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens"),
    sample: bool = typer.Option(
        False, "--sample/--greedy", help="Sample (seeded) instead of greedy decoding."
    ),
    temperature: float = typer.Option(1.0, "--temperature"),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: int = typer.Option(0, "--seed"),
    controls: bool = typer.Option(True, "--controls/--no-controls"),
    batch_size: int = typer.Option(8, "--batch-size"),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Generate with source neurons off and target neurons on; report how often the language switches."""
    from langneurons.evaluate.steer import SteerSettings, steer

    _check_out(out, overwrite)
    if (neurons is None) == (directions is None):
        raise LangneuronsError("pass exactly one of --neurons and --directions")
    if directions is not None:
        _steer_directions(directions, layers, to, out, source, prompts, model, revision, strength, positions,
                          max_new_tokens, sample, temperature, top_p, seed, controls, batch_size, device,
                          dtype)  # fmt: skip
        return
    if layers is not None:
        raise LangneuronsError("--layers applies to --directions only")
    targets = parse_languages(to) or []
    if not targets:
        raise LangneuronsError("--to needs at least one language")
    if max_new_tokens <= 0 or batch_size <= 0:
        raise LangneuronsError("--max-new-tokens and --batch-size must be positive")
    ns = NeuronSet.load(neurons)
    for lang in targets:
        ns.mask(lang)
    run_stats, stats_path = _stats_for(stats, neurons)
    if mode in ("replace", "add", "diffmean") and run_stats is None:
        raise LangneuronsError(
            f"--mode {mode} needs mean activations: pass --stats RUN_DIR (the recorded run)"
        )
    if mode in ("replace", "add", "diffmean"):
        run_stats.mean()  # count-only statistics (e.g. converted from Zhang et al.) fail here, naming the file
    prompt_list = load_prompts(prompts, source or "en")
    loaded = load_model(model, revision=revision, device=device, dtype=dtype)
    settings = SteerSettings(mode=mode, strengths=_floats(strength), deactivate_source=deactivate_source,
                             positions=positions, site=site, max_new_tokens=max_new_tokens, do_sample=sample,
                             temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size,
                             controls=controls, any_site=any_site)  # fmt: skip
    result = steer(loaded, ns, run_stats, prompt_list, source, targets, settings, neurons_path=str(neurons),
                   stats_path=stats_path, prompts_spec=prompts)  # fmt: skip
    write_json(out, result)
    console.print(f"wrote {out} ({result['provenance']['wall_seconds']:.1f} s)")
    for target, entry in result["results"].items():
        for st, row in entry["strengths"].items():
            rnd = row.get("random", {}).get("success")
            steered = row["steered"]
            console.print(
                f"  → {target} s={st}: success {steered['success']:.0%} (target language "
                f"{steered['language_rate']:.0%}, {steered['not_fluent']} rejected as not fluent; baseline "
                f"{entry['baseline']['success']:.0%}"
                + ("" if rnd is None else f", random {rnd:.0%}")
                + f"), distinct-2 {steered['distinct_2'] or 0:.2f}"
            )


def _steer_directions(directions: Path, layers: str | None, to: str, out: Path, source: str | None, prompts: str,
                      model: str, revision: str | None, strength: str, positions: str, max_new_tokens: int,
                      sample: bool, temperature: float, top_p: float, seed: int, controls: bool, batch_size: int,
                      device: str, dtype: str) -> None:  # fmt: skip
    """`steer --directions`: add α · r_l · d/‖d‖ at each layer of --layers, α from --strength."""
    from langneurons.evaluate.steer import SteerSettings
    from langneurons.evaluate.steer_directions import steer_directions
    from langneurons.formats.directions import DirectionSet

    ds = DirectionSet.load(directions)
    targets = parse_languages(to) or []
    if not targets:
        raise LangneuronsError("--to needs at least one language")
    for lang in targets:
        ds.index(lang)
    if max_new_tokens <= 0 or batch_size <= 0:
        raise LangneuronsError("--max-new-tokens and --batch-size must be positive")
    try:
        layer_list = [int(x) for x in layers.split(",") if x.strip()] if layers else [ds.num_layers // 2]
    except ValueError:
        raise LangneuronsError(f"--layers must be integers separated by commas, got {layers!r}") from None
    for layer in layer_list:
        ds.check_layer(layer)
    prompt_list = load_prompts(prompts, source or "en")
    loaded = load_model(model, revision=revision, device=device, dtype=dtype)
    settings = SteerSettings(mode="add", strengths=_floats(strength), deactivate_source=False, positions=positions,
                             site=None, max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature,
                             top_p=top_p, seed=seed, batch_size=batch_size, controls=controls)  # fmt: skip
    result = steer_directions(loaded, ds, prompt_list, source, targets, layer_list, settings,
                              directions_path=str(directions), prompts_spec=prompts)  # fmt: skip
    write_json(out, result)
    console.print(f"wrote {out} ({result['provenance']['wall_seconds']:.1f} s)")
    for target, entry in result["results"].items():
        for key, row in entry["strengths"].items():
            steered, rnd = row["steered"], row.get("random", {}).get("success")
            console.print(
                f"  → {target} α={key}: success {steered['success']:.0%} (target language "
                f"{steered['language_rate']:.0%}, {steered['not_fluent']} not fluent; baseline "
                f"{entry['baseline']['success']:.0%}" + ("" if rnd is None else f", random direction {rnd:.0%}") + ")"
            )
