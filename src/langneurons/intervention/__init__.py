"""Interventions on MLP neurons (docs/methods.md §8): deactivate, activate, force; random controls.

``with intervene(loaded, [deactivate(mask_en), activate(mask_fr, stats, "fr")]): model(...)``
"""

from langneurons.intervention.controls import matched_control, null_control, random_control, random_mask
from langneurons.intervention.directions import (
    DirectionIntervention,
    ablate_direction,
    add_direction,
    add_pair_direction,
    random_direction_control,
)
from langneurons.intervention.hooks import intervene
from langneurons.intervention.spec import (
    ACTIVATION_MODES,
    MODES,
    POSITIONS,
    Intervention,
    activate,
    check_neurons,
    deactivate,
    force,
    language_mask,
    on_rows,
)

__all__ = [
    "DirectionIntervention",
    "ablate_direction",
    "add_direction",
    "add_pair_direction",
    "random_direction_control",
    "ACTIVATION_MODES",
    "MODES",
    "POSITIONS",
    "Intervention",
    "activate",
    "check_neurons",
    "deactivate",
    "force",
    "intervene",
    "language_mask",
    "on_rows",
    "matched_control",
    "null_control",
    "random_control",
    "random_mask",
]
