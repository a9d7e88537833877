"""Running a sweep: validate, expand, skip what is done, run the rest on an executor, write the leaderboard.

    hub.sweep("benchmarks/sweeps/gfdt.yaml")                       # local process pool
    hub.sweep(spec, executor="ray", address="auto")                # an existing Ray cluster
    hub.sweep(spec, dry_run=True).graph.describe()                 # the job graph, nothing run

The sweep folder is $MDHUB_HOME/sweeps/<name>/: spec.json and graph.json (the latest expansion), jobs/<id>.json (a
finished job's record: what it stored, its result, wall time, host; written by this process, whatever node ran the
job), failed/<id>.json (the last failure, with its traceback), runs.jsonl (one line per invocation: which jobs ran,
were skipped, failed), `.lock` (held while a call runs jobs: one call per sweep at a time), and the leaderboard
files. A job whose record exists (and whose modules are still in the store, or on the remote) is skipped:
rerunning a sweep is idempotent, an interrupted one continues (and an interrupted training job resumes from its
checkpoint), and a changed arm reruns only the jobs whose identity changed.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.errors import MdhubError
from hub.paths import home
from hub.sweeps.executors import EXECUTORS, make_executor
from hub.sweeps.graph import STAGE_ORDER, Graph, Job, expand
from hub.sweeps.spec import STAGES, SpecError, Stage, SweepSpec, load_spec

Echo = Callable[[str], None]


@dataclass
class SweepResult:
    name: str
    folder: Path
    graph: Graph
    ran: list[str] = field(default_factory=list)  # job ids run by this call, in finishing order
    skipped: list[str] = field(default_factory=list)  # finished by an earlier call
    failed: dict[str, str] = field(default_factory=dict)  # job id -> error line
    blocked: list[str] = field(default_factory=list)  # not run: a parent failed
    leaderboard: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked

    def as_dict(self) -> dict[str, Any]:
        """JSON for `mdhub sweep --json` (stable keys)."""
        return {"name": self.name, "folder": str(self.folder), "dry_run": self.dry_run,
                "jobs": [{"id": j.id, "kind": j.kind, "stage": j.stage, "name": j.name, "deps": j.deps,
                          "outputs": j.outputs} for j in self.graph.ordered()],
                "ran": self.ran, "skipped": self.skipped, "failed": self.failed, "blocked": self.blocked,
                "leaderboard": self.leaderboard["rows"] if self.leaderboard else None, "files": self.files}


def sweep_dir(name: str) -> Path:
    return home() / "sweeps" / name


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _dataset_meta(spec: SweepSpec, source: str, make: bool, echo: Echo | None) -> dict[str, dict[str, Any] | None]:
    """Each dataset's stored metadata; with `make`, datasets marked `make: true` are made first when missing."""
    from hub.datasets import dataset_info, dataset_path, make_and_store
    from modules.errors import ModulesError

    out: dict[str, dict[str, Any] | None] = {}
    for i, d in enumerate(spec.datasets):
        try:
            present = dataset_path(d.id).exists()
        except (MdhubError, ModulesError) as e:
            raise SpecError(f"{source}: datasets[{i}].id: {e}") from None
        if not present and make and d.make:
            if echo:
                echo(f"making dataset {d.id}")
            make_and_store(d.id, transitions=d.transitions, seed=d.seed, progress=False)
            present = True
        if not present and make:
            raise SpecError(f"{source}: datasets[{i}].id: dataset '{d.id}' is not in the store; make it with "
                            f"`mdhub data make {d.id}`, or set make: true")
        out[d.id] = dataset_info(d.id) if present else None
    return out


def plan(spec: str | Path | dict[str, Any] | SweepSpec, make_data: bool = False,
         echo: Echo | None = None) -> Graph:
    """The job graph of a spec, every check done (bad input: one SpecError line naming the spec path). Data marked
    `make: true` is made only with `make_data`, after the graph checked out with placeholders."""
    s, source = load_spec(spec)
    graph = expand(s, source, _dataset_meta(s, source, make=False, echo=None))
    if make_data:
        graph = expand(s, source, _dataset_meta(s, source, make=True, echo=echo))
    return graph


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    tmp.replace(path)


def finished_records(graph: Graph, folder: Path) -> dict[str, dict[str, Any]]:
    """Records of this graph's jobs that finished in an earlier call and whose modules are still to be had."""
    from hub.store import Store

    store = Store()
    out = {}
    for job in graph.jobs.values():
        rec = _read(folder / "jobs" / f"{job.id}.json")
        if rec is None or rec.get("status") != "ok":
            continue
        if graph.spec.remote is None and not all(store.contains(m) for m in job.outputs):
            continue  # its modules were removed from the store: run it again
        out[job.id] = rec
    return out


def _remote_datasets(graph: Graph, folder: Path, echo: Echo | None) -> dict[str, str]:
    """Push each dataset to the sweep's remote once (per content): {dataset id: commit}."""
    remote = graph.spec.remote
    if remote is None:
        return {}
    from hub.datasets import push
    from hub.sweeps.jobs import repo_for

    path = folder / "remote.json"
    known = _read(path) or {}
    out = {}
    for ds, meta in graph.datasets.items():
        entry = known.get(ds)
        if not (isinstance(entry, dict) and entry.get("sha256") == meta.get("sha256")
                and entry.get("remote") == remote and entry.get("commit")):
            if echo:
                echo(f"pushing dataset {ds} to {remote}")
            entry = {"sha256": meta.get("sha256"), "remote": remote,
                     "commit": push(ds, repo_for(remote, "data-" + ds)).commit}
            known[ds] = entry
        out[ds] = str(entry["commit"])
    _write(path, known)
    return out


def _inputs(job: Job, graph: Graph, records: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The modules a job reads, with the remote commits their jobs pushed: {module id: commit}."""
    commits: dict[str, str] = {}
    todo, seen = list(job.deps), set()
    while todo:  # every ancestor's pushes: a policy's parts may come from a grandparent
        jid = todo.pop()
        if jid in seen:
            continue
        seen.add(jid)
        commits.update((records.get(jid) or {}).get("commits") or {})
        todo += graph.jobs[jid].deps
    p = job.payload
    wanted: set[Any] = set()
    for k in ("guidance", "diffusion", "infer_guidance"):  # a guidance may be one id per member (a list)
        v = p.get(k)
        wanted |= set(v) if isinstance(v, list) else {v}
    if job.kind in ("evaluate", "curve"):
        wanted.add(p.get("module_id"))
    if job.kind == "curve":  # the run's checkpoint modules
        wanted |= {m for m in commits if m.startswith(f"{p['module_id']}-step")}
    return {m: c for m, c in commits.items() if m in wanted}


def sweep(spec: str | Path | dict[str, Any] | SweepSpec, executor: str = "local", address: str | None = None,
          workers: int | None = None, dry_run: bool = False, until: Stage | None = None, echo: Echo | None = _stderr,
          leaderboard: bool = True) -> SweepResult:
    """Run a recombination sweep (see hub.sweeps.spec for the spec). Returns what ran, was skipped, failed.

    `executor`: "local" (a process pool of `workers` processes, default this machine's cores; 1: in this process)
    or "ray" (`address`: "auto", an address, or None to use the Ray runtime this process is connected to or start a
    local one). `dry_run`: validate and expand only. `until`: run the stages up to this one (guidance, diffusion,
    combine, evaluate); a later call continues. `echo`: one line per job started/finished (None: quiet)."""
    if until is not None and until not in STAGES:
        raise MdhubError(f"unknown stage '{until}'; stages: {', '.join(STAGES)}")
    if executor not in EXECUTORS:
        raise MdhubError(f"unknown executor '{executor}'; known: {', '.join(EXECUTORS)}")
    graph = plan(spec, make_data=not dry_run, echo=echo)
    folder = sweep_dir(graph.spec.name)
    result = SweepResult(graph.spec.name, folder, graph, dry_run=dry_run)
    if dry_run:
        return result
    if executor == "ray" and workers is not None:
        raise MdhubError("--workers sizes the local process pool; a Ray job's share is its resources in the spec")
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "spec.json", graph.spec.model_dump(mode="json"))
    _write(folder / "graph.json", graph.as_dict())
    records = finished_records(graph, folder)
    limit = STAGE_ORDER[until] if until else len(STAGES)
    todo = [j for j in graph.ordered() if STAGE_ORDER[j.stage] <= limit]
    result.skipped = [j.id for j in todo if j.id in records]
    pending = [j for j in todo if j.id not in records]
    if echo and result.skipped:
        echo(f"sweep {graph.spec.name}: {len(result.skipped)} job(s) already done, {len(pending)} to run")
    if pending:
        from filelock import FileLock, Timeout

        lock = FileLock(str(folder / ".lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise MdhubError(f"sweep '{graph.spec.name}' is running in another process ({folder / '.lock'} is "
                             "held); wait for it, or stop it (a rerun continues where it stopped)") from None
        try:
            dataset_commits = _remote_datasets(graph, folder, echo)
            # workers use this process's hub home, except on a cluster of other nodes that exchange modules through
            # the remote (there each node keeps its own $MDHUB_HOME)
            job_home = None if (executor == "ray" and address and graph.spec.remote) else str(home())
            _run(graph, pending, records, result, make_executor(executor, workers, address), folder,
                 dataset_commits, job_home, echo)
        finally:
            lock.release()
    with open(folder / "runs.jsonl", "a") as fh:
        fh.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "executor": executor, "until": until,
                             "ran": result.ran, "skipped": result.skipped, "failed": result.failed,
                             "blocked": result.blocked}) + "\n")
    if leaderboard and any(graph.jobs[j].kind == "evaluate" for j in records):
        from hub.sweeps.leaderboard import build, write

        result.leaderboard = build(graph, records)
        result.files = write(result.leaderboard, folder)
    return result


def _run(graph: Graph, pending: list[Job], records: dict[str, dict[str, Any]], result: SweepResult, ex: Any,
         folder: Path, dataset_commits: dict[str, str], job_home: str | None, echo: Echo | None) -> None:
    failed: set[str] = set()
    started: dict[str, float] = {}
    t0 = time.perf_counter()
    cancel = True
    try:
        while pending or ex.running():
            for job in [j for j in pending if any(d in failed for d in j.deps)]:
                pending.remove(job)
                failed.add(job.id)
                result.blocked.append(job.id)
            ready = [j for j in pending if all(d in records for d in j.deps)]
            for job in ready[:max(0, ex.slots())]:
                pending.remove(job)
                payload = {**job.payload, "inputs": _inputs(job, graph, records),
                           "dataset_commit": dataset_commits.get(job.payload.get("dataset") or "")}
                ex.submit({**job.as_dict(), "payload": payload, "home": job_home})
                started[job.id] = time.perf_counter()
                if echo:
                    echo(f"[{time.perf_counter() - t0:7.1f}s] start {job.id[:8]} {job.name}")
            if not ex.running():
                if pending:  # nothing can start: parents outside this call's stages (or never finished)
                    missing = sorted({d[:8] for j in pending for d in j.deps if d not in records})
                    raise MdhubError(f"{len(pending)} job(s) wait for jobs that did not run ({', '.join(missing)})")
                break
            for rec in ex.wait():
                jid = rec["id"]
                job = graph.jobs[jid]
                if rec.get("status") == "ok":
                    records[jid] = {**rec, "job": job.as_dict()}
                    _write(folder / "jobs" / f"{jid}.json", records[jid])
                    result.ran.append(jid)
                    if echo:
                        echo(f"[{time.perf_counter() - t0:7.1f}s] done  {jid[:8]} {job.name} ({rec['wall_s']:.1f} s)")
                else:
                    failed.add(jid)
                    result.failed[jid] = str(rec.get("error"))
                    _write(folder / "failed" / f"{jid}.json", {**rec, "job": job.as_dict()})
                    if echo:
                        echo(f"[{time.perf_counter() - t0:7.1f}s] FAILED {jid[:8]} {job.name}: {rec.get('error')}")
        cancel = False
    finally:
        ex.close(cancel=cancel)
