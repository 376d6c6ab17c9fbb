"""Bounded parsing of untrusted documents: YAML with alias, depth and size limits and
no duplicate keys; JSON lines read one line at a time (a bad line, bad UTF-8 or a
line nested thousands deep is reported with its line number, the others still
load); a bounded ``repr`` for error messages.

A 440-byte YAML "billion laughs" expands to 10^9 nodes; PyYAML builds it as shared
objects in no time, but anything that walks it (validation, ``repr`` in an error
message) does not finish. The limits below refuse it while parsing.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = ["MAX_ALIASES", "MAX_DEPTH", "MAX_NODES", "ParseError", "check_depth", "iter_json_lines", "load_json", "load_yaml", "short_repr"]

MAX_ALIASES = 1_000  # alias uses (``*name``) in one document
MAX_DEPTH = 64  # nesting of mappings and lists, aliases expanded
MAX_NODES = 200_000  # values in one document, aliases expanded


class ParseError(ValueError):
    """A document could not be read; ``line`` is 1-based where known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 5
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlong = 40


def short_repr(obj: Any, limit: int = 80) -> str:
    """``repr`` that takes bounded time and space whatever ``obj`` is (deep, huge, shared)."""
    try:
        s = _REPR.repr(obj)
    except Exception:  # a hostile __repr__ or a recursion
        s = f"<{type(obj).__name__}>"
    return s if len(s) <= limit else s[: limit - 3] + "..."


def check_depth(obj: Any, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
    """Raise :class:`ParseError` when ``obj`` nests deeper than ``max_depth`` or holds
    more than ``max_nodes`` values (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    seen = 0
    while stack:
        o, d = stack.pop()
        seen += 1
        if seen > max_nodes:
            raise ParseError(f"more than {max_nodes} values")
        if isinstance(o, (dict, list)):
            if d > max_depth:
                raise ParseError(f"nested more than {max_depth} levels deep")
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))


class _Loader(yaml.SafeLoader):
    """SafeLoader with alias, depth and expanded-size limits, refusing duplicate keys."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.composer.ComposerError(None, None, f"more than {MAX_ALIASES} aliases", self.peek_event().start_mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    k = (key_node.tag, key_node.value)
                    if k in seen:
                        raise yaml.constructor.ConstructorError(
                            "while reading a mapping", node.start_mark,
                            f"duplicate key {short_repr(key_node.value)} (first at line {seen[k].line + 1}); keep one", key_node.start_mark,
                        )
                    seen[k] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: Any) -> None:
    """Refuse a composed document whose aliases expand past the limits (cycles included)."""
    memo: dict[int, int] = {}

    def size(n: Any, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise ParseError(f"nested more than {MAX_DEPTH} levels deep once aliases are expanded")
        if id(n) in memo:
            return memo[id(n)]
        if isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(c, depth + 1) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in n.value)
        else:
            total = 1
        if total > MAX_NODES:
            raise ParseError(f"more than {MAX_NODES} values once aliases are expanded (an alias bomb?)")
        memo[id(n)] = total
        return total

    size(node, 1)


def load_yaml(text: str, source: str = "document") -> Any:
    """Parse one YAML document within the limits; :class:`ParseError` names the line."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except ParseError as e:
        raise ParseError(f"{source}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ParseError(f"{source}: malformed YAML{where}: {problem}", mark.line + 1 if mark else None) from None
    except RecursionError:
        raise ParseError(f"{source}: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_json(text: str, source: str = "document") -> Any:
    """Parse JSON within the depth and size limits."""
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ParseError(f"{source}: nested too deeply") from None
    except json.JSONDecodeError as e:
        raise ParseError(f"{source}: invalid JSON ({e.msg} at column {e.colno})", e.lineno) from None
    except ValueError as e:  # NaN / Infinity
        raise ParseError(f"{source}: {e}") from None
    try:
        check_depth(obj)
    except ParseError as e:
        raise ParseError(f"{source}: {e}") from None
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, Any | ParseError]]:
    """``(line_number, object or ParseError)`` for each non-blank line of a JSONL file.
    Each line is decoded on its own: bad UTF-8, invalid or too-deep JSON on one line
    is that line's error, not the file's."""
    p = Path(path)
    with open(p, "rb") as f:
        for i, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield i, ParseError(f"{p.name}:{i}: not UTF-8 ({e.reason} at byte {e.start})", i)
                continue
            try:
                yield i, load_json(text, f"{p.name}:{i}")
            except ParseError as e:
                yield i, ParseError(str(e), i)
