"""Load a multilingual corpus into one in-memory shape: per language, ordered (id, text) pairs.

Corpus specs:
  ``ntrex`` / ``ntrex:identify`` (lines 0–999), ``ntrex:dev`` (1000–1996), ``ntrex:all``: embedded;
  a directory of ``<lang>.txt`` files, one sentence or document per line (id = line number);
  a ``.jsonl`` file with ``lang``, ``text`` and optional ``id`` fields (ids align parallel data);
  ``hf:NAME_OR_PATH[:SPLIT]``: a Hugging Face dataset (hub name or a ``save_to_disk`` folder)
  with ``lang`` and ``text`` columns (and optional ``id``).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from langneurons.data.languages import code_for, looks_like_code
from langneurons.data.ntrex import NTREX_LANGUAGES, NTREX_SPLITS, ntrex_lines
from langneurons.errors import LangneuronsError


@dataclass
class Corpus:
    """Texts per language, in order, with sentence ids (equal ids = translations of each other)."""

    name: str
    items: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # Where sentence ids come from (results that group translations by id say which).
    id_source: str = "given"
    # What was removed from the loaded text and why (e.g. `--lid-filter`); recorded in the manifest.
    filters: list[dict] = field(default_factory=list)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{lang} {len(pairs)}" for lang, pairs in list(self.items.items())[:10])
        more = ", …" if len(self.items) > 10 else ""
        return f"Corpus({self.name!r}, {len(self.items)} languages: {sizes}{more} sentences)"

    @property
    def languages(self) -> list[str]:
        return list(self.items)

    def texts(self, lang: str) -> list[str]:
        return [text for _, text in self.items[lang]]

    def ids(self, lang: str) -> list[str]:
        return [sid for sid, _ in self.items[lang]]

    def language_sha256(self, lang: str) -> str:
        """Content hash of one language's ids and texts."""
        digest = hashlib.sha256()
        for sid, text in self.items[lang]:
            digest.update(f"{sid}\x1f{text}\x1e".encode())
        return digest.hexdigest()

    def sentence_hashes(self, lang: str, n: int | None = None) -> list[str]:
        """Per sentence (the first ``n``), the first 16 hex digits of the SHA-256 of its text (whitespace
        stripped): the same sentence has the same hash whatever folder, file or corpus name it came from."""
        texts = self.texts(lang)[:n]
        return [hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:16] for text in texts]

    def sha256(self) -> str:
        """Content hash over languages, ids and texts: two runs with equal hashes saw the same data."""
        digest = hashlib.sha256()
        for lang, pairs in self.items.items():
            digest.update(f"\x00{lang}\x00".encode())
            for sid, text in pairs:
                digest.update(f"{sid}\x1f{text}\x1e".encode())
        return digest.hexdigest()


def parse_languages(text: str | None) -> list[str] | None:
    """Parse ``en,fr,de`` into a list (None for all); refuses empty and repeated codes."""
    if text is None or text.strip() in ("", "all"):
        return None
    if "," not in text.strip() and len(text.split()) > 1:
        raise LangneuronsError(f"separate language codes with commas: {','.join(text.split())!r}, not {text!r}")
    langs = [part.strip() for part in text.split(",")]
    langs = [lang.lower() if lang.isupper() else lang for lang in langs]  # EN → en; pt-BR stays
    if any(not lang for lang in langs):
        raise LangneuronsError(f"empty language code in {text!r}")
    if len(set(langs)) != len(langs):
        raise LangneuronsError(f"repeated language code in {text!r}")
    return langs


def load_corpus(spec: str, languages: list[str] | None = None, sentences: int | None = None) -> Corpus:
    """Load ``spec`` restricted to ``languages`` (in that order) and the first ``sentences`` per language."""
    if sentences is not None and sentences <= 0:
        raise LangneuronsError(f"--sentences must be positive, got {sentences}")
    if spec == "ntrex" or spec.startswith("ntrex:"):
        items, id_source = _load_ntrex(spec, languages), "NTREX line number"
    elif spec.startswith("hf:"):
        items, id_source = _load_hf(spec[3:])
    else:
        path = Path(spec)
        if not path.exists():
            raise LangneuronsError(f"corpus {spec} does not exist (a <lang>.txt folder, a .jsonl, ntrex or hf:)")
        if path.is_file():
            items, id_source = _load_jsonl(path)
        else:
            items, id_source = _load_txt_dir(path), "line number in <lang>.txt (blank lines counted)"
    available = list(items)
    if languages is not None:
        missing = [lang for lang in languages if lang not in items]
        if missing:
            raise LangneuronsError(
                f"corpus {spec} has no text for {','.join(missing)} (it has: {','.join(available) or 'none'})"
            )
        items = {lang: items[lang] for lang in languages}
    if sentences is not None:
        items = {lang: pairs[:sentences] for lang, pairs in items.items()}
    empty = [lang for lang, pairs in items.items() if not pairs]
    if not items or empty:
        raise LangneuronsError(f"corpus {spec} is empty" + (f" for {','.join(empty)}" if empty else ""))
    return Corpus(spec, items, id_source)


def _load_ntrex(spec: str, languages: list[str] | None) -> dict[str, list[tuple[str, str]]]:
    split = spec.partition(":")[2] or "identify"
    if split not in NTREX_SPLITS:
        raise LangneuronsError(f"unknown NTREX split {split!r} (use {', '.join(NTREX_SPLITS)})")
    wanted = languages or list(NTREX_LANGUAGES)
    unknown = [lang for lang in wanted if lang not in NTREX_LANGUAGES]
    if unknown:
        raise LangneuronsError(
            f"unknown language code(s) {','.join(unknown)} for the embedded corpus "
            f"(have: {','.join(NTREX_LANGUAGES)})"
        )
    return {lang: ntrex_lines(lang, split) for lang in wanted}


def _load_txt_dir(path: Path) -> dict[str, list[tuple[str, str]]]:
    items = {}
    named = [f for f in sorted(path.glob("*.txt")) if not looks_like_code(f.stem)]
    if named:
        hint = ", ".join(f"{f.name} → {code_for(f.stem)}.txt" for f in named if code_for(f.stem))
        raise LangneuronsError(
            f"corpus folder {path}: {', '.join(f.name for f in named)} not named by a language code "
            f"(name each file <code>.txt: en.txt, fr.txt, pt-BR.txt{'; rename ' + hint if hint else ''})"
        )
    for file in sorted(path.glob("*.txt")):
        lines = file.read_text(encoding="utf-8").splitlines()
        items[file.stem] = [(str(i), line) for i, line in enumerate(lines) if line.strip()]
    if not items:
        raise LangneuronsError(f"corpus folder {path} holds no <lang>.txt files")
    return items


def _load_jsonl(path: Path) -> tuple[dict[str, list[tuple[str, str]]], str]:
    """Records per language; a record without ``id`` gets its position among that language's records,
    blank-text records included (so a skipped record never shifts the ids of later translations)."""
    items: dict[str, list[tuple[str, str]]] = defaultdict(list)
    position: dict[str, int] = defaultdict(int)
    with_id = without_id = 0
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                lang, text = str(record["lang"]), record["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise LangneuronsError(f"{path}:{number}: expected a JSON object with 'lang' and 'text'") from None
            sid = record.get("id")
            with_id, without_id = with_id + (sid is not None), without_id + (sid is None)
            if str(text).strip():
                items[lang].append((str(sid if sid is not None else position[lang]), str(text)))
            position[lang] += 1
    return dict(items), _id_source(with_id, without_id)


def _id_source(with_id: int, without_id: int) -> str:
    position = "record position per language (skipped records counted)"
    if not without_id:
        return "id field"
    return position if not with_id else f"id field where given, else {position}"


def _load_hf(spec: str) -> tuple[dict[str, list[tuple[str, str]]], str]:
    import datasets

    name, _, split = spec.partition(":")
    try:
        if Path(name).exists():
            data = datasets.load_from_disk(name)
            data = data[split or "train"] if isinstance(data, datasets.DatasetDict) else data
        else:
            data = datasets.load_dataset(name, split=split or "train")
    except (OSError, ValueError, KeyError, ConnectionError) as exc:
        raise LangneuronsError(f"cannot load dataset {name!r}: {str(exc).splitlines()[0]}") from None
    if not {"lang", "text"} <= set(data.column_names):
        raise LangneuronsError(f"dataset {name!r} needs 'lang' and 'text' columns (has {data.column_names})")
    items: dict[str, list[tuple[str, str]]] = defaultdict(list)
    position: dict[str, int] = defaultdict(int)
    ids = data["id"] if "id" in data.column_names else None
    for i, (lang, text) in enumerate(zip(data["lang"], data["text"], strict=True)):
        lang = str(lang)
        if str(text).strip():
            items[lang].append((str(ids[i]) if ids is not None else str(position[lang]), str(text)))
        position[lang] += 1
    return dict(items), _id_source(len(data) if ids is not None else 0, 0 if ids is not None else len(data))
