"""Packaging: subpackages install under therasim; import is silent and offline."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO


def test_import_is_silent_and_opens_no_socket(tmp_path: Path) -> None:
    code = (
        "import socket\n"
        "def _no(*a, **k): raise AssertionError('socket opened on import')\n"
        "socket.socket.connect = _no; socket.create_connection = _no\n"
        "import logging\n"
        "import therasim, therasim.graphs, therasim.nodes, therasim.memory, therasim.policies\n"
        "assert not logging.getLogger().handlers, logging.getLogger().handlers\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""


def test_wheel_layout_and_import(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    wheel = next((tmp_path / "dist").glob("therasim-*.whl"))
    top = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert "therasim" in top
    assert not top & {"graphs", "nodes", "memory", "policies"}, top
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    code = (
        f"import sys; sys.path.insert(0, {str(target)!r})\n"
        "import therasim.graphs, therasim.nodes, therasim.memory, therasim.policies, therasim\n"
        f"assert therasim.graphs.__file__.startswith({str(target)!r}), therasim.graphs.__file__\n"
        "from therasim.profiles import example_profiles; assert len(example_profiles()) >= 3\n"
    )
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
