"""Where a sweep's jobs run: `local` (a process pool over this machine's cores, embedded, nothing to start) or `ray`
(a Ray cluster: one started here, or an existing one at `--address auto|ADDR`, with per-job CPU/GPU requests).

Both run the same function, `hub.sweeps.jobs.execute`, on a job's JSON (`Job.as_dict()` plus `home`), and hand back
its record; the orchestration (hub.sweeps.run) submits jobs whose parents are done and waits for any to finish.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol

from hub.errors import MdhubError
from hub.sweeps.jobs import execute

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    name: str

    def slots(self) -> int:
        """How many more jobs may be submitted now."""

    def submit(self, job: dict[str, Any]) -> None: ...

    def running(self) -> int: ...

    def wait(self) -> list[dict[str, Any]]:
        """Block until at least one running job finishes; their records."""

    def close(self, cancel: bool) -> None: ...


def default_workers() -> int:
    """This machine's usable cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _main_importable() -> bool:
    """Whether pool workers can import this program's __main__ (not so for a script read from stdin)."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None):
        return True
    path = getattr(main, "__file__", None)
    return path is None or os.path.exists(path)


class InlineExecutor:
    """One job at a time in this process (`--workers 1`, or where worker processes cannot start)."""

    name = "local"

    def __init__(self) -> None:
        self.queue: list[dict[str, Any]] = []

    def slots(self) -> int:
        return 0 if self.queue else 1

    def submit(self, job: dict[str, Any]) -> None:
        self.queue.append(job)

    def running(self) -> int:
        return len(self.queue)

    def wait(self) -> list[dict[str, Any]]:
        job = self.queue.pop(0)
        return [execute(job)]

    def close(self, cancel: bool) -> None:
        self.queue.clear()


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - the pid now belongs to another user's process
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc (macOS): os.kill said it exists
        return True


def _die_with_the_sweep(sweep_pid: int) -> None:
    """A pool worker's initializer: when the sweep's process dies (kill -9, a closed terminal), the worker stops
    within seconds instead of finishing its job unseen while a rerun starts the same job. (The fork server that
    forks the workers outlives the sweep while they run, so the kernel's parent-death signal cannot be used: a
    thread watches the sweep's pid.)"""
    import signal
    import threading
    import time

    def watch() -> None:
        while _alive(sweep_pid):
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="mdhub-sweep-watch", daemon=True).start()


class LocalExecutor:
    """A process pool (forkserver where the platform has it, else spawn): `workers` jobs at a time."""

    name = "local"

    def __init__(self, workers: int):
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":  # workers fork from a server that imported the training code once
            ctx.set_forkserver_preload(["hub.sweeps.jobs", "hub.training"])
        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_die_with_the_sweep,
                                        initargs=(os.getpid(),))
        self.futures: dict[Future[dict[str, Any]], dict[str, Any]] = {}

    def slots(self) -> int:
        return self.workers - len(self.futures)

    def submit(self, job: dict[str, Any]) -> None:
        self.futures[self.pool.submit(execute, job)] = job

    def running(self) -> int:
        return len(self.futures)

    def wait(self) -> list[dict[str, Any]]:
        done, _ = wait(list(self.futures), return_when=FIRST_COMPLETED)
        out = []
        for fut in done:
            job = self.futures.pop(fut)
            try:
                out.append(fut.result())
            except Exception as e:  # a worker that died (killed, out of memory): the job failed, the sweep goes on
                out.append({"status": "error", "id": job["id"], "kind": job["kind"],
                            "error": f"its worker process died ({type(e).__name__}: {e})"})
        return out

    def close(self, cancel: bool) -> None:
        self.pool.shutdown(wait=not cancel, cancel_futures=cancel)


class RayExecutor:
    """Jobs as Ray tasks, each with its `num_cpus` / `num_gpus` request (fractions share a GPU). Uses the Ray
    runtime this process is connected to, else connects to `address` (`auto`: the running cluster) or starts a
    local one (stopped again on close)."""

    name = "ray"

    def __init__(self, address: str | None = None):
        try:
            import ray  # type: ignore[import-not-found,unused-ignore]  # the optional extra mdhub[ray]
        except ImportError:
            raise MdhubError("--executor ray needs Ray: pip install 'modular-diffusion-hub[ray]' (ray>=2.9)") from None
        self.ray: Any = ray
        self.started = False
        if not self.ray.is_initialized():
            self.ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
            self.started = True
        self.task: Any = self.ray.remote(max_retries=0)(execute)
        self.refs: dict[Any, dict[str, Any]] = {}
        self.available: dict[str, float] = dict(self.ray.cluster_resources())

    def slots(self) -> int:
        return 1 << 20  # Ray queues tasks by their resource requests

    def submit(self, job: dict[str, Any]) -> None:
        res = job["resources"]
        for key, name in (("num_gpus", "GPU"), ("num_cpus", "CPU")):
            if res[key] > self.available.get(name, 0):
                raise MdhubError(f"job '{job['name']}' asks for {key}={res[key]}, the Ray cluster has "
                                 f"{self.available.get(name, 0)} {name}(s): it could never start; lower the "
                                 "spec's resources")
        ref = self.task.options(num_cpus=res["num_cpus"], num_gpus=res["num_gpus"],
                                name=f"mdhub {job['name']}"[:120]).remote(job)
        self.refs[ref] = job

    def running(self) -> int:
        return len(self.refs)

    def wait(self) -> list[dict[str, Any]]:
        ready, _ = self.ray.wait(list(self.refs), num_returns=1)
        out = []
        for ref in ready:
            job = self.refs.pop(ref)
            try:
                out.append(self.ray.get(ref))
            except Exception as e:  # the task's worker died or the node was lost
                out.append({"status": "error", "id": job["id"], "kind": job["kind"],
                            "error": f"Ray task failed ({type(e).__name__}: {' '.join(str(e).split())[:300]})"})
        return out

    def close(self, cancel: bool) -> None:
        if cancel:
            for ref in self.refs:
                self.ray.cancel(ref, force=True)
        self.refs.clear()
        if self.started:
            self.ray.shutdown()


def make_executor(kind: str, workers: int | None = None, address: str | None = None) -> Executor:
    if kind not in EXECUTORS:
        raise MdhubError(f"unknown executor '{kind}'; known: {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise MdhubError(f"workers must be at least 1 (got {workers})")
    if kind == "ray":
        return RayExecutor(address)
    if address is not None:
        raise MdhubError("--address names a Ray cluster: use it with --executor ray")
    n = workers or default_workers()
    if n == 1 or not _main_importable():
        return InlineExecutor()
    return LocalExecutor(n)
