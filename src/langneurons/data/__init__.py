"""Corpora: the embedded NTREX subset, `<lang>.txt` folders, `.jsonl` files and Hugging Face datasets."""

from langneurons.data.corpus import Corpus, load_corpus, parse_languages
from langneurons.data.ntrex import NTREX_LANGUAGES, NTREX_SPLITS

__all__ = ["NTREX_LANGUAGES", "NTREX_SPLITS", "Corpus", "load_corpus", "parse_languages"]
