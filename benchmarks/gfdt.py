"""Guidance-first vs joint DQL, double guidance, cross-algorithm transfer, guidance necessity: one grid of runs.

On one task's medium dataset (default hopper-bullet-medium, 100k transitions) this trains, per seed s:
  iql-s       an IQL guidance (policy-free TD), the frozen guidance of everything guidance-first;
  gf-s        a DQL backbone under iql-s, frozen (guidance-first), eta = --eta;
  joint-s     DQL's own joint run (critic and actor together), same eta, steps and evaluation;
and once (seed 0): idql-0 (an IDQL-recipe guidance), gf-idql-0 (DQL driven by it: cross-algorithm transfer),
idql-bc-0 (an IDQL LN-ResNet backbone, BC), bc-0 (DQL backbone, eta 0: no guidance in training) and late-K-0 (BC until
step K, then the frozen guidance switched on; K at 1/4, 1/2 and 3/4 of the steps). Every training run evaluates its
EMA policy every --eval-every steps (N = 50 candidates resampled by its guidance: the frozen one, or a joint run's own
critic). Then it evaluates, with --final-episodes:
double guidance (gf-s sampled by iql-s vs by iql-(s+1)), and the cross pairings.

Each run is one job in a fresh process (so its peak memory is its own), at most --parallel at a time, each with
--threads torch threads; a finished job leaves out/<name>/jobs/<job>.json and is not rerun (an interrupted benchmark
resumes, and the training loop itself resumes from checkpoints). Writes <out>.json and <out>.png.

    python benchmarks/gfdt.py [--env hopper] [--seeds 3] [--steps 10000] [--parallel 2]
    python benchmarks/gfdt.py --steps 1000000 --guidance-steps 1000000 --transitions 1000000 --eval-every 10000  # paper
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, machine  # noqa: E402


@dataclass
class Job:
    name: str
    kind: str  # guidance | gf | joint | idql-bc | eval
    seed: int = 0
    deps: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)


def plan(args: argparse.Namespace) -> list[Job]:
    """The jobs of the grid, each with the jobs it needs first."""
    seeds = list(range(args.seeds))
    jobs = [Job(f"iql-{s}", "guidance", s, params={"algo": "iql"}) for s in seeds]
    jobs += [Job(f"joint-{s}", "joint", s) for s in seeds]
    jobs += [Job(f"gf-{s}", "gf", s, [f"iql-{s}"], {"guidance": f"iql-{s}"}) for s in seeds]
    if args.grid == "all":
        jobs += [Job("idql-0", "guidance", 0, params={"algo": "idql"}),
                 Job("gf-idql-0", "gf", 0, ["idql-0"], {"guidance": "idql-0"}),
                 Job("idql-bc-0", "idql-bc", 0),
                 Job("bc-0", "gf", 0, ["iql-0"], {"guidance": "iql-0", "eta": 0.0})]
        jobs += [Job(f"late-{k}-0", "gf", 0, ["iql-0"], {"guidance": "iql-0", "guidance_start": k})
                 for k in switch_steps(args)]
    others = {s: seeds[(i + 1) % len(seeds)] for i, s in enumerate(seeds)}
    for s in seeds:  # double guidance: the training guidance vs an independently seeded one
        jobs.append(Job(f"eval-gf-{s}-own", "eval", s, [f"gf-{s}"], {"d": f"gf-{s}", "g": f"iql-{s}"}))
        if len(seeds) > 1:
            jobs.append(Job(f"eval-gf-{s}-double", "eval", s, [f"gf-{s}", f"iql-{others[s]}"],
                            {"d": f"gf-{s}", "g": f"iql-{others[s]}"}))
        jobs.append(Job(f"eval-joint-{s}", "eval", s, [f"joint-{s}"], {"d": f"joint-{s}-actor", "g": f"joint-{s}"}))
    if args.grid != "all":
        return jobs
    jobs += [  # cross-algorithm transfer and guidance necessity
        Job("eval-gf-idql-0", "eval", 0, ["gf-idql-0"], {"d": "gf-idql-0", "g": "idql-0"}),
        Job("eval-idql-native", "eval", 0, ["idql-bc-0", "idql-0"], {"d": "idql-bc-0", "g": "idql-0", "n": 64}),
        Job("eval-idql-by-dql", "eval", 0, ["idql-bc-0", "joint-0"], {"d": "idql-bc-0", "g": "joint-0", "n": 64}),
        Job("eval-bc-unguided", "eval", 0, ["bc-0"], {"d": "bc-0", "g": None, "n": 1}),
    ]
    return jobs


# --- one job, in this process -----------------------------------------------------------------------------------
def run_job(job: Job, args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from hub.combine import combine
    from hub.datasets import get_dataset
    from hub.evaluation import curve_evaluator, run_episodes
    from hub.paths import home
    from hub.store import Store
    from hub.training import Budget, train_diffusion, train_guidance
    from modules.train.loop import peak_memory_mb

    store = Store()
    ds = get_dataset(dataset_id(args), transitions=args.transitions, seed=0, make_if_missing=False, progress=False)
    budget = Budget(eval_every=args.eval_every, hidden=args.hidden)
    curves = curve_evaluator(args.curve_episodes)
    t0 = time.perf_counter()
    out: dict = {"job": job.name}
    if job.kind == "guidance":
        g = train_guidance(job.params["algo"], ds, steps=args.guidance_steps, seed=job.seed, module_id=job.name,
                           store=store, budget=Budget(hidden=args.hidden), progress=False)[0]
        out["metrics"] = g.card.metrics
    elif job.kind in ("gf", "joint"):
        overrides = {"eta": job.params.get("eta", args.eta), "guidance_start": job.params.get("guidance_start", 0)}
        if job.kind == "gf":
            mods = train_diffusion("dql", ds, guidance=job.params["guidance"], steps=args.steps, seed=job.seed,
                                   module_id=job.name, store=store, budget=budget, eval_fn_factory=curves,
                                   recipe_overrides=overrides, progress=False)
        else:
            overrides.pop("guidance_start")
            mods = train_guidance("dql", ds, steps=args.steps, seed=job.seed, module_id=job.name, store=store,
                                  budget=budget, eval_fn_factory=curves, recipe_overrides=overrides, progress=False)
        out["curve"] = json.loads((home() / "runs" / job.name / "curve.json").read_text())
        out["metrics"] = mods[-1].card.metrics
    elif job.kind == "idql-bc":
        d = train_diffusion("idql", ds, steps=args.steps, seed=job.seed, module_id=job.name, store=store,
                            budget=Budget(hidden=args.hidden), progress=False)[0]
        out["metrics"] = d.card.metrics
    elif job.kind == "eval":
        p = job.params
        pol = combine(p["g"], p["d"], mode="resample" if p["g"] else "none", n_candidates=p.get("n", 50),
                      store=store, progress=False)
        out["eval"] = run_episodes(pol.runtime, ds.metadata["gym_id"], args.final_episodes, seed=args.eval_seed)
        out["params"] = p
    else:
        raise ValueError(f"unknown job kind {job.kind}")
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    out["peak_rss_mb"] = round(peak_memory_mb(), 1)  # this job's own process
    return out


def switch_steps(args: argparse.Namespace) -> list[int]:
    """The steps at which the guidance is switched on in the necessity runs."""
    return [args.steps // 4, args.steps // 2, 3 * args.steps // 4]


def dataset_id(args: argparse.Namespace) -> str:
    return f"{args.env}-bullet-medium"


# --- the grid: jobs in subprocesses, dependency order ----------------------------------------------------------
def run_grid(jobs: list[Job], args: argparse.Namespace, argv: list[str]) -> None:
    done = {j.name for j in jobs if job_file(args, j.name).exists()}
    pending = [j for j in jobs if j.name not in done]
    running: dict = {}
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        while pending or running:
            ready = [j for j in pending if all(d in done for d in j.deps)]
            blocked = [j for j in pending if any(d in failed for d in j.deps)]
            for j in blocked:
                pending.remove(j)
                failed.append(j.name)
            for j in ready[: args.parallel - len(running)]:
                pending.remove(j)
                cmd = [sys.executable, __file__, *argv, "--job", j.name]
                log = job_file(args, j.name).with_suffix(".log")
                print(f"[{time.strftime('%H:%M:%S')}] start {j.name}", flush=True)
                running[pool.submit(_run_logged, cmd, log)] = j
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for f in finished:
                j = running.pop(f)
                if f.result() == 0 and job_file(args, j.name).exists():
                    done.add(j.name)
                    print(f"[{time.strftime('%H:%M:%S')}] done  {j.name}", flush=True)
                else:
                    failed.append(j.name)
                    log = job_file(args, j.name).with_suffix(".log")
                    print(f"[{time.strftime('%H:%M:%S')}] FAILED {j.name} (see {log})", flush=True)
    if failed:
        print(f"failed or blocked: {', '.join(failed)}", flush=True)


def _run_logged(cmd: list[str], log: Path) -> int:
    with open(log, "w") as fh:
        return subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)


def job_file(args: argparse.Namespace, name: str) -> Path:
    return Path(args.out) / "jobs" / f"{name}.json"


# --- report ----------------------------------------------------------------------------------------------------
def auc(curve: list[dict]) -> float:
    """Mean normalised score over training (trapezoid area under score vs steps, divided by the steps spanned)."""
    x = np.array([0] + [c["step"] for c in curve], float)
    y = np.array([curve[0]["normalized_score"]] + [c["normalized_score"] for c in curve], float)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def iqr(xs: list[float]) -> float:
    q75, q25 = np.percentile(xs, [75, 25])
    return float(q75 - q25)


def summarise(jobs: list[Job], args: argparse.Namespace) -> dict:
    res = {j.name: json.loads(job_file(args, j.name).read_text()) for j in jobs if job_file(args, j.name).exists()}
    seeds = list(range(args.seeds))

    def run_stats(name: str, extra_wall: float = 0.0) -> dict | None:
        r = res.get(name)
        if r is None or "curve" not in r:
            return None
        c = r["curve"]
        return {"peak": max(p["normalized_score"] for p in c), "auc": auc(c), "final": c[-1]["normalized_score"],
                "wall_s": r["wall_s"] + extra_wall, "train_wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"],
                "steps_per_s": r["metrics"].get("steps_per_s")}

    report: dict = {"gf_vs_joint": {}, "double_guidance": {}, "transfer": {}, "necessity": {}}
    gf = [run_stats(f"gf-{s}", res.get(f"iql-{s}", {}).get("wall_s", 0.0)) for s in seeds]
    jt = [run_stats(f"joint-{s}") for s in seeds]
    if all(gf) and all(jt):
        mean = lambda rows, k: float(np.mean([r[k] for r in rows]))  # noqa: E731
        report["gf_vs_joint"] = {
            "per_seed": {"guidance-first": gf, "joint": jt},
            "mean": {m: {k: mean(rows, k) for k in ("peak", "auc", "final", "wall_s", "train_wall_s", "peak_rss_mb",
                                                    "steps_per_s")} for m, rows in (("guidance-first", gf),
                                                                                    ("joint", jt))},
            "note": "guidance-first wall_s includes training its guidance; peak_rss_mb is the diffusion job's own "
                    "process (the guidance job's peak is in its job file)"}
        g, j = report["gf_vs_joint"]["mean"]["guidance-first"], report["gf_vs_joint"]["mean"]["joint"]
        report["gf_vs_joint"]["ratios"] = {
            "peak_gf_over_joint": _ratio(g["peak"], j["peak"]), "auc_gf_over_joint": _ratio(g["auc"], j["auc"]),
            "wall_gf_incl_guidance_over_joint": _ratio(g["wall_s"], j["wall_s"]),
            "peak_rss_gf_over_joint": _ratio(g["peak_rss_mb"], j["peak_rss_mb"]),
            "steps_per_s_gf_over_joint": _ratio(g["steps_per_s"], j["steps_per_s"])}
    own = [res[f"eval-gf-{s}-own"]["eval"]["normalized_score"] for s in seeds if f"eval-gf-{s}-own" in res]
    dbl = [res[f"eval-gf-{s}-double"]["eval"]["normalized_score"] for s in seeds if f"eval-gf-{s}-double" in res]
    if len(own) == len(seeds) and len(dbl) == len(seeds) and len(seeds) > 1:
        report["double_guidance"] = {"training_guidance": own, "independent_guidance": dbl,
                                     "iqr_training": iqr(own), "iqr_double": iqr(dbl),
                                     "iqr_double_over_training": _ratio(iqr(dbl), iqr(own)),
                                     "mean_training": float(np.mean(own)), "mean_double": float(np.mean(dbl))}
    ev = lambda n: res[n]["eval"]["normalized_score"] if n in res else None  # noqa: E731
    report["transfer"] = {
        "dql_native (joint actor + its critic)": ev("eval-joint-0"),
        "dql_driven_by_idql_guidance": ev("eval-gf-idql-0"),
        "dql_driven_by_iql_guidance": ev("eval-gf-0-own"),
        "idql_native (idql-bc + idql guidance)": ev("eval-idql-native"),
        "idql_sampled_by_dql_critic": ev("eval-idql-by-dql"),
    }
    t = report["transfer"]
    report["transfer"]["ratios"] = {
        "dql_by_idql_over_native": _ratio(t["dql_driven_by_idql_guidance"], t["dql_native (joint actor + its critic)"]),
        "idql_by_dql_over_native": _ratio(t["idql_sampled_by_dql_critic"], t["idql_native (idql-bc + idql guidance)"])}
    report["necessity"] = {name: run_stats(job) for name, job in (
        ("no guidance in training (eta 0)", "bc-0"), ("joint", "joint-0"), ("frozen guidance from step 0", "gf-0"),
        *((f"frozen guidance from step {k}", f"late-{k}-0") for k in switch_steps(args)))}
    report["necessity"]["no guidance at all (eta 0, sampled without guidance)"] = ev("eval-bc-unguided")
    report["curves"] = {name: res[name]["curve"] for name in res if "curve" in res[name]}
    return report


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else round(a / b, 3)


def plot(report: dict, path: Path, args: argparse.Namespace, data_score: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = report["curves"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, x in zip(axes[0], ("step", "wall_time_s"), strict=True):  # guidance-first vs joint, every seed
        for s in range(args.seeds):
            for name, color in ((f"gf-{s}", "tab:blue"), (f"joint-{s}", "tab:red")):
                if name in curves:
                    ax.plot([c[x] for c in curves[name]], [c["normalized_score"] for c in curves[name]], color=color,
                            alpha=0.8, marker="o", ms=3, label=("guidance-first" if "gf" in name else "joint")
                            if s == 0 else None)
        ax.axhline(data_score, color="gray", ls="--", label="behaviour data")
        ax.set_xlabel("gradient steps" if x == "step" else "wall time of the diffusion run (s)")
        ax.set_ylabel("normalised score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[1][0]  # guidance necessity
    for name, label in (("bc-0", "no guidance (eta 0)"), ("gf-0", "guidance from step 0"),
                        *((f"late-{k}-0", f"guidance from step {k}") for k in switch_steps(args)),
                        ("joint-0", "joint")):
        if name in curves:
            ax.plot([c["step"] for c in curves[name]], [c["normalized_score"] for c in curves[name]], marker="o",
                    ms=3, label=label)
    ax.axhline(data_score, color="gray", ls="--")
    ax.set_xlabel("gradient steps")
    ax.set_ylabel("normalised score")
    ax.set_title("guidance necessity (seed 0)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1][1]  # double guidance + transfer
    dg = report.get("double_guidance") or {}
    if dg:
        ax.boxplot([dg["training_guidance"], dg["independent_guidance"]])
        ax.set_xticks([1, 2], ["training guidance", "independent guidance"])
        for i, key in enumerate(("training_guidance", "independent_guidance"), start=1):
            ax.scatter([i] * len(dg[key]), dg[key], color="k", s=12, zorder=3)
        ax.set_ylabel("normalised score (final, per seed)")
        ax.set_title(f"double guidance: IQR {dg['iqr_training']:.1f} -> {dg['iqr_double']:.1f}", fontsize=10)
    fig.suptitle(f"{dataset_id(args)}: guidance-first vs joint DQL ({args.seeds} seeds, {args.steps} steps, "
                 f"eta {args.eta})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="hopper", choices=["hopper", "halfcheetah", "ant"])
    ap.add_argument("--transitions", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--grid", default="all", choices=["all", "core"],
                    help="core: guidance-first vs joint and double guidance only (no transfer / necessity runs)")
    ap.add_argument("--steps", type=int, default=10_000, help="diffusion training steps per run")
    ap.add_argument("--guidance-steps", type=int, default=20_000)
    ap.add_argument("--eta", type=float, default=0.1, help="q_loss weight (reference 1.0; see the README results)")
    ap.add_argument("--hidden", type=int, default=None, help="network width (default: the architectures' own)")
    ap.add_argument("--eval-every", type=int, default=1_000)
    ap.add_argument("--curve-episodes", type=int, default=5)
    ap.add_argument("--final-episodes", type=int, default=10)
    ap.add_argument("--eval-seed", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=2, help="jobs at a time (each in its own process)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--home", default=None, help="hub home for the benchmark's modules (default <out>/home)")
    ap.add_argument("--out", default=None, help="output folder (default benchmarks/out/gfdt-<env>)")
    ap.add_argument("--job", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out = args.out or str(OUT / f"gfdt-{args.env}")
    args.home = args.home or str(Path(args.out) / "home")
    os.environ["MDHUB_HOME"] = args.home
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    jobs = plan(args)
    if args.job:
        job = next((j for j in jobs if j.name == args.job), None)
        if job is None:
            sys.exit(f"unknown job {args.job}; known: {', '.join(j.name for j in jobs)}")
        result = run_job(job, args)
        job_file(args, job.name).write_text(json.dumps(result, indent=1))
        return
    (Path(args.out) / "jobs").mkdir(parents=True, exist_ok=True)
    from hub.datasets import get_dataset

    ds = get_dataset(dataset_id(args), transitions=args.transitions, seed=0, make_if_missing=True, progress=True)
    t0 = time.perf_counter()
    run_grid(jobs, args, sys.argv[1:])
    report = {"what": f"guidance-first vs joint DQL, double guidance, transfer and guidance necessity on "
                      f"{dataset_id(args)} (normalised scores; curves: N=50 candidates resampled by the run's "
                      "guidance, --curve-episodes per point; final evaluations: --final-episodes)",
              "machine": machine(args), "settings": {k: v for k, v in vars(args).items() if k != "job"},
              "data_normalized_score": ds.metadata["normalized_scores"]["mean"],
              "grid_wall_s": round(time.perf_counter() - t0, 1), **summarise(jobs, args)}
    out = Path(args.out)
    (out.parent / f"{out.name}.json").write_text(json.dumps(report, indent=1))
    plot(report, out.parent / f"{out.name}.png", args, report["data_normalized_score"])
    print(json.dumps({k: report[k] for k in ("gf_vs_joint", "double_guidance", "transfer", "necessity")},
                     indent=1, default=str)[:6000])


if __name__ == "__main__":
    main()
