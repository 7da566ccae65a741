"""CLI command `explain`: a neuron's card (what it fires on, what it writes), or cards for a neuron set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import langneurons.cli.options as opt
from langneurons.cli.app import app, one_line_errors
from langneurons.cli.common import check_out, check_positive, say
from langneurons.errors import LangneuronsError

BAR = 24  # characters of a full probability bar


@app.command("explain")
@one_line_errors
def explain_cmd(
    target: Annotated[Path, typer.Argument(help="A run directory (with --neuron) or a neuron-set JSON.")],
    neuron: Annotated[
        list[str] | None, typer.Option("--neuron", help="LAYER:NEURON to explain (repeatable), e.g. 17:1234.")
    ] = None,
    language: Annotated[
        str | None, typer.Option("--language", help="With a set: the language(s) whose neurons to explain.")
    ] = None,
    top: Annotated[
        int | None, typer.Option("--top", help="With a set: cards for each language's N most specific (default 20).")
    ] = None,
    examples: Annotated[int, typer.Option("--examples", help="Top activating examples per language.")] = 8,
    tokens: Annotated[int, typer.Option("--tokens", help="Promoted and suppressed tokens shown per card.")] = 20,
    targeted: Annotated[
        bool, typer.Option("--targeted", help="Collect examples by running the corpus again even if kept.")
    ] = False,
    run: Annotated[Path | None, typer.Option("--run", help="Run directory of a set (default: the set's).")] = None,
    corpus: Annotated[str | None, typer.Option("--corpus", help="The run's corpus, if moved.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model (default: the run's).")] = None,
    device: opt.Device = "auto",
    dtype: opt.Dtype = "auto",
    out: Annotated[Path | None, opt.out_option("Card JSON (one neuron) or cards JSON to write.")] = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Explain neurons: activation probability per language, top activating examples, promoted tokens.

    `explain RUN --neuron 17:1234` prints one card; `explain RUN/lape.json --language fr --top 20 -o cards.json`
    explains a set's most active neurons and says how many of each language's neurons write their own
    language, layer by layer. Examples come from `record --examples K`, else from a targeted pass.
    """
    from langneurons.formats.card import parse_neuron
    from langneurons.formats.neuronset import NeuronSet, existing_columns
    from langneurons.formats.stats import MANIFEST_FILE

    check_positive(top=top, examples=examples, tokens=tokens)
    if neuron and (language is not None or top is not None):  # no flag is silently ignored
        raise LangneuronsError(f"{'--language' if language is not None else '--top'} goes with a neuron set, "
                               "not with --neuron")  # fmt: skip
    if out is not None:
        check_out(out, overwrite)
    ns = None
    if target.is_file():
        ns = NeuronSet.load(target)
        run_dir = run or _set_run(ns, target)
    elif target.is_dir():
        run_dir = target
        if language is not None or top is not None or run is not None:
            flag = "--language" if language is not None else "--top" if top is not None else "--run"
            raise LangneuronsError(f"{flag} goes with a neuron set (explain RUN/lape.json --language fr)")
    else:
        raise LangneuronsError(f"{target} does not exist (a run directory or a neuron-set JSON)")
    if not (run_dir / MANIFEST_FILE).exists():
        raise LangneuronsError(f"{run_dir} is not a run directory (no {MANIFEST_FILE}); give --run")
    from langneurons.formats.atomic import read_json

    manifest = read_json(run_dir / MANIFEST_FILE)
    n_layers, width = int(manifest["num_layers"]), int(manifest["intermediate_size"])
    existing = existing_columns(manifest.get("moe"), n_layers, width) if manifest.get("moe") else None
    pairs = [parse_neuron(text, n_layers, width, existing) for text in neuron or []]
    if ns is None and not pairs:
        raise LangneuronsError("give --neuron LAYER:NEURON, or a neuron-set JSON instead of the run directory")
    languages = None
    if ns is not None and not pairs:
        ns.check_compatible(n_layers, width)
        languages = [lang.strip() for lang in language.split(",")] if language else list(ns.languages)
        missing = [lang for lang in languages if lang not in ns.languages or lang not in manifest["languages"]]
        if missing:
            raise LangneuronsError(f"--language {','.join(missing)}: not in both the set ({','.join(ns.languages)}) "
                                   f"and the run ({','.join(manifest['languages'])})")  # fmt: skip
        if out is None:
            out = run_dir / f"{target.stem}.cards.json"
            check_out(out, overwrite)
    _explain(run_dir, manifest, ns, languages, pairs, out, model=model, device=device, dtype=dtype, corpus=corpus,
             top=top or 20, k=examples, tokens=tokens, targeted=targeted or None)  # fmt: skip


def _set_run(ns: Any, path: Path) -> Path:
    source = ns.source.get("run")
    if source and Path(source).is_dir():
        return Path(source)
    return path.parent


def _explain(run_dir: Path, manifest: dict, ns: Any, languages: list[str] | None, pairs: list[tuple[int, int]],
             out: Path | None, *, model: str | None, device: str, dtype: str, corpus: str | None, top: int, k: int,
             tokens: int, targeted: bool | None) -> None:  # fmt: skip
    import time

    from langneurons.analysis.explain import explain_neurons, explain_set, model_spec, run_corpus
    from langneurons.formats.card import save_cards
    from langneurons.formats.stats import load_stats
    from langneurons.models.loading import load_model, quiet_transformers
    from langneurons.progress import progress_bar

    started = time.time()
    stats = load_stats(run_dir)
    text = run_corpus(manifest, corpus)
    quiet_transformers()
    spec = model or model_spec(manifest)
    say(f"loading model {spec} …")
    loaded = load_model(spec, revision=manifest.get("revision"), device=device, dtype=dtype)
    if loaded.adapter.num_layers != stats.num_layers or loaded.adapter.intermediate_size != stats.intermediate_size:
        raise LangneuronsError(f"model {spec} does not match the run ({stats.num_layers} layers × "
                               f"{stats.intermediate_size} neurons)")  # fmt: skip
    need = targeted or stats.examples is None or stats.examples.k < k
    if need:
        why = "none kept" if stats.examples is None else f"{stats.examples.k} kept" if not targeted else "asked"
        say(f"top examples: a targeted pass over the run's sentences ({why}; record --examples K keeps them)")
    bar = progress_bar(need, "sentences")
    with bar:
        task = bar.add_task("targeted pass", total=sum(len(v) for v in text.items.values()), completed=0)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        if ns is not None and languages is not None:
            result = explain_set(loaded, stats, ns, languages, top=top, corpus=text, k=k, tokens=tokens,
                                 targeted=targeted, on_progress=progress if need else None)  # fmt: skip
            cards = result["cards"]
        else:
            cards, _, _ = explain_neurons(loaded, stats, pairs, corpus=text, k=k, tokens=tokens, targeted=targeted,
                                          on_progress=progress if need else None)  # fmt: skip
            result = None
    console = Console()
    if result is None:
        for card in cards:
            print_card(console, card)
        if out is not None:
            if len(cards) == 1:
                cards[0].save(out)
            else:
                save_cards(out, {"cards": cards, "run": str(run_dir), "provenance": _provenance(started)})
    else:
        shown = {lang: next((c for c in cards for r in result["ranked"][lang][:1] if [c["layer"], c["neuron"]] ==
                             r[:2]), None) for lang in languages}  # fmt: skip
        for lang, card in shown.items():
            if card is not None:
                console.print(f"[bold]{escape(lang)}[/]: most active neuron of the set", highlight=False)
                print_card(console, card)
        console.print(writes_table(result["writes_by_layer"], stats.num_layers))
        save_cards(out, {**result, "run": str(run_dir), "set": ns.method, "provenance": _provenance(started)})
    if out is not None:
        say(f"wrote {out} ({len(cards)} card{'s' * (len(cards) != 1)}, {time.time() - started:.1f} s)")


def _provenance(started: float) -> dict[str, Any]:
    import time

    from langneurons.formats.provenance import now, software

    return {"created": now(), "wall_seconds": round(time.time() - started, 3), **software()}


def print_card(console: Console, card: dict[str, Any]) -> None:
    """A card in the terminal: probability bars, examples with the firing token highlighted, written tokens."""
    console.print(f"[bold]neuron {card['layer']}:{card['neuron']}[/] (site {escape(str(card.get('site')))}, "
                  f"{escape(str(card.get('model')))})", highlight=False)  # fmt: skip
    langs = card["languages"]
    share = (card.get("writes") or {}).get("language_share") or {}
    for lang, entry in langs.items():
        p = float(entry["probability"])
        bar = "█" * round(p * BAR)
        mean = "" if entry.get("mean") is None else f"  mean {entry['mean']:+.3f}"
        console.print(f"  {escape(lang):>6} [blue]{bar:<{BAR}}[/] p={p:.3f}{mean}", highlight=False)
    for lang, entry in langs.items():
        if entry["top"]:
            console.print(f"  [bold]{escape(lang)}[/] top examples:", highlight=False)
        for ex in entry["top"]:
            left, right = escape(ex["left"][-60:]), escape(ex["right"][:60])
            console.print(f"    {ex['value']:7.3f}  …{left}[reverse bold yellow]{escape(ex['token'])}[/]{right}…",
                          highlight=False)  # fmt: skip
    writes = card.get("writes") or {}
    for kind in ("promoted", "suppressed"):
        rows = writes.get(kind) or []
        shown = "  ".join(f"{escape(repr(r['token']))}[dim]{escape(r.get('language') or '')}[/]" for r in rows[:12])
        console.print(f"  {kind}: {shown}", highlight=False)
    if share:
        base = (card.get("writes") or {}).get("random_share") or {}
        parts = [f"{escape(k)} {v:.0%} (random {base.get(k, {}).get('mean', 0):.0%})" for k, v in share.items()]
        console.print("  language share of the top-100 promoted tokens: " + ", ".join(parts), highlight=False)


def writes_table(by_layer: dict[str, Any], num_layers: int) -> Table:
    """Per layer and language: the set's neurons that write their own language / the set's neurons."""
    langs = by_layer["languages"]
    table = Table(title="neurons that write their own language (top-100 promoted tokens, vs random neurons)")
    table.add_column("layer", justify="right")
    for lang in langs:
        table.add_column(escape(lang), justify="right")
    for layer in range(num_layers):
        cells = []
        for lang in langs:
            row = langs[lang]["by_layer"][layer]
            cells.append(f"{row['writes']}/{row['neurons']}" if row["neurons"] else "")
        if any(cells):
            table.add_row(str(layer), *cells)
    table.add_section()
    table.add_row("all", *(f"{langs[lang]['writes']}/{langs[lang]['neurons']}" for lang in langs))
    return table
