"""The statistics file: `RUN_DIR/stats.safetensors` + `RUN_DIR/manifest.json`.

Tensors (language order = ``manifest["languages"]``):
  count    int64   [K, L, F]  tokens where the neuron's activation is > 0
  sum      float64 [K, L, F]  sum of activations
  sum_sq   float64 [K, L, F]  sum of squared activations
  n_tokens int64   [K]        counted tokens per language
Mixture-of-experts runs add (manifest["moe"] says how the neuron axis is laid out):
  routed_tokens      int64   [K, L, E]  counted tokens routed to expert e of layer l
  router_probability float64 [K, L, E]  the router's probability of expert e, summed over counted tokens
Residual sums (``record`` writes them unless ``--no-residual``; DiffMean needs them, docs/methods.md):
  resid_sum      float64 [K, L, H]  sum of the residual stream after decoder layer l (H = hidden size)
  resid_norm_sum float64 [K, L]     sum of its L2 norm (mean residual norm r_l = this / n_tokens)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import read_json, read_safetensors, write_json, write_safetensors

STATS_FILE = "stats.safetensors"
MANIFEST_FILE = "manifest.json"
STATS_FORMAT = "langneurons-stats/1"
# Fields that must agree for two runs to be merged or compared neuron by neuron.
COMPATIBLE_FIELDS = ("model", "site", "num_layers", "intermediate_size")


@dataclass
class Stats:
    """Per-language, per-layer, per-neuron activation statistics and how they were made."""

    count: torch.Tensor
    sum: torch.Tensor
    sum_sq: torch.Tensor
    n_tokens: torch.Tensor
    manifest: dict[str, Any] = field(default_factory=dict)
    path: str | None = None  # where it was read from (for error messages)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # per-language [K, ...] (MoE routing, residual)
    examples: Any = None  # top activating examples (formats/examples.py) when recorded with --examples K

    @property
    def resid_sum(self) -> torch.Tensor | None:
        """float64 [K, L, H]: the residual stream after each decoder layer, summed (None if not recorded)."""
        return self.extra.get("resid_sum")

    @property
    def resid_norm_sum(self) -> torch.Tensor | None:
        """float64 [K, L]: the residual stream's L2 norm, summed (None if not recorded)."""
        return self.extra.get("resid_norm_sum")

    @property
    def has_residual(self) -> bool:
        """True when the run also summed the residual stream (needed by DiffMean)."""
        return self.resid_sum is not None and self.resid_norm_sum is not None

    @property
    def has_sums(self) -> bool:
        """False for statistics that hold counts only (e.g. converted from Zhang et al.'s release)."""
        return self.manifest.get("sum_available", True) is not False

    def __repr__(self) -> str:
        langs = self.manifest.get("languages") or []
        shown = ",".join(langs[:8]) + (",…" if len(langs) > 8 else "")
        where = f", from {self.path}" if self.path else ""
        return (
            f"Stats({len(langs)} languages {shown}, {self.num_layers} layers × {self.intermediate_size} neurons, "
            f"{int(self.n_tokens.sum()):,} tokens, site {self.manifest.get('site')}, "
            f"model {self.manifest.get('model')!r}{where})"
        )

    def to_pandas(self, layers: list[int] | None = None) -> Any:
        """A tidy frame: one row per (language, layer, neuron) with ``count``, ``probability`` and
        ``mean`` activation (``layers``: only those; every layer of a 7B model is ~4.7M rows a language)."""
        import pandas as pd

        layers = list(range(self.num_layers)) if layers is None else layers
        prob = self.probability()[:, layers]
        columns = {"count": self.count[:, layers].reshape(-1).numpy(), "probability": prob.reshape(-1).numpy()}
        if self.has_sums:  # count-only statistics (converted releases) have no means
            columns["mean"] = self.mean()[:, layers].reshape(-1).numpy()
        names = ["language", "layer", "neuron"]
        index = pd.MultiIndex.from_product([self.languages, layers, range(prob.shape[2])], names=names)
        return pd.DataFrame(columns, index=index).reset_index()

    def save(self, run_dir: str | Path) -> None:
        """Write ``run_dir``/stats.safetensors + manifest.json (same as :func:`save_stats`)."""
        save_stats(run_dir, self)
        self.path = str(run_dir)

    @property
    def languages(self) -> list[str]:
        return list(self.manifest["languages"])

    @property
    def num_layers(self) -> int:
        return int(self.count.shape[1])

    @property
    def intermediate_size(self) -> int:
        return int(self.count.shape[2])

    def denominator(self, condition: str = "unconditional") -> torch.Tensor:
        """Tokens each neuron could fire on, float64 broadcastable to [K, L, F] (at least 1).

        ``unconditional``: n_tokens[k]. ``routed`` (MoE only): a routed expert's neurons divide by the
        tokens routed to that expert; shared experts and dense layers still by n_tokens.
        """
        n = self.n_tokens.clamp(min=1).to(torch.float64).view(-1, 1, 1)
        if condition == "unconditional":
            return n
        if condition != "routed":
            raise LangneuronsError(f"unknown condition {condition!r}; choose unconditional or routed")
        moe = self.manifest.get("moe")
        if not moe or "routed_tokens" not in self.extra:
            raise LangneuronsError("--condition routed needs statistics of a mixture-of-experts model")
        e, f = int(moe["num_experts"]), int(moe["expert_intermediate_size"])
        out = n.expand(*self.count.shape).clone()
        routed = self.extra["routed_tokens"].to(torch.float64).clamp(min=1)  # [K, L, E]
        layers = torch.tensor(moe["moe_layers"], dtype=torch.long)
        out[:, layers, : e * f] = routed[:, layers].repeat_interleave(f, dim=2)
        return out

    def probability(self, condition: str = "unconditional") -> torch.Tensor:
        """Activation probability p[k, l, j] = count / denominator (0 where a language has no tokens)."""
        return self.count.to(torch.float64) / self.denominator(condition)

    def mean(self) -> torch.Tensor:
        """Mean activation per language [K, L, F] (float64) over the tokens each neuron is computed on (all
        counted tokens; for a routed MoE expert, the tokens routed to it — where an edit acts); an error
        for count-only statistics."""
        if not self.has_sums:
            where = self.path or "these statistics"
            raise LangneuronsError(
                f"{where} holds activation counts only (sum_available: false), so it has no mean "
                "activations: record the run with `langneurons record` to use means"
            )
        condition = "routed" if "routed_tokens" in self.extra and self.manifest.get("moe") else "unconditional"
        return self.sum / self.denominator(condition)

    def language_index(self, lang: str) -> int:
        try:
            return self.languages.index(lang)
        except ValueError:
            raise LangneuronsError(
                f"language {lang!r} is not in these statistics (have: {','.join(self.languages)})"
            ) from None

    def validate(self) -> None:
        """Check shapes and dtypes against each other and the manifest."""
        k = len(self.manifest.get("languages", []))
        shape = tuple(self.count.shape)
        problems = []
        if self.count.dtype != torch.int64 or self.n_tokens.dtype != torch.int64:
            problems.append("count/n_tokens must be int64")
        if self.sum.dtype != torch.float64 or self.sum_sq.dtype != torch.float64:
            problems.append("sum/sum_sq must be float64")
        if len(shape) != 3 or self.sum.shape != self.count.shape or self.sum_sq.shape != self.count.shape:
            problems.append(f"tensor shapes disagree: {shape}, {tuple(self.sum.shape)}")
        elif shape[0] != k or tuple(self.n_tokens.shape) != (k,):
            problems.append(f"{k} languages in the manifest but tensors hold {shape[0]}")
        elif (self.manifest.get("num_layers"), self.manifest.get("intermediate_size")) != shape[1:]:
            problems.append("manifest num_layers/intermediate_size disagree with the tensors")
        for name, tensor in self.extra.items():
            if tensor.dim() < 1 or tensor.shape[0] != k:
                problems.append(f"{name} must have one row per language")
        if self.has_residual:
            r, rn = self.resid_sum, self.resid_norm_sum
            if r.dtype != torch.float64 or rn.dtype != torch.float64:
                problems.append("resid_sum/resid_norm_sum must be float64")
            if r.dim() != 3 or tuple(r.shape[:2]) != shape[:2] or tuple(rn.shape) != shape[:2]:
                problems.append(f"residual tensors {tuple(r.shape)}, {tuple(rn.shape)} do not match {shape[:2]}")
        if problems:
            raise LangneuronsError("invalid statistics: " + "; ".join(problems))


def save_stats(run_dir: str | Path, stats: Stats) -> None:
    """Write the tensors, then the manifest (the manifest's presence marks a finished file)."""
    stats.validate()
    run_dir = Path(run_dir)
    manifest = {"format": STATS_FORMAT, **stats.manifest}
    tensors = {"count": stats.count, "sum": stats.sum, "sum_sq": stats.sum_sq, "n_tokens": stats.n_tokens}
    tensors.update(stats.extra)
    write_safetensors(run_dir / STATS_FILE, tensors, metadata={"format": STATS_FORMAT})
    write_json(run_dir / MANIFEST_FILE, manifest)


def load_stats(run_dir: str | Path) -> Stats:
    """Read and validate a run directory's statistics; one-line errors for anything wrong."""
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.name in (STATS_FILE, MANIFEST_FILE):
        run_dir = run_dir.parent
    stats_path, manifest_path = run_dir / STATS_FILE, run_dir / MANIFEST_FILE
    if not stats_path.exists() or not manifest_path.exists():
        raise LangneuronsError(f"{run_dir} is not a run directory (no {STATS_FILE} and {MANIFEST_FILE})")
    manifest = read_json(manifest_path)
    tensors = read_safetensors(stats_path)
    missing = {"count", "sum", "sum_sq", "n_tokens"} - tensors.keys()
    if missing:
        raise LangneuronsError(f"{stats_path} lacks tensors: {', '.join(sorted(missing))}")
    extra = {k: v for k, v in tensors.items() if k not in ("count", "sum", "sum_sq", "n_tokens")}
    stats = Stats(tensors["count"], tensors["sum"], tensors["sum_sq"], tensors["n_tokens"], manifest, str(run_dir),
                  extra=extra)  # fmt: skip
    stats.validate()
    from langneurons.formats.examples import EXAMPLES_FILE, load_examples

    if (run_dir / EXAMPLES_FILE).exists():
        stats.examples = load_examples(run_dir / EXAMPLES_FILE)
    return stats


# Recorded facts that change the numbers: runs that differ in any of them must not be added.
# (name shown in the error, how to read it from a manifest)
NUMBER_FIELDS: tuple[tuple[str, Any], ...] = (
    *((key, lambda m, key=key: m.get(key)) for key in COMPATIBLE_FIELDS),
    ("revision", lambda m: m.get("revision")),
    ("dtype", lambda m: m.get("dtype")),
    ("counted tokens", lambda m: m.get("counted")),
    ("sum_available", lambda m: m.get("sum_available", True)),
    ("count_bos", lambda m: (m.get("settings") or {}).get("count_bos")),
    ("max_length", lambda m: (m.get("settings") or {}).get("max_length")),
    ("packing", lambda m: (m.get("settings") or {}).get("packing")),
    ("conversion", lambda m: (m.get("converted_from") or {}).get("format")),
)


def id_ranges(ids: list[str]) -> list[list]:
    """Sentence ids compactly: integer ids as [start, stop) runs, any other id as itself."""
    out: list[list] = []
    for sid in ids:
        if sid.isdigit():
            i = int(sid)
            if out and isinstance(out[-1][0], int) and out[-1][1] == i:
                out[-1][1] = i + 1
            else:
                out.append([i, i + 1])
        else:
            out.append([sid])
    return out


def _expand(ranges: list[list]) -> set:
    return {x for r in ranges for x in (range(r[0], r[1]) if len(r) == 2 else r)}


def data_spans(stats: Stats) -> list[tuple[str, str, set, str | None, set | None]]:
    """What text a run counted: (language, corpus, sentence ids, text hash, per-sentence content hashes)
    per language, expanded through ``merged_from`` for merged runs (older manifests: the first N sentences,
    no per-sentence hashes)."""
    m = stats.manifest
    spans = []
    for part in m.get("merged_from") or [m]:
        ranges = part.get("sentence_ranges") or {}
        hashes = part.get("corpus_sha256_by_language") or {}
        sentences = part.get("sentence_hashes") or {}
        for lang in part.get("languages") or []:
            ids = ranges.get(lang) or [[0, int((part.get("sentences") or {}).get(lang) or 0)]]
            content = set(sentences[lang]) if lang in sentences else None
            spans.append((lang, str(part.get("corpus")), _expand(ids), hashes.get(lang), content))
    return spans


def check_mergeable(runs: list[Stats]) -> None:
    """Refuse, naming the field, runs whose numbers must not be added (another setting, or the same
    sentences twice: the same language from the same corpus with overlapping ranges, or the same text)."""
    base = runs[0]
    for other in runs[1:]:
        for name, read in NUMBER_FIELDS:
            if read(other.manifest) != read(base.manifest):
                raise LangneuronsError(
                    f"cannot merge runs with different {name}: {read(base.manifest)!r} "
                    f"({base.path or 'run 1'}) vs {read(other.manifest)!r} ({other.path or 'another run'})"
                )
    seen: list[tuple[tuple[str, str, set, str | None, set | None], str]] = []
    for i, run in enumerate(runs):
        where = run.path or f"run {i + 1}"
        for span in data_spans(run):
            lang, corpus, ids, sha, content = span
            for (lang2, corpus2, ids2, sha2, content2), where2 in seen:
                if lang != lang2:
                    continue
                if content is not None and content2 is not None:  # by sentence content, whatever the names
                    same = content & content2
                    if same:
                        raise LangneuronsError(
                            f"cannot merge: {where2} and {where} both counted {len(same)} of the same {lang!r} "
                            "sentences (same text; the same sentences must not be added twice)"
                        )
                    continue
                same_text = sha is not None and sha == sha2  # older runs: by corpus name and ids
                shared = ids & ids2 if corpus == corpus2 else set()
                if same_text or shared:
                    which = f"sentence {min(shared, key=str)}" if shared else "the same text"
                    raise LangneuronsError(
                        f"cannot merge: {where2} and {where} both counted {lang!r} {which} of {corpus} "
                        "(the same sentences must not be added twice)"
                    )
        seen += [(span, where) for span in data_spans(run)]


def _parts(m: dict[str, Any]) -> list[dict[str, Any]]:
    """The record facts of each original run inside ``m`` (itself, or what it was merged from)."""
    keys = ("languages", "corpus", "corpus_sha256", "corpus_sha256_by_language", "sentences", "sentence_ranges",
            "sentence_hashes", "revision")  # fmt: skip
    return m.get("merged_from") or [{key: m.get(key) for key in keys}]


def merge_stats(runs: list[Stats]) -> Stats:
    """Add runs of one model and setting on different text: a language in several runs adds up, new
    languages append (see :func:`check_mergeable` for what is refused)."""
    if not runs:
        raise LangneuronsError("nothing to merge")
    check_mergeable(runs)
    base = runs[0].manifest
    languages: list[str] = []
    for run in runs:
        languages += [lang for lang in run.languages if lang not in languages]
    k, (_, n_layers, n_neurons) = len(languages), tuple(runs[0].count.shape)
    count = torch.zeros(k, n_layers, n_neurons, dtype=torch.int64)
    total = torch.zeros(k, n_layers, n_neurons, dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    n_tokens = torch.zeros(k, dtype=torch.int64)
    residual = {"resid_sum", "resid_norm_sum"}
    names = set(runs[0].extra) - residual  # residual sums add like the counts if all runs have them, else drop
    if any(set(run.extra) - residual != names for run in runs):
        raise LangneuronsError("cannot merge runs with different tensors (e.g. routing statistics in only some)")
    if all(run.has_residual for run in runs):
        names |= residual
    extra = {n: torch.zeros((k, *t.shape[1:]), dtype=t.dtype) for n, t in runs[0].extra.items() if n in names}
    for run in runs:
        for i, lang in enumerate(run.languages):
            j = languages.index(lang)
            count[j] += run.count[i]
            total[j] += run.sum[i]
            total_sq[j] += run.sum_sq[i]
            n_tokens[j] += run.n_tokens[i]
            for n in extra:
                extra[n][j] += run.extra[n][i]
    manifest = dict(base)
    manifest.pop("format", None)
    manifest["languages"] = languages
    manifest["corpus"] = [run.manifest.get("corpus") for run in runs]
    manifest["corpus_sha256"] = hashlib.sha256(
        "".join(str(run.manifest.get("corpus_sha256")) for run in runs).encode()
    ).hexdigest()
    manifest["merged_from"] = [part for run in runs for part in _parts(run.manifest)]
    for key in ("corpus_sha256_by_language", "sentence_ranges", "sentence_hashes", "shards"):
        manifest.pop(key, None)  # per part in merged_from; a merge writes no per-shard counts
    counted = [run.manifest.get("sentences") or {} for run in runs]
    manifest["sentences"] = {lang: sum(int(c.get(lang, 0)) for c in counted) for lang in languages}
    return Stats(count, total, total_sq, n_tokens, manifest, extra=extra)
