"""The recording section: what the activation statistics say on their own (firing rate, profiles, tokens)."""

from __future__ import annotations

import langneurons.reporting.recording as rec
from langneurons.analysis.activity import recording_summary
from langneurons.formats.run import Run
from langneurons.formats.stats import load_stats
from langneurons.reporting.sections.common import Figure, Section, describe_run

TEMPLATE = "section_recording.html"


def recording_section(run: Run) -> Section:
    """Firing rate per layer, profile correlation between languages, and tokens counted, so a bare recording
    already has a report."""
    stats = load_stats(run.path)
    summary = recording_summary(stats)
    where = describe_run(run)
    total = sum(summary["tokens"].values())
    intro = (
        f"{total:,} counted tokens in {len(summary['languages'])} languages "
        f"({', '.join(f'{k} {v:,}' for k, v in summary['tokens'].items())})."
    )
    figures = [
        Figure(
            "recording-activation-rate.png",
            rec.activation_rate_figure(summary),
            "Activation rate per layer and language",
            f"Mean over a layer's neurons of count / tokens: the share of neurons with activation > 0 on an "
            f"average token of each language; {where}.",
        ),
    ]
    if len(summary["languages"]) > 1:
        figures.append(
            Figure(
                "recording-profile-correlation.png",
                rec.profile_correlation_figure(summary),
                "How alike languages make neurons fire",
                f"Pearson correlation between two languages' activation probabilities over all "
                f"{stats.num_layers} × {stats.intermediate_size} neurons (1 = the same neurons fire equally "
                f"often; diagonal masked). Colour: red pairs are more alike, blue ones less alike than the mean "
                f"pair (white), on a scale of at least ±0.05 so small differences stay pale; {where}.",
            )
        )
    figures.append(
        Figure(
            "recording-tokens.png",
            rec.tokens_figure(summary),
            "Tokens counted per language",
            f"Counted tokens (every real text token; padding, BOS and EOS excluded unless --count-bos) and the "
            f"sentences they came from; {where}.",
        )
    )
    return Section("recording", "Recording statistics", TEMPLATE, intro, figures)


__all__ = ["recording_section"]
