"""The language of a vocabulary token (docs/methods.md §15).

A token's language comes from its script (Cyrillic, Han, kana, Arabic, Devanagari, Bengali, Hangul,
Thai, …) where only one of the considered languages writes that script (kana → ja); otherwise — Latin
script, or Cyrillic with both ru and uk considered, or Han with zh and ja — from membership in each
language's vocabulary as seen in a corpus: a token that occurs in only one candidate language's text
belongs to it. Tokens without letters (punctuation, digits, spaces), tokens of a script no considered
language writes, and tokens seen in several candidates' text (or in none) have no language (None).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

# the script each language is written in (ja: Han and kana; kana alone decides ja)
LANGUAGE_SCRIPTS: dict[str, tuple[str, ...]] = {
    "ru": ("CYRILLIC",), "uk": ("CYRILLIC",), "bg": ("CYRILLIC",), "sr": ("CYRILLIC",), "kk": ("CYRILLIC",),
    "zh": ("CJK",), "ja": ("CJK", "KANA"), "ko": ("HANGUL",), "ar": ("ARABIC",), "fa": ("ARABIC",),
    "ur": ("ARABIC",), "hi": ("DEVANAGARI",), "mr": ("DEVANAGARI",), "ne": ("DEVANAGARI",), "bn": ("BENGALI",),
    "th": ("THAI",), "el": ("GREEK",), "he": ("HEBREW",), "ka": ("GEORGIAN",), "hy": ("ARMENIAN",),
    "ta": ("TAMIL",), "te": ("TELUGU",), "gu": ("GUJARATI",), "am": ("ETHIOPIC",),
}  # fmt: skip
LATIN = "LATIN"
_PREFIXES = {"CJK": "CJK", "HIRAGANA": "KANA", "KATAKANA": "KANA", "HANGUL": "HANGUL"}


def char_script(ch: str) -> str | None:
    """The script of a letter (``LATIN``, ``CYRILLIC``, ``CJK``, ``KANA``, ``HANGUL``, …), None for a
    non-letter (punctuation, digits, spaces, marks)."""
    if not (ch.isalpha() or unicodedata.category(ch) == "Lo"):
        return None
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return None
    first = name.split(" ")[0]
    return _PREFIXES.get(first, first)


def text_script(text: str) -> str | None:
    """The most frequent script among the letters of ``text`` (kana wins over Han: Japanese), or None."""
    counts: dict[str, int] = {}
    for ch in text:
        script = char_script(ch)
        if script is not None:
            counts[script] = counts.get(script, 0) + 1
    if not counts:
        return None
    if "KANA" in counts:
        return "KANA"
    return max(counts, key=counts.__getitem__)


def language_scripts(lang: str) -> tuple[str, ...]:
    """The scripts ``lang`` is written in (Latin for every language not listed)."""
    return LANGUAGE_SCRIPTS.get(lang, (LATIN,))


class TokenLanguages:
    """Assign vocabulary tokens to the ``languages`` considered, from their script and from ``seen`` — per
    language, the token ids that occur in that language's text."""

    def __init__(self, tokenizer, languages: Iterable[str], seen: dict[str, set[int]]):
        self.tokenizer = tokenizer
        self.languages = list(languages)
        self.seen = seen
        self.cache: dict[int, str | None] = {}

    def __call__(self, token_id: int) -> str | None:
        token_id = int(token_id)
        if token_id not in self.cache:
            self.cache[token_id] = self.language_of(token_id, self.tokenizer.decode([token_id]))
        return self.cache[token_id]

    def language_of(self, token_id: int, text: str) -> str | None:
        script = text_script(text)
        if script is None:
            return None
        candidates = [lang for lang in self.languages if script in language_scripts(lang)]
        if script == "KANA" and "ja" in self.languages:
            return "ja"
        if len(candidates) == 1 and script != LATIN:
            return candidates[0]
        holders = [lang for lang in candidates if token_id in self.seen.get(lang, ())]
        return holders[0] if len(holders) == 1 else None


def corpus_vocabulary(tokenizer, texts: dict[str, list[str]]) -> dict[str, set[int]]:
    """Per language, the token ids its texts contain (without special tokens)."""
    out: dict[str, set[int]] = {}
    for lang, lines in texts.items():
        ids: set[int] = set()
        for row in tokenizer(lines, add_special_tokens=False).input_ids if lines else []:
            ids.update(int(i) for i in row)
        out[lang] = ids
    return out
