"""CLI commands of the `evaluate` stage."""

from __future__ import annotations

from langneurons.cli import app  # noqa: F401
