"""Parallel word lists for the logit-lens word tasks (docs/methods.md §16).

A word list is JSONL, one line per (concept, language): ``{"id": "dog", "lang": "fr", "word": "chien"}``;
the same ``id`` is the same concept. An optional ``"cloze"`` field holds a sentence in that language with
``___`` where the word goes (``--task cloze``). The built-in list (``data/words/nouns.jsonl``) has 110
common concrete nouns in the 20 languages of the embedded NTREX subset, written by the langneurons team.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from langneurons.errors import LangneuronsError

BUILTIN_WORDS = Path(str(resources.files("langneurons.data") / "words" / "nouns.jsonl"))
BUILTIN_NAME = "builtin:nouns"
# The language's own name for itself, as Wendler et al.'s prompts write it (``Français: "fleur" - 中文: "花"``).
LANGUAGE_NAMES = {
    "en": "English", "fr": "Français", "de": "Deutsch", "es": "Español", "it": "Italiano", "pt": "Português",
    "nl": "Nederlands", "ru": "Русский", "uk": "Українська", "zh": "中文", "ja": "日本語", "ko": "한국어",
    "ar": "العربية", "hi": "हिन्दी", "bn": "বাংলা", "th": "ไทย", "tr": "Türkçe", "id": "Bahasa Indonesia",
    "vi": "Tiếng Việt", "sw": "Kiswahili",
}  # fmt: skip


@dataclass
class WordList:
    """Concepts in order of first appearance; per concept and language its word (and cloze sentence)."""

    name: str
    words: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> lang -> word
    cloze: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> lang -> sentence with ___

    def __repr__(self) -> str:
        return f"WordList({self.name!r}, {len(self.words)} concepts, languages {','.join(self.languages)})"

    @property
    def languages(self) -> list[str]:
        seen: dict[str, None] = {}
        for per_lang in self.words.values():
            seen.update(dict.fromkeys(per_lang))
        return list(seen)

    def concepts(self, *langs: str) -> list[str]:
        """The concept ids that have a word in every one of ``langs``, in file order."""
        return [cid for cid, per_lang in self.words.items() if all(lang in per_lang for lang in langs)]

    def check_languages(self, *langs: str) -> None:
        """A one-line error for a language the list has no words in."""
        have = self.languages
        for lang in langs:
            if lang not in have:
                raise LangneuronsError(
                    f"the word list {self.name} has no words in {lang!r} (it has: {','.join(have)})"
                )


def load_words(path: str | Path | None = None) -> WordList:
    """The built-in noun list (``path`` None) or a user's JSONL list, validated line by line."""
    source = BUILTIN_WORDS if path is None else Path(path)
    name = BUILTIN_NAME if path is None else str(path)
    if not source.is_file():
        raise LangneuronsError(f"word list {source} does not exist (JSONL lines {{\"id\", \"lang\", \"word\"}})")
    out = WordList(name)
    with source.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise LangneuronsError(f"{source}:{number}: not a JSON line") from None
            if not isinstance(row, dict) or not all(isinstance(row.get(k), str) and row.get(k) for k in
                                                    ("lang", "word")) or row.get("id") in (None, ""):  # fmt: skip
                raise LangneuronsError(f"{source}:{number}: expected {{\"id\", \"lang\", \"word\"}} (non-empty)")
            cid, lang, word = str(row["id"]), row["lang"], row["word"].strip()
            if lang in out.words.get(cid, {}):
                raise LangneuronsError(f"{source}:{number}: concept {cid!r} has two {lang} words")
            out.words.setdefault(cid, {})[lang] = word
            if isinstance(row.get("cloze"), str):
                if "___" not in row["cloze"]:
                    raise LangneuronsError(f"{source}:{number}: the cloze sentence has no ___ for the word")
                out.cloze.setdefault(cid, {})[lang] = row["cloze"]
    if not out.words:
        raise LangneuronsError(f"word list {source} is empty")
    return out


def language_name(lang: str) -> str:
    """The language's name in the prompt (its own name where known, else the code)."""
    return LANGUAGE_NAMES.get(lang, lang)
