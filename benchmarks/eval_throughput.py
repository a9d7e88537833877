"""Evaluation throughput (issue 15, item 5): environment steps per second of our parallel evaluation against the bare
simulator's step rate times the cores.

    (a)  the bare simulator: one process stepping the hopper with random actions (a), and `cores` such processes at
         once (measured, next to the ideal a x cores);
    (b)  hub.evaluation.evaluate_many over a few stored policies (DQL-sized: MLP 3 x 256, T 5, resampled by a 2 x 256
         critic over 50 candidates, and the same policies sampled plainly), blocks of episodes in `cores` processes,
         each block's env copies stepped in lockstep with one batched policy call; also in one process (workers 1).
    ratio = (b) / (a x cores): the fraction of the machine's simulator throughput that evaluation reaches.

The policies are untrained (random weights): what is timed is the work per step, not the returns; their episodes are
short (the hopper falls), and capped at --max-steps. Each configuration runs at two sizes (--episodes and 3x that):
`steps_per_s` is the whole call's rate (the process pool's start, each worker's imports, module loading and env
creation included), `marginal_steps_per_s` the rate of the extra episodes (steady state, those fixed costs excluded).
The ratios use the marginal rates.

    python benchmarks/eval_throughput.py                # writes benchmarks/out/eval_throughput.{json,png}
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from common import OUT  # benchmarks/ is on sys.path when this script runs

ENV = "HopperBulletEnv-v0"


def sim_steps_per_second(steps: int, seed: int = 0) -> tuple[int, float]:
    """The bare simulator on one core: random actions, reset when an episode ends -> (steps, seconds)."""
    import numpy as np

    from modules.envs import make_env

    env = make_env(ENV, seed=seed)
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(rng.uniform(low, high).astype(np.float32))
        if term or trunc:
            env.reset()
    elapsed = time.perf_counter() - t0
    env.close()
    return steps, elapsed


def bare_simulator(steps: int, cores: int) -> dict[str, float]:
    from concurrent.futures import ProcessPoolExecutor

    from hub.evaluation import _pool_context

    n, secs = sim_steps_per_second(steps)
    single = n / secs
    with ProcessPoolExecutor(cores, mp_context=_pool_context()) as pool:
        list(pool.map(sim_steps_per_second, [50] * cores, range(cores)))  # start the workers and their simulators
        t0 = time.perf_counter()
        done = list(pool.map(sim_steps_per_second, [steps] * cores, range(cores)))
        wall = time.perf_counter() - t0
    return {"single_core_steps_per_s": round(single, 1), "steps_per_process": steps, "processes": cores,
            "parallel_steps_per_s": round(sum(s for s, _ in done) / wall, 1),
            "ideal_steps_per_s": round(single * cores, 1)}


def make_policies(home: Path, n: int, hidden: int) -> list[str]:
    """n untrained DQL-sized diffusion modules for the hopper, each paired with a stored critic (resample, 50)."""
    import torch

    from cards import DiffusionSpec, GuidanceSpec, Interface, ModuleCard, Origin
    from hub.registry import registry
    from hub.store import Store
    from modules.envs import env_spec

    spec = env_spec(ENV)
    store = Store(home)
    iface = Interface(obs_dim=spec.obs_dim, act_dim=spec.act_dim, env_id=ENV)
    torch.manual_seed(0)
    critic = registry().get("iql", kind="guidance").make({"obs_dim": spec.obs_dim, "act_dim": spec.act_dim,
                                                          "hidden": hidden})
    g = store.save(critic, ModuleCard(id="bench-critic", kind="guidance", architecture="iql",
                                      config=critic.cfg.model_dump(mode="json"), interface=iface,
                                      origin=Origin(algorithm="IQL", recipe="policy-free"),
                                      guidance=GuidanceSpec(provides=["q", "v"], expectile=0.7)), overwrite=True)
    ids = []
    for i in range(n):
        torch.manual_seed(i + 1)
        net = registry().get("dql_mlp", kind="diffusion").make({"obs_dim": spec.obs_dim, "act_dim": spec.act_dim,
                                                                "hidden": hidden})
        card = ModuleCard(id=f"bench-dql-{i}", kind="diffusion", architecture="dql_mlp",
                          config=net.cfg.model_dump(mode="json"), interface=iface,
                          origin=Origin(algorithm="DQL", recipe="guidance-first", seed=i, steps=0,
                                        trained_with_guidance=g.card.ref()),
                          diffusion=DiffusionSpec(T=5, train_guidance=["none", "q_loss"],
                                                  sample_guidance=["none", "resample"]))
        store.save(net, card, overwrite=True)
        ids.append(card.id)
    return ids


def plain_policies(home: Path, ids: list[str]) -> list[str]:
    """Policy cards sampling the same modules plainly (one draw, no critic): the simulator's share grows."""
    from hub.combine import combine
    from hub.store import Store

    store = Store(home)
    return [combine(None, d, mode="none", module_id=f"{d}.none", save=True, overwrite=True, store=store,
                    progress=False).card.id for d in ids]


def _eval_once(refs: list[str], episodes: int, workers: int, max_steps: int, home: Path) -> tuple[int, float]:
    from hub.evaluation import evaluate_many
    from hub.store import Store

    t0 = time.perf_counter()
    results = evaluate_many(refs, episodes=episodes, seed=0, workers=workers, store=Store(home), write=False,
                            max_steps=max_steps)
    return sum(r["env_steps"] for r in results), time.perf_counter() - t0


def timed_eval(refs: list[str], episodes: int, workers: int, max_steps: int, home: Path) -> dict[str, float]:
    """The call at `episodes` and at 3x `episodes` per policy: whole-call and marginal (steady-state) rates."""
    steps, wall = _eval_once(refs, episodes, workers, max_steps, home)
    steps3, wall3 = _eval_once(refs, 3 * episodes, workers, max_steps, home)
    marginal = (steps3 - steps) / (wall3 - wall) if wall3 > wall else float("nan")
    return {"policies": len(refs), "episodes_per_policy": [episodes, 3 * episodes], "workers": workers,
            "env_steps": [steps, steps3], "wall_s": [round(wall, 2), round(wall3, 2)],
            "steps_per_s": round(steps3 / wall3, 1), "marginal_steps_per_s": round(marginal, 1),
            "fixed_cost_s": round(wall - (steps / marginal), 2) if marginal == marginal else None,
            "mean_episode_length": round(steps3 / (3 * episodes * len(refs)), 1)}


def plot(result: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sim = result["bare_simulator"]
    bars = {"sim x1": sim["single_core_steps_per_s"], f"sim x{sim['processes']} ideal": sim["ideal_steps_per_s"],
            f"sim x{sim['processes']} measured": sim["parallel_steps_per_s"]}
    for name, r in result["evaluation"].items():
        bars[f"{name}\n{r['workers']} worker(s)"] = r["marginal_steps_per_s"]
    fig = Figure(figsize=(10, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.bar(range(len(bars)), list(bars.values()), color=["C7"] * 3 + ["C0"] * (len(bars) - 3))
    ax.set_xticks(range(len(bars)), list(bars), fontsize=7)
    ax.set_ylabel("environment steps / s (evaluation: marginal)")
    ax.set_title(f"evaluation throughput, {result['machine']['cores']} cores ({ENV})", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cores", type=int, default=None, help="processes (default: the cores this process may use)")
    ap.add_argument("--sim-steps", type=int, default=3000, help="random-action steps per simulator process")
    ap.add_argument("--policies", type=int, default=4)
    ap.add_argument("--episodes", type=int, default=16, help="episodes per policy")
    ap.add_argument("--max-steps", type=int, default=200, help="episode cap")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process (the serial runs); pool "
                    "workers take cores / workers each")
    ap.add_argument("--home", default=str(OUT / "home-eval-throughput"))
    ap.add_argument("--out", default=str(OUT / "eval_throughput"), help="output path without extension")
    args = ap.parse_args()
    os.environ["MDHUB_HOME"] = args.home
    import torch

    torch.set_num_threads(args.threads)
    from hub.evaluation import default_workers

    cores = args.cores or default_workers()
    home = Path(args.home)
    sim = bare_simulator(args.sim_steps, cores)
    print(f"bare simulator: {sim}", flush=True)
    ids = make_policies(home, args.policies, args.hidden)
    plain = plain_policies(home, ids)
    evaluation = {}
    for name, refs, workers in (("resample50 parallel", ids, cores), ("resample50 serial", ids, 1),
                                ("plain parallel", plain, cores), ("plain serial", plain, 1)):
        evaluation[name] = timed_eval(refs, args.episodes, workers, args.max_steps, home)
        print(f"{name}: {evaluation[name]}", flush=True)
    ideal = sim["ideal_steps_per_s"]

    def rate(name: str) -> float:
        return float(evaluation[name]["marginal_steps_per_s"])

    import platform

    result = {
        "machine": {"cores": cores, "cpu": platform.machine(), "torch": torch.__version__,
                    "load_avg_1m": round(os.getloadavg()[0], 2), "device": "cpu"},
        "settings": vars(args), "bare_simulator": sim, "evaluation": evaluation,
        "ratios": {
            "resample50_parallel_over_sim_x_cores": round(rate("resample50 parallel") / ideal, 3),
            "plain_parallel_over_sim_x_cores": round(rate("plain parallel") / ideal, 3),
            "resample50_parallel_over_serial": round(rate("resample50 parallel") / rate("resample50 serial"), 3),
            "plain_parallel_over_serial": round(rate("plain parallel") / rate("plain serial"), 3),
            "sim_measured_parallel_over_ideal": round(sim["parallel_steps_per_s"] / ideal, 3),
            # against what the simulator itself reached in `cores` processes on this machine at this moment
            "resample50_parallel_over_sim_measured_parallel": round(rate("resample50 parallel")
                                                                    / sim["parallel_steps_per_s"], 3),
            "plain_parallel_over_sim_measured_parallel": round(rate("plain parallel") / sim["parallel_steps_per_s"], 3),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out.with_suffix(".png"))
    print(json.dumps(result["ratios"], indent=1))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
