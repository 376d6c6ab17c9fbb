"""`therasim serve MODEL`: start `vllm serve` with prefix caching on, wait for /health,
print the base_url for a config, forward Ctrl-C and stop it cleanly."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from therasim.errors import MissingExtraError, TherasimError

__all__ = ["serve", "vllm_command"]


def vllm_command(model: str, host: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    exe = shutil.which("vllm")
    if exe is None:
        raise MissingExtraError("vllm", "vllm", "`therasim serve` (a vLLM server on a GPU machine)")
    cmd = [exe, "serve", model, "--host", host, "--port", str(port)]
    if "--enable-prefix-caching" not in extra and "--no-enable-prefix-caching" not in extra:
        cmd.append("--enable-prefix-caching")
    return [*cmd, *extra]


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TherasimError(f"vllm exited with code {proc.returncode} before it became healthy; see its output above")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TherasimError(f"vllm did not answer {url} within {timeout_s:.0f}s; raise --health-timeout or check its output")


def serve(model: str, *, host: str = "127.0.0.1", port: int = 8000, extra: Sequence[str] = (), health_timeout_s: float = 900.0, echo=print) -> int:
    """Run vLLM until Ctrl-C (or until it exits); returns its exit code."""
    cmd = vllm_command(model, host, port, extra)
    proc = subprocess.Popen(cmd)
    try:
        wait_healthy(f"http://{host}:{port}/health", proc, health_timeout_s)
        echo(f"vLLM is ready. Put this in your config:\n  provider: openai\n  model: {model}\n  base_url: http://{host}:{port}/v1")
        sys.stdout.flush()
        return proc.wait()
    except KeyboardInterrupt:
        echo("stopping vLLM ...")
        return _stop(proc)
    except BaseException:
        _stop(proc)
        raise


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                return proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()
    return proc.returncode if proc.returncode is not None else 0
