"""The notebooks run top to bottom on the embedded model (executed in CI).

To save CPU time they run here with one client (02) and one session (01), set through
THERASIM_NB_CLIENTS / THERASIM_NB_SESSIONS; their default sizes (two clients, two
sessions) run top to bottom against the stub model server in test_notebooks_stub.py."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

pytestmark = pytest.mark.embedded
NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    monkeypatch.delenv("THERASIM_MODEL", raising=False)  # the embedded model
    monkeypatch.setenv("THERASIM_NB_CLIENTS", "1")
    monkeypatch.setenv("THERASIM_NB_SESSIONS", "1")
    # A kernel that dies in native code (llama.cpp, torch) prints every thread's Python
    # stack to its stderr, which pytest captures and shows with the failure. For that the
    # kernel keeps its real stdout/stderr (capture_fd_output=False): ipykernel otherwise
    # swaps fds 1/2 for pipes read by a thread of its own, the dump goes into the pipe and
    # dies with the kernel, and llama.cpp's own fd 1/2 swapping (every model load with
    # verbose=False, from the run's worker threads) races that thread.
    monkeypatch.setenv("PYTHONFAULTHANDLER", "1")
    nb = nbformat.read(path, as_version=4)
    kernels: list = []
    client = NotebookClient(
        nb,
        timeout=900,
        kernel_name="python3",
        extra_arguments=["--IPKernelApp.capture_fd_output=False"],
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.on_notebook_start = lambda **_: kernels.append(client.km.provisioner.process)  # type: ignore[union-attr]
    try:
        client.execute()
    except DeadKernelError:
        proc = kernels[0] if kernels else None
        rc = proc.wait(10) if proc is not None else None
        how = f"killed by {signal.Signals(-rc).name}" if rc is not None and rc < 0 else f"exit status {rc}"
        pytest.fail(f"the notebook's kernel died ({how}; SIGKILL with no traceback: the out-of-memory killer, see dmesg; SIGSEGV/SIGILL/SIGABRT: native code, stacks in the captured stderr)")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_there_are_two_notebooks() -> None:
    assert len(NOTEBOOKS) == 2
