"""Language codes: what a code looks like, and the English names of the common ones (prompts, hints)."""

from __future__ import annotations

import re

NAMES = {
    "en": "English", "fr": "French", "de": "German", "es": "Spanish", "ru": "Russian", "zh": "Chinese",
    "ja": "Japanese", "ar": "Arabic", "hi": "Hindi", "vi": "Vietnamese", "it": "Italian", "pt": "Portuguese",
    "ko": "Korean", "tr": "Turkish", "nl": "Dutch", "pl": "Polish", "id": "Indonesian", "uk": "Ukrainian",
    "bn": "Bengali", "sw": "Swahili", "th": "Thai",
}  # fmt: skip

# ISO 639-1/-3 (en, eng), with a region or script (pt-BR, zh-Hans, eng_Latn); the toy codes aa, bb, ... pass too.
CODE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*")


def looks_like_code(name: str) -> bool:
    """``en``, ``pt-BR``, ``eng_Latn``: a language code; ``english`` or ``french-news``: not one."""
    return CODE.fullmatch(name) is not None


def code_for(name: str) -> str | None:
    """The code of a language written out in English (``English`` → ``en``), or None."""
    by_name = {v.lower(): k for k, v in NAMES.items()}
    return by_name.get(name.strip().lower())


__all__ = ["NAMES", "code_for", "looks_like_code"]
