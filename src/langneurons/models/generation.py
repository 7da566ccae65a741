"""Greedy answers to prompts (``record --generate``): batched, left-padded, KV cache, stop at EOS/end-of-turn.

Plain decoding without edits; ``evaluation/steer.py`` has the steered, packed and sampled version.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Special tokens that end an assistant turn in common chat templates (used where the vocabulary has them).
END_OF_TURN = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "</s>")


def stop_ids(loaded) -> set[int]:
    """EOS and padding of the tokenizer, the generation config's EOS (Gemma: <end_of_turn>) and the
    end-of-turn markers the vocabulary holds."""
    tok = loaded.tokenizer
    ids = {tok.eos_token_id, tok.pad_token_id}
    gen_eos = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
    ids |= set(gen_eos) if isinstance(gen_eos, (list, tuple)) else {gen_eos}
    specials = set(getattr(tok, "all_special_tokens", []) or []) | set(getattr(tok, "added_tokens_encoder", {}) or {})
    ids |= {tok.convert_tokens_to_ids(t) for t in END_OF_TURN if t in specials}
    return {int(i) for i in ids if i is not None}


def greedy_answers(
    loaded,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int = 8,
    add_special_tokens: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """The model's greedy continuation of each prompt, cut at the first stop token, decoded without
    special tokens. Prompts are batched longest first (less padding); the result is in prompt order."""
    tok = loaded.tokenizer
    stops = stop_ids(loaded)
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    answers: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        tok.padding_side = "left"
        try:
            enc = tok([prompts[i] for i in chosen], padding=True, return_tensors="pt",
                      add_special_tokens=add_special_tokens)  # fmt: skip
        finally:
            tok.padding_side = "right"
        with torch.no_grad():
            seq = loaded.model.generate(
                input_ids=enc["input_ids"].to(loaded.device),
                attention_mask=enc["attention_mask"].to(loaded.device),
                max_new_tokens=max_new_tokens, do_sample=False, use_cache=True, pad_token_id=tok.pad_token_id,
                temperature=None, top_p=None, top_k=None,
            ).cpu()  # fmt: skip
        width = enc["input_ids"].shape[1]
        for row, i in enumerate(chosen):
            new = seq[row, width:].tolist()
            cut = next((j for j, t in enumerate(new) if t in stops), len(new))
            answers[i] = tok.decode(new[:cut], skip_special_tokens=True)
        if on_batch is not None:
            on_batch(len(chosen))
    return answers
