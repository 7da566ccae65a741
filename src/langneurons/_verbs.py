"""Subpackages that are also the verb of the same name: ``ln.record(...)``, ``ln.identify(...)``,
``ln.intervene(...)``, ``ln.report(...)`` call the notebook API (`langneurons.api`) while
``langneurons.record.pooled`` etc. stay ordinary modules."""

from __future__ import annotations

import sys
import types
from typing import Any


class VerbModule(types.ModuleType):
    """A module that, called, runs ``langneurons.api.<its last name>``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from langneurons import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


def make_verb(module_name: str) -> None:
    """Make the (already imported) module ``module_name`` callable as its verb."""
    sys.modules[module_name].__class__ = VerbModule
