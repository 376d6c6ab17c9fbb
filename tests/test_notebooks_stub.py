"""The notebooks take their model server from THERASIM_MODEL: both run top to
bottom against the stub here (the embedded-model run is in test_notebooks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.embedded  # the notebooks' runs use the real MiniLM memory embedding
NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_on_a_model_server_from_the_environment(path: Path, tmp_path: Path, stub_url: str, monkeypatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    monkeypatch.setenv("THERASIM_MODEL", f"openai:stub@{stub_url}")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "openai" in text or '"courses_completed"' in text
