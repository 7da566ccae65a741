"""CLI commands of the `report` stage."""

from __future__ import annotations

from langneurons.cli import app  # noqa: F401
