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
    """Prompts from a text file (one per line), or ``lang``'s default set for ``spec`` None/"default", or its
    first N for "default:N" (the default English file had 20 prompts before it grew to 60: "default:20" is
    that set)."""
    first = None
    if spec is not None and spec.startswith("default:"):
        count = spec.removeprefix("default:")
        if not count.isdigit() or int(count) < 1:
            raise LangneuronsError(f"--prompts {spec}: default:N takes a positive number of prompts")
        spec, first = "default", int(count)
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
    if first is not None and first > len(prompts):
        raise LangneuronsError(f"--prompts default:{first}: the default {lang} file has {len(prompts)} prompts")
    return prompts if first is None else prompts[:first]


def split_prompts(prompts: list[str], dev_prompts: int, test_prompts: int | None = None) -> tuple[list[str], list[str]]:
    """(dev, test) from the first ``dev_prompts + test_prompts`` prompts (``test_prompts`` None: all of them):
    ``dev_prompts`` evenly spaced ones (0, 3, 6, … for 10 of 30) are the dev split, the rest the test split, so
    both mix a prompt file's kinds (the default English file: sentence starts, then questions). One rule for
    `steer --calibrate` and `benchmark`."""
    if dev_prompts < 1:
        raise LangneuronsError(f"--dev-prompts must be 1 or more, got {dev_prompts}")
    if test_prompts is None:
        if len(prompts) < dev_prompts + 1:
            raise LangneuronsError(
                f"calibration needs more than --dev-prompts {dev_prompts} prompts (dev split + a test split), got "
                f"{len(prompts)}: pass more prompts, a smaller --dev-prompts, or --no-calibrate"
            )
        n = len(prompts)
    else:
        n = dev_prompts + test_prompts
        if len(prompts) < n:
            raise LangneuronsError(f"need {n} steering prompts ({dev_prompts} dev + {test_prompts} test), the "
                                   f"prompt file has {len(prompts)}: pass a longer --prompt-file or fewer "
                                   "--prompts")  # fmt: skip
    chosen = {round(i * n / dev_prompts) for i in range(dev_prompts)}
    return [prompts[i] for i in sorted(chosen)], [prompts[i] for i in range(n) if i not in chosen]
