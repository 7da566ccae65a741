"""What every section is made of: figures, tables, the section itself, and the short texts several sections share.

Everything here is plain data (text, numbers, PNG bytes); the templates in ``reporting/templates`` escape and
lay it out.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.run import Run


@dataclass
class Figure:
    """One figure of the report: file name (for --format png), PNG bytes, heading and caption."""

    name: str
    png: bytes
    heading: str
    caption: str

    @property
    def data_uri(self) -> str:
        """The PNG as a base64 data URI, so the HTML page needs no other file."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class Table:
    """A plain table for a template: header cells and rows of cells, all text."""

    head: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    """A titled part of the report: the template that draws it, an introduction, figures, a closing note,
    and whatever else its template needs (``data``)."""

    anchor: str
    heading: str
    template: str
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def describe_run(run: Run) -> str:
    """One sentence naming model, revision, site, corpus and its hash, languages and sentences (the page's header
    and the captions that have no provenance of their own)."""
    info = run.info
    parts = [f"model {info.get('model') or 'unknown'}"]
    if info.get("revision"):
        parts.append(f"revision {info['revision']}")
    parts.append(f"site {info.get('site') or 'unknown'}")
    if info.get("num_layers"):
        parts.append(f"{info['num_layers']} layers × {info.get('intermediate_size', '?')} neurons")
    if info.get("corpus"):
        sha = str(info.get("corpus_sha256") or "")[:12]
        parts.append(f"corpus {info['corpus']}" + (f" (sha256 {sha}…)" if sha else ""))
    if run.languages:
        parts.append(f"languages {','.join(run.languages)}")
    sentences = info.get("sentences")
    if isinstance(sentences, dict) and sentences:
        values = sorted(set(sentences.values()), key=str)
        parts.append(
            f"{values[0]} sentences per language"
            if len(values) == 1
            else f"{sum(map(int, sentences.values()))} sentences"
        )
    return "; ".join(parts)


def set_settings(ns: NeuronSet) -> str:
    """The identifying parameters of a neuron set as short text, so a caption says how the set was made."""
    keys = ("top_rate", "filter_rate", "bar_ratio", "lambda", "lambda_mode", "threshold", "n")
    items = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in ns.params.items() if k in keys]
    return f"method {ns.method}" + (f" ({', '.join(items)})" if items else "")


def anchor(name: str) -> str:
    """A result's name as an HTML id (letters, digits, - and _), so links from the contents work."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[:80] or "x"


def file_stem(name: str) -> str:
    """A result's name as a safe file-name stem for the figures written by ``--format png``."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:80] or "x"


def number_text(v: Any) -> str:
    """A number for a table or sentence: floats to 4 significant digits, a missing value as a dash."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return "–" if v is None else str(v)


__all__ = ["Figure", "Section", "Table", "anchor", "describe_run", "file_stem", "number_text", "set_settings"]
