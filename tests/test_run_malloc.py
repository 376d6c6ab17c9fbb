"""The runner caps glibc's malloc arenas for the process that runs a cohort
(``therasim.runner._malloc_arenas_for_run``; docs/benchmarks.md, "#17: resident memory
flat in cohort size"): importing therasim sets nothing, a run does, the setting is
named when it is bad, and ``THERASIM_MALLOC_ARENA_MAX=0`` leaves glibc's default."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from therasim.errors import ConfigError
from therasim.runner import MALLOC_ARENA_MAX, _malloc_arenas_for_run

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc only")

# Threads that each allocate from the C heap and stay alive, then the arenas glibc made
# (malloc_info lists one <heap> per arena besides the main one).
_PROBE = textwrap.dedent(
    """
    import ctypes, os, sys, tempfile, threading
    import therasim, therasim.runner
    if sys.argv[1] == "run":
        print("set", therasim.runner._malloc_arenas_for_run())
    hold, ready, stop = [], threading.Barrier(13), threading.Event()
    def work():
        hold.append(bytearray(200_000))
        ready.wait()
        stop.wait()
    ts = [threading.Thread(target=work) for _ in range(12)]
    for t in ts:
        t.start()
    ready.wait()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    path = tempfile.mktemp()
    f = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, f)
    libc.fclose(f)
    print("arenas", open(path).read().count("<heap nr="))
    os.unlink(path)
    stop.set()
    """
)


def _probe(mode: str, **env: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env=e, timeout=120, check=True)
    return dict(line.split(" ", 1) for line in out.stdout.splitlines())


@glibc
def test_a_run_caps_the_arenas_and_importing_does_not() -> None:
    imported = _probe("import")
    assert "set" not in imported and int(imported["arenas"]) > MALLOC_ARENA_MAX  # glibc's default: an arena per thread here
    ran = _probe("run")
    assert ran["set"] == str(MALLOC_ARENA_MAX)
    assert int(ran["arenas"]) <= MALLOC_ARENA_MAX
    left = _probe("run", THERASIM_MALLOC_ARENA_MAX="0")  # the opt-out
    assert left["set"] == "None" and int(left["arenas"]) > MALLOC_ARENA_MAX


@pytest.mark.parametrize("raw", ["many", "-1", "2.5"])
def test_a_bad_setting_is_named(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THERASIM_MALLOC_ARENA_MAX", raw)
    with pytest.raises(ConfigError, match="THERASIM_MALLOC_ARENA_MAX"):
        _malloc_arenas_for_run()


def test_zero_leaves_the_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THERASIM_MALLOC_ARENA_MAX", "0")
    assert _malloc_arenas_for_run() is None
