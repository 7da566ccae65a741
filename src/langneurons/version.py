"""The installed version of langneurons (one place; every result file records it)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("langneurons")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+src"
