"""What a run directory holds, read defensively: every result file is optional except one that names the run.

manifest.json + stats.safetensors   `record` (only the manifest is read here)
pooled.json + pooled.safetensors    `similarity` (sentence vectors; only the JSON is read here)
similarity.json                     `similarity` (LRDS/SADS)
*.json with format langneurons-neuronset/1   neuron sets (`identify`, `identify-sentences`)
ppl*.json, steer*.json              `ppl` / `steer` results (another stage; read as plain JSON)
*.json with format langneurons-directions/1   direction sets (`identify --method diffmean`; JSON only)
benchmark.json                      `benchmark` result (read as plain JSON)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NEURONSET_FORMAT, NeuronSet

MANIFEST = "manifest.json"
POOLED_JSON = "pooled.json"
SIMILARITY_JSON = "similarity.json"


@dataclass
class Run:
    """The result files found in one run directory."""

    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    pooled_manifest: dict[str, Any] = field(default_factory=dict)
    similarity: dict[str, Any] | None = None
    neuron_sets: dict[str, NeuronSet] = field(default_factory=dict)
    ppl: dict[str, dict[str, Any]] = field(default_factory=dict)
    steer: dict[str, dict[str, Any]] = field(default_factory=dict)
    directions: dict[str, dict[str, Any]] = field(default_factory=dict)
    benchmark: dict[str, Any] | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # file name → why it was not used

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


def load_run(path: str | Path) -> Run:
    """Read every result file of a run directory; a directory with none of them is an error."""
    path = Path(path)
    if not path.is_dir():
        raise LangneuronsError(f"{path} is not a directory (a run directory is expected)")
    run = Run(path)
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
            elif data.get("format") == NEURONSET_FORMAT:
                run.neuron_sets[file.stem] = NeuronSet.from_dict(data, str(file))
            elif data.get("format") == "langneurons-directions/1":
                run.directions[file.stem] = data
            elif data.get("format") == "langneurons-benchmark/1":
                run.benchmark = data
            elif name.startswith("ppl"):
                run.ppl[file.stem] = data
            elif name.startswith("steer"):
                run.steer[file.stem] = data
            else:
                run.skipped[name] = "not a known result file"
        except LangneuronsError as exc:
            run.skipped[name] = str(exc)
    if not (run.manifest or run.pooled_manifest or run.similarity or run.neuron_sets or run.ppl or run.steer
            or run.benchmark):  # fmt: skip
        raise LangneuronsError(
            f"{path} holds no langneurons results (manifest.json, similarity.json, neuron sets…)"
        )
    return run


def _read_json(file: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"unreadable ({exc.__class__.__name__})"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    return data, ""


__all__ = ["Run", "load_run"]
