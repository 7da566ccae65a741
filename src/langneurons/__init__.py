"""langneurons: find, explain and steer the neurons that make an LLM multilingual.

``import langneurons as ln`` gives the pipeline as plain functions (``langneurons.api``): ``ln.load_model``
(a spec or a model you already loaded), ``ln.load_corpus``, ``ln.record``, ``ln.load_stats``,
``ln.identify``, ``ln.attribute``, ``ln.load_attribution``, ``ln.load_neurons``, ``ln.intervene``,
``ln.deactivate``, ``ln.activate``, ``ln.ppl``,
``ln.steer``, ``ln.similarity``, ``ln.report``. See ``examples/notebook.ipynb`` and docs/api.md.

The names are imported on first use (PEP 562), so ``import langneurons`` and the command line start
without loading torch; ``help(ln.record)`` and ``inspect.signature(ln.record)`` show the real function.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from langneurons.errors import LangneuronsError
from langneurons.version import __version__

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from langneurons.api import (
        Result,
        activate,
        answer,
        attribute,
        deactivate,
        explain,
        identify,
        intervene,
        lens,
        lens_train,
        load_attribution,
        load_corpus,
        load_model,
        load_neurons,
        load_pooled,
        load_result,
        load_stats,
        ppl,
        ppl_matrix,
        record,
        report,
        similarity,
        steer,
    )
    from langneurons.evaluation.ppl import PPLSettings
    from langneurons.evaluation.steer import SteerSettings
    from langneurons.formats.neuronset import NeuronSet
    from langneurons.formats.stats import Stats
    from langneurons.models import Adapter, register_adapter
    from langneurons.recording import RecordSettings

__all__ = [
    "Adapter", "LangneuronsError", "NeuronSet", "PPLSettings", "RecordSettings", "Result", "Stats", "SteerSettings",
    "__version__", "activate", "answer", "attribute", "deactivate", "explain", "identify", "intervene", "lens",
    "lens_train", "load_attribution", "load_corpus", "load_model", "load_neurons",
    "load_pooled", "load_result", "load_stats", "ppl", "ppl_matrix", "record", "register_adapter", "report",
    "similarity", "steer",
]  # fmt: skip
# the module that defines each lazily imported name (every other name of __all__ is defined here)
_HOME = {
    "RecordSettings": "langneurons.recording",
    "PPLSettings": "langneurons.evaluation.ppl",
    "SteerSettings": "langneurons.evaluation.steer",
    "NeuronSet": "langneurons.formats.neuronset",
    "Stats": "langneurons.formats.stats",
    "Adapter": "langneurons.models",
    "register_adapter": "langneurons.models",
} | {name: "langneurons.api" for name in __all__ if name == "Result" or name[0].islower() and not name.startswith("_")
   and name != "register_adapter"}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (torch and transformers load only then)."""
    if name not in _HOME:
        raise AttributeError(f"module 'langneurons' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value  # later look-ups are ordinary attribute reads
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])
