"""What differs between two result files' JSON: named in one short phrase, so a re-run whose inputs changed is
refused with the difference, not with a bare "exists"."""

from __future__ import annotations

import json
from typing import Any

# Fields that say when and how fast a result was made, not what it was made from.
NOT_INPUTS = frozenset({"provenance", "created", "wall_seconds", "summary"})
# Fields computed from the others: named only when nothing they follow from differs.
OUTCOMES = frozenset({"neurons", "selected", "norms", "resid_norm", "n_target", "n_selected", "n_passed_filter",
                      "bar", "filter_bar", "norm_max", "warnings", "autosweep"})  # fmt: skip


def same_result(old: Any, new: Any) -> bool:
    """Whether two result objects are the same, apart from when and how fast they were made (:data:`NOT_INPUTS`)."""
    return not _differences(_plain(old), _plain(new), "")


def describe_difference(old: Any, new: Any, limit: int = 2) -> str:
    """The first ``limit`` differing fields, inputs before outcomes, e.g. ``params.top_rate 0.01 → 0.02``."""
    found = _differences(_plain(old), _plain(new), "")
    inputs = [f for f in found if not OUTCOMES.intersection(f.split(" ")[0].split("."))]
    found = sorted(inputs or found, key=lambda f: any(_hash(part) for part in f.split(" ")[0].split(".")))
    text = "; ".join(found[:limit])
    return text + (f"; {len(found) - limit} more" if len(found) > limit else "")


def _hash(key: str) -> bool:
    """A hash or id list of the text: named after what it hashes (sentences, corpus) when that differs too."""
    return key.endswith(("sha256", "sha256_by_language", "hashes", "ranges"))


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 32 else ""


def _differences(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in dict.fromkeys([*old, *new]):
            if key in NOT_INPUTS:
                continue
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                out.append(f"{where} only in the existing file")
            elif key not in old:
                out.append(f"{where} is new")
            elif old[key] != new[key]:
                deeper = path.count(".") < 1 and isinstance(old[key], dict) and isinstance(new[key], dict)
                out += _differences(old[key], new[key], where) if deeper else [_changed(where, old[key], new[key])]
        return out
    return [] if old == new else [_changed(path or "content", old, new)]


def _changed(where: str, old: Any, new: Any) -> str:
    a, b = _short(old), _short(new)
    return f"{where} {a} → {b}" if a and b else f"{where} differs"


__all__ = ["NOT_INPUTS", "OUTCOMES", "describe_difference", "same_result"]
