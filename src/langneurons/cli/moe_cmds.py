"""CLI: `routing` (which experts each language uses, per MoE layer) for mixture-of-experts runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

import langneurons.cli.options as opt
from langneurons.cli.app import app, one_line_errors
from langneurons.cli.common import (
    check_out,
    make_console,
)


@app.command("routing")
@one_line_errors
def routing_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of a recorded mixture-of-experts model.")],
    out: Annotated[Path, opt.out_option("Routing result JSON to write (e.g. RUN/routing.json).")],
    reference: str = typer.Option("en", "--reference", help="Language whose routing the others are compared to."),
    top: int = typer.Option(5, "--top", help="Most language-specific experts to list per language."),
    figure: Path | None = typer.Option(None, "--figure", help="Also write the routing figure (PNG) here."),
    overwrite: opt.Overwrite = False,
) -> None:
    """Expert usage per language and layer, its entropy, divergence from a reference, specific experts."""
    from langneurons.analysis.routing import routing_analysis
    from langneurons.formats.atomic import write_json
    from langneurons.formats.stats import load_stats

    check_out(out, overwrite)
    if figure is not None:
        check_out(figure, overwrite)
    result = routing_analysis(load_stats(run_dir), reference=reference, top=top)
    result["provenance"]["run"] = str(run_dir)
    write_json(out, result)
    console = make_console(stderr=True)
    if figure is not None:
        from langneurons.formats.atomic import write_bytes
        from langneurons.reporting.routing_figure import routing_figure

        write_bytes(figure, routing_figure(result))
    layers = result["moe_layers"]
    for lang in result["languages"]:
        js = result["js_divergence"][lang]
        peak = max(range(len(js)), key=js.__getitem__) if js else 0
        spec = ", ".join(f"L{r['layer']}:E{r['expert']}" for r in result["specific_experts"][lang][:3])
        console.print(
            escape(
                f"  {lang}: entropy {min(result['entropy'][lang]):.2f}–{max(result['entropy'][lang]):.2f} nats "
                f"(max {result['max_entropy']:.2f}); JS from {reference} peaks {js[peak]:.3f} at layer {layers[peak]}; "
                f"most specific experts {spec or '-'}"
            ),
            highlight=False,
        )
    console.print(escape(f"wrote {out}" + (f" and {figure}" if figure else "")), highlight=False)
