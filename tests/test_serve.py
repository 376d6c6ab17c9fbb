"""`therasim serve` against a stand-in `vllm` executable on PATH (vLLM cannot be installed here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import free_port

FAKE_VLLM = r'''#!PYTHON
import json, signal, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
args = sys.argv[1:]
open(ARGS_FILE, "w").write(json.dumps(args))
port = int(args[args.index("--port") + 1])
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404); self.end_headers()
    def log_message(self, *a): pass
srv = HTTPServer(("127.0.0.1", port), H)
srv.timeout = 0.2
stop = []
signal.signal(signal.SIGINT, lambda *a: stop.append(1))
time.sleep(0.5)
while not stop:
    srv.handle_request()
open(ARGS_FILE + ".stopped", "w").write("clean")
'''


def _ctrl_c_as_in_a_terminal() -> None:
    # The child gets SIGINT as a terminal's Ctrl-C would deliver it. A test worker can
    # carry an ignored or blocked SIGINT (an earlier test in it, e.g. Ray's), which
    # exec passes on: Python then installs no KeyboardInterrupt handler at all.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_serve_starts_waits_prints_and_stops(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    args_file = tmp_path / "args.json"
    exe = bindir / "vllm"
    exe.write_text(FAKE_VLLM.replace("PYTHON", sys.executable).replace("ARGS_FILE", repr(str(args_file))))
    exe.chmod(0o755)
    port = free_port()
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    # Output goes to files, not pipes: a child that writes more than a pipe holds
    # while nobody reads it would block and never stop.
    out_path, err_path = tmp_path / "out.txt", tmp_path / "err.txt"
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "therasim.cli", "serve", "org/model-8b", "--port", str(port), "--", "--max-model-len", "8192"], env=env, stdout=out, stderr=err, text=True, preexec_fn=_ctrl_c_as_in_a_terminal)
    try:
        deadline = time.monotonic() + 60
        while "base_url" not in out_path.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(0.2)
        assert f"base_url: http://127.0.0.1:{port}/v1" in out_path.read_text(), err_path.read_text()[-2000:]
        import json

        args = json.loads(args_file.read_text())
        assert args[:2] == ["serve", "org/model-8b"] and "--enable-prefix-caching" in args and args[-2:] == ["--max-model-len", "8192"]
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)  # a clean stop; generous for a loaded CI machine
        except subprocess.TimeoutExpired:
            raise AssertionError(f"therasim serve did not stop on SIGINT; stderr: {err_path.read_text()[-2000:]}") from None
        assert code == 0, err_path.read_text()[-2000:]
        assert (tmp_path / "args.json.stopped").read_text() == "clean"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_without_vllm_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "therasim.cli", "serve", "m"], env=env, capture_output=True, text=True)
    assert r.returncode == 2
    assert "pip install 'therasim[vllm]'" in r.stderr and "Traceback" not in r.stderr
