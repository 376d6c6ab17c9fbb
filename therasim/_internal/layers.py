"""The library's layers and the check that keeps imports pointing one way.

A module may import modules of its own layer and of the layers below it, never
above; a node module imports no other node module (what two nodes share lives
in a lower layer, or in ``therasim.nodes._common``). Imports inside functions count (they only hide a dependency); imports
under ``if TYPE_CHECKING:`` do not (they are annotations, not dependencies).
tests/test_layers.py runs :func:`check_layers` over the whole library.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ALLOWED", "LAYERS", "check_layers", "library_modules", "module_layer"]

# Lowest first. A name matches a module and every module below it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "core",
        (
            "therasim._internal",
            "therasim._version",
            "therasim._logging",
            "therasim.errors",
            "therasim.config",
            "therasim.contract",
            "therasim.state",
            "therasim.providers",
            "therasim.structured",
            "therasim.profiles",
            "therasim.profile_import",
            "therasim.memory",
            "therasim.parsing",
            "therasim.redact",
            # data the profile schema, the config and the scripted reference counselors
            # (a provider) need; they import nothing above core
            "therasim.policies.instruments",
            "therasim.policies.archetypes",
            "therasim.policies.problems",
            "therasim.policies.appraisal",
            "therasim.scripted",
        ),
    ),
    ("policies", ("therasim.policies",)),
    # The run's context binds models and policies for the nodes, and the shared prompt
    # headers render policies (modality, taxonomy) through it: above both.
    ("context", ("therasim.context", "therasim.prompts", "therasim.speech")),
    ("nodes", ("therasim.nodes",)),
    ("graphs", ("therasim.graphs",)),
    (
        "application",
        (
            "therasim",
            "therasim.records",
            "therasim.runner",
            "therasim.traces",
            "therasim.cli",
            "therasim.plotting",
            "therasim.doctor",
            "therasim.serve",
            "therasim.testing",
            "therasim.tools",
        ),
    ),
)
# Known wrong-way imports, each with the reason and the way out. tests/test_layers.py
# fails when one is no longer needed, so the list only shrinks.
ALLOWED: dict[tuple[str, str], str] = {
    ("therasim.context", "therasim.studio"): "as_sim_context turns a LangGraph Studio JSON context into a SimContext; the dict case belongs in the studio graphs' own wrapper",
    ("therasim.graphs.builder", "therasim.eval.probes"): "the node wrapper plants evaluation probes (#15); to become an output hook the run's context carries",
}
NODES = "therasim.nodes"
# Where each package's folder is in the repository (setuptools package-dir).
PACKAGE_DIRS = {"therasim": "therasim", "therasim.graphs": "graphs", "therasim.nodes": "nodes", "therasim.memory": "memory", "therasim.policies": "policies"}


def module_layer(name: str) -> int | None:
    """Index in :data:`LAYERS` of the module ``name`` (the longest matching entry)."""
    best: tuple[int, int] | None = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    return None if best is None else best[0]


def library_modules(repo: str | Path) -> dict[str, Path]:
    """Every module of the library: dotted name -> source file."""
    root = Path(repo)
    out: dict[str, Path] = {}
    for pkg, folder in PACKAGE_DIRS.items():
        base = root / folder
        for f in sorted(base.rglob("*.py")):
            rel = f.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            out.setdefault(name, f)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported module) for every runtime import of a ``therasim`` module."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for n in node.orelse:
                visit(n)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from therasim import testing`` imports the module therasim.testing
            found.extend((node.lineno, f"{base}.{a.name}") for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return [(line, name) for line, name in found if name == "therasim" or name.startswith("therasim.")]


def _target(name: str, known: Mapping[str, Path]) -> str:
    """The module an imported name refers to (``therasim.x.attr`` -> ``therasim.x``)."""
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def check_layers(modules: Mapping[str, str | Path], allowed: Mapping[tuple[str, str], str] | None = None) -> list[str]:
    """Wrong-way imports among ``modules`` (dotted name -> source file), one line each;
    ``allowed`` (default :data:`ALLOWED`) pairs are left out."""
    allowed = ALLOWED if allowed is None else allowed
    problems = []
    known = {n: Path(p) for n, p in modules.items()}
    for name, path in sorted(known.items()):
        mine = module_layer(name)
        if mine is None:
            problems.append(f"{name}: in no layer (add it to therasim._internal.layers.LAYERS)")
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, imported in _imports(tree, name, path.name == "__init__.py"):
            target = _target(imported, known)
            theirs = module_layer(target)
            sibling = name.startswith(NODES + ".") and target.startswith(NODES + ".") and target not in (name, NODES + "._common")
            if theirs is not None and (theirs > mine or sibling) and (name, target) not in allowed:
                problems.append(f"{name} (line {line}, layer {LAYERS[mine][0]}) imports {target} (layer {LAYERS[theirs][0]})")
    return problems
