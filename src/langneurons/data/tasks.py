"""Built-in tasks (``--corpus tasks``): a small prompt set per shipped NTREX language, for `record --generate`.

Three kinds, each with ids shared across languages (``translate-0`` is the same request in every language):

* ``translate``: "Translate into <X>." then a short NTREX sentence (dev split, lines 1000+; English, or
  French for X = English) and the cue "<X>:", for the model to answer in X;
* ``continue``: the first half of the same-numbered NTREX sentence in X, for the model to continue in X;
* ``arithmetic``: four grade-school word problems written for this project (data/tasks/arithmetic.jsonl,
  in 10 languages, with their answers), as "<Question:> … <Answer:>" in X.

``tasks`` is all three, ``tasks:translate`` (``:continue``, ``:arithmetic``) one kind. Prompts only: the
model answers them (``record --generate``), so none of them overlaps the identification lines 0–999.
"""

from __future__ import annotations

import json
from importlib import resources

from langneurons.data.languages import NAMES
from langneurons.data.ntrex import NTREX_LANGUAGES, ntrex_lines
from langneurons.errors import LangneuronsError

TASK_KINDS = ("translate", "continue", "arithmetic")
PER_KIND = 4
LONGEST = 110  # characters of the source sentence: short prompts, quick answers
UNSPACED = ("ja", "th", "zh")  # cut by characters, not words


def arithmetic() -> list[dict]:
    """The word problems: ``lang``, ``id``, ``question`` and ``answer_cue`` words, ``problem``, ``answer``."""
    text = (resources.files("langneurons.data") / "tasks" / "arithmetic.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _short_lines() -> list[int]:
    """The first PER_KIND dev lines whose English and French are short (the same lines in every language)."""
    en, fr = ntrex_lines("en", "dev"), ntrex_lines("fr", "dev")
    pairs = enumerate(zip(en, fr, strict=True))
    picked = [i for i, ((_, e), (_, f)) in pairs if len(e) <= LONGEST and len(f) <= LONGEST]
    return picked[:PER_KIND]


def _half(text: str, lang: str) -> str:
    if lang in UNSPACED:
        return text[: max(1, len(text) // 2)]
    words = text.split()
    return " ".join(words[: max(1, len(words) // 2)])


def load_tasks(spec: str, languages: list[str] | None = None) -> dict[str, list[tuple[str, str]]]:
    """Per language, (id, prompt) pairs of the kinds ``spec`` names (``tasks`` or ``tasks:KIND[,KIND]``)."""
    kinds = [k for k in (spec.partition(":")[2] or ",".join(TASK_KINDS)).split(",") if k]
    unknown = [k for k in kinds if k not in TASK_KINDS]
    if unknown:
        raise LangneuronsError(f"unknown task kind(s) {','.join(unknown)} (use tasks or tasks:{'|'.join(TASK_KINDS)})")
    wanted = languages or list(NTREX_LANGUAGES)
    problems = arithmetic()
    lines = _short_lines()
    sources = {lang: ntrex_lines(lang, "dev") for lang in {"en", "fr", *[w for w in wanted if w in NTREX_LANGUAGES]}}
    out: dict[str, list[tuple[str, str]]] = {}
    for lang in wanted:
        pairs: list[tuple[str, str]] = []
        if lang in NTREX_LANGUAGES and "translate" in kinds:
            source = "fr" if lang == "en" else "en"
            for k, i in enumerate(lines):
                prompt = f"Translate into {NAMES[lang]}.\n{NAMES[source]}: {sources[source][i][1]}\n{NAMES[lang]}:"
                pairs.append((f"translate-{k}", prompt))
        if lang in NTREX_LANGUAGES and "continue" in kinds:
            for k, i in enumerate(lines):
                pairs.append((f"continue-{k}", _half(sources[lang][i][1], lang)))
        if "arithmetic" in kinds:
            for p in problems:
                if p["lang"] == lang:
                    gap = "" if p["question"].endswith("：") else " "  # no space after a full-width colon
                    pairs.append((p["id"], f"{p['question']}{gap}{p['problem']}\n{p['answer_cue']}"))
        if pairs:
            out[lang] = pairs
    return out
