"""What a run directory holds, read defensively: every result file is optional except one that names the run.

manifest.json + stats.safetensors   `record` (only the manifest is read here; ``stats_path`` says where)
pooled.json + pooled.safetensors    `similarity` (sentence vectors; only the JSON is read here)
similarity.json                     `similarity` (LRDS/SADS)
routing.json                        `routing` (MoE expert usage per language)
*.json with format langneurons-neuronset/1   neuron sets (`identify`, `identify-sentences`)
ppl*.json, steer*.json              `ppl` / `steer` results (another stage; read as plain JSON)
*.json with format langneurons-stability/1   `stability` results (read as plain JSON)
*.json with format langneurons-directions/1   direction sets (`identify --method diffmean`; JSON only)
benchmark.json                      `benchmark` result (read as plain JSON)
*.json with format langneurons-cards/1   neuron cards (`explain SET.json`; the report's neuron browser)

Results kept elsewhere join the run by name (``load_run(path, neurons=[...], ppl=[...], steer=[...])``):
such a file must exist and be of its kind, else a one-line error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NEURONSET_FORMAT, NeuronSet
from langneurons.formats.stats import STATS_FILE

MANIFEST = "manifest.json"
POOLED_JSON = "pooled.json"
SIMILARITY_JSON = "similarity.json"
STABILITY_FORMAT = "langneurons-stability/1"
ROUTING_JSON = "routing.json"


@dataclass
class Run:
    """The result files found in one run directory."""

    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    pooled_manifest: dict[str, Any] = field(default_factory=dict)
    similarity: dict[str, Any] | None = None
    routing: dict[str, Any] | None = None
    neuron_sets: dict[str, NeuronSet] = field(default_factory=dict)
    ppl: dict[str, dict[str, Any]] = field(default_factory=dict)
    steer: dict[str, dict[str, Any]] = field(default_factory=dict)
    stability: dict[str, dict[str, Any]] = field(default_factory=dict)
    directions: dict[str, dict[str, Any]] = field(default_factory=dict)
    benchmark: dict[str, Any] | None = None
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)  # `explain` cards files, by stem
    lens: dict[str, dict[str, Any]] = field(default_factory=dict)  # `lens` results (latent language, §16)
    skipped: dict[str, str] = field(default_factory=dict)  # file name → why it was not used
    stats_path: Path | None = None  # stats.safetensors beside manifest.json, when present
    given: list[str] = field(default_factory=list)  # names of the results given explicitly (shown first)

    @property
    def info(self) -> dict[str, Any]:
        """Model facts from whichever file has them (record manifest, then pooled, then similarity)."""
        merged: dict[str, Any] = {}
        for source in (self.similarity or {}, self.pooled_manifest, self.manifest):
            merged.update({k: v for k, v in source.items() if v is not None})
        if not merged.get("model") and self.neuron_sets:
            ns = next(iter(self.neuron_sets.values()))
            merged.update(
                model=ns.model,
                site=ns.site,
                num_layers=ns.num_layers,
                intermediate_size=ns.intermediate_size,
                languages=ns.languages,
            )
        return merged

    @property
    def languages(self) -> list[str]:
        langs = self.info.get("languages")
        if langs:
            return list(langs)
        for ns in self.neuron_sets.values():
            return list(ns.languages)
        return []

    @property
    def num_layers(self) -> int | None:
        value = self.info.get("num_layers")
        return int(value) if value else None

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)


def load_run(
    path: str | Path,
    neurons: Iterable[str | Path] = (),
    ppl: Iterable[str | Path] = (),
    steer: Iterable[str | Path] = (),
    lens: Iterable[str | Path] = (),
) -> Run:
    """Read every result file of a run directory, plus result files kept elsewhere; no result is an error."""
    path = Path(path)
    if not path.is_dir():
        raise LangneuronsError(f"{path} is not a directory (a run directory is expected)")
    run = Run(path)
    if (path / MANIFEST).exists() and (path / STATS_FILE).exists():
        run.stats_path = path / STATS_FILE
    for file in sorted(path.glob("*.json")):
        data, why = _read_json(file)
        if data is None:
            run.skipped[file.name] = why
            continue
        name = file.name
        try:
            if name == MANIFEST:
                run.manifest = data
            elif name == POOLED_JSON:
                run.pooled_manifest = {k: v for k, v in data.items() if k not in ("ids", "row_languages")}
            elif name == SIMILARITY_JSON:
                run.similarity = data
            elif name == ROUTING_JSON:
                run.routing = data
            elif data.get("format") == NEURONSET_FORMAT:
                run.neuron_sets[file.stem] = NeuronSet.from_dict(data, str(file))
            elif data.get("format") == STABILITY_FORMAT:
                run.stability[file.stem] = data
            elif data.get("format") == "langneurons-directions/1":
                run.directions[file.stem] = data
            elif str(data.get("format", "")).startswith("langneurons-lens/"):
                run.lens[file.stem] = data
            elif str(data.get("format", "")).startswith("langneurons-benchmark/"):
                run.benchmark = data
            elif data.get("format") == "langneurons-cards/1":
                run.cards[file.stem] = data
            elif name.startswith("ppl"):
                run.ppl[file.stem] = data
            elif name.startswith("steer"):
                run.steer[file.stem] = data
            else:
                run.skipped[name] = "not a known result file"
        except LangneuronsError as exc:
            run.skipped[name] = str(exc)
    for kind, files in (("neurons", neurons), ("ppl", ppl), ("steer", steer), ("lens", lens)):
        for file in files:
            _add_given(run, kind, Path(file))
    if not (run.manifest or run.pooled_manifest or run.similarity or run.neuron_sets or run.ppl or run.steer
            or run.routing or run.stability or run.benchmark or run.cards or run.lens):  # fmt: skip
        raise LangneuronsError(f"{path} holds no langneurons results (manifest.json, similarity.json, neuron sets…)")
    return run


def _add_given(run: Run, kind: str, file: Path) -> None:
    """Add one result file named on the command line (errors are one line: it was asked for)."""
    if not file.is_file():
        raise LangneuronsError(f"{file} does not exist (given with --{kind})")
    data, why = _read_json(file)
    if data is None:
        raise LangneuronsError(f"{file} is {why}, not a {kind} result")
    expected = {"neurons": NEURONSET_FORMAT, "ppl": "langneurons-ppl/", "steer": "langneurons-steer/",
                "lens": "langneurons-lens/"}[kind]  # fmt: skip
    fmt = str(data.get("format", ""))
    if not fmt.startswith(expected):
        raise LangneuronsError(f"{file} is not a {kind} result (format {fmt or 'missing'}, expected {expected}…)")
    target = {"neurons": run.neuron_sets, "ppl": run.ppl, "steer": run.steer, "lens": run.lens}[kind]
    same = file.resolve() == (run.path / file.name).resolve()  # the run's own file, named again
    name = file.stem if same or file.stem not in target else f"{file.parent.name}/{file.stem}"
    target.pop(name, None)
    target[name] = NeuronSet.from_dict(data, str(file)) if kind == "neurons" else data
    run.given.append(name)


def _read_json(file: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"unreadable ({exc.__class__.__name__})"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    return data, ""


__all__ = ["Run", "load_run"]
