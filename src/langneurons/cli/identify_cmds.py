"""CLI commands of the `identify` stage."""

from __future__ import annotations

from langneurons.cli import app  # noqa: F401
