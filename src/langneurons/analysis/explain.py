"""Explain neurons (docs/methods.md §15): cards of what a neuron fires on (statistics and top examples) and
what it writes (its output weights through the unembedding), and the set-level "writes its own language"
check. Top examples come from ``record --examples K``, or from a targeted pass over the run's sentences.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from langneurons.analysis.token_language import TokenLanguages
from langneurons.analysis.writes import WriteLens, neuron_writes, writes_by_layer
from langneurons.data import Corpus, load_corpus
from langneurons.errors import LangneuronsError
from langneurons.formats.card import Card
from langneurons.formats.examples import Examples
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.stats import Stats
from langneurons.models.loading import LoadedModel
from langneurons.recording.examples import collect_examples

CONTEXT_TOKENS = 8  # neighbours shown on each side of an example's token
DEFAULT_EXAMPLES = 8
TARGETED_CHECKPOINT = "examples.targeted.partial.safetensors"  # an interrupted targeted pass, in the run


def run_corpus(manifest: dict[str, Any], spec: str | None = None) -> Corpus:
    """The counted sentences of a run, per language, in the order their indices refer to (a merged run: its
    parts in order), read again from the corpus the manifest names (or ``spec``) and checked by hash."""
    parts = manifest.get("merged_from") or [manifest]
    items: dict[str, list[tuple[str, str]]] = {lang: [] for lang in manifest["languages"]}
    for part in parts:
        name = spec or part.get("corpus")
        if not isinstance(name, str):
            raise LangneuronsError("the run names no single corpus; give --corpus")
        langs = [lang for lang in part.get("languages") or [] if int((part.get("sentences") or {}).get(lang, 0))]
        corpus = load_corpus(name, langs)
        for lang in langs:
            n = int(part["sentences"][lang])
            wanted = (part.get("sentence_hashes") or {}).get(lang)
            pairs = corpus.items[lang]
            if wanted is not None:
                hashes = corpus.sentence_hashes(lang)
                if hashes[:n] != wanted:  # a filtered run (--lid-filter): find its sentences in order
                    picked, i = [], 0
                    for pair, h in zip(pairs, hashes, strict=True):
                        if i < len(wanted) and h == wanted[i]:
                            picked.append(pair)
                            i += 1
                    if i < len(wanted):
                        raise LangneuronsError(f"corpus {name} no longer holds the {lang!r} sentences this run "
                                               "counted; give the original with --corpus")  # fmt: skip
                    pairs = picked
            items[lang] += pairs[:n]
    return Corpus(str(manifest.get("corpus")), items)


def model_spec(manifest: dict[str, Any]) -> str:
    """The spec that loads the model a run was recorded with (the embedded model is named, not a path)."""
    from langneurons.models.loading import EMBEDDED_NAME

    name = str(manifest.get("model"))
    return "embedded" if name == EMBEDDED_NAME else name


def targeted_examples(
    loaded: LoadedModel,
    stats: Stats,
    corpus: Corpus,
    pairs: list[tuple[int, int]],
    k: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> Examples:
    """Top-``k`` examples of ``pairs`` only, by running the run's counted sentences again (resumable: an
    interrupted pass goes on from ``RUN/examples.targeted.partial.safetensors`` when rerun)."""
    neurons: dict[int, list[int]] = {}
    for layer, j in pairs:
        neurons.setdefault(layer, []).append(j)
    settings = stats.manifest.get("settings") or {}
    tracker = collect_examples(
        loaded, corpus, neurons, k, site=str(stats.manifest.get("site") or "act"),
        sentences={lang: len(corpus.items[lang]) for lang in corpus.languages},
        batch_size=int(settings.get("batch_size") or 8), max_length=min(int(settings.get("max_length") or 512),
        loaded.max_length), count_bos=bool(settings.get("count_bos")), on_progress=on_progress,
        checkpoint=None if stats.path is None else Path(stats.path) / TARGETED_CHECKPOINT,
    )  # fmt: skip
    return tracker.result({"languages": corpus.languages, "site": stats.manifest.get("site"), "targeted": True})


def example_rows(loaded: LoadedModel, corpus: Corpus, lang: str, top: list[tuple[float, int, int]],
                 max_length: int) -> list[dict[str, Any]]:  # fmt: skip
    """``(value, sentence, position)`` → card rows with the sentence text, the token and its neighbours."""
    tok = loaded.tokenizer
    texts = corpus.texts(lang)
    rows = []
    for value, sentence, position in top:
        text = texts[sentence] if 0 <= sentence < len(texts) else ""
        ids = tok(text, truncation=True, max_length=max_length)["input_ids"]
        token = tok.decode([ids[position]]) if position < len(ids) else ""
        left = tok.decode(ids[max(0, position - CONTEXT_TOKENS) : position], skip_special_tokens=True)
        right = tok.decode(ids[position + 1 : position + 1 + CONTEXT_TOKENS], skip_special_tokens=True)
        rows.append({"value": value, "text": text, "position": position, "token": token,
                     "left": left, "right": right, "sentence": sentence})  # fmt: skip
    return rows


def neuron_card(
    loaded: LoadedModel,
    stats: Stats,
    layer: int,
    neuron: int,
    *,
    corpus: Corpus | None,
    examples: Examples | None,
    lens: WriteLens,
    langs: TokenLanguages,
    k: int = DEFAULT_EXAMPLES,
    tokens: int = 20,
) -> Card:
    """One neuron's card (formats/card.py)."""
    prob = stats.probability()[:, layer, neuron]
    mean = stats.mean()[:, layer, neuron] if stats.has_sums else None
    max_length = int((stats.manifest.get("settings") or {}).get("max_length") or 512)
    languages: dict[str, Any] = {}
    for i, lang in enumerate(stats.languages):
        top = examples.top(lang, layer, neuron) if examples is not None else None
        rows = example_rows(loaded, corpus, lang, top[:k], max_length) if top and corpus is not None else []
        languages[lang] = {"probability": float(prob[i]), "mean": None if mean is None else float(mean[i]),
                           "top": rows}  # fmt: skip
    return Card(layer=layer, neuron=neuron, site=stats.manifest.get("site"), model=stats.manifest.get("model"),
                languages=languages, writes=neuron_writes(lens, langs, layer, neuron, tokens))  # fmt: skip


def explain_neurons(
    loaded: LoadedModel,
    stats: Stats,
    pairs: list[tuple[int, int]],
    *,
    corpus: Corpus | None = None,
    k: int = DEFAULT_EXAMPLES,
    tokens: int = 20,
    targeted: bool | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Card], TokenLanguages, WriteLens]:
    """Cards of ``pairs``. Examples come from the run's examples file when it keeps ≥ ``k`` per neuron,
    else (or with ``targeted=True``) from a targeted pass over the run's sentences."""
    corpus = corpus if corpus is not None else run_corpus(stats.manifest)
    examples = stats.examples
    if targeted or (targeted is None and (examples is None or examples.k < k)):
        examples = targeted_examples(loaded, stats, corpus, pairs, k, on_progress)
    langs = TokenLanguages(loaded.tokenizer, stats.languages, {lang: corpus.texts(lang) for lang in corpus.languages})
    lens = WriteLens(loaded.adapter)
    cards = [neuron_card(loaded, stats, layer, j, corpus=corpus, examples=examples, lens=lens, langs=langs, k=k,
                         tokens=tokens) for layer, j in pairs]  # fmt: skip
    return cards, langs, lens


def ranked_neurons(ns: NeuronSet, stats: Stats, lang: str) -> list[tuple[int, int, float]]:
    """``lang``'s neurons of the set with their activation probability on ``lang``, most specific first:
    by p(lang) − the largest p on another language (ties: higher p, lower layer, lower index)."""
    k = stats.languages.index(lang)
    prob = stats.probability()
    others = torch.cat([prob[:k], prob[k + 1 :]]).amax(0) if prob.shape[0] > 1 else torch.zeros_like(prob[0])
    rows = [(layer, j, float(prob[k, layer, j]), float(prob[k, layer, j] - others[layer, j]))
            for layer, j in ns.pairs(lang)]  # fmt: skip
    return [r[:3] for r in sorted(rows, key=lambda r: (-r[3], -r[2], r[0], r[1]))]


def explain_set(
    loaded: LoadedModel,
    stats: Stats,
    ns: NeuronSet,
    languages: list[str],
    *,
    top: int = 20,
    corpus: Corpus | None = None,
    k: int = DEFAULT_EXAMPLES,
    tokens: int = 20,
    targeted: bool | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Cards of each language's ``top`` most active neurons, every set neuron ranked per language, and the
    writes-its-own-language table over the whole set."""
    for lang in languages:
        if lang not in ns.languages or lang not in stats.languages:
            raise LangneuronsError(f"language {lang!r} is not in both the set ({','.join(ns.languages)}) and the "
                                   f"run ({','.join(stats.languages)})")  # fmt: skip
    ranked = {lang: ranked_neurons(ns, stats, lang) for lang in languages}
    pairs: list[tuple[int, int]] = []
    for lang in languages:
        pairs += [(layer, j) for layer, j, _ in ranked[lang][:top] if (layer, j) not in pairs]
    cards, langs, lens = explain_neurons(loaded, stats, pairs, corpus=corpus, k=k, tokens=tokens, targeted=targeted,
                                         on_progress=on_progress)  # fmt: skip
    by_layer = writes_by_layer(lens, langs, {lang: ns.neurons[lang] for lang in languages})
    shares = by_layer.pop("share")
    ranked_out = {lang: [[layer, j, round(p, 6), shares.get(lang, {}).get(f"{layer}:{j}")] for layer, j, p in rows]
                  for lang, rows in ranked.items()}  # fmt: skip
    return {"cards": cards, "ranked": ranked_out, "writes_by_layer": by_layer, "languages": languages,
            "model": stats.manifest.get("model"), "site": stats.manifest.get("site"), "method": ns.method,
            "num_layers": stats.num_layers}  # fmt: skip


__all__ = ["explain_neurons", "explain_set", "model_spec", "neuron_card", "ranked_neurons", "run_corpus",
           "targeted_examples"]  # fmt: skip
