"""Layers point one way: core <- policies <- context <- nodes <- graphs <- application.

An AST check over every module of the library (imports inside functions count;
imports under ``if TYPE_CHECKING:`` do not). A planted wrong-way import fails it."""

from __future__ import annotations

from pathlib import Path

import pytest

from therasim._internal.layers import ALLOWED, LAYERS, check_layers, library_modules, module_layer

REPO = Path(__file__).resolve().parents[1]


def test_layers_point_one_way() -> None:
    problems = check_layers(library_modules(REPO))
    assert not problems, "wrong-way imports:\n" + "\n".join(problems)


def test_allowed_exceptions_are_still_needed() -> None:
    needed = check_layers(library_modules(REPO), allowed={})
    for (importer, imported), why in ALLOWED.items():
        assert any(p.startswith(f"{importer} ") and p.endswith(f"imports {imported} (layer {LAYERS[module_layer(imported) or 0][0]})") for p in needed), (
            f"{importer} -> {imported} is allowed ({why}) but no longer imported: remove it from ALLOWED"
        )


def test_old_module_paths_still_import() -> None:
    import therasim.stub
    import therasim.tools.stub

    assert therasim.stub is therasim.tools.stub
    from therasim.bench import bench  # noqa: F401
    from therasim.memory.embeddings import HashEmbedding as InLibrary
    from therasim.schema_sampling import instance_from_schema  # noqa: F401
    from therasim.testing import HashEmbedding

    assert HashEmbedding is InLibrary


def test_every_module_has_a_layer() -> None:
    for name in library_modules(REPO):
        assert module_layer(name) is not None, f"{name} is in no layer; add it to therasim._internal.layers.LAYERS"


@pytest.mark.parametrize(
    ("module", "source", "culprit"),
    [
        ("therasim.policies.planted", "from therasim.graphs import preset\n", "therasim.graphs"),
        ("therasim.nodes.planted", "def f():\n    from therasim.runner import run  # hidden in a function\n", "therasim.runner"),
        ("therasim.state", "import therasim.context\n", "therasim.context"),  # replaces the real module
        ("therasim.memory.planted", "from therasim import testing\n", "therasim.testing"),
        ("therasim.nodes.planted", "from therasim.nodes.emotion import emotion_model\n", "therasim.nodes.emotion"),  # node to node
    ],
)
def test_a_planted_wrong_way_import_fails(tmp_path: Path, module: str, source: str, culprit: str) -> None:
    f = tmp_path / "planted.py"
    f.write_text(source)
    problems = check_layers({**library_modules(REPO), module: f})
    assert len(problems) == 1 and module in problems[0] and culprit in problems[0]


def test_type_checking_imports_are_allowed(tmp_path: Path) -> None:
    f = tmp_path / "planted.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from therasim.context import NodeContext\n")
    assert check_layers({**library_modules(REPO), "therasim.contract": f}) == []
    assert LAYERS[0][0] == "core"
