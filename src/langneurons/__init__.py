"""langneurons: find, explain and steer the neurons that make an LLM multilingual."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("langneurons")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+src"

from langneurons.errors import LangneuronsError

__all__ = ["LangneuronsError", "__version__"]
