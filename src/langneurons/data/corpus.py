"""Load a multilingual corpus into one in-memory shape: per language, ordered (id, text) pairs.

Corpus specs:
  ``ntrex`` / ``ntrex:identify`` (lines 0–999), ``ntrex:dev`` (1000–1996), ``ntrex:all``: embedded;
  a directory of ``<lang>.txt`` files, one sentence or document per line (id = line number);
  a ``.jsonl`` file with ``lang``, ``text`` and optional ``id`` fields (ids align parallel data);
  ``hf:NAME_OR_PATH[:SPLIT]``: a Hugging Face dataset (hub name or a ``save_to_disk`` folder)
  with ``lang`` and ``text`` columns (and optional ``id``);
  ``tasks``: the built-in prompts (data/tasks/, prompts only: for ``record --generate``).

Prompt/response corpora (docs/responses.md): ``.jsonl`` records (or ``hf:`` columns) with ``prompt``,
``lang`` and optional ``response``, ``system`` and ``id``. Each item's text is then ``prompt + response``
(joined as they are: put the separator in the prompt or the response) and :attr:`Corpus.turns` keeps the
parts, so `record --count response` can count the response's tokens only.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from langneurons.data.languages import code_for, looks_like_code
from langneurons.data.ntrex import NTREX_LANGUAGES, NTREX_SPLITS, ntrex_lines
from langneurons.errors import LangneuronsError


@dataclass(frozen=True)
class Turn:
    """One prompt/response record: what the user says, the answer (None: not answered yet), a system text."""

    prompt: str
    response: str | None = None
    system: str | None = None


@dataclass
class Corpus:
    """Texts per language, in order, with sentence ids (equal ids = translations of each other)."""

    name: str
    items: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # Where sentence ids come from (results that group translations by id say which).
    id_source: str = "given"
    # What was removed from the loaded text and why (e.g. `--lid-filter`); recorded in the manifest.
    filters: list[dict] = field(default_factory=list)
    # Prompt/response records, parallel to ``items`` (None: plain text). An item's text is the whole
    # string the model reads; ``spans`` gives, per item, the character offsets (prompt start, prompt
    # end, response start, response end) in it, and ``templated`` says it was formatted with a chat
    # template (so it already holds its special tokens: tokenize it without adding any).
    turns: dict[str, list[Turn]] | None = None
    spans: dict[str, list[tuple[int, int, int, int]]] | None = None
    templated: bool = False

    def __repr__(self) -> str:
        sizes = ", ".join(f"{lang} {len(pairs)}" for lang, pairs in list(self.items.items())[:10])
        more = ", …" if len(self.items) > 10 else ""
        return f"Corpus({self.name!r}, {len(self.items)} languages: {sizes}{more} sentences)"

    @property
    def languages(self) -> list[str]:
        return list(self.items)

    @property
    def has_responses(self) -> bool:
        """True when every item is a prompt with its response."""
        return self.turns is not None and all(t.response is not None for ts in self.turns.values() for t in ts)

    def select(self, languages: list[str] | None = None, sentences: int | None = None) -> Corpus:
        """The same corpus restricted to ``languages`` (in that order) and the first ``sentences`` of each."""
        langs = self.languages if languages is None else languages

        def cut(per_lang: dict | None) -> dict | None:
            return None if per_lang is None else {lang: per_lang[lang][:sentences] for lang in langs}

        return replace(self, items=cut(self.items), turns=cut(self.turns), spans=cut(self.spans))

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
    turns = None
    if spec == "ntrex" or spec.startswith("ntrex:"):
        items, id_source = _load_ntrex(spec, languages), "NTREX line number"
    elif spec == "tasks" or spec.startswith("tasks:"):
        from langneurons.data.tasks import load_tasks

        tasks = load_tasks(spec, languages)
        turns = {lang: [(sid, Turn(prompt)) for sid, prompt in pairs] for lang, pairs in tasks.items()}
        id_source = "task name"
        items = {}
    elif spec.startswith("hf:"):
        items, id_source, turns = _load_hf(spec[3:])
    else:
        path = Path(spec)
        if not path.exists():
            raise LangneuronsError(f"corpus {spec} does not exist (a <lang>.txt folder, a .jsonl, ntrex or hf:)")
        if path.is_file():
            items, id_source, turns = _load_jsonl(path)
        else:
            items, id_source = _load_txt_dir(path), "line number in <lang>.txt (blank lines counted)"
    corpus = Corpus(spec, items, id_source)
    if turns is not None:
        corpus = with_turns(Corpus(spec, id_source=id_source), {lang: list(ts) for lang, ts in turns.items()})
    available = corpus.languages
    if languages is not None:
        missing = [lang for lang in languages if lang not in corpus.items]
        if missing:
            raise LangneuronsError(
                f"corpus {spec} has no text for {','.join(missing)} (it has: {','.join(available) or 'none'})"
            )
    corpus = corpus.select(languages, sentences)
    empty = [lang for lang, pairs in corpus.items.items() if not pairs]
    if not corpus.items or empty:
        raise LangneuronsError(f"corpus {spec} is empty" + (f" for {','.join(empty)}" if empty else ""))
    return corpus


def with_turns(corpus: Corpus, turns: dict[str, list[tuple[str, Turn]]]) -> Corpus:
    """``corpus`` holding the prompt/response records ``turns`` (per language, (id, turn) pairs) as plain
    ``prompt + response`` texts with their spans (a record without a response: the prompt alone)."""
    items, spans = {}, {}
    for lang, pairs in turns.items():
        items[lang] = [(sid, t.prompt + (t.response or "")) for sid, t in pairs]
        spans[lang] = [(0, len(t.prompt), len(t.prompt), len(t.prompt) + len(t.response or "")) for _, t in pairs]
    return replace(corpus, items=items, spans=spans, templated=False,
                   turns={lang: [t for _, t in pairs] for lang, pairs in turns.items()})  # fmt: skip


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


def _load_jsonl(path: Path) -> tuple[dict, str, dict | None]:
    """Records per language; a record without ``id`` gets its position among that language's records,
    blank-text records included (so a skipped record never shifts the ids of later translations).
    Records with ``prompt`` (and ``response``) instead of ``text`` make a prompt/response corpus."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                lang = str(record["lang"])
                if "text" not in record and "prompt" not in record:
                    raise KeyError("text")
            except (json.JSONDecodeError, KeyError, TypeError):
                raise LangneuronsError(
                    f"{path}:{number}: expected a JSON object with 'lang' and 'text' (or 'prompt' and 'response')"
                ) from None
            records.append((f"{path}:{number}", lang, record))
    return _records(records)


def _records(records: list[tuple[str, str, dict]]) -> tuple[dict, str, dict | None]:
    """(where, lang, record) triples → items or turns per language, the id source, and the turns (or None)."""
    items: dict[str, list[tuple[str, str]]] = defaultdict(list)
    turns: dict[str, list[tuple[str, Turn]]] = defaultdict(list)
    position: dict[str, int] = defaultdict(int)
    with_id = without_id = 0
    kind = None  # "text" or "prompt", from the first record; "response": whether records carry one
    has_response = None
    for where, lang, record in records:
        mine = "prompt" if "prompt" in record else "text"
        if kind is None:
            kind = mine
        elif mine != kind:
            raise LangneuronsError(f"{where}: a {mine!r} record among {kind!r} records (use one kind per corpus)")
        sid = record.get("id")
        with_id, without_id = with_id + (sid is not None), without_id + (sid is None)
        sid = str(sid if sid is not None else position[lang])
        position[lang] += 1
        if kind == "text":
            text = record.get("text") or ""
            if str(text).strip():
                items[lang].append((sid, str(text)))
            continue
        turn = _turn(where, record)
        if has_response is None:
            has_response = turn.response is not None
        elif has_response != (turn.response is not None):
            raise LangneuronsError(f"{where}: " + ("no 'response', but earlier records have one" if has_response
                                                   else "a 'response', but earlier records have none"))  # fmt: skip
        turns[lang].append((sid, turn))
    return dict(items), _id_source(with_id, without_id), (dict(turns) if kind == "prompt" else None)


def _turn(where: str, record: dict) -> Turn:
    """One prompt/response record, checked: a non-empty string prompt, response and system when given (a
    record marked ``"generated": true``, a model's own answer from ``record --generate``, may be empty)."""
    def text_field(name: str) -> str | None:
        value = record.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise LangneuronsError(f"{where}: {name!r} must be a string, got {type(value).__name__}")
        if not value.strip() and not (name == "response" and record.get("generated") is True):
            raise LangneuronsError(f"{where}: empty {name!r}")  # a model's own answer may be empty
        return value

    prompt = text_field("prompt")
    if prompt is None:
        raise LangneuronsError(f"{where}: no 'prompt'")
    return Turn(prompt, text_field("response"), text_field("system"))


def _id_source(with_id: int, without_id: int) -> str:
    position = "record position per language (skipped records counted)"
    if not without_id:
        return "id field"
    return position if not with_id else f"id field where given, else {position}"


def _load_hf(spec: str) -> tuple[dict, str, dict | None]:
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
    columns = set(data.column_names)
    if "lang" not in columns or not ({"text", "prompt"} & columns):
        raise LangneuronsError(
            f"dataset {name!r} needs 'lang' and 'text' (or 'prompt' and 'response') columns (has {data.column_names})"
        )
    wanted = [c for c in ("text", "prompt", "response", "system", "id") if c in columns]
    if "text" in columns:
        wanted = [c for c in wanted if c not in ("prompt", "response", "system")]
    values = {c: data[c] for c in ["lang", *wanted]}
    records = [
        (f"{name} row {i}", str(values["lang"][i]),
         {c: values[c][i] for c in wanted if values[c][i] is not None})
        for i in range(len(data))
    ]  # fmt: skip
    return _records(records)
