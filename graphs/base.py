"""What the session and course builders share: an ordered list of named steps,
each a :class:`~therasim.contract.NodeSpec`, placed before or after another one,
looked up with errors that list what exists. No role names here."""

from __future__ import annotations

from typing import Any

from therasim.contract import NodeSpec
from therasim.errors import TherasimError
from therasim.state import Side

__all__ = ["StepsBuilder"]


class StepsBuilder:
    """An ordered, named list of node specs (``nodes`` by name, ``order``)."""

    noun = "node"  # how errors name one step
    reserved: tuple[str, ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: dict[str, NodeSpec] = {}
        self.order: list[str] = []

    def _index(self, name: str) -> int:
        try:
            return self.order.index(name)
        except ValueError:
            raise TherasimError(f"no {self.noun} {name!r}; {self.noun}s are {self.order}") from None

    @staticmethod
    def _check_side(side: Any) -> None:
        if side not in ("client", "counselor", "system"):
            raise TherasimError(f"side must be 'client', 'counselor' or 'system', got {side!r}")

    def _check_new(self, name: str, hint: str) -> None:
        if name in self.order or name in self.nodes or name in self.reserved:
            raise TherasimError(f"{self.noun} {name!r} already exists or is reserved; {hint}")

    def _place(self, spec: NodeSpec, before: str | None, after: str | None, default: int | None = None) -> None:
        """Store ``spec`` and put its name before/after another step (else at ``default``, else last)."""
        if before is not None:
            i = self._index(before)
        elif after is not None:
            i = self._index(after) + 1
        else:
            i = len(self.order) if default is None else default
        self.nodes[spec.name] = spec
        self.order.insert(i, spec.name)

    def _replace(self, name: str, side: Side | None, **changes: Any) -> NodeSpec:
        """The spec of ``name`` with ``changes`` (keeping its place, role and contract)."""
        if name not in self.nodes:
            raise TherasimError(f"no {self.noun} {name!r} to replace; {self.noun}s are {self.order}")
        old = self.nodes[name]
        self.nodes[name] = old.replace(side=side or old.side, **changes)
        return old

    def build(self, checkpointer: Any = None) -> Any:
        raise NotImplementedError

    def mermaid(self) -> str:
        """Mermaid text of the graph, drawn offline."""
        return str(self.build().compile().get_graph().draw_mermaid())
