"""Throw-away services for the scale-out tests, all on 127.0.0.1 and stopped at the
end: a PostgreSQL 15 cluster in a temp folder (as the `postgres` user when the
tests run as root: the server refuses root), a `chroma run` server, a stub model
server, and a Ray cluster of a head and one worker node (`ray start --block`, each
in its own process group so teardown ends only what it started)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import free_port, wait_port  # type: ignore[import-not-found]

PG_BIN = Path(os.environ.get("THERASIM_PG_BIN", "/usr/lib/postgresql/15/bin"))
VENV_BIN = Path(sys.executable).parent


def pg_missing() -> str | None:
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql, or set THERASIM_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the server as"
    return None


def ray_missing() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError:
        return "ray is not installed (pip install 'therasim[ray]')"
    return None


class Postgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tspg"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = "postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        self._cmd([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync"], 120)
        self.start()

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _cmd(self, args: list[str], timeout: float) -> None:
        r = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {r.stdout[-500:]} {r.stderr[-500:]}")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c shared_buffers=16MB"
        self._cmd([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "-t", "60", "start"], 90)

    def stop(self, mode: str = "fast") -> None:
        self._cmd([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"], 90)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class Proc:
    """A server process in its own process group."""

    def __init__(self, args: list[str], port: int, path: str, env: dict[str, str] | None = None, timeout: float = 60) -> None:
        self.port = port
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        wait_port(port, self.proc, timeout, path)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def chroma_server(path: Path, port: int | None = None) -> Proc:
    exe = shutil.which("chroma") or str(VENV_BIN / "chroma")
    port = port or free_port()
    env = {"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin"}
    return Proc([exe, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)], port, "/api/v2/heartbeat", env)


def stub_server(*args: str) -> Proc:
    port = free_port()
    return Proc([sys.executable, "-m", "therasim.cli", "stub", "--port", str(port), *args], port, "/health", timeout=30)


class RayCluster:
    """`ray start --head` plus one `ray start --address` worker node, 1 CPU each,
    100 MB object stores, no dashboard; each `--block`ed in its own process group."""

    def __init__(self, worker_nodes: int = 1, cpus: int = 1) -> None:
        self.tmp = tempfile.mkdtemp(prefix="tsray", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        ray = str(VENV_BIN / "ray")
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_IMPORT_WARNING": "1", "ANONYMIZED_TELEMETRY": "False"}
        common = ["--num-cpus", str(cpus), "--object-store-memory", str(100 * 1024 * 1024), "--block", "--disable-usage-stats"]
        self.procs: list[subprocess.Popen[bytes]] = []
        self._log = open(Path(self.tmp) / "start.log", "ab")
        self.procs.append(self._start([ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port), "--include-dashboard=false", "--temp-dir", self.tmp, *common], env))
        self._wait_nodes(1, env)
        for _ in range(worker_nodes):
            self.procs.append(self._start([ray, "start", "--address", self.address, "--node-ip-address", "127.0.0.1", *common], env))
        self._wait_nodes(1 + worker_nodes, env)

    def _start(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(args, stdout=self._log, stderr=self._log, env=env, start_new_session=True)

    def _wait_nodes(self, n: int, env: dict[str, str], timeout: float = 150) -> None:
        if n == 1:  # the head is up when its GCS port answers
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self._check_alive()
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", self.port), 1).close()
                    return
                time.sleep(0.2)
            raise RuntimeError("Ray head did not come up")
        code = (
            f"import ray, time; ray.init(address='{self.address}', logging_level='ERROR', log_to_driver=False)\n"
            f"t = time.monotonic()\n"
            f"while sum(1 for x in ray.nodes() if x['Alive']) < {n} and time.monotonic() - t < {timeout}: time.sleep(0.3)\n"
            f"print(sum(1 for x in ray.nodes() if x['Alive']))"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout + 60)
        self._check_alive()
        if r.returncode != 0 or not r.stdout.strip().isdigit() or int(r.stdout.strip()) < n:
            raise RuntimeError(f"Ray cluster did not reach {n} node(s): {r.stdout[-300:]} {r.stderr[-800:]}")

    def _check_alive(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"ray start exited with {p.returncode}: {(Path(self.tmp) / 'start.log').read_text()[-1500:]}")

    def worker_pids(self) -> list[int]:
        """PIDs of this cluster's CourseWorker actor processes."""
        import psutil

        out = []
        roots = [psutil.Process(p.pid) for p in self.procs if p.poll() is None]
        for root in roots:
            for c in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if c.name().startswith("ray::CourseWorker") or " ".join(c.cmdline()).startswith("ray::CourseWorker"):
                        out.append(c.pid)
        return out

    def close(self) -> None:
        """A throw-away cluster: SIGKILL its process groups and every process they
        started (by pid), then remove its temp folder."""
        import psutil

        kids: list[psutil.Process] = []
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                kids += psutil.Process(p.pid).children(recursive=True)
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        for k in kids:  # children Ray moved to their own group: still ours, ended by pid
            with contextlib.suppress(psutil.Error):
                k.kill()
        for p in self.procs:
            p.wait(10)
        psutil.wait_procs(kids, timeout=10)
        self._log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def services(tmp: Path, *, ray_nodes: bool = True) -> Iterator[dict[str, object]]:
    made: list[object] = []
    try:
        out: dict[str, object] = {}
        boot: dict[str, object] = {}
        if ray_nodes:  # Ray boots slowest: start it in the background while the rest comes up
            t = threading.Thread(target=lambda: boot.setdefault("ray", _try(RayCluster)))
            t.start()
        pg = Postgres()
        made.append(pg)
        chroma = chroma_server(tmp / "chroma")
        made.append(chroma)
        stub = stub_server("--profile", "zero")
        made.append(stub)
        out.update(pg=pg, chroma=chroma, stub=stub)
        if ray_nodes:
            t.join()
            rc = boot["ray"]
            if isinstance(rc, BaseException):
                raise rc
            made.append(rc)
            out["ray"] = rc
        yield out
    finally:
        for m in reversed(made):
            with contextlib.suppress(Exception):
                m.close()  # type: ignore[attr-defined]


def _try(fn: Any) -> Any:
    try:
        return fn()
    except BaseException as e:
        return e
