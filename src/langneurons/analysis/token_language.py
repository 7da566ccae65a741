"""The language of a vocabulary token (docs/methods.md §15): by its script, and for scripts several of the
run's languages share (Latin, Cyrillic, Han for zh/ja, …) by which languages' corpus text contains it.

Rule, for one token and the run's languages:
1. its script = the script most of its letters belong to (digits, punctuation, spaces and the tokenizer's
   word-boundary marks ``▁``/``Ġ`` are not letters; no letter: no language);
2. the candidates = the run's languages written in that script (a language's script comes from its code:
   ``zh`` Han, ``ja`` kana or Han, ``ru`` Cyrillic, …, Latin for codes this table does not list);
3. one candidate of a non-Latin script: that language; several, or Latin script (§15: Latin-script tokens go
   by corpus membership): the one candidate whose corpus text (tokenised by the model) contains the token,
   if exactly one does; otherwise (none, or shared): no language.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# (first, last) code point → script name; the first range that holds a character decides.
_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x005A, "Latin"), (0x0061, 0x007A, "Latin"), (0x00C0, 0x024F, "Latin"), (0x1E00, 0x1EFF, "Latin"),
    (0x0370, 0x03FF, "Greek"), (0x1F00, 0x1FFF, "Greek"),
    (0x0400, 0x052F, "Cyrillic"), (0x0530, 0x058F, "Armenian"), (0x0590, 0x05FF, "Hebrew"),
    (0x0600, 0x06FF, "Arabic"), (0x0750, 0x077F, "Arabic"), (0xFB50, 0xFDFF, "Arabic"), (0xFE70, 0xFEFF, "Arabic"),
    (0x0900, 0x097F, "Devanagari"), (0x0980, 0x09FF, "Bengali"), (0x0A00, 0x0A7F, "Gurmukhi"),
    (0x0A80, 0x0AFF, "Gujarati"), (0x0B80, 0x0BFF, "Tamil"), (0x0C00, 0x0C7F, "Telugu"), (0x0C80, 0x0CFF, "Kannada"),
    (0x0D00, 0x0D7F, "Malayalam"), (0x0D80, 0x0DFF, "Sinhala"), (0x0E00, 0x0E7F, "Thai"), (0x0E80, 0x0EFF, "Lao"),
    (0x1000, 0x109F, "Myanmar"), (0x10A0, 0x10FF, "Georgian"), (0x1100, 0x11FF, "Hangul"), (0x1200, 0x137F, "Ethiopic"),
    (0x1780, 0x17FF, "Khmer"), (0x3040, 0x30FF, "Kana"), (0x3130, 0x318F, "Hangul"), (0xAC00, 0xD7AF, "Hangul"),
    (0x3400, 0x4DBF, "Han"), (0x4E00, 0x9FFF, "Han"), (0xF900, 0xFAFF, "Han"), (0x20000, 0x2FFFF, "Han"),
)  # fmt: skip
# language (ISO 639-1/3 base code) → the scripts it is written in; codes not listed are Latin-script
_SCRIPTS: dict[str, tuple[str, ...]] = {
    "zh": ("Han",), "zho": ("Han",), "cmn": ("Han",), "yue": ("Han",), "ja": ("Kana", "Han"), "jpn": ("Kana", "Han"),
    "ko": ("Hangul",), "kor": ("Hangul",), "el": ("Greek",), "ell": ("Greek",), "hy": ("Armenian",),
    "he": ("Hebrew",), "heb": ("Hebrew",), "yi": ("Hebrew",), "th": ("Thai",), "tha": ("Thai",), "lo": ("Lao",),
    "my": ("Myanmar",), "ka": ("Georgian",), "am": ("Ethiopic",), "ti": ("Ethiopic",), "km": ("Khmer",),
    "bn": ("Bengali",), "ben": ("Bengali",), "as": ("Bengali",), "pa": ("Gurmukhi",), "gu": ("Gujarati",),
    "ta": ("Tamil",), "te": ("Telugu",), "kn": ("Kannada",), "ml": ("Malayalam",), "si": ("Sinhala",),
    **dict.fromkeys(("hi", "hin", "mr", "ne", "sa", "mai", "bho"), ("Devanagari",)),
    **dict.fromkeys(("ar", "ara", "arb", "fa", "fas", "pes", "ur", "urd", "ps", "ckb", "ug"), ("Arabic",)),
    **dict.fromkeys(("ru", "rus", "uk", "ukr", "bg", "bul", "be", "bel", "mk", "mkd", "kk", "kaz", "ky", "mn",
                     "tg", "tt", "ba", "sr"), ("Cyrillic",)),
}  # fmt: skip
# script subtags that may be part of a code (``sr_Latn``, ``zho_Hans``, ``pa-Arab``)
_TAGS = {"latn": "Latin", "cyrl": "Cyrillic", "arab": "Arabic", "hans": "Han", "hant": "Han", "deva": "Devanagari",
         "grek": "Greek", "hebr": "Hebrew", "jpan": "Kana", "kore": "Hangul", "thai": "Thai", "beng": "Bengali",
         "guru": "Gurmukhi", "ethi": "Ethiopic", "geor": "Georgian", "armn": "Armenian"}  # fmt: skip


def char_script(ch: str) -> str | None:
    """The script of one character (None: not a letter of a known script)."""
    code = ord(ch)
    for first, last, name in _RANGES:
        if first <= code <= last:
            return name
    return None


def token_script(text: str) -> str | None:
    """The script most letters of ``text`` belong to (kana wins over Han: kanji beside kana is Japanese)."""
    counts: dict[str, int] = {}
    for ch in text:
        script = char_script(ch)
        if script is not None:
            counts[script] = counts.get(script, 0) + 1
    if not counts:
        return None
    if "Kana" in counts:
        return "Kana"
    return max(sorted(counts), key=lambda s: counts[s])


def language_scripts(lang: str) -> tuple[str, ...]:
    """The scripts language code ``lang`` is written in (a script subtag in the code wins)."""
    parts = re.split(r"[-_]", lang)
    for part in parts[1:]:
        if part.lower() in _TAGS:
            tag = _TAGS[part.lower()]
            return ("Kana", "Han") if tag == "Kana" else (tag,)
    return _SCRIPTS.get(parts[0].lower(), ("Latin",))


class TokenLanguages:
    """Token id → language (or None) for one tokenizer and the languages considered; which tokens each
    language's text contains comes from ``texts`` (tokenised here) or, already as token-id sets, ``seen``."""

    def __init__(self, tokenizer, languages: list[str], texts: dict[str, Iterable[str]] | None = None, *,
                 seen: dict[str, set[int]] | None = None):  # fmt: skip
        self.tokenizer = tokenizer
        self.languages = list(languages)
        self.seen: dict[str, set[int]] = {lang: set(ids) for lang, ids in (seen or {}).items()}
        for lang, lang_texts in (texts or {}).items():
            self.seen[lang] = self.seen.get(lang, set()) | corpus_vocabulary(tokenizer, list(lang_texts))
        self.special = set(getattr(tokenizer, "all_special_ids", []) or [])
        self._cache: dict[int, str | None] = {}

    def text(self, token_id: int) -> str:
        """The token as text (decoded alone; a leading-space marker shows as a space)."""
        return self.tokenizer.decode([int(token_id)])

    def __call__(self, token_id: int) -> str | None:
        token_id = int(token_id)
        if token_id not in self._cache:
            self._cache[token_id] = self._language(token_id)
        return self._cache[token_id]

    def _language(self, token_id: int) -> str | None:
        if token_id in self.special:
            return None
        script = token_script(self.text(token_id))
        if script is None:
            return None
        candidates = [lang for lang in self.languages if script in language_scripts(lang)]
        if len(candidates) == 1 and script != "Latin":  # Latin-script tokens: by corpus membership only (§15)
            return candidates[0]
        having = [lang for lang in candidates if token_id in self.seen.get(lang, ())]
        return having[0] if len(having) == 1 else None

    def share(self, token_ids: Iterable[int]) -> dict[str, float]:
        """Per language, the share of ``token_ids`` in that language (the rest: no or another language)."""
        ids = [int(t) for t in token_ids]
        counts = dict.fromkeys(self.languages, 0)
        for t in ids:
            lang = self(t)
            if lang is not None:
                counts[lang] += 1
        return {lang: (n / len(ids) if ids else 0.0) for lang, n in counts.items()}


def corpus_vocabulary(tokenizer, texts: list[str]) -> set[int]:
    """The token ids ``texts`` contain (no special tokens), tokenised in chunks of 256."""
    ids: set[int] = set()
    for i in range(0, len(texts), 256):
        for row in tokenizer(texts[i : i + 256], add_special_tokens=False)["input_ids"]:
            ids.update(int(t) for t in row)
    return ids


__all__ = ["TokenLanguages", "char_script", "corpus_vocabulary", "language_scripts", "token_script"]
