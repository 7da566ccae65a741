"""CLI: `ppl` (perplexity matrix under neuron deactivation) and `steer` (language steering).

Both take the shared model options and split their work across processes under torchrun.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

import langneurons.cli.options as opt
from langneurons.cli.app import app, one_line_errors
from langneurons.cli.common import (
    capped_max_length,
    check_head_flag,
    check_in_set,
    check_max_length,
    check_out,
    check_positive,
    check_sentences,
    check_site,
    next_hint,
    peek_set,
    pick_corpus,
    say,
    warn,
    write_result,
)
from langneurons.errors import LangneuronsError
from langneurons.modelspec import model_flag

STEER_MODES = ("replace", "add", "diffmean", "force", "none")  # evaluation.steer's (checked before torch loads)
HEAD_MODE, HEAD_STRENGTHS = "amplify", "2,4"  # head sets: evaluation.steer's HEAD_MODE and HEAD_STRENGTHS


def default_out(neurons: Path, kind: str) -> Path:
    """``runs/x/lape.json`` → ``runs/x/<kind>-lape.json`` (where `report runs/x` finds it)."""
    return neurons.with_name(f"{kind}-{neurons.stem}.json")


@app.command("ppl")
@one_line_errors
@opt.model_options
def ppl_cmd(
    neurons: Annotated[Path | None, typer.Option("--neurons", help=opt.NEURONS_HELP)] = None,
    heads: Annotated[
        Path | None, typer.Option("--heads", help="Head-set JSON (`identify RUN --method attribution --unit heads`): "
                                  "switch attention heads off instead of neurons.")
    ] = None,
    out: Annotated[
        Path | None, opt.out_option("Result JSON to write (default: ppl-<set>.json next to the set).")
    ] = None,
    model: opt.ModelOptions = opt.ModelOptions(),
    corpus: opt.Corpus = "ntrex:dev",
    texts: opt.Texts = None,
    languages: str | None = typer.Option(None, "--languages", help="Evaluation languages (default: the set's)."),
    sentences: opt.Sentences = 50,
    site: opt.Site = None,
    any_site: opt.AnySite = False,
    strength: float = typer.Option(0.0, "--strength", help="Deactivation multiplies by this (0 = zero)."),
    controls: opt.Controls = 1,
    no_controls: opt.NoControls = False,
    seed: opt.Seed = 0,
    batch_size: opt.BatchSize = 8,
    max_length: opt.MaxLength = opt.MAX_LENGTH,
    overwrite: opt.Overwrite = False,
    route: str | None = typer.Option(
        None, "--route", help="MoE: also a row with this routing edit, e.g. 'mask:*:3,bias:12:5:-2' (LAYER:EXPERT)."
    ),
    count: str = typer.Option(
        "all", "--count", help="Prompt/response corpora: perplexity of all tokens, the response given the prompt "
        "(response) or the prompt (docs/responses.md)."
    ),
    chat_template: bool = typer.Option(
        False, "--chat-template", help="Format each prompt/response record with the tokenizer's chat template."
    ),
) -> None:
    """Perplexity of each language with each language's neurons (and a random control) deactivated.

    Under `torchrun --nproc-per-node N -m langneurons ppl ...` the (intervention, language) cells are
    shared out and rank 0 writes the same file as one process.
    """
    from langneurons.data import load_corpus, parse_languages

    if (neurons is None) == (heads is None):
        raise LangneuronsError("give --neurons (a neuron set) or --heads (a head set)")
    if heads is not None and (site is not None or any_site):
        raise LangneuronsError("--site and --any-site apply to neuron sets; a head set acts on attention heads")
    set_path: Path = neurons if neurons is not None else heads  # type: ignore[assignment]
    flag = "--neurons" if neurons is not None else "--heads"
    if any_site and site is None:
        raise LangneuronsError("--any-site applies with --site only (without --site the set's own site is used)")
    # Inputs first (the set's header is read without torch), then the output, then the model.
    header = peek_set(set_path, flag)
    check_site(site, any_site, header.get("site"), set_path)
    check_positive(batch_size=batch_size)
    check_sentences(sentences)
    check_max_length(max_length)
    controls = _controls(controls, no_controls)
    check_head_flag(header, set_path, heads is not None)
    langs = parse_languages(languages) or list(header.get("languages") or [])
    text = load_corpus(pick_corpus(corpus, texts), langs, sentences)
    from langneurons.recording.spans import check_responses

    check_responses(text, count, chat_template=chat_template)
    if route is not None:
        from langneurons.intervention.routing import parse_route

        parse_route(route)
    out = out or default_out(set_path, "ppl")
    check_out(out, overwrite)
    from langneurons.evaluation.ppl import PPLSettings, identification_text_warning, ppl_matrix
    from langneurons.formats.neuronset import NeuronSet
    from langneurons.intervention.routing import routing_warning
    from langneurons.recording.distributed import shutdown
    from langneurons.recording.spans import apply_chat_template

    ns = NeuronSet.load(set_path)
    model, world = model.join_world()
    try:
        if world.is_main and (trap := identification_text_warning(ns, text)):
            warn(trap)
        loaded = model.load()
        if chat_template:
            text = apply_chat_template(text, loaded.tokenizer)
        settings = PPLSettings(site=site, strength=strength, controls=controls, seed=seed, batch_size=batch_size,
                               max_length=capped_max_length(max_length, loaded), any_site=any_site,
                               route=route, count=count)  # fmt: skip
        result = ppl_matrix(loaded, ns, text, settings, neurons_path=str(set_path), world=world)
    finally:
        shutdown(world)
    if result is None:  # another rank: rank 0 writes
        return
    write_result(out, result)
    for lang, effect in (result.get("routing") or {}).items():
        if (message := routing_warning(effect)) is not None:
            warn(f"{lang}: {message}")
    for lang, row in result["summary"].items():
        say(
            f"  {lang} {'heads' if heads is not None else 'neurons'} off: PPL on {lang} {_ratio(row['self'])}, "
            f"on the others (median) {_ratio(row.get('others_median'))}, "
            f"matched random control on {lang} {_ratio(row['random_self'])}"
        )
    for message in (result.get("significance") or {}).get("warnings") or []:
        warn(message)
    for lang, sig in (result.get("significance") or {}).get("per_language", {}).items():
        if sig.get("p") is None:  # NaN/inf effect: not computable, never "most significant"
            say(f"  {lang}: p not computable ({sig.get('reason') or 'no finite effect'})")
            continue
        ci = sig["ci95"] or [None, None]
        z = "n/a" if sig["z"] is None else f"{sig['z']:.1f}"
        say(
            f"  {lang}: p = {sig['p']:.3g} against {sig['controls']} controls (max {_ratio(sig['control_max'])}), "
            f"z = {z}, 95 % CI of the PPL ratio {_ratio(ci[0])} … {_ratio(ci[1])}"
        )
    first = next((lang for lang in result["summary"] if lang != "en"), "fr")  # steer prompts are English by default
    next_hint(f"langneurons steer{model_flag(model.model)} {flag} {set_path} --to {first} "
              f"&& langneurons report {out.parent}")  # fmt: skip


def _controls(controls: int, no_controls: bool) -> int:
    """``--controls R`` (R ≥ 0); the old ``--no-controls`` flag means 0."""
    if controls < 0:
        raise LangneuronsError(f"--controls must be 0 or more, got {controls}")
    return 0 if no_controls else controls


def _ratio(value: float | None) -> str:
    """A relative change of perplexity as the report writes it, a ratio (+14131 % → ×142); "n/a" where the
    language was not evaluated."""
    from langneurons.intervals import ratio_text

    return "n/a" if value is None else ratio_text(1 + value)


def find_stats(stats: Path | None, neurons: Path, recorded_run: str | None):
    """Mean activations for steering: ``--stats``, else the set's own folder, else the run the set
    records it came from (``source.run``; so a moved set still finds them). ``(None, None)`` if none."""
    from langneurons.formats.stats import MANIFEST_FILE, STATS_FILE, load_stats

    if stats is not None:
        return load_stats(stats), str(stats)
    candidates = [neurons.parent] + ([Path(recorded_run)] if recorded_run else [])
    for folder in candidates:
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
@opt.model_options
def steer_cmd(
    neurons: opt.Neurons = None,
    directions: Path | None = typer.Option(
        None, "--directions", help="Direction-set JSON (`identify --method diffmean`), instead of --neurons."
    ),
    heads: Path | None = typer.Option(
        None, "--heads", help="Head-set JSON: the source's heads off, the target's heads x --strength (2,4)."
    ),
    layers: str | None = typer.Option(
        None,
        "--layers",
        help="--directions: layer(s) to add the direction at; a comma list sweeps "
        "(default: 1/4, 1/2 and 3/4 of the depth). --recipe clas: ranges FIRST-LAST, e.g. 0-17,4-12 "
        "(default: every layer and the middle half).",
    ),
    recipe: str | None = typer.Option(
        None,
        "--recipe",
        help="--directions: ours (α·r_l·d/‖d‖ at one layer; default) | clas (CLaS-Bench: β·unit(μ_to − μ_from) "
        "at every layer of a range, β absolute).",
    ),
    to: str = typer.Option(..., "--to", help="Target language(s), comma-separated."),
    out: Annotated[
        Path | None, opt.out_option("Result JSON to write (default: steer-<set>.json next to the set).")
    ] = None,
    source: str | None = typer.Option("en", "--from", help="Language of the prompts (its neurons are deactivated)."),
    prompts: str = typer.Option(
        "default", "--prompts", help="Text file, one prompt per line, 'default' (60 English), or 'default:N' (its "
        "first N)."
    ),
    model: opt.ModelOptions = opt.ModelOptions(),
    stats: Path | None = typer.Option(
        None, "--stats", help="Run folder with mean activations (default: the run the set came from)."
    ),
    mode: str | None = typer.Option(
        None, "--mode", help="--neurons: replace (default) | add | diffmean | force | none (deactivate only); "
        "--heads: amplify (the only one)."
    ),
    strength: str | None = typer.Option(
        None,
        "--strength",
        help="Activation strength (1), --heads' factor (2,4), --directions' α (0.05,0.1,0.25) or --recipe clas' β "
        "(8,16,32,64); a comma list sweeps.",
    ),
    deactivate_source: bool | None = typer.Option(
        None,
        "--deactivate-source/--keep-source",
        help="--neurons: deactivate the prompt language's neurons (--from); on by default.",
    ),
    positions: str = typer.Option("all", "--positions", help="all | prompt | generated."),
    site: opt.Site = None,
    any_site: opt.AnySite = False,
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Tokens generated per prompt."),
    sample: bool = typer.Option(False, "--sample/--greedy", help="Sample (seeded) instead of greedy decoding."),
    temperature: float = typer.Option(1.0, "--temperature", help="With --sample."),
    top_p: float = typer.Option(1.0, "--top-p", help="With --sample."),
    seed: opt.Seed = 0,
    controls: opt.Controls = 1,
    no_controls: opt.NoControls = False,
    batch_size: opt.BatchSize = 16,
    overwrite: opt.Overwrite = False,
    route: str | None = typer.Option(
        None, "--route", help="MoE routing steering added to every non-baseline generation, e.g. 'bias:*:5:2'."
    ),
    route_positions: str | None = typer.Option(
        None, "--route-positions", help="With --route: all (default) | prompt | generated."
    ),
    calibrate: bool | None = typer.Option(
        None, "--calibrate/--no-calibrate",
        help="--neurons: choose each target's mode and strength on the first --dev-prompts prompts (fluency-gated "
        "success), measure on the rest. Default: on unless --strength or --mode is given; with --calibrate, "
        "--mode/--strength narrow the grid (default replace x 0.5,1,1.5,2 and add x 0.5,0.75,1,2).",
    ),
    dev_prompts: int | None = typer.Option(
        None, "--dev-prompts", help="With calibration: how many of the first prompts form the dev split (10)."
    ),
) -> None:
    """Generate with source neurons off and target neurons on; report how often the language switches.

    With --neurons and neither --strength nor --mode, each target's mode and strength are first calibrated on
    the first 10 prompts (the dev split) and the rest are the test (--no-calibrate: replace at strength 1).
    Under torchrun the generation passes (baseline, each target × strength × condition) are shared out
    (not with --directions: run that in one process).
    """
    from langneurons.data import parse_languages

    if sum(x is not None for x in (neurons, directions, heads)) != 1:
        raise LangneuronsError("pass exactly one of --neurons, --heads and --directions")
    if recipe is not None and directions is None:
        raise LangneuronsError("--recipe applies to --directions only")
    if recipe is not None and recipe not in ("ours", "clas"):
        raise LangneuronsError(f"unknown --recipe {recipe!r}; choose ours or clas")
    if route_positions is not None and route is None:
        raise LangneuronsError("--route-positions applies with --route only")
    if (temperature != 1.0 or top_p != 1.0) and not sample:
        raise LangneuronsError("--temperature and --top-p apply with --sample only")
    if directions is not None and calibrate:
        raise LangneuronsError("--calibrate applies to --neurons only (--directions sweeps its --strength × --layers)")
    if heads is not None and calibrate:
        raise LangneuronsError("--calibrate applies to --neurons only (--heads sweeps its --strength)")
    calibrate = (strength is None and mode is None) if calibrate is None and neurons is not None else bool(calibrate)
    if dev_prompts is not None and not calibrate:
        raise LangneuronsError("--dev-prompts applies with calibration only (--calibrate, or no --strength/--mode)")
    if directions is not None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun (recording.distributed imports torch)
            raise LangneuronsError("steer --directions runs in one process; start it without torchrun")
        if route is not None:
            raise LangneuronsError("--route applies to --neurons only")
        _refuse_neuron_flags(mode, deactivate_source, site, any_site, stats, controls)
    elif layers is not None:
        raise LangneuronsError("--layers applies to --directions only")
    elif any_site and site is None:
        raise LangneuronsError("--any-site applies with --site only (without --site the set's own site is used)")
    elif (mode == HEAD_MODE) != (heads is not None) and mode is not None:
        raise LangneuronsError(f"--mode {mode}: a head set steers with --mode {HEAD_MODE} only (the source's heads "
                               "off, the target's x --strength)" if heads else f"--mode {mode} applies to --heads only")
    elif heads is not None and (site is not None or any_site or stats is not None):
        raise LangneuronsError("--site, --any-site and --stats apply to neuron sets; a head set scales attention heads")
    # Then the input files (their headers read without torch), then the output, then the model.
    flag, path = next((f, p) for f, p in (("--neurons", neurons), ("--heads", heads), ("--directions", directions))
                      if p is not None)  # fmt: skip
    header = peek_set(path, flag)
    if directions is None:
        check_head_flag(header, path, heads is not None)
    targets = parse_languages(to) or []
    if not targets:
        raise LangneuronsError("--to needs at least one language")
    check_in_set(targets, list(header.get("languages") or []), "--to", path)
    out = out or default_out(path, "steer")
    if directions is not None:
        _steer_directions(directions, layers, targets, out, overwrite, source, prompts, model, strength, positions,
                          max_new_tokens, sample, temperature, top_p, seed, min(_controls(controls, no_controls), 1),
                          batch_size, recipe or "ours")  # fmt: skip
        return
    check_site(site, any_site, header.get("site"), path)
    if mode is not None and mode not in (*STEER_MODES, HEAD_MODE):
        raise LangneuronsError(f"unknown --mode {mode!r}; choose {', '.join(STEER_MODES)}")
    if positions not in ("all", "prompt", "generated"):
        raise LangneuronsError(f"--positions must be all, prompt or generated, got {positions!r}")
    deactivate_source = True if deactivate_source is None else deactivate_source
    route_positions = route_positions or "all"
    if route_positions not in ("all", "prompt", "generated"):
        raise LangneuronsError(f"--route-positions must be all, prompt or generated, got {route_positions!r}")
    check_positive(max_new_tokens=max_new_tokens, batch_size=batch_size)
    controls = _controls(controls, no_controls)
    grid_strengths = _floats(strength) if calibrate and strength is not None else None
    grid_mode = mode
    dev_prompts = (10 if dev_prompts is None else dev_prompts) if calibrate else None  # calibrate.DEFAULT_DEV_PROMPTS
    mode = mode or (HEAD_MODE if heads is not None else "replace")
    strengths = _floats(strength or (HEAD_STRENGTHS if heads is not None else "1"))
    if deactivate_source and (source or "en") not in (header.get("languages") or []):
        raise LangneuronsError(f"source {source or 'en'!r} is not in the neuron set: pass --keep-source or another "
                               f"--from (the set has {', '.join(header.get('languages') or [])})")  # fmt: skip
    from langneurons.data.prompts import load_prompts

    prompt_list = load_prompts(prompts, source or "en")
    if calibrate:
        from langneurons.data.prompts import split_prompts

        split_prompts(prompt_list, dev_prompts)
    if route is not None:
        from langneurons.intervention.routing import parse_route

        parse_route(route)
    grid = None
    if calibrate:  # (evaluation imports torch: after the torch-free checks)
        from langneurons.evaluation.calibrate import calibration_grid

        grid = calibration_grid(grid_mode, grid_strengths)
    check_out(out, overwrite)
    from langneurons.evaluation.steer import SteerSettings, steer
    from langneurons.formats.neuronset import NeuronSet
    from langneurons.intervention.routing import routing_warning
    from langneurons.recording.distributed import shutdown

    neurons = path  # a neuron or head set
    ns = NeuronSet.load(neurons)
    for lang in targets:
        ns.mask(lang)
    run_stats, stats_path = find_stats(stats, neurons, ns.source.get("run")) if heads is None else (None, None)
    modes = list(dict.fromkeys(m for m, _ in grid)) if grid else [mode]
    needs_means = [m for m in modes if m in ("replace", "add", "diffmean")]
    if needs_means and run_stats is None:
        what = "calibration (modes " + ", ".join(needs_means) + ")" if grid else f"--mode {mode}"
        raise LangneuronsError(
            f"{what} needs mean activations: pass --stats RUN_DIR (the recorded run; "
            f"none next to {neurons} nor at the set's source run {ns.source.get('run')})"
        )
    if needs_means:
        run_stats.mean()  # count-only statistics (e.g. converted from Zhang et al.) fail here, naming the file
    model, world = model.join_world()
    try:
        loaded = model.load()
        settings = SteerSettings(mode=mode, strengths=strengths, deactivate_source=deactivate_source,
                                 positions=positions, site=site, max_new_tokens=max_new_tokens, do_sample=sample,
                                 temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size,
                                 controls=controls, any_site=any_site, route=route,
                                 route_positions=route_positions)  # fmt: skip
        if grid is not None:
            from langneurons.evaluation.calibrate import steer_calibrated

            result = steer_calibrated(loaded, ns, run_stats, prompt_list, source, targets, settings,
                                      dev_prompts=dev_prompts, grid=grid, neurons_path=str(neurons),
                                      stats_path=stats_path, prompts_spec=prompts, world=world)  # fmt: skip
        else:
            result = steer(loaded, ns, run_stats, prompt_list, source, targets, settings, neurons_path=str(neurons),
                           stats_path=stats_path, prompts_spec=prompts, world=world)  # fmt: skip
    finally:
        shutdown(world)
    if result is None:  # another rank: rank 0 writes
        return
    write_result(out, result)
    if (message := routing_warning(result.get("routing") or {})) is not None:
        warn(message)
    if (cal := result.get("calibration")) is not None:
        _say_calibration(cal)
    for target, entry in result["results"].items():
        for st, row in entry["strengths"].items():
            rnd = row.get("random", {}).get("success")
            steered = row["steered"]
            say(
                f"  → {target} s={st}: success {steered['success']:.0%} (target language "
                f"{steered['language_rate']:.0%}, {steered['not_fluent']} rejected as not fluent; baseline "
                f"{entry['baseline']['success']:.0%}"
                + ("" if rnd is None else f", random {rnd:.0%}")
                + f"), distinct-2 {steered['distinct_2'] or 0:.2f}"
            )
            if (sig := row.get("significance")) is not None and sig.get("p") is None:
                say(f"    p not computable ({sig.get('reason') or 'no finite controls'})")
            elif sig is not None:
                z = "n/a" if sig["z"] is None else f"{sig['z']:.1f}"
                ci = sig["wilson95"]
                say(
                    f"    p = {sig['p']:.3g} against {sig['controls']} null draws (max {sig['control_max']:.0%}), "
                    f"z = {z}, 95 % Wilson CI of success {ci[0]:.0%} … {ci[1]:.0%}"
                )
    next_hint(f"langneurons report {out.parent}")


def _say_calibration(cal: dict) -> None:
    """Per target: the dev curve (success / fluent rate at each setting) and the chosen setting."""
    say(f"  calibration on {len(cal['dev_prompts'])} dev prompts (test: the other {len(cal['test_prompts'])}); "
        f"{cal['rule']}")  # fmt: skip
    for target, points in cal["curve"].items():
        chosen = cal["chosen"][target]
        curve = ", ".join(f"{p['mode']} {p['strength']:g}: {p['success']:.0%}/{p['fluent_rate']:.0%}" for p in points)
        say(f"  → {target} chose {chosen['mode']} {chosen['strength']:g} (dev success {chosen['success']:.0%}, "
            f"fluent {chosen['fluent_rate']:.0%}); dev success/fluent: {curve}")  # fmt: skip
        if chosen["success"] == 0:
            warn(f"→ {target}: no setting of the grid succeeded on a dev prompt; the test runs the most fluent one")


def _refuse_neuron_flags(mode: str | None, deactivate_source: bool | None, site: str | None, any_site: bool,
                        stats: Path | None, controls: int) -> None:  # fmt: skip
    """`steer --directions` uses none of the neuron-steering flags: each one given is refused in one line."""
    why = "direction steering adds α·r·d"
    if mode is not None:
        raise LangneuronsError(f"--mode does not apply to --directions ({why}; see --strength)")
    if deactivate_source is not None:
        flag = "--deactivate-source" if deactivate_source else "--keep-source"
        raise LangneuronsError(f"{flag} does not apply to --directions ({why} and deactivates nothing)")
    if site is not None or any_site:
        flag = "--site" if site is not None else "--any-site"
        raise LangneuronsError(f"{flag} does not apply to --directions ({why} to the residual stream; see --layers)")
    if stats is not None:
        raise LangneuronsError(f"--stats does not apply to --directions ({why}; r comes from the direction set)")
    if controls > 1:
        raise LangneuronsError(
            f"--controls {controls}: --directions runs one random-direction control (no p-value); use --controls 1 or 0"
        )


def _steer_directions(directions: Path, layers: str | None, targets: list[str], out: Path, overwrite: bool,
                      source: str | None, prompts: str, model: opt.ModelOptions, strength: str | None, positions: str,
                      max_new_tokens: int, sample: bool, temperature: float, top_p: float, seed: int, controls: int,
                      batch_size: int, recipe: str = "ours") -> None:  # fmt: skip
    """`steer --directions`: add α · r_l · d/‖d‖ at each layer of --layers, α from --strength; or, with
    --recipe clas, β · unit(μ_to − μ_from) at every layer of each --layers range, β from --strength."""
    from langneurons.data.prompts import load_prompts

    check_positive(max_new_tokens=max_new_tokens, batch_size=batch_size)
    clas = recipe == "clas"
    if clas:
        ranges = _ranges(layers) if layers else None
    else:
        try:
            layer_list = [int(x) for x in layers.split(",") if x.strip()] if layers else None
        except ValueError:
            hint = " (ranges FIRST-LAST are for --recipe clas)" if "-" in (layers or "") else ""
            raise LangneuronsError(f"--layers must be integers separated by commas, got {layers!r}{hint}") from None
    strengths = _floats(strength) if strength else None
    prompt_list = load_prompts(prompts, source or "en")
    from langneurons.evaluation.steer import SteerSettings
    from langneurons.evaluation.steer_directions import (
        CLAS_STRENGTHS,
        DIRECTION_STRENGTHS,
        check_ranges,
        default_layers,
        default_ranges,
        steer_directions,
        steer_directions_clas,
    )
    from langneurons.formats.directions import DirectionSet

    ds = DirectionSet.load(directions)
    for lang in targets:
        ds.index(lang)
    if clas:
        if not source:
            raise LangneuronsError("--recipe clas needs --from (the source language of target − source)")
        if source not in ds.languages:
            raise LangneuronsError(f"--from {source!r} is not in the direction set {directions} (--recipe clas steers "
                                   f"along target − source; the set has {','.join(ds.languages)})")  # fmt: skip
        if source in targets:
            raise LangneuronsError(f"--to {source!r} is the --from language: target − source is zero")
        ranges = ranges if ranges is not None else default_ranges(ds.num_layers)
        check_ranges(ds, ranges)
    else:
        layer_list = layer_list if layer_list is not None else default_layers(ds.num_layers)
        for layer in layer_list:
            ds.check_layer(layer)
    check_out(out, overwrite)
    loaded = model.load()
    defaults = CLAS_STRENGTHS if clas else DIRECTION_STRENGTHS
    settings = SteerSettings(mode="add", strengths=strengths or list(defaults), deactivate_source=False,
                             positions=positions, site=None, max_new_tokens=max_new_tokens, do_sample=sample,
                             temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size,
                             controls=controls)  # fmt: skip
    if clas:
        result = steer_directions_clas(loaded, ds, prompt_list, source, targets, ranges, settings,
                                       directions_path=str(directions), prompts_spec=prompts)  # fmt: skip
    else:
        result = steer_directions(loaded, ds, prompt_list, source, targets, layer_list, settings,
                                  directions_path=str(directions), prompts_spec=prompts)  # fmt: skip
    write_result(out, result)
    for target, entry in result["results"].items():
        for key, row in entry["strengths"].items():
            steered, rnd = row["steered"], row.get("random", {}).get("success")
            say(
                f"  → {target} {key if clas else 'α=' + key}: success {steered['success']:.0%} (target language "
                f"{steered['language_rate']:.0%}, {steered['not_fluent']} not fluent; baseline "
                f"{entry['baseline']['success']:.0%}" + ("" if rnd is None else f", random direction {rnd:.0%}") + ")"
            )
    next_hint(f"langneurons report {out.parent}")


def _ranges(text: str) -> list[tuple[int, int]]:
    """``"0-17,4-12"`` → [(0, 17), (4, 12)]; a bare ``"5"`` is the range 5-5."""
    ranges = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        first, sep, last = part.partition("-")
        try:
            ranges.append((int(first), int(last if sep else first)))
        except ValueError:
            raise LangneuronsError(
                f"--layers for --recipe clas must be ranges FIRST-LAST separated by commas (e.g. 0-17,4-12), "
                f"got {text!r}"
            ) from None
    if not ranges:
        raise LangneuronsError("--layers is empty")
    return ranges
