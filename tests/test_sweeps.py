"""Recombination sweeps (issue 17): a tiny sweep on the local executor and on a real local Ray cluster (same job
graph, same results), interrupted and resumed, a changed arm rerunning only its dependants, the spec's bad input as
one line naming the spec path (nothing run), the `file://` remote for nodes without a shared filesystem, and the
IQM / stratified-bootstrap statistics on known inputs.

Sizes: the tiny pybullet dataset (made once per session and copied into each test's hub home), 20 training steps
of width-16 networks, evaluations of 2 episodes capped at 5 steps."""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import hub
from hub.cli import app
from hub.store import Store
from hub.sweeps import SpecError, plan, sweep
from hub.sweeps.jobs import execute
from hub.sweeps.stats import auc, iqm, iqm_ci, stratified_bootstrap_ci
from tests.test_sharing import hub_server  # noqa: F401 - the loopback Hub fixture (the hf remote case)

DATA = "hopper-bullet-tiny"
SIZE = {"steps": 20, "hidden": 16, "batch_size": 32}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The tiny hopper dataset, made once: the folder holding its file."""
    home = tmp_path_factory.mktemp("sweep-data-home")
    old = os.environ.get("MDHUB_HOME")
    os.environ["MDHUB_HOME"] = str(home)
    try:
        from hub.datasets import datasets_dir, make_and_store

        make_and_store(DATA, progress=False)
        return datasets_dir()
    finally:
        if old is None:
            os.environ.pop("MDHUB_HOME", None)
        else:
            os.environ["MDHUB_HOME"] = old


@pytest.fixture
def data(tiny_data, hub_home) -> Path:
    """The tiny dataset in this test's hub home."""
    shutil.copytree(tiny_data, hub_home / "datasets", dirs_exist_ok=True)
    return hub_home


def tiny_spec(name: str = "tiny", curves: bool = True, bc_steps: int = 20, joint: bool = False) -> dict:
    spec = {
        "name": name,
        "datasets": [{"id": DATA}],
        "guidance": [{"name": "iql", "algo": "iql", "seeds": [0, 1], **SIZE}],
        "diffusion": [
            {"name": "gf", "algo": "dql", "seeds": [0, 1], **SIZE, "guidance": "iql",
             "overrides": {"ema_start": 5}, **({"save_every": 10} if curves else {})},
            {"name": "bc", "algo": "idql", "seeds": [0], **SIZE, "steps": bc_steps, "guidance": "none",
             "overrides": {"ema_start": 5}},
        ],
        "combinations": [
            {"name": "own", "diffusion": "gf", "infer_guidance": "same", "settings": {"n_candidates": 4}},
            {"name": "double", "diffusion": "gf", "infer_guidance": {"arm": "iql", "seed": "other"},
             "settings": {"n_candidates": 4}},
            {"name": "bc-iql", "diffusion": "bc", "infer_guidance": {"arm": "iql", "seed": 0},
             "settings": {"n_candidates": 4}},
        ],
        "evaluation": {"episodes": 2, "seeds": [0], "max_steps": 5},
    }
    if joint:  # DQL's joint run: its critic is the training (and here the inference) guidance
        spec["diffusion"].append({"name": "jt", "algo": "dql", "seeds": [0, 1], **SIZE, "guidance": "joint",
                                  "overrides": {"ema_start": 5}, **({"save_every": 10} if curves else {})})
        spec["combinations"].append({"name": "jt-own", "diffusion": "jt", "settings": {"n_candidates": 4}})
    return spec


def scores(result) -> dict[str, list[float]]:
    return {r["combination"]: r["scores"] for r in result.leaderboard["rows"]}


# --- statistics ------------------------------------------------------------------------------------------------------
def test_iqm_and_bootstrap_on_known_inputs():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5  # the middle half: 3, 4, 5, 6
    assert iqm([0, 0, 0, 100]) == 0.0  # one cut from each end: the outlier goes
    assert iqm([5, 1, 3]) == 3.0  # fewer than 4 runs: nothing cut, the mean
    assert iqm([2.0]) == 2.0
    assert stratified_bootstrap_ci([[3.0, 3.0, 3.0]]) == (3.0, 3.0)  # no spread, no interval
    x = np.arange(20.0)
    center, lo, hi = iqm_ci(x, seed=1)
    assert center == iqm(x) == 9.5 and lo < center < hi and 5 < lo and hi < 14
    assert iqm_ci(x, seed=1) == (center, lo, hi)  # deterministic for a seed
    # stratified: each stratum resampled within itself, so a constant stratum stays constant
    lo2, hi2 = stratified_bootstrap_ci([[0.0] * 4, [10.0] * 4], statistic=lambda s: float(np.mean(s)))
    assert lo2 == hi2 == 5.0
    assert auc([(0, 0.0), (10, 10.0)]) == 5.0 and auc([(10, 4.0)]) == 4.0
    with pytest.raises(ValueError):
        iqm([])


# --- the graph and bad input ---------------------------------------------------------------------------------------
def test_dry_run_prints_the_job_graph_and_runs_nothing(data, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_spec()))
    res = CliRunner().invoke(app, ["sweep", str(path), "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    kinds = [j["kind"] for j in doc["jobs"]]
    # 1 guidance job (both seeds at once), gf: one batched job (seed s under iql seed s, stacked), bc: one;
    # 2 curves; combine: own x2, double x2, bc-iql x1; one evaluation each
    assert kinds.count("guidance") == 1 and kinds.count("diffusion") == 2 and kinds.count("curve") == 2
    gf = [j for j in doc["jobs"] if j["kind"] == "diffusion" and "gf" in j["name"]]
    assert len(gf) == 1 and "s0,1" in gf[0]["name"]
    assert kinds.count("combine") == 5 and kinds.count("evaluate") == 5
    assert doc["ran"] == [] and not (data / "sweeps").exists() and not (data / "runs").exists()
    g = plan(tiny_spec())
    double = [j for j in g.jobs.values() if j.kind == "combine" and j.meta["combination"] == "double"]
    # double guidance: the policy of gf seed 0 is scored by iql seed 1, and the reverse
    assert {(j.meta["seed"], j.payload["infer_guidance"].rsplit("-s", 1)[1]) for j in double} == {(0, "1"), (1, "0")}
    text = CliRunner().invoke(app, ["sweep", str(path), "--dry-run"])
    assert text.exit_code == 0 and "guidance iql (iql, seeds 0,1)" in text.stdout


def _bad(spec_fn):
    s = tiny_spec()
    spec_fn(s)
    return s


BAD = [
    (lambda s: s["guidance"][0].update(algo="sac"), "guidance[0].algo: unknown guidance algorithm 'sac'"),
    (lambda s: s["combinations"][0].update(mode="teleport"), "combinations[0].mode: unknown sampling mode 'teleport'"),
    (lambda s: s["diffusion"][1].update(guidance="nothere"), "diffusion[1].guidance: no arm 'nothere'"),
    (lambda s: s["diffusion"][0].update(guidance="bc") or s["diffusion"][1].update(guidance="gf", algo="dql"),
     "diffusion[0].guidance: a cycle: gf -> bc -> gf"),
    (lambda s: s["combinations"][2].update(mode="cfg", settings={}),
     "combinations[2].mode: arm 'iql' cannot steer 'idql_resnet' in mode 'cfg'"),
    (lambda s: s["combinations"][0].update(infer_guidance="none"),
     "combinations[0].infer_guidance: no guidance cannot steer 'dql_mlp' in mode 'resample'"),
    (lambda s: s["diffusion"][0].update(seeds=[0, 7]), "diffusion[0].guidance: seed 7 is not a seed of arm 'iql'"),
    (lambda s: s["diffusion"][0]["overrides"].update(etta=0.1), "diffusion[0].overrides.etta: not a recipe setting "
     "(did you mean 'eta'?)"),
    (lambda s: s["datasets"][0].update(id="hopper-bullet-nothere"), "datasets[0].id: dataset 'hopper-bullet-nothere' "
     "is not in the store"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_spec_is_one_line_naming_the_path_and_nothing_runs(data, tmp_path, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_bad(change)))
    res = CliRunner().invoke(app, ["sweep", str(path)])
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), res.stderr
    assert message in lines[0], lines[0]
    assert not (data / "sweeps").exists() and not (data / "runs").exists() and Store().entries() == []
    with pytest.raises(SpecError, match="^spec: "):
        sweep(_bad(change), echo=None)
    assert not (data / "sweeps").exists()


# --- running: local, resume, a changed arm, Ray ---------------------------------------------------------------------
def test_local_sweep_resumes_skips_and_reruns_only_the_dependants_of_a_changed_arm(data):
    spec = tiny_spec(joint=True)
    graph = plan(spec)
    first = sweep(spec, workers=1, until="guidance", echo=None)  # interrupted after the first stage
    assert first.ran == [j.id for j in graph.jobs.values() if j.kind == "guidance"] and first.leaderboard is None
    rest = sweep(spec, workers=2, echo=None)  # the rest, on a process pool of 2
    assert rest.ok and set(rest.ran) == set(graph.jobs) - set(first.ran) and rest.skipped == first.ran
    rows = {r["combination"]: r for r in rest.leaderboard["rows"]}
    assert set(rows) == {"own", "double", "bc-iql", "jt-own"} and rows["own"]["seeds"] == 2
    assert rows["bc-iql"]["seeds"] == 1 and rows["jt-own"]["train_guidance"] == "joint"
    own = rows["own"]
    assert own["ci_low"] <= own["iqm"] <= own["ci_high"] and own["auc"] is not None
    assert rows["jt-own"]["auc"] is not None and rows["bc-iql"]["auc"] is None  # curves: arms with save_every
    assert own["train_wall_s"] > 0 and own["peak_memory_mb"] > 0
    folder = data / "sweeps" / "tiny"
    for name in ("leaderboard.csv", "leaderboard.json", "heatmap.png", "curves.png", "graph.json", "runs.jsonl"):
        assert (folder / name).is_file(), name
    with open(folder / "leaderboard.csv") as fh:
        assert {r["combination"] for r in csv.DictReader(fh)} == set(rows)
    for policy in own["policies"]:  # the evaluation is on each policy's card too
        card = hub.show(policy)
        assert card.kind == "policy" and card.evaluations and card.evaluations[0].episodes == 2
    # a rerun does nothing; a changed arm reruns only its own job and what depends on it
    again = sweep(spec, workers=1, echo=None)
    assert again.ran == [] and set(again.skipped) == set(graph.jobs)
    changed = tiny_spec(bc_steps=25, joint=True)
    new = plan(changed)
    expect = set(new.jobs) - set(graph.jobs)
    assert {new.jobs[j].kind for j in expect} == {"diffusion", "combine", "evaluate"}
    assert {new.jobs[j].meta.get("arm") for j in expect} == {"bc"}
    redo = sweep(changed, workers=1, echo=None)
    assert set(redo.ran) == expect and len(expect) == 3
    assert scores(redo)["own"] == scores(rest)["own"]


def test_the_same_sweep_on_ray_gives_the_same_graph_and_results(data, hub_home, tmp_path, monkeypatch):
    import ray  # the Makefile installs the ray extra: this test never skips
    spec = tiny_spec("tiny-ray", curves=False)
    local = sweep(spec, workers=1, echo=None)
    assert local.ok
    other = tmp_path / "home-ray"
    shutil.copytree(hub_home / "datasets", other / "datasets")
    monkeypatch.setenv("MDHUB_HOME", str(other))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = sweep(spec, executor="ray", echo=None)
    finally:
        ray.shutdown()
    assert on_ray.ok, on_ray.failed
    assert sorted(on_ray.graph.jobs) == sorted(local.graph.jobs) and sorted(on_ray.ran) == sorted(local.ran)
    assert scores(on_ray) == scores(local)
    assert (other / "sweeps" / "tiny-ray" / "leaderboard.json").is_file()


@pytest.mark.parametrize("kind", ["file", "hf"])
def test_a_remote_lets_a_node_without_the_store_run_a_job(data, hub_home, tmp_path, monkeypatch, request, kind):
    """With `remote` (a file:// folder, or a Hub namespace: here the loopback Hub of tests/hub_server.py), every job
    pushes what it stored; a job on a node with an empty store pulls its inputs by exact commit."""
    spec = tiny_spec("tiny-remote", curves=False)
    spec["diffusion"] = spec["diffusion"][:1]
    spec["combinations"] = spec["combinations"][:1]
    if kind == "hf":
        request.getfixturevalue("hub_server")
        spec["remote"] = "hf://sweeper"
    else:
        spec["remote"] = f"file://{tmp_path / 'remote'}::sweeps"
    done = sweep(spec, workers=1, until="diffusion", echo=None)
    assert done.ok
    records = {j: json.loads((data / "sweeps" / "tiny-remote" / "jobs" / f"{j}.json").read_text()) for j in done.ran}
    assert all(r["commits"] for r in records.values())
    graph = done.graph
    job = next(j for j in graph.ordered() if j.kind == "combine")
    from hub.sweeps.run import _inputs, _remote_datasets

    payload = {**job.payload, "inputs": _inputs(job, graph, records),
               "dataset_commit": _remote_datasets(graph, data / "sweeps" / "tiny-remote", None)[DATA]}
    assert set(payload["inputs"]) == {job.payload["diffusion"], job.payload["guidance"]}
    node = tmp_path / "node-home"  # another machine: nothing in its store
    rec = execute({**job.as_dict(), "payload": payload, "home": str(node)})
    assert rec["status"] == "ok", rec
    monkeypatch.setenv("MDHUB_HOME", str(node))
    assert Store().contains(job.payload["module_id"]) and Store().contains(job.payload["diffusion"])


def test_a_failed_job_blocks_its_dependants_and_a_rerun_retries_it(data, monkeypatch):
    from hub.sweeps import jobs

    spec = tiny_spec("tiny-fail", curves=False)
    spec["diffusion"] = spec["diffusion"][1:]  # bc only
    spec["combinations"] = spec["combinations"][2:]  # bc-iql

    def broken(p):
        raise RuntimeError("no candidates today")

    monkeypatch.setitem(jobs.FUNCTIONS, "combine", broken)
    r = sweep(spec, workers=1, echo=None)
    kinds = {r.graph.jobs[j].kind for j in r.ran}
    assert kinds == {"guidance", "diffusion"} and not r.ok
    assert [r.graph.jobs[j].kind for j in r.failed] == ["combine"] and "RuntimeError: no candidates today" in \
        next(iter(r.failed.values()))
    assert [r.graph.jobs[j].kind for j in r.blocked] == ["evaluate"]
    assert (data / "sweeps" / "tiny-fail" / "failed" / f"{next(iter(r.failed))}.json").is_file()
    monkeypatch.undo()
    monkeypatch.setenv("MDHUB_HOME", str(data))
    again = sweep(spec, workers=1, echo=None)
    assert again.ok and {again.graph.jobs[j].kind for j in again.ran} == {"combine", "evaluate"}
    assert set(again.skipped) == set(r.ran)


@pytest.mark.parametrize("name", ["gfdt.yaml", "evidence.yaml"])
def test_the_shipped_specs_expand(name):
    """The specs under benchmarks/sweeps/ validate and expand (a dry run: nothing trained, no data made)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "sweeps" / name
    res = CliRunner().invoke(app, ["sweep", str(path), "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    kinds = [j["kind"] for j in json.loads(res.stdout)["jobs"]]
    assert kinds.count("guidance") >= 2 and kinds.count("diffusion") >= 4 and kinds.count("evaluate") >= 10


def _group_pids(pgid: int) -> list[int]:
    """Live processes of a process group (from /proc: field 5 of stat is the group)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
def test_killing_a_sweep_stops_its_workers(hub_home, tmp_path):
    """kill -9 of `mdhub sweep` must not leave its pool workers training unseen (a rerun would start the same job
    beside them): they stop with it. The run they trained resumes on the rerun."""
    import signal
    import subprocess
    import sys
    import time

    spec = {"name": "kill", "datasets": [{"id": "toy-8gaussians", "make": True, "transitions": 256}],
            "guidance": [{"name": "g", "algo": "iql", "seeds": [0], "steps": 10_000_000, "hidden": 8,
                          "batch_size": 16}, {"name": "h", "algo": "iql", "seeds": [1], "steps": 10_000_000,
                                              "hidden": 8, "batch_size": 16}]}
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = subprocess.Popen([sys.executable, "-c", "from hub.cli import main; main()", "sweep", str(path),
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True,
                            env={**os.environ, "MDHUB_HOME": str(hub_home), "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        runs = hub_home / "runs"
        while time.monotonic() < deadline and len(list(runs.glob("*/scalars.jsonl"))) < 2:
            assert proc.poll() is None, "the sweep ended before its jobs trained"
            time.sleep(0.5)
        workers = [p for p in _group_pids(proc.pid) if p != proc.pid]
        assert len(workers) >= 2, "the sweep's pool did not start"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _group_pids(proc.pid):
            time.sleep(0.5)
        assert _group_pids(proc.pid) == [], "workers outlived the killed sweep"
    finally:
        for pid in _group_pids(proc.pid):
            os.kill(pid, signal.SIGKILL)


def test_final_evaluations_are_ordered_before_learning_curves():
    """A grid interrupted late should have its final scores: within the evaluation stage the curve jobs come last."""
    g = plan(tiny_spec())
    kinds = [j.kind for j in g.ordered() if j.stage == "evaluate"]
    assert "curve" in kinds and "evaluate" in kinds
    assert kinds.index("curve") > max(i for i, k in enumerate(kinds) if k == "evaluate")
