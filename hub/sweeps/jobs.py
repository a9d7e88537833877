"""The sweep's job functions: each is ONE call of the Python API, the same code under every executor.

    guidance  -> hub.train_guidance(algo, dataset, seeds=[...], save_every=N, ...)   (a seed group in one job)
    diffusion -> hub.train_diffusion(algo, dataset, guidance=ID | joint=True, seeds=[...], ...)
    combine   -> hub.combine(guidance, diffusion, mode=..., infer_guidance=..., module_id=..., save=True, **settings)
    evaluate  -> hub.evaluate(policy_id, episodes, seed, max_steps=...)          (recorded on the policy's card)
    curve     -> hub.evaluate_run(module_id, episodes, seed, workers=1, ...)      (a run's checkpoint modules)

`execute(job)` wraps one call for an executor: it points the process at the job's hub home, sets the torch threads,
pulls the modules (and data) the job needs from the sweep's remote when they are not in the store, calls the
function, pushes what it stored to the remote, and returns a JSON-ready record: never raises (a failure is a record
with `status: error`), so a process pool and a Ray cluster treat failures alike.
"""
from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from typing import Any

JobFn = Callable[[dict[str, Any]], dict[str, Any]]


def _module_summary(m: Any) -> dict[str, Any]:
    card = m.card
    return {"id": card.id, "kind": card.kind, "sha256": card.ref().sha256,
            "metrics": {k: v for k, v in card.metrics.items() if isinstance(v, int | float)}}


def _budget(p: dict[str, Any]) -> Any:
    from hub.training import Budget

    return Budget(hidden=p.get("hidden"), batch_size=p.get("batch_size"))


def _seed_args(p: dict[str, Any]) -> dict[str, Any]:
    """One seed: its own id `<prefix>-s<seed>`; several: one batched run storing `<prefix>-s<seed>` per member."""
    seeds = list(p["seeds"])
    if len(seeds) == 1:
        return {"seed": seeds[0], "module_id": f"{p['module_id']}-s{seeds[0]}"}
    return {"seeds": seeds, "module_id": p["module_id"]}


def train_guidance_job(p: dict[str, Any]) -> dict[str, Any]:
    from hub.training import train_guidance

    mods = train_guidance(p["algo"], p["dataset"], steps=p["steps"], budget=_budget(p), progress=False,
                              recipe_overrides=p.get("overrides") or None, device=p["device"],
                              precision=p["precision"], compile=p["compile"], save_every=p["save_every"],
                              **_seed_args(p))
    return {"modules": [_module_summary(m) for m in mods]}


def train_diffusion_job(p: dict[str, Any]) -> dict[str, Any]:
    from hub.training import train_diffusion

    mods = train_diffusion(p["algo"], p["dataset"], guidance=p.get("guidance"), joint=p.get("joint", False),
                               steps=p["steps"], budget=_budget(p), progress=False, backbone=p.get("backbone"),
                               recipe_overrides=p.get("overrides") or None, device=p["device"],
                               precision=p["precision"], compile=p["compile"], save_every=p["save_every"],
                               **_seed_args(p))
    return {"modules": [_module_summary(m) for m in mods]}


def combine_job(p: dict[str, Any]) -> dict[str, Any]:
    from hub.combine import combine

    policy = combine(p["guidance"], p["diffusion"], mode=p["mode"], infer_guidance=p.get("infer_guidance"),
                         module_id=p["module_id"], save=True, overwrite=True, progress=False, device=p["device"],
                         **p.get("settings", {}))
    return {"policy": policy.card.id, "adapters": list(policy.report.adapters),
            "settings": dict(policy.card.policy.params) if policy.card.policy else {}}


def evaluate_job(p: dict[str, Any]) -> dict[str, Any]:
    from hub.evaluation import evaluate

    r = evaluate(p["module_id"], episodes=p["episodes"], seed=p["seed"], max_steps=p.get("max_steps"),
                 device=p["device"], write=True)
    return {k: v for k, v in r.items() if isinstance(v, int | float | str | bool) or v is None}


def curve_job(p: dict[str, Any]) -> dict[str, Any]:
    """A run's learning curve: `evaluate_run` of its checkpoint modules (each names its run: `checkpoint_of`)."""
    from hub.evaluation import evaluate_run

    r = evaluate_run(p["module_id"], episodes=p["episodes"], seed=p["seed"], workers=1, device=p["device"],
                     max_steps=p.get("max_steps"), write=True)
    return {"points": [{k: pt[k] for k in ("step", "id", "normalized_score", "return_mean", "final")}
                       for pt in r["points"]]}


FUNCTIONS: dict[str, JobFn] = {"guidance": train_guidance_job, "diffusion": train_diffusion_job,
                               "combine": combine_job, "evaluate": evaluate_job, "curve": curve_job}


# --- the remote: modules and data for nodes that share no filesystem -------------------------------------------------
def repo_for(remote: str, name: str) -> str:
    """The repository of module (or dataset) `name` under the sweep's remote (file:///ROOT::NS or hf://NS)."""
    return f"{remote}/{name}"


def _pull_inputs(p: dict[str, Any]) -> None:
    remote = p.get("remote")
    if not remote:
        return
    from hub.store import Store

    store = Store()
    ds, ds_commit = p.get("dataset"), p.get("dataset_commit")
    if ds and ds_commit:
        from hub.datasets import dataset_path, pull

        if not dataset_path(ds).exists():
            pull(f"{repo_for(remote, 'data-' + ds)}@{ds_commit}", dataset_id=ds)
    for module_id, commit in (p.get("inputs") or {}).items():
        if commit and not store.contains(module_id):
            from hub.remote.sharing import pull as pull_module

            pull_module(f"{repo_for(remote, module_id)}@{commit}", local_id=module_id, store=store)


def _push_outputs(p: dict[str, Any], stored: list[str]) -> dict[str, str]:
    """Push the modules the job stored (and a run's checkpoint modules) to the remote: {id: commit}."""
    remote = p.get("remote")
    if not remote:
        return {}
    from hub.remote.sharing import push
    from hub.store import Store

    store = Store()
    ids = list(stored)
    for e in store.entries():  # checkpoint modules of the runs it trained (learning curves)
        try:
            card = store.card(e.id)
        except Exception:  # a damaged module is nothing this job stored
            continue
        if card.origin.checkpoint_of in stored and card.id not in ids:
            ids.append(card.id)
    return {mid: push(mid, repo_for(remote, mid), store=store).commit for mid in ids}


def execute(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job (a `Job.as_dict()` plus `home`) in this process; a JSON-ready record, never an exception."""
    t0 = time.perf_counter()
    p = dict(job["payload"])
    try:
        if job.get("home"):
            os.environ["MDHUB_HOME"] = job["home"]
        import torch

        torch.set_num_threads(int(p.get("threads") or 1))
        _pull_inputs(p)
        result = FUNCTIONS[job["kind"]](p)
        stored = [m["id"] for m in result.get("modules", [])] + ([result["policy"]] if "policy" in result else [])
        commits = _push_outputs(p, stored)
        from modules.train.loop import peak_memory_mb

        return {"status": "ok", "id": job["id"], "kind": job["kind"], "result": result, "commits": commits,
                "wall_s": round(time.perf_counter() - t0, 3), "process_peak_mb": round(peak_memory_mb(), 1),
                "host": os.uname().nodename}
    except Exception as e:  # a job's failure is its record, not a crash of the executor
        return {"status": "error", "id": job["id"], "kind": job["kind"], "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(limit=8), "wall_s": round(time.perf_counter() - t0, 3)}
