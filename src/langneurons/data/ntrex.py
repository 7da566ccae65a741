"""The NTREX-128 subset shipped in the package (CC BY-SA 4.0; see data/ntrex/README.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

NTREX_DIR = Path(str(resources.files("langneurons.data") / "ntrex"))
NTREX_LANGUAGES = tuple(sorted(p.stem for p in NTREX_DIR.glob("*.txt")))
NTREX_LINES = 1997
# Identification never sees evaluation text: records use lines 0–999, evaluations 1000–1996.
NTREX_SPLITS = {"identify": (0, 1000), "dev": (1000, NTREX_LINES), "all": (0, NTREX_LINES)}


def ntrex_lines(lang: str, split: str) -> list[tuple[str, str]]:
    """(sentence id, text) of one language's lines in a split; the id is the line number."""
    start, stop = NTREX_SPLITS[split]
    lines = (NTREX_DIR / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
    return [(str(i), lines[i]) for i in range(start, stop)]
