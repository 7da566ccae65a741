"""``record --generate``: the model answers each prompt first; the answers are saved beside the run.

The answers go to ``answers.jsonl`` in the run folder (one record per prompt: ``lang``, ``id``, ``prompt``,
``response``, ``system`` when given, and ``"generated": true``, which lets an answer be empty — the file is
itself a prompt/response corpus) with ``answers.json`` saying how
they were made. A rerun with the same model, prompts and settings reads them back instead of answering
again (greedy decoding is deterministic, so the answers would be the same).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path

from langneurons.data import Corpus
from langneurons.data.corpus import with_turns
from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import write_bytes, write_json
from langneurons.formats.provenance import now, software
from langneurons.models.generation import greedy_answers
from langneurons.progress import progress_bar
from langneurons.recording.distributed import World, barrier, broadcast_object, gather_to_main, share
from langneurons.recording.spans import check_chat_template, generation_prompt

ANSWERS_FILE = "answers.jsonl"
ANSWERS_META_FILE = "answers.json"


def answer(
    loaded,
    corpus: Corpus,
    out: str | Path | None = None,
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    chat_template: bool = False,
    progress: bool = True,
    world: World | None = None,
) -> Corpus:
    """``corpus`` with each prompt's response replaced by the model's greedy answer (saved under ``out``).

    Under torchrun (``world`` of several processes) each rank answers its share of the batches; every rank
    gets all answers and rank 0 saves them (the same answers as one process: the batches are the same).
    """
    if corpus.turns is None:
        raise LangneuronsError(f"--generate needs prompts (.jsonl records with 'prompt'); {corpus.name} is plain text")
    if max_new_tokens <= 0:
        raise LangneuronsError(f"--max-new-tokens must be positive, got {max_new_tokens}")
    if chat_template:
        check_chat_template(loaded.tokenizer, loaded.name)
    prompts = {lang: [generation_prompt(loaded.tokenizer, t, chat_template) for t in corpus.turns[lang]]
               for lang in corpus.languages}  # fmt: skip
    digest = hashlib.sha256(json.dumps(prompts, sort_keys=True).encode()).hexdigest()
    meta = {"model": loaded.name, "revision": loaded.revision, "decoding": "greedy", "max_new_tokens": max_new_tokens,
            "chat_template": chat_template, "prompts_sha256": digest, "dtype": str(loaded.dtype)}  # fmt: skip
    out = None if out is None else Path(out)
    world = world or World()
    responses = broadcast_object(_saved(out, meta, corpus) if world.is_main else None, world)
    if responses is None:
        started = time.time()
        # the batches one process would run (each language's prompts longest first), shared out round-robin:
        # every batch is the same under torchrun, so the answers are too
        batches = []
        for lang in corpus.languages:
            order = sorted(range(len(prompts[lang])), key=lambda i: (-len(prompts[lang][i]), i))
            batches += [(lang, order[b : b + batch_size]) for b in range(0, len(order), batch_size)]
        mine = [batches[i] for i in share(len(batches), world)]
        done = []
        bar = progress_bar(progress and world.is_main, "prompts")
        with bar:
            task = bar.add_task("answering", total=sum(len(rows) for _, rows in mine))
            for lang, rows in mine:
                bar.update(task, description=f"answering {lang}")
                texts = greedy_answers(loaded, [prompts[lang][i] for i in rows], max_new_tokens=max_new_tokens,
                                       batch_size=len(rows), add_special_tokens=not chat_template)  # fmt: skip
                done.append((lang, rows, texts))
                bar.advance(task, len(rows))
        parts = gather_to_main(done, world)
        if parts is not None:
            responses = {lang: [""] * len(prompts[lang]) for lang in corpus.languages}
            for part in parts:
                for lang, rows, texts in part:
                    for i, text in zip(rows, texts, strict=True):
                        responses[lang][i] = text
        responses = broadcast_object(responses, world)
        if out is not None and world.is_main:
            _save(out, corpus, responses, meta | {"wall_seconds": round(time.time() - started, 3), "created": now(),
                                                  **software()})  # fmt: skip
        barrier(world)
    turns = {
        lang: [(sid, replace(t, response=r))
               for (sid, _), t, r in zip(corpus.items[lang], corpus.turns[lang], responses[lang], strict=True)]
        for lang in corpus.languages
    }  # fmt: skip
    answered = with_turns(corpus, turns)
    return replace(answered, name=f"{corpus.name} answered by {loaded.name}")


def _records(corpus: Corpus, responses: dict[str, list[str]]) -> list[dict]:
    out = []
    for lang in corpus.languages:
        for (sid, _), turn, response in zip(corpus.items[lang], corpus.turns[lang], responses[lang], strict=True):
            record = {"lang": lang, "id": sid, "prompt": turn.prompt, "response": response, "generated": True}
            out.append(record | ({"system": turn.system} if turn.system else {}))
    return out


def _save(out: Path, corpus: Corpus, responses: dict[str, list[str]], meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _records(corpus, responses))
    write_bytes(out / ANSWERS_FILE, lines.encode("utf-8"))
    write_json(out / ANSWERS_META_FILE, meta)


def _saved(out: Path | None, meta: dict, corpus: Corpus) -> dict[str, list[str]] | None:
    """The answers already under ``out`` when they were made by the same model from the same prompts."""
    if out is None or not (out / ANSWERS_FILE).exists() or not (out / ANSWERS_META_FILE).exists():
        return None
    try:
        theirs = json.loads((out / ANSWERS_META_FILE).read_text(encoding="utf-8"))
        records = [json.loads(line) for line in (out / ANSWERS_FILE).read_text(encoding="utf-8").splitlines()]
    except (OSError, ValueError):
        return None
    if any(theirs.get(k) != v for k, v in meta.items()):
        return None
    responses: dict[str, list[str]] = {lang: [] for lang in corpus.languages}
    for r in records:
        responses.setdefault(r["lang"], []).append(r["response"])
    expected = [(r["lang"], r["id"], r["prompt"]) for r in _records(corpus, {k: [""] * len(v) for k, v in
                                                                                corpus.items.items()})]  # fmt: skip
    if [(r["lang"], r["id"], r["prompt"]) for r in records] != expected:
        return None
    return responses


def load_answers(path: str | Path) -> list[dict]:
    """The records of an ``answers.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


__all__ = ["ANSWERS_FILE", "ANSWERS_META_FILE", "answer", "load_answers"]
