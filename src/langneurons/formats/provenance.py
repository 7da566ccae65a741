"""What every result file records about the software that made it."""

from __future__ import annotations

import platform
from datetime import UTC, datetime


def software() -> dict[str, str]:
    """Versions of langneurons, torch, transformers and Python."""
    import torch
    import transformers

    from langneurons.version import __version__

    return {
        "langneurons_version": __version__,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python": platform.python_version(),
    }


def now() -> str:
    """UTC time stamp, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")
