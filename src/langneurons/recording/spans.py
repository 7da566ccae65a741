"""Which tokens of a prompt/response text count (``record --count response|prompt|all``, METHODS.md §18).

An item of a prompt/response corpus is one string the model reads — ``prompt + response``, or the
conversation formatted with the tokenizer's chat template — with the character offsets of its prompt and
its response (``Corpus.spans``). A character span becomes token positions by the boundary rule:

* the response starts at the first position where the tokens of the whole text differ from the tokens of
  the text before the response (the prompt's own tokens): when the tokenization of prompt + response
  starts with the prompt's tokens this is ``len(prompt tokens)``, and counting there equals Zhang et al.'s
  ``full − prefix``; where a token merges across the boundary, that token counts as response;
* the response ends after the tokens of the text up to its last character (a token merging its end with
  what follows, e.g. a template's newline, counts as response too);
* the prompt is the same rule applied to the prompt's own span, ending where the response starts;
* with a chat template the template's own tokens (turn markers, role names, BOS) count as neither.

Counting a token means counting the activations *at* that position (the token's own MLP output). An
intervention limited to "generated" positions (intervention/tracker.py) starts one position earlier,
because the output at the last prompt position predicts the first new token; counting follows the
tokens, as ``full − prefix`` does.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from langneurons.data import Corpus
from langneurons.data.corpus import Turn
from langneurons.errors import LangneuronsError
from langneurons.recording.plan import Batch

COUNTS = ("all", "response", "prompt")


def check_count(corpus: Corpus, count: str, *, generate: bool = False) -> None:
    """Refuse a ``--count`` the corpus cannot give (one line, before any model loads)."""
    if count not in COUNTS:
        raise LangneuronsError(f"--count must be one of {', '.join(COUNTS)}, got {count!r}")
    if count == "all":
        return
    if corpus.turns is None:
        raise LangneuronsError(
            f"--count {count} needs a prompt/response corpus (.jsonl records with 'prompt' and 'response'); "
            f"{corpus.name} is plain text"
        )
    if count == "response" and not corpus.has_responses and not generate:
        raise LangneuronsError(
            f"--count response: corpus {corpus.name} has prompts but no responses (add 'response' fields, "
            "or pass --generate to let the model answer)"
        )


def check_responses(corpus: Corpus, count: str, *, generate: bool = False, chat_template: bool = False,
                    packing: bool = False, tokens: int | None = None) -> None:
    """Everything `record`'s response options can refuse before the model loads (one line each)."""
    if (generate or chat_template) and corpus.turns is None:
        flag = "--generate" if generate else "--chat-template"
        raise LangneuronsError(
            f"{flag} needs prompts (.jsonl records with 'lang' and 'prompt', or --corpus tasks); "
            f"{corpus.name} is plain text"
        )
    check_count(corpus, count, generate=generate)
    if corpus.turns is not None and packing:
        raise LangneuronsError("--packing joins texts into rows and loses the prompt/response spans; leave it out")
    if corpus.turns is not None and tokens is not None:
        raise LangneuronsError("--tokens budgets whole texts; use --sentences with a prompt/response corpus")


def check_spans(corpus: Corpus, settings) -> None:
    """What a recording of ``corpus`` with ``settings`` cannot do with prompt/response spans."""
    check_responses(corpus, settings.count, packing=settings.packing, tokens=settings.tokens)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def check_chat_template(tokenizer, name: str = "this model") -> None:
    if not has_chat_template(tokenizer):
        raise LangneuronsError(
            f"--chat-template: the tokenizer of {name} has no chat template (a base model?); leave the flag out "
            "to read prompt + response as plain text"
        )


def messages(turn: Turn, with_response: bool = True) -> list[dict[str, str]]:
    """The chat of one record: an optional system turn, the user's prompt, the assistant's response."""
    out = [{"role": "system", "content": turn.system}] if turn.system else []
    out.append({"role": "user", "content": turn.prompt})
    if with_response and turn.response is not None:
        out.append({"role": "assistant", "content": turn.response})
    return out


def generation_prompt(tokenizer, turn: Turn, chat_template: bool) -> str:
    """What the model is given to answer ``turn``: the prompt, or the chat up to the assistant's turn."""
    if not chat_template:
        return turn.prompt
    return tokenizer.apply_chat_template(messages(turn, False), tokenize=False, add_generation_prompt=True)


def apply_chat_template(corpus: Corpus, tokenizer) -> Corpus:
    """``corpus`` with each record formatted by the tokenizer's chat template, and the spans of the user's
    prompt and the assistant's response inside the formatted text."""
    check_chat_template(tokenizer)
    if corpus.turns is None:
        raise LangneuronsError(f"--chat-template needs prompt/response records; {corpus.name} is plain text")
    items, spans = {}, {}
    for lang in corpus.languages:
        items[lang], spans[lang] = [], []
        for (sid, _), turn in zip(corpus.items[lang], corpus.turns[lang], strict=True):
            try:
                text = tokenizer.apply_chat_template(messages(turn), tokenize=False)
            except Exception as exc:  # jinja raises its own errors (e.g. a template that refuses a system turn)
                first = (str(exc).splitlines() or [type(exc).__name__])[0]
                raise LangneuronsError(f"{lang} item {sid}: the chat template failed: {first}") from None
            items[lang].append((sid, text))
            spans[lang].append(_locate(text, turn, f"{lang} item {sid}"))
    return replace(corpus, items=items, spans=spans, templated=True)


def _locate(text: str, turn: Turn, where: str) -> tuple[int, int, int, int]:
    """Character offsets of the prompt and the response in a formatted chat (searched in turn order;
    templates may strip surrounding whitespace, so the stripped texts are looked for)."""
    at = 0
    if turn.system:
        found = text.find(turn.system.strip())
        at = found + len(turn.system.strip()) if found >= 0 else 0
    prompt = turn.prompt.strip()
    p0 = text.find(prompt, at)
    if p0 < 0:
        raise LangneuronsError(f"{where}: the chat template changed the prompt (cannot find it in the formatted text)")
    p1 = p0 + len(prompt)
    if turn.response is None:
        return p0, p1, p1, p1
    response = turn.response.strip()
    r0 = text.find(response, p1)
    if r0 < 0:
        raise LangneuronsError(f"{where}: the chat template changed the response (cannot find it)")
    return p0, p1, r0, r0 + len(response)


def _ids(tokenizer, text: str, templated: bool) -> list[int]:
    return tokenizer(text, add_special_tokens=not templated)["input_ids"]


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def token_spans(tokenizer, text: str, span: tuple[int, int, int, int], templated: bool, full: list[int] | None = None):
    """Token positions [start, stop) of the prompt and of the response in ``text`` (the module's rule)."""
    full = _ids(tokenizer, text, templated) if full is None else full
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    p0, p1, r0, r1 = span

    def start(k: int) -> int:
        return _common(full, _ids(tokenizer, text[:k], templated)) if k else 0

    def stop(k: int, merged_counts: bool) -> int:
        ids = _ids(tokenizer, text[:k], templated)
        while ids and ids[-1] in special and (len(ids) > len(full) or full[len(ids) - 1] != ids[-1]):
            ids = ids[:-1]  # an EOS the tokenizer appends to a cut text is no token of the text
        c = _common(full, ids)
        return c if c == len(ids) or not merged_counts else min(c + 1, len(full))

    resp_start = start(r0)
    resp_stop = max(stop(r1, True), resp_start) if r1 > r0 else resp_start
    prompt_start = start(p0)
    prompt_stop = max(min(stop(p1, False), resp_start), prompt_start)
    return (prompt_start, prompt_stop), (resp_start, resp_stop)


def span_batches(spans: list[tuple[int, int, int, int]], count: str, templated: bool):
    """A batch maker like :func:`recording.plan.unit_batches` for a unit whose texts have ``spans``: the
    same batches (texts sorted by length, right padding, truncation), ``counted`` limited to ``count``'s
    tokens (and, as always, to real non-special tokens)."""

    def batches(texts: list[str], tokenizer, batch_size: int, max_length: int, count_bos: bool):
        order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
        for i in range(0, len(order), batch_size):
            chosen = order[i : i + batch_size]
            batch = encode_spans(tokenizer, [texts[j] for j in chosen], [spans[j] for j in chosen], count,
                                 templated, max_length, count_bos)  # fmt: skip
            batch.text = torch.tensor(chosen).view(-1, 1).expand_as(batch.counted)
            yield batch

    return batches


def encode_spans(tokenizer, texts, spans, count: str, templated: bool, max_length: int, count_bos: bool) -> Batch:
    """Tokenize (right padding, truncation); count real tokens inside each text's ``count`` span."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                    return_special_tokens_mask=True, add_special_tokens=not templated)  # fmt: skip
    counted = enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()
    if count_bos and tokenizer.bos_token_id is not None and count != "response":
        counted |= enc["input_ids"].eq(tokenizer.bos_token_id) & enc["attention_mask"].bool()
    if count != "all":
        keep = torch.zeros_like(counted)
        for row, (text, span) in enumerate(zip(texts, spans, strict=True)):
            prompt, response = token_spans(tokenizer, text, span, templated)
            a, b = response if count == "response" else prompt
            keep[row, a:b] = True
        counted &= keep
    elif templated:  # `all` of a formatted chat: every real token, the template's included
        counted = enc["attention_mask"].bool()
        if not count_bos and tokenizer.bos_token_id is not None:
            counted &= ~enc["input_ids"].eq(tokenizer.bos_token_id)
    return Batch(enc["input_ids"], enc["attention_mask"], counted)


def span_arguments(corpus: Corpus, lang: str, count: str) -> dict:
    """Keyword arguments telling a token reader (evaluation/nll.py) which of ``lang``'s tokens ``count``
    means: none for a plain-text corpus (every token), else the spans, the count and the template flag."""
    if corpus.spans is None:
        return {}
    return {"spans": corpus.spans[lang], "count": count, "templated": corpus.templated}


def counted_description(count: str, templated: bool) -> str:
    """The manifest's words for what was counted."""
    if count == "all":
        return "every real token of the formatted chat (template markers included); BOS excluded" if templated \
            else None
    what = "the response's tokens" if count == "response" else "the prompt's tokens"
    rule = "tokens of prompt + response beyond the prompt's own tokens (a token merging across the boundary " \
        "counts as response)"
    if templated:
        return f"{what} only, inside the chat template (the template's own tokens count as neither); {rule}"
    return f"{what} only: {rule}"
