"""CLI: `translate` (few-shot chrF under a component switched off, docs/evaluation.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import langneurons.cli.options as opt
from langneurons.cli.app import app, one_line_errors
from langneurons.cli.common import (
    check_head_flag,
    check_out,
    check_positive,
    check_sentences,
    peek_set,
    pick_corpus,
    say,
    write_result,
)
from langneurons.errors import LangneuronsError


def component_conditions(neurons=None, directions=None, langs: list[str] = (), seed: int = 0,
                         controls: bool = True, layers: list[int] | None = None) -> dict[str, list]:  # fmt: skip
    """``off:X`` (X's neurons or, for a head set, heads zeroed, or X's direction projected out at ``layers``,
    default all) and ``random:X`` (its matched random control) for each X in ``langs``."""
    from langneurons.intervention import ablate_direction, deactivate, matched_control, random_direction_control

    out: dict[str, list] = {}
    for lang in langs:
        if neurons is not None:
            out[f"off:{lang}"] = [deactivate(neurons.mask(lang), site=neurons.site or "act", label=lang)]
            if controls:
                ctrl = matched_control(neurons, lang, seed)
                out[f"random:{lang}"] = [deactivate(ctrl, site=neurons.site or "act", label=f"random {lang}")]
        else:
            iv = ablate_direction(directions, lang, layers)
            out[f"off:{lang}"] = [iv]
            if controls:
                out[f"random:{lang}"] = [random_direction_control(iv, seed * 1_000_003 + directions.index(lang))]
    return out


@app.command("translate")
@one_line_errors
@opt.model_options
def translate_cmd(
    pairs: Annotated[str, typer.Option("--pairs", help="Comma-separated SRC-TGT pairs, e.g. en-fr,en-de.")],
    out: Annotated[Path, opt.out_option("Result JSON to write.")],
    neurons: Path | None = typer.Option(None, "--neurons", help="Neuron set: switch each target's neurons off."),
    heads: Path | None = typer.Option(
        None, "--heads", help="Head set (`identify --method attribution --unit heads`): switch each target's heads off."
    ),
    directions: Path | None = typer.Option(
        None, "--directions", help="Direction set: project each target's direction out (all layers)."
    ),
    corpus: opt.Corpus = "ntrex:dev",
    texts: opt.Texts = None,
    sentences: int = typer.Option(16, "--sentences", help="Test lines per pair (the first N, N ≥ 1)."),
    shots: int = typer.Option(3, "--shots", help="Few-shot examples (other held-out lines)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Tokens generated per line."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the intervals."),
    controls: bool | None = typer.Option(
        None, "--controls/--no-controls", help="With --neurons/--directions: also run matched random controls (on)."
    ),
    seed: opt.Seed = 0,
    batch_size: opt.BatchSize = 8,
    model: opt.ModelOptions = opt.ModelOptions(),
    overwrite: opt.Overwrite = False,
) -> None:
    """Few-shot translation chrF, with no intervention and with each target language's component off."""
    from langneurons.data import load_corpus
    from langneurons.evaluation.translate import TranslateSettings, parse_pairs, selectivity, translate
    from langneurons.formats.directions import DirectionSet
    from langneurons.formats.neuronset import NeuronSet
    from langneurons.intervention import check_neurons

    check_out(out, overwrite)
    check_sentences(sentences)
    check_positive(batch_size=batch_size, max_new_tokens=max_new_tokens)
    if sum(x is not None for x in (neurons, heads, directions)) > 1:
        raise LangneuronsError("pass at most one of --neurons, --heads and --directions")
    if controls is not None and neurons is None and heads is None and directions is None:
        flag = "--controls" if controls else "--no-controls"
        raise LangneuronsError(f"{flag} applies with --neurons, --heads or --directions only (nothing is switched off)")
    if (set_path := neurons or heads) is not None:
        check_head_flag(peek_set(set_path, "--heads" if heads else "--neurons"), set_path, heads is not None)
    controls = True if controls is None else controls
    pair_list = parse_pairs(pairs)
    settings = TranslateSettings(sentences=sentences, shots=shots, max_new_tokens=max_new_tokens,
                                 batch_size=batch_size, bootstrap=bootstrap, seed=seed)  # fmt: skip
    settings.validate()
    ns = NeuronSet.load(neurons or heads) if (neurons or heads) is not None else None
    ds = DirectionSet.load(directions) if directions is not None else None
    component = ns or ds
    targets = sorted({b for _, b in pair_list}, key=[b for _, b in pair_list].index)
    langs = [t for t in targets if component is not None and t in component.languages]
    texts = load_corpus(pick_corpus(corpus, texts), sorted({x for p in pair_list for x in p}))
    loaded = model.load()
    if ns is not None:
        check_neurons(loaded, ns)  # a head set: the model's layers x heads
    if ds is not None:
        ds.check_compatible(loaded.adapter.num_layers, loaded.adapter.hidden_size, loaded.name)
    conditions = component_conditions(ns, ds, langs, seed, controls)
    sources = {a for a, _ in pair_list}
    only = {f"random:{x}": [f"{a}-{x}" for a in sources] for x in langs}
    component_path = str(neurons or heads or directions) if component is not None else None
    result = translate(loaded, texts, pair_list, conditions, settings, only=only,
                       provenance={"component": component_path})  # fmt: skip
    source = pair_list[0][0]
    result["selectivity"] = selectivity(result, langs, source)
    write_result(out, result)
    for pair, row in result["scores"]["none"].items():
        lo, hi = row["chrf_ci"]
        say(f"  {pair}: chrF {row['chrf']:.1f} [{lo:.1f}, {hi:.1f}] with no intervention")
    for lang, row in result["selectivity"].items():
        others = row["others_drop_median"]
        ctrl = row["random_own_drop"]
        say(
            f"  {lang} off: chrF drop on {source}-{lang} {row['own_drop']:+.1f} "
            f"[{row['own_drop_ci'][0]:+.1f}, {row['own_drop_ci'][1]:+.1f}]"
            + ("" if others is None else f", on the other pairs (median) {others:+.1f}")
            + ("" if ctrl is None else f", random control {ctrl:+.1f}")
        )
