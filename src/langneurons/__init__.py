"""langneurons: find, explain and steer the neurons that make an LLM multilingual.

``import langneurons as ln`` gives the pipeline's verbs (loaded on first use, so the import is fast):
``ln.load_model``, ``ln.load_corpus``, ``ln.record``, ``ln.load_stats``, ``ln.identify``,
``ln.load_neurons``, ``ln.intervene``, ``ln.deactivate``, ``ln.activate``, ``ln.ppl_matrix``,
``ln.steer``, ``ln.similarity``, ``ln.report`` (see ``examples/notebook.py``).
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("langneurons")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+src"

from langneurons.errors import LangneuronsError

_API = (
    "Result",
    "activate",
    "deactivate",
    "identify",
    "intervene",
    "load_corpus",
    "load_model",
    "load_neurons",
    "load_pooled",
    "load_result",
    "load_stats",
    "ppl_matrix",
    "record",
    "report",
    "similarity",
    "steer",
)
_VERB_PACKAGES = ("record", "identify", "intervene", "report")
_OTHER = {"RecordSettings": "langneurons.record", "PPLSettings": "langneurons.evaluate.ppl",
          "SteerSettings": "langneurons.evaluate.steer", "NeuronSet": "langneurons.formats.neuronset",
          "Stats": "langneurons.formats.stats"}  # fmt: skip


def __getattr__(name: str) -> Any:
    """The verbs and types, imported on first use (torch and transformers load only then)."""
    import importlib

    if name in _VERB_PACKAGES:  # subpackages that are also verbs (callable modules, see _verbs.py)
        return importlib.import_module(f"langneurons.{name}")
    if name in _API:
        return getattr(importlib.import_module("langneurons.api"), name)
    if name in _OTHER:
        return getattr(importlib.import_module(_OTHER[name]), name)
    raise AttributeError(f"module 'langneurons' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API, *_OTHER])


__all__ = ["LangneuronsError", "__version__", *_API, *_OTHER]
