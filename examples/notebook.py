"""A worked example of the notebook API: every step of the pipeline from Python.

Run it as a script (``python examples/notebook.py``) or cell by cell in a notebook. It uses the
embedded Gemma-3-270M and the embedded NTREX sentences (offline; a few minutes on a laptop CPU).
``tests/test_example.py`` runs this very file on a tiny model so that it cannot rot; the
``LANGNEURONS_EXAMPLE_*`` variables below exist for that test.
"""

import os
import tempfile
from pathlib import Path

import langneurons as ln

MODEL = os.environ.get("LANGNEURONS_EXAMPLE_MODEL", "embedded")
CORPUS = os.environ.get("LANGNEURONS_EXAMPLE_CORPUS", "ntrex")
LANGUAGES = os.environ.get("LANGNEURONS_EXAMPLE_LANGUAGES", "en,fr,de,zh")
SENTENCES = int(os.environ.get("LANGNEURONS_EXAMPLE_SENTENCES", "40"))
RUN = Path(os.environ.get("LANGNEURONS_EXAMPLE_RUN") or tempfile.mkdtemp(prefix="langneurons-example-"))

# 1. A model and some text. Every object prints as one short line.
model = ln.load_model(MODEL, device="cpu")
print(model)  # LoadedModel('gemma-3-270m …', gemma3_text, 18 layers × 2048 neurons, float32 on cpu)
corpus = ln.load_corpus(CORPUS, LANGUAGES, sentences=SENTENCES)
print(corpus)  # Corpus('ntrex', 4 languages: en 40, fr 40, de 40, zh 40 sentences)

# 2. Record how every MLP neuron fires on each language. In memory (no folder) ...
in_memory = ln.record(model, corpus, batch_size=4, progress=False)
# ... or into a run folder; a second call with the same model, text and settings reuses it.
stats = ln.record(model, corpus, RUN, batch_size=4, progress=False)
again = ln.record(model, corpus, RUN, batch_size=4, progress=False)
assert again.manifest["created"] == stats.manifest["created"]  # reused, not recorded twice
assert (in_memory.count == stats.count).all()
print(stats)  # Stats(4 languages en,fr,de,zh, 18 layers × 2048 neurons, … tokens, site act, …)
stats = ln.load_stats(RUN)  # the same statistics, read back

# 3. Language neurons (LAPE); the set remembers the run it came from.
neurons = ln.identify(stats, "lape", out=RUN / "lape.json")
print(neurons)  # NeuronSet(lape, 4 languages, … neurons, … pairs (en …, fr …), …)
neurons = ln.load_neurons(RUN / "lape.json")
first, second = neurons.languages[:2]

# 4. Interventions: switch a language's neurons off, or push them towards a language's mean.
batch = model.tokenizer(corpus.texts(first)[:2], return_tensors="pt", padding=True)
with ln.intervene(model, [ln.deactivate(neurons, first), ln.activate(neurons, second, stats)]):
    logits = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
print("logits under intervention:", tuple(logits.shape))

# 5. Evaluation: the perplexity matrix, and steering from the first language to the second.
held_out = ln.load_corpus(CORPUS if CORPUS != "ntrex" else "ntrex:dev", LANGUAGES, sentences=8)
ppl = ln.ppl_matrix(model, neurons, held_out, batch_size=4, progress=False)
print(ppl)  # Result(ppl: 9 interventions × 4 languages; ΔPPL on own language: en +…, fr +…, …)
ppl.save(RUN / "ppl-lape.json")
prompts = [" ".join(text.split()[:4]) for text in held_out.texts(first)[:4]]
steered = ln.steer(model, neurons, second, source=first, prompts=prompts, max_new_tokens=8, progress=False)
print(steered)  # Result(steer from en: →fr s=1 …%)
steered.save(RUN / "steer-lape.json")

# 6. Sentence similarity across languages (LRDS / SADS per layer), pooled into the run folder.
sim = ln.similarity(model, corpus, RUN, batch_size=4, progress=False)
print(sim)  # Result(similarity: 4 languages, 18 layers; peak LRDS layer …, peak SADS layer …)

# 7. One self-contained HTML report of everything in the run folder.
print("report:", ln.report(RUN))
