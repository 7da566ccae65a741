"""Neuron identification: pure math on recorded statistics (never loads a model).

``identify(stats, "lape" | "entropy-lambda", **params) -> NeuronSet``. A method is a `Method` in
`METHODS`; a new one is a module with a ``METHOD`` and one line in ``_BUILTIN`` (or a `register` call).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.stats import Stats
from langneurons.identify import entropy_lambda, lape
from langneurons.identify.common import Method, subset_languages

_BUILTIN = (lape.METHOD, entropy_lambda.METHOD)
METHODS: dict[str, Method] = {m.name: m for m in _BUILTIN}
# Parameter spellings accepted besides the function's own names.
_ALIASES = {"lambda": "lam", "activation_bar_ratio": "bar_ratio"}


def register(method: Method) -> Method:
    """Add (or replace) a method in the registry."""
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method called ``name`` (case and ``_``/``-`` insensitive); one-line error otherwise."""
    key = name.strip().lower().replace("_", "-")
    if key not in METHODS:
        raise LangneuronsError(f"unknown method {name!r} (choose from: {', '.join(METHODS)})")
    return METHODS[key]


def method_parameters(method: Method) -> list[str]:
    """The keyword parameters a method accepts."""
    sig = inspect.signature(method.run)
    return [n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def identify(
    stats: Stats, method: str, *, languages: Sequence[str] | None = None, **params: Any
) -> NeuronSet:
    """Run ``method`` on ``stats`` (restricted to ``languages`` when given) and return its neuron set."""
    spec = get_method(method)
    accepted = method_parameters(spec)
    params = {_ALIASES.get(k, k): v for k, v in params.items() if v is not None}
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise LangneuronsError(
            f"method {spec.name} does not take {', '.join(unknown)} (it takes: {', '.join(accepted)})"
        )
    return spec.run(subset_languages(stats, languages), **params)


__all__ = ["METHODS", "Method", "NeuronSet", "get_method", "identify", "method_parameters", "register"]
