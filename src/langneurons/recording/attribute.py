"""The `attribute` run: estimate (recording/attribution.py), optionally validate by exact ablation
(recording/attribution_validation.py), save (formats/attribution.py)."""

from __future__ import annotations

import time
from pathlib import Path

from langneurons.data import Corpus
from langneurons.formats.attribution import Attribution
from langneurons.models.loading import LoadedModel
from langneurons.recording.attribution import CHECKPOINT, AttributionSettings, estimate
from langneurons.recording.attribution_validation import validate_attribution
from langneurons.recording.distributed import World


def attribute(
    loaded: LoadedModel,
    corpus: Corpus,
    out: str | Path | None = None,
    settings: AttributionSettings | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    world: World | None = None,
) -> Attribution:
    """Per language of ``corpus``, the estimated effect of ablating each unit on the language's mean NLL.

    With ``out``, each finished language is checkpointed (a rerun of the same run resumes after it) and the
    result is saved there (``attribution.safetensors`` + ``attribution.json``, docs/formats.md).
    ``settings.validate`` N > 0: N sampled units per type are ablated exactly beside their estimates.
    Under torchrun (``world`` of several processes) the batches of each language and the validation's units
    are shared out (docs/scaling.md); every rank returns the result, rank 0 alone saves it.
    """
    world = world or World()
    s = settings or AttributionSettings()
    started = time.time()
    result = estimate(loaded, corpus, out, s, overwrite=overwrite, progress=progress, world=world)
    if s.validate:
        result.meta["validation"] = validate_attribution(loaded, corpus, result, s, progress=progress, world=world)
    result.meta["provenance"]["wall_seconds"] = round(time.time() - started, 3)
    result.meta["provenance"]["processes"] = world.size
    if out is not None and world.is_main:
        result.save(out)
        (Path(out) / CHECKPOINT).unlink(missing_ok=True)
    return result


__all__ = ["attribute"]
