"""Default steering prompts: short open-ended sentence starts, written for this project (data/prompts/)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from langneurons.errors import LangneuronsError


def prompt_languages() -> list[str]:
    """Languages that have a default prompt file."""
    root = resources.files("langneurons.data") / "prompts"
    return sorted(p.name.removesuffix(".txt") for p in root.iterdir() if p.name.endswith(".txt"))


def load_prompts(spec: str | None = None, lang: str = "en") -> list[str]:
    """Prompts from a text file (one per line), or ``lang``'s default set for ``spec`` None/"default"."""
    if spec in (None, "", "default"):
        if lang not in prompt_languages():
            raise LangneuronsError(
                f"no default prompts for {lang!r} (have: {','.join(prompt_languages())}); pass --prompts FILE"
            )
        text = (resources.files("langneurons.data") / "prompts" / f"{lang}.txt").read_text(encoding="utf-8")
    else:
        path = Path(spec)
        if not path.is_file():
            raise LangneuronsError(f"no prompt file at {spec}")
        text = path.read_text(encoding="utf-8")
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise LangneuronsError(f"no prompts in {spec or lang}")
    return prompts


def split_prompts(prompts: list[str], dev_prompts: int) -> tuple[list[str], list[str]]:
    """(dev, test): the first ``dev_prompts`` prompts and the rest (at least one)."""
    if dev_prompts < 1:
        raise LangneuronsError(f"--dev-prompts must be 1 or more, got {dev_prompts}")
    if len(prompts) < dev_prompts + 1:
        raise LangneuronsError(
            f"calibration needs more than --dev-prompts {dev_prompts} prompts (dev split + a test split), got "
            f"{len(prompts)}: pass more prompts, a smaller --dev-prompts, or --no-calibrate"
        )
    return prompts[:dev_prompts], prompts[dev_prompts:]
