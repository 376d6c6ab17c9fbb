"""One register/look-up helper for everything looked up by name (presets,
modalities, emotion taxonomies, memory backends, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from therasim.errors import UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(dict[str, T]):
    """A ``dict`` of named things of one kind, whose :meth:`lookup` fails with the
    known names and how to add one."""

    def __init__(self, kind: str, items: Mapping[str, T] | None = None, *, hint: str = "") -> None:
        super().__init__(items or {})
        self.kind = kind
        self.hint = hint

    def register(self, name: str, obj: T) -> T:
        """Add or replace ``name``; returns ``obj``."""
        self[name] = obj
        return obj

    def lookup(self, name: str) -> T:
        try:
            return self[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {sorted(self)}{f' ({self.hint})' if self.hint else ''}") from None
