"""Scale-out: a cohort's courses sharded over Ray actors (``therasim run --executor ray``).

The driver (the ``therasim run`` process) keeps the run directory: it decides
which courses are left, writes ``courses.jsonl``, ``transcripts.jsonl`` and
``events.jsonl`` exactly as a local run does, and hands each course to whichever
actor has room. Each actor is one process with its own asyncio loop running
:func:`therasim.graphs.course.run_course` for up to ``concurrency`` courses at
once, over the shared durable state: checkpoints in Postgres (LangGraph's
saver, :mod:`therasim._internal.checkpoint`), memory on a ``chroma run`` server, model
replicas chosen per course as in a local run.

Nothing is lost or doubled when a process dies:

- an actor's events and finished-session records are pulled by the driver a few
  times a second; a course's final state (from its checkpoints) carries every
  session record, so a record an actor filed but the driver never received is
  written when the course ends, and a record received twice is written once;
- a killed actor's courses go back in the queue and continue from their last
  checkpoint on another actor (a replacement actor is started for the lost one);
- a killed driver takes its actors with it (Ray fate-shares them with the job);
  ``--resume`` continues every course not marked completed from its checkpoints.

Ray is imported lazily: the local executor never needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from typing import Any

from therasim.errors import ConfigError

__all__ = ["CourseWorker", "RayExecutor", "check_ray", "import_ray"]

RAY_HINT = "pip install 'therasim[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {RAY_HINT}") from None
    return ray


class CourseWorker:
    """A Ray actor: one process, one asyncio loop, up to ``concurrency`` courses."""

    def __init__(self, run_id: str, config: dict[str, Any], concurrency: int, env: dict[str, str], models: Any = None, session_builder: Any = None, memory_scope: str | None = None, memory_layout: str | None = None) -> None:
        from therasim.config import RunConfig

        for k, v in env.items():
            os.environ.setdefault(k, v)  # a worker's own setting wins (its own route to Postgres)
        os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
        self.run_id = run_id
        self.memory_scope = memory_scope  # the run's memory scope (as the driver's store)
        self.memory_layout = memory_layout or "per-client"  # and its layout (none recorded: an older run's)
        self.cfg = RunConfig.model_validate(config)
        self.concurrency = concurrency
        self.models = models
        self.session_builder = session_builder
        self.events: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self._stack: contextlib.AsyncExitStack | None = None

    async def open(self) -> dict[str, Any]:
        from therasim._internal.checkpoint import open_run_checkpointer
        from therasim.context import SimContext
        from therasim.graphs.course import course_builder
        from therasim.memory import open_run_store
        from therasim.providers import ModelPool

        cfg = self.cfg
        self._stack = contextlib.AsyncExitStack()
        saver = await self._stack.enter_async_context(open_run_checkpointer(cfg.checkpointer, "", setup=False))
        self.store = open_run_store(cfg.memory, None, {"memory_scope": self.memory_scope, "memory_layout": self.memory_layout}) if cfg.course.memory else None
        if self.store is not None:
            from therasim.memory.pool import size_memory_pool

            size_memory_pool(self.concurrency)  # as the local runner: a memory thread per course in flight (memory/pool.py)
        m = self.models
        self.pool = m if isinstance(m, ModelPool) else ModelPool(m if m is not None else cfg.models)
        self.graph = course_builder(cfg.course, self.session_builder).compile(checkpointer=saver)
        self.ctx = SimContext.from_config(cfg, models=self.pool, memory=self.store, on_event=lambda e: self.events.append(e), on_record=lambda r: self.records.append(r), on_messages=lambda m: self.messages.append(m))
        self.sem = asyncio.Semaphore(self.concurrency)
        return {"pid": os.getpid(), "host": os.uname().nodename}

    async def run(self, profile: dict[str, Any]) -> dict[str, Any]:
        """Run (or continue, or just read back) one course; never raises for the course's own errors."""
        from therasim.graphs.course import initial_course_state, run_course
        from therasim.profiles import ClientProfile

        p = ClientProfile.model_validate(profile)
        cfg = self.cfg
        async with self.sem:
            try:
                state = initial_course_state(p, run_id=self.run_id, sessions=cfg.course.sessions, modality=cfg.course.modality)
                final = await run_course(self.graph, state, self.ctx, thread_id=f"{self.run_id}/{p.id}/course")
            except Exception as e:  # one course failing never stops the others
                return {"client_id": p.id, "error": f"{type(e).__name__}: {e}", "records": []}
        return {"client_id": p.id, "error": None, "records": list(final.get("records") or [])}

    def drain(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        ev, rec, msg = self.events, self.records, self.messages
        self.events, self.records, self.messages = [], [], []
        return ev, rec, msg

    async def close(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pending": [], "retried": 0, "cpu_s": time.process_time(), "pid": os.getpid()}
        store = getattr(self, "store", None)
        if store is not None:
            if store.pending:
                await asyncio.to_thread(store.flush)
            out["pending"] = [(c, r, i, d, m, [list(map(float, e)) for e in es]) for c, r, i, d, m, es in store.pending]
            out["retried"] = int(store.retried)
        with contextlib.suppress(Exception):
            await self.pool.aclose()
        if self._stack is not None:
            await self._stack.aclose()
        return out


class RayExecutor:
    """Run a run directory's courses on ``workers`` Ray actors.

    ``address``: a running cluster (``auto`` or ``HOST:PORT``); None starts a
    local Ray instance for this run. ``concurrency`` (from ``--concurrency`` or the
    config) is per actor. ``cpus_per_worker`` is the Ray CPU resource each actor
    asks for (one asyncio loop uses one core).
    """

    def __init__(self, address: str | None = None, workers: int = 2, *, cpus_per_worker: float = 1.0, start_timeout_s: float = 120.0, object_store_memory: int | None = None) -> None:
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        self.address = address
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.start_timeout_s = start_timeout_s
        self.object_store_memory = object_store_memory
        self.stats: dict[str, Any] = {}

    def check(self, cfg: Any) -> None:
        """Refuse a configuration whose state the workers could not share."""
        import_ray()
        if cfg.checkpointer.backend != "postgres":
            raise ConfigError(
                "checkpointer.backend: --executor ray needs checkpoints every worker can reach; "
                "set `checkpointer: {backend: postgres, dsn_env: THERASIM_PG_DSN}` (docs/scale-out.md)"
            )
        if cfg.course.memory and cfg.memory.backend == "chroma":
            raise ConfigError(
                "memory.backend: --executor ray needs a memory server every worker can reach; "
                "set `memory: {backend: chroma-http, host: HOST, port: PORT}` with `chroma run` on that host, or memory.backend: none"
            )

    # ------------------------------------------------------------------ Ray
    def _init(self, ray: Any) -> bool:
        if ray.is_initialized():
            return False
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING", "configure_logging": False}
        if self.address:
            kw["address"] = self.address
        else:
            kw["num_cpus"] = max(1, int(self.workers * self.cpus_per_worker + 0.999))
            if self.object_store_memory:
                kw["object_store_memory"] = self.object_store_memory
        try:
            ray.init(**kw)
        except ConnectionError as e:
            raise ConfigError(f"--address {self.address}: cannot reach a Ray cluster ({e}); start one with `ray start --head` or check HOST:PORT") from None
        return True

    async def _spawn(self, ray: Any, cls: Any, args: tuple[Any, ...]) -> tuple[Any, dict[str, Any]] | None:
        actor = cls.remote(*args)
        try:
            info = await asyncio.wait_for(_await(actor.open.remote()), self.start_timeout_s)
        except (asyncio.TimeoutError, Exception):
            with contextlib.suppress(Exception):
                ray.kill(actor)
            return None
        return actor, info

    async def arun(self, rd: Any, cfg: Any, todo: list[Any], *, concurrency: int, store: Any, on_event: Any, on_record: Any, on_messages: Any, course_running: Any, course_ended: Any, models: Any = None, session_builder: Any = None) -> None:
        """Run ``todo`` (profiles) to the end; report through the runner's callbacks."""
        from therasim._internal.checkpoint import open_postgres_checkpointer, postgres_dsn

        ray = import_ray()
        from ray.exceptions import RayActorError, WorkerCrashedError

        dead_errors = (RayActorError, WorkerCrashedError)
        spec = cfg.checkpointer
        dsn = postgres_dsn(spec)
        async with open_postgres_checkpointer(dsn, pool_size=1, retry_s=spec.retry_s, setup=True):
            pass  # tables created/migrated once, before any worker writes
        if not todo:
            return
        started = self._init(ray)
        cls = ray.remote(CourseWorker).options(num_cpus=self.cpus_per_worker, max_concurrency=concurrency + 8, max_restarts=0)
        man = rd.manifest()
        run_id = man["run_id"]
        args = (run_id, cfg.model_dump(mode="json"), concurrency, {spec.dsn_env: dsn}, models, session_builder, man.get("memory_scope"), man.get("memory_layout"))
        actors: dict[int, Any] = {}
        load: dict[int, int] = {}
        next_id = 0
        t_start = time.monotonic()
        stats: dict[str, Any] = {"workers": [], "actor_deaths": 0, "courses_moved": 0}
        self.stats = stats

        async def add_actor() -> bool:
            nonlocal next_id
            got = await self._spawn(ray, cls, args)
            if got is None:
                return False
            actors[next_id], info = got
            load[next_id] = 0
            stats["workers"].append({"id": next_id, **info})
            next_id += 1
            return True

        ok = await asyncio.gather(*(add_actor() for _ in range(self.workers)))
        t0 = time.monotonic()
        stats["start_s"] = t0 - t_start
        if not any(ok):
            raise ConfigError(f"no Ray actor could start within {self.start_timeout_s:.0f}s; does the cluster have {self.cpus_per_worker} free CPU(s) and therasim installed on its nodes?")
        queue: deque[Any] = deque(todo)
        pending: dict[asyncio.Future[Any], tuple[int, Any]] = {}
        spawns: set[asyncio.Future[Any]] = set()  # replacement actors starting (in the background)
        moves: dict[str, int] = {}
        replacements_left = 2 * self.workers + 2  # actors that keep dying (out of memory...) are not replaced forever

        def actor_died(i: int) -> None:
            nonlocal replacements_left
            if i in actors:
                del actors[i]
                load.pop(i, None)
                stats["actor_deaths"] += 1
                if replacements_left > 0:
                    replacements_left -= 1
                    spawns.add(asyncio.ensure_future(add_actor()))

        async def drain(i: int) -> None:
            a = actors.get(i)
            if a is None:
                return
            try:
                events, records, messages = await _await(a.drain.remote())
            except dead_errors:
                actor_died(i)
                return
            for m in messages:
                on_messages(m)
            for e in events:
                on_event(e)
            for r in records:
                on_record(r)

        try:
            while queue or pending:
                while queue:
                    room = [i for i in actors if load[i] < concurrency]
                    if not room:
                        break
                    i = min(room, key=lambda k: load[k])
                    p = queue.popleft()
                    fut: asyncio.Future[Any] = asyncio.ensure_future(_await(actors[i].run.remote(p.model_dump(mode="json"))))
                    pending[fut] = (i, p)
                    load[i] += 1
                    course_running(p.id)
                if not pending and not spawns:
                    for p in queue:
                        course_ended(p.id, "no Ray actor left to run it (workers died and none could be replaced); resume the run")
                    break
                done, _ = await asyncio.wait(set(pending) | spawns, timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
                spawns -= done
                await asyncio.gather(*(drain(i) for i in list(actors)))
                for fut in done:
                    if fut not in pending:
                        continue  # a replacement actor is up (or could not start)
                    i, p = pending.pop(fut)
                    if i in load:
                        load[i] -= 1
                    try:
                        res = fut.result()
                    except dead_errors:
                        actor_died(i)
                        moves[p.id] = moves.get(p.id, 0) + 1
                        if moves[p.id] > 3:
                            course_ended(p.id, f"its Ray actor died {moves[p.id]} times (out of memory? see the Ray logs); resume to retry it")
                            continue
                        queue.appendleft(p)  # continues from its checkpoints on another actor
                        stats["courses_moved"] += 1
                        on_event({"event": "course_moved", "client_id": p.id, "reason": "ray actor died"})
                        continue
                    except Exception as e:
                        course_ended(p.id, f"{type(e).__name__}: {e}")
                        continue
                    for r in res["records"]:
                        on_record(r)  # the checkpointed records: any the stream missed
                    course_ended(p.id, res["error"])
            for i in list(actors):
                await drain(i)
            stats["run_s"] = time.monotonic() - t0  # courses only: from actors up to the last result
            closed = await asyncio.gather(*(_await(a.close.remote()) for a in actors.values()), return_exceptions=True)
            stats["worker_cpu_s"] = [c["cpu_s"] for c in closed if isinstance(c, dict)]
            for c in closed:
                if isinstance(c, dict) and store is not None:
                    store.pending.extend(tuple(b) for b in c["pending"])
                    store.retried += c["retried"]
        finally:
            for f in [*pending, *spawns]:
                f.cancel()
            for a in actors.values():
                with contextlib.suppress(Exception):
                    ray.kill(a)
            stats["wall_s"] = time.monotonic() - t_start
            if started:
                ray.shutdown()


async def _await(ref: Any) -> Any:
    return await ref


def check_ray(address: str) -> tuple[bool, str, str]:
    """`therasim doctor --ray-address`: connect, count nodes and CPUs, check that a
    worker imports therasim. Returns (ok, detail, fix)."""
    try:
        ray = import_ray()
    except ConfigError as e:
        return False, str(e), RAY_HINT
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="WARNING", configure_logging=False)
    except Exception as e:
        return False, f"{type(e).__name__}: {str(e)[:200]}", "start the head with `ray start --head --port 6379` and pass --ray-address HOST:6379 (or auto on a node)"
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = ray.cluster_resources().get("CPU", 0)

        @ray.remote(num_cpus=0)
        def probe() -> str:
            import therasim

            return str(therasim.__version__)

        v = ray.get(probe.remote(), timeout=60)
        return True, f"{len(nodes)} node(s), {cpus:g} CPU(s); workers import therasim {v}", ""
    except Exception as e:
        return False, f"{type(e).__name__}: {str(e)[:200]}", "install therasim (with the same version) on every Ray node"
    finally:
        ray.shutdown()
