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
from langneurons.identification import ap, attribution, entropy_lambda, key_neurons, lape
from langneurons.identification.common import CONDITIONS, Method, conditioned, subset_languages

# lape and entropy-lambda take recorded statistics; key-neurons and ap take pooled sentence vectors;
# attribution takes an `attribute` run.
_BUILTIN = (lape.METHOD, entropy_lambda.METHOD, key_neurons.METHOD, ap.METHOD, attribution.METHOD)
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
    data: Stats | Any,
    method: str,
    *,
    languages: Sequence[str] | None = None,
    condition: str | None = None,
    **params: Any,
) -> NeuronSet:
    """Run ``method`` on ``data`` (statistics, restricted to ``languages`` when given) → its neuron set.

    Parameters left None take the method's defaults. ``condition`` (MoE statistics): ``unconditional``
    (default, p = count / n_tokens) or ``routed`` (p = count / tokens routed to the expert), docs/methods.md §12.
    """
    spec = get_method(method)
    accepted = method_parameters(spec)
    params = {_ALIASES.get(k, k): v for k, v in params.items() if v is not None}
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise LangneuronsError(
            f"method {spec.name} does not take {', '.join(unknown)} (it takes: {', '.join(accepted)})"
        )
    if spec.input == "stats":
        if not isinstance(data, Stats):
            raise LangneuronsError(f"method {spec.name} works on recorded statistics (a run directory)")
        data = subset_languages(data, languages)
        if condition is not None or data.manifest.get("moe"):
            data = conditioned(data, condition or "unconditional")
    elif languages or condition:
        raise LangneuronsError(f"method {spec.name} takes no language subset or condition here")
    result = spec.run(data, **params)
    if spec.input == "stats" and "condition" in data.manifest:
        result.params["condition"] = data.manifest["condition"]
    return result


__all__ = ["CONDITIONS", "METHODS", "Method", "NeuronSet", "get_method", "identify", "method_parameters", "register"]
