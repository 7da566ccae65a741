"""Several conditions in one generation pass (docs/evaluation.md, "Packed generation").

Decoding a small model on a CPU is bound by reading the weights once per step, not by the number of
rows: a step for 16 rows costs little more than for 4. So conditions (each a list of prompts and the
interventions to run them under) are packed into shared batches, each condition's interventions
limited to its own rows (``Intervention.rows``); every row sees exactly its condition's edits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from langneurons.intervention import on_rows

R = TypeVar("R")
Group = tuple[Sequence[str], Sequence]  # (prompts, interventions)


def packed_rows(groups: Sequence[Group]) -> list[tuple[int, int]]:
    """(group, prompt index) of every row, in the order :func:`run_packed` puts them into batches: the
    rows of batch ``start`` are ``packed_rows(groups)[start : start + len(prompts)]``."""
    return [(g, i) for g, (prompts, _) in enumerate(groups) for i in range(len(prompts))]


def run_packed(
    groups: Sequence[Group],
    batch_size: int,
    run: Callable[[int, list[str], list], list[R]],
    on_batch: Callable[[int], None] | None = None,
) -> list[list[R]]:
    """``run(start, prompts, interventions)`` on batches of up to ``batch_size`` rows taken in order from
    every group (``start``: the batch's first row overall); the outputs, regrouped: ``[group][prompt]``.

    A batch that holds a single group runs its interventions unrestricted (as an unpacked run would).
    """
    rows = packed_rows(groups)
    out: list[list] = [[None] * len(prompts) for prompts, _ in groups]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        owners = list(dict.fromkeys(g for g, _ in chunk))
        if len(owners) == 1:
            ivs = list(groups[owners[0]][1])
        else:
            ivs = []
            for g in owners:
                mine = [r for r, (owner, _) in enumerate(chunk) if owner == g]
                ivs += on_rows(list(groups[g][1]), mine[0], mine[-1] + 1)
        results = run(start, [groups[g][0][i] for g, i in chunk], ivs)
        for (g, i), result in zip(chunk, results, strict=True):
            out[g][i] = result
        if on_batch is not None:
            on_batch(len(chunk))
    return out
