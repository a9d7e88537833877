"""Plug-and-play reward retargeting: one diffusion policy, trained once on a dataset's own rewards, steered at
sampling time by guidances trained on relabelled rewards, with no retraining of the diffusion model.

    python benchmarks/retarget.py                          # halfcheetah-bullet-medium, 10 seeds (trains what lacks)
    python benchmarks/retarget.py --diffusion 'ev-hc-bc-8f2c1a0e-s{seed}' --original 'ev-hc-iql-1d2e3f4a-s{seed}'
    python benchmarks/retarget.py --report                 # tables and figure from what is measured so far

For each seed s: the diffusion model s (a behaviour-cloning model of the dataset's actions) is recombined
(`hub.combine`, resample: N candidates ranked by the guidance, argmax) with
  - no guidance (one sample: what the diffusion model does alone),
  - the *original* guidance s: IQL trained on the dataset's own (forward) rewards,
  - one guidance s per relabelled reward (`mdhub data relabel`: backward, target-speed:V, energy), IQL with the
    same settings on the same states and actions,
and each policy runs the same fixed-seed episodes. Every episode is judged by every reward (its relabelled
per-step return), by its mean forward speed (m/s), forward travel (m) and energy (mean sum a^2 per step).
Seed s's numbers are the means over its episodes; an arm's figure is the IQM over seeds with a 95% stratified
bootstrap interval (hub.sweeps.stats), plus mean +- std; the shift a retargeted guidance causes is paired per seed
(the same diffusion model s, its original guidance s vs its retargeted guidance s).
The dataset's own spread (per-transition forward speed and energy quantiles) is the diffusion model's support:
a guidance can only pick among actions the model proposes, so a target outside it cannot be reached.

Everything is resumable: modules already in the store are reused, and each (arm, seed) measurement is kept in
`--work` as JSON; rerun the same command after an interruption. Writes `--out`.json (settings, machine, seeds,
budget, per-seed and aggregate figures) and `--out`.png.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).parent / "out"
RESULTS = Path(__file__).parent / "results"
METRICS = ("speed_mps", "travel_m", "energy", "return", "score")


def parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


def slug(reward: str) -> str:
    """'target-speed:0.3' -> 'target-speed-0p3' (a dataset and module id part)."""
    return re.sub(r"[^a-z0-9-]", "", reward.lower().replace(":", "-").replace(".", "p"))


def rollout_record(policy_fn: Any, env: str, n_episodes: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Episodes of `policy_fn` (env copies in lockstep, one batched call per step, episode i reset with seed + i,
    actions clipped to [-1, 1]): per episode its obs, act, next_obs and the env's rewards, as arrays."""
    from modules.envs import env_spec, make_env

    spec = env_spec(env)
    width = max(1, min(n_episodes, 16))
    envs = [make_env(spec, seed=None) for _ in range(width)]
    eps: list[dict[str, list[Any]]] = [{"obs": [], "act": [], "next_obs": [], "rew": []} for _ in range(n_episodes)]
    slot_ep: list[int | None] = [None] * width
    obs = np.zeros((width, spec.obs_dim), np.float32)
    next_ep = 0

    def start(slot: int) -> None:
        nonlocal next_ep
        if next_ep >= n_episodes:
            slot_ep[slot] = None
            return
        obs[slot] = envs[slot].reset(seed=seed + next_ep)[0]
        slot_ep[slot] = next_ep
        next_ep += 1

    try:
        for s in range(width):
            start(s)
        while any(e is not None for e in slot_ep):
            live = [s for s in range(width) if slot_ep[s] is not None]
            acts = np.clip(np.asarray(policy_fn(obs[live].copy()), dtype=np.float32), -1.0, 1.0)
            for a, s in zip(acts, live, strict=True):
                o2, r, term, trunc, _ = envs[s].step(a)
                ep = slot_ep[s]
                assert ep is not None
                rec = eps[ep]
                rec["obs"].append(obs[s].copy())
                rec["act"].append(a)
                rec["next_obs"].append(np.asarray(o2, np.float32))
                rec["rew"].append(float(r))
                obs[s] = o2
                if term or trunc:
                    start(s)
    finally:
        for e in envs:
            e.close()
    return [{k: np.asarray(v, np.float32) for k, v in rec.items()} for rec in eps]


def judge(episodes: list[dict[str, np.ndarray]], env: str, rewards: list[str]) -> dict[str, Any]:
    """Per-episode figures: return (the task's), score, travel, mean speed, energy, and per reward the mean
    per-step relabelled reward."""
    from modules.data.locomotion import forward_speed, layout_for, step_travel
    from modules.data.rewards import compute_reward, parse_reward
    from modules.envs import env_spec, normalized_score

    spec = env_spec(env)
    layout = layout_for(spec, spec.obs_dim)
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    out.update({f"reward:{r}": [] for r in rewards})
    out["length"] = []
    for ep in episodes:
        n = len(ep["act"])
        ret = float(ep["rew"].sum())
        travel = float(step_travel(ep["obs"], ep["next_obs"]).sum())
        out["return"].append(ret)
        out["score"].append(float(normalized_score(spec, ret)))
        out["travel_m"].append(travel)
        out["speed_mps"].append(float(forward_speed(ep["next_obs"]).mean()))
        out["energy"].append(float((ep["act"] ** 2).sum(axis=1).mean()))
        out["length"].append(float(n))
        for r in rewards:
            rr = compute_reward(parse_reward(r), layout, ep["obs"], ep["act"], ep["next_obs"])
            out[f"reward:{r}"].append(float(rr.mean()))
    return {k: [round(v, 5) for v in vals] for k, vals in out.items()}


def dataset_support(ds: Any, env: str) -> dict[str, Any]:
    """What the diffusion model was trained to propose: quantiles of per-transition forward speed and energy,
    and the per-episode mean speed range of the dataset."""
    from modules.data.locomotion import forward_speed

    speed = forward_speed(ds.next_observations)
    energy = (np.asarray(ds.actions, np.float64) ** 2).sum(axis=1)
    q = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
    return {"speed_mps_quantiles": dict(zip([str(x) for x in q], np.round(np.quantile(speed, q), 4).tolist(),
                                            strict=True)),
            "energy_quantiles": dict(zip([str(x) for x in q], np.round(np.quantile(energy, q), 4).tolist(),
                                         strict=True)),
            "speed_mps_mean": round(float(speed.mean()), 4), "energy_mean": round(float(energy.mean()), 4)}


def aggregate(per_seed: dict[str, dict[int, dict[str, list[float]]]], keys: list[str]) -> dict[str, Any]:
    """Per arm and key: the seed means, IQM with 95% bootstrap CI, mean and std over seeds; and per retargeted arm
    the paired shift from the original guidance (per seed), with its bootstrap CI of the mean."""
    from hub.sweeps.stats import iqm_ci, stratified_bootstrap_ci

    out: dict[str, Any] = {}
    for arm, seeds in per_seed.items():
        out[arm] = {}
        for key in keys:
            vals = np.asarray([float(np.mean(seeds[s][key])) for s in sorted(seeds)])
            m, lo, hi = iqm_ci(vals)
            out[arm][key] = {"iqm": round(m, 4), "ci95": [round(lo, 4), round(hi, 4)],
                             "mean": round(float(vals.mean()), 4), "std": round(float(vals.std(ddof=1)), 4)
                             if len(vals) > 1 else 0.0, "n_seeds": len(vals),
                             "seeds": [round(float(v), 4) for v in vals]}
    base = per_seed.get("original", {})
    for arm, seeds in per_seed.items():
        if arm in ("original", "unguided"):
            continue
        common = sorted(set(seeds) & set(base))
        if not common:
            continue
        for key in keys:
            d = np.asarray([np.mean(seeds[s][key]) - np.mean(base[s][key]) for s in common])
            lo, hi = stratified_bootstrap_ci([d], lambda x: float(np.mean(x)))
            out[arm][key]["shift_vs_original"] = {"mean": round(float(d.mean()), 4),
                                                  "ci95": [round(lo, 4), round(hi, 4)], "n_seeds": len(d)}
    return out


def plot(summary: dict[str, Any], arms: list[str], targets: list[float], support: dict[str, Any], path: Path,
         budget: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = summary["aggregate"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw={"width_ratios": [1, 1, 1.2]})
    colors = {"unguided": "#999999", "original": "#1f77b4"}
    xs = np.arange(len(arms))
    for ax, (key, title, what) in zip(axes[:2], [("speed_mps", "mean forward speed (m/s)", "speed"),
                                                 ("energy", "energy: mean sum a^2 per step", "energy")],
                                      strict=True):
        for i, arm in enumerate(arms):
            a = agg[arm][key]
            ax.bar(i, a["iqm"], color=colors.get(arm, "#d62728"), alpha=0.75)
            ax.errorbar(i, a["iqm"], yerr=[[a["iqm"] - a["ci95"][0]], [a["ci95"][1] - a["iqm"]]], color="k",
                        capsize=4)
            ax.scatter(np.full(len(a["seeds"]), i) + np.linspace(-0.2, 0.2, len(a["seeds"])), a["seeds"], s=8,
                       color="k", alpha=0.5, zorder=3)
        ax.set_xticks(xs, arms, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        q = support[f"{key}_quantiles"]
        ax.axhspan(q["0.05"], q["0.95"], color="green", alpha=0.08, label=f"dataset {what}, 5-95% of steps")
        if key == "speed_mps":
            for v in targets:
                ax.axhline(v, color="#d62728", ls=":", lw=1)
            ax.axhline(0, color="k", lw=0.5)
        ax.legend(fontsize=7, loc="upper right")
    judged = [k for k in next(iter(agg.values())) if k.startswith("reward:")]
    base = {k: agg["original"][k]["iqm"] for k in judged} if "original" in agg else {k: 0.0 for k in judged}
    mat = np.asarray([[agg[a][k]["iqm"] - base[k] for k in judged] for a in arms])
    ax = axes[2]
    col = np.abs(mat).max(axis=0)
    ax.imshow(mat / np.where(col > 0, col, 1.0), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")  # colour per column
    for i in range(len(arms)):
        for j in range(len(judged)):
            ax.text(j, i, f"{mat[i, j]:+.3f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(judged)), [k.removeprefix("reward:") for k in judged], rotation=30, ha="right",
                  fontsize=8)
    ax.set_yticks(range(len(arms)), arms, fontsize=8)
    ax.set_xlabel("reward the episodes are judged by", fontsize=8)
    ax.set_ylabel("guidance at sampling", fontsize=8)
    ax.set_title("per-step reward minus the original guidance's\n(IQM over seeds; colour scaled per column)",
                 fontsize=9)
    fig.suptitle(f"reward retargeting at sampling time: one diffusion model per seed, guidances swapped "
                 f"(IQM over seeds, 95% CI; {budget})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default=str(OUT / "home-evidence"), help="hub home (the evidence sweep's, to reuse "
                    "its modules)")
    ap.add_argument("--dataset", default="halfcheetah-bullet-medium")
    ap.add_argument("--transitions", type=int, default=1_000_000, help="size, when the dataset must be made")
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--rewards", default="backward,target-speed:0.3,target-speed:1.2,energy",
                    help="relabelled rewards, each a guidance (registered rewards: mdhub data relabel --help)")
    ap.add_argument("--diffusion", default=None, help="the diffusion model of seed s, an id with {seed} (default: "
                    "train IDQL's behaviour-cloning backbone as rt-bc-s{seed})")
    ap.add_argument("--original", default=None, help="the original guidance of seed s, an id with {seed} (default: "
                    "train IQL on the dataset's own rewards as rt-original-s{seed})")
    ap.add_argument("--steps", type=int, default=5000, help="gradient steps of every guidance (and of rt-bc)")
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--episodes", type=int, default=10, help="episodes per policy (per seed)")
    ap.add_argument("--eval-seed", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default=str(OUT / "retarget"), help="per-(arm, seed) measurements (resumable)")
    ap.add_argument("--out", default=str(RESULTS / "retarget"), help="output path without extension")
    ap.add_argument("--report", action="store_true", help="only aggregate what is measured")
    args = ap.parse_args(argv)

    os.environ["MDHUB_HOME"] = str(Path(args.home).resolve())
    import torch

    torch.set_num_threads(args.threads)
    import hub
    from hub.datasets import dataset_path, get_dataset, relabel
    from modules.data.rewards import parse_reward

    seeds = parse_seeds(args.seeds)
    rewards = [parse_reward(r).name for r in args.rewards.split(",") if r.strip()]
    judge_rewards = ["forward", *rewards]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    stored = dataset_path(args.dataset).exists()
    ds = get_dataset(args.dataset, transitions=None if stored else args.transitions, seed=0,
                     make_if_missing=not args.report, progress=True)
    env = str(ds.metadata.get("env"))
    store = hub.Store()
    timings: dict[str, float] = {}

    def ensure_guidance(module_prefix: str, dataset_id: str) -> str:
        if all(store.contains(f"{module_prefix}-s{s}") for s in seeds):
            return module_prefix + "-s{seed}"
        t0 = time.perf_counter()
        print(f"training IQL on {dataset_id}: seeds {args.seeds}, {args.steps} steps -> {module_prefix}-s<seed>",
              flush=True)
        hub.train_guidance("iql", dataset_id, steps=args.steps, seeds=seeds, module_id=module_prefix,
                           progress=True, device="cpu")
        timings[f"train {module_prefix}"] = round(time.perf_counter() - t0, 1)
        return module_prefix + "-s{seed}"

    guidance_of: dict[str, str] = {}
    if not args.report:
        diffusion = args.diffusion
        if diffusion is None:
            if not all(store.contains(f"rt-bc-s{s}") for s in seeds):
                t0 = time.perf_counter()
                print(f"training the diffusion model once: IDQL behaviour cloning, seeds {args.seeds}, "
                      f"{args.steps} steps -> rt-bc-s<seed>", flush=True)
                hub.train_diffusion("idql", args.dataset, steps=args.steps, seeds=seeds, module_id="rt-bc",
                                    progress=True, device="cpu")
                timings["train rt-bc"] = round(time.perf_counter() - t0, 1)
            diffusion = "rt-bc-s{seed}"
        guidance_of["original"] = args.original or ensure_guidance("rt-original", args.dataset)
        for r in rewards:
            rid = f"{args.dataset}-rl-{slug(r)}"
            if not dataset_path(rid).exists():
                print(f"relabelling {args.dataset} with reward {r} -> {rid}", flush=True)
                relabel(args.dataset, r, rid)
            guidance_of[r] = ensure_guidance(f"rt-{slug(r)}", rid)

        arms = ["unguided", "original", *rewards]
        missing = [m for s in seeds for m in (diffusion.format(seed=s), guidance_of["original"].format(seed=s))
                   if not store.contains(m)]
        if missing:
            print(f"the guidances are trained; {len(missing)} input module(s) are not in the store yet (first: "
                  f"{missing[0]}): rerun this command once they are (e.g. when the evidence sweep has trained them)")
            return 0
        for arm in arms:
            for s in seeds:
                f = work / f"{slug(arm)}-s{s}.json"
                if f.exists():
                    continue
                t0 = time.perf_counter()
                d_id = diffusion.format(seed=s)
                if arm == "unguided":
                    pol = hub.combine(None, d_id, mode="none", progress=False)
                else:
                    pol = hub.combine(guidance_of[arm].format(seed=s), d_id, mode="resample", progress=False,
                                      n_candidates=args.candidates, rule="argmax")
                with torch.no_grad():
                    eps = rollout_record(pol.act, env, args.episodes, args.eval_seed)
                rec = {"arm": arm, "seed": s, "diffusion": d_id,
                       "guidance": None if arm == "unguided" else guidance_of[arm].format(seed=s),
                       "episodes": args.episodes, "eval_seed": args.eval_seed,
                       "wall_s": round(time.perf_counter() - t0, 1), **judge(eps, env, judge_rewards)}
                tmp = f.with_suffix(".tmp")
                tmp.write_text(json.dumps(rec))
                tmp.replace(f)
                print(f"{arm:>18} s{s}: speed {np.mean(rec['speed_mps']):.3f} m/s, travel "
                      f"{np.mean(rec['travel_m']):.2f} m, energy {np.mean(rec['energy']):.3f}, "
                      f"return {np.mean(rec['return']):.0f} ({rec['wall_s']} s)", flush=True)

    per_seed: dict[str, dict[int, dict[str, list[float]]]] = {}
    meta: dict[str, Any] = {}
    for f in sorted(work.glob("*.json")):
        rec = json.loads(f.read_text())
        if rec["seed"] not in seeds or rec["arm"] not in ("unguided", "original", *rewards):
            continue
        per_seed.setdefault(rec["arm"], {})[rec["seed"]] = rec
        meta[f"{rec['arm']} s{rec['seed']}"] = {k: rec[k] for k in ("diffusion", "guidance", "wall_s")}
    arms = [a for a in ("unguided", "original", *rewards) if a in per_seed]
    if not arms:
        print("nothing measured yet: run without --report", file=sys.stderr)
        return 1
    keys = [*METRICS, *[f"reward:{r}" for r in judge_rewards]]
    agg = aggregate(per_seed, keys)
    support = dataset_support(ds, env)
    budget = (f"{args.steps} gradient steps per guidance, {ds.metadata.get('transitions', len(ds.actions))} "
              f"transitions, {len(seeds)} seeds x {args.episodes} episodes, N={args.candidates}")
    summary = {"benchmark": "retarget", "dataset": args.dataset, "dataset_sha256": ds.sha256, "env": env,
               "budget": budget, "seeds": seeds, "rewards": rewards, "arms": arms,
               "settings": {k: v for k, v in vars(args).items() if k not in ("report",)},
               "machine": {"cores": os.cpu_count(), "threads": args.threads, "cpu": platform.machine(),
                           "torch": torch.__version__},
               "support": support, "aggregate": agg, "runs": meta, "timings_s": timings,
               "wall_s_this_call": round(time.time() - t_start, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    targets = [parse_reward(r).param or 0.0 for r in rewards if r.startswith("target-speed")]
    plot(summary, arms, targets, support, out.with_suffix(".png"), budget)

    print(f"\n{args.dataset}: {budget}")
    print(f"{'arm':>20} {'speed m/s':>20} {'energy':>20} {'travel m':>20}   n")
    for arm in arms:
        cells = []
        for key in ("speed_mps", "energy", "travel_m"):
            a = agg[arm][key]
            cells.append(f"{a['iqm']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]")
        print(f"{arm:>20} {cells[0]:>20} {cells[1]:>20} {cells[2]:>20}  {agg[arm]['speed_mps']['n_seeds']}")
    print(f"dataset support: speed 5-95% {support['speed_mps_quantiles']['0.05']:.2f}..."
          f"{support['speed_mps_quantiles']['0.95']:.2f} m/s, energy 5-95% {support['energy_quantiles']['0.05']:.2f}"
          f"...{support['energy_quantiles']['0.95']:.2f}")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
