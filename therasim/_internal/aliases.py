"""Old module paths kept importable after a module moved.

The shim is an import hook, not a file at the old path, so version control sees
the move as a rename and concurrent edits to the old file follow it."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

__all__ = ["install"]


class _AliasLoader(importlib.abc.Loader):
    """Loads ``old`` as the very module object of ``new`` (same attributes, so
    monkeypatching either name patches both)."""

    def __init__(self, new: str) -> None:
        self.new = new
        self._spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.new)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system set the alias's spec; keep the real one


class _AliasFinder(importlib.abc.MetaPathFinder):
    def __init__(self, aliases: dict[str, str]) -> None:
        self.aliases = aliases

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = self.aliases.get(fullname)
        return None if new is None else importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install(aliases: dict[str, str]) -> None:
    """Make each old module name import the module now at the new name."""
    for f in sys.meta_path:
        if isinstance(f, _AliasFinder):
            f.aliases.update(aliases)
            return
    sys.meta_path.append(_AliasFinder(dict(aliases)))
