"""bf16 autocast against fp32: the same run (recipe, seed, data, draws) trained twice, the losses compared.

Trains each recipe for --steps on a dataset (default: hopper-bullet-medium made locally with --transitions) once in
fp32 and once with precision bf16, logging the losses every --log-every steps, and reports per loss the median and
max relative difference between the two curves over the second half of training, plus both final values. Writes
benchmarks/out/bf16_losses.json.

    python benchmarks/bf16_losses.py [--steps 3000] [--recipes iql,dql-bc,dql-guidance-first]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, machine  # noqa: E402


def curves(recipe_name: str, ds, steps: int, log_every: int, precision: str, guidance) -> dict[str, list[float]]:
    from hub.training import build
    from modules.train.loop import run
    from modules.train.recipes import get_recipe

    recipe = get_recipe(recipe_name).with_overrides(steps=steps, batch_size=256)
    torch.manual_seed(0)
    critic = build(recipe.critic_arch, "guidance", {"obs_dim": ds.obs_dim, "act_dim": ds.act_dim}) \
        if recipe.critic_arch else None
    model = build(recipe.backbone, "diffusion", {"obs_dim": ds.obs_dim, "act_dim": ds.act_dim}) \
        if recipe.backbone else None
    logged: dict[str, list[float]] = {}

    class Capture:
        def __init__(self, *a, **k):
            pass

        def write(self, step, wall, scalars):
            for k, v in scalars.items():
                if k.startswith("loss/"):
                    logged.setdefault(k[5:], []).append(float(v))

        def close(self):
            pass

    import modules.train.logs as logs

    real = logs.ScalarLog
    logs.ScalarLog = Capture  # type: ignore[misc,assignment]
    try:
        run(recipe, ds, critic=critic, model=model, guidance=guidance if recipe.needs_guidance else None, seed=0,
            progress=False, log_every=log_every, precision=precision, run_dir=Path(OUT) / f"bf16_{recipe_name}_"
            f"{precision}", checkpoint_every=0, fresh=True)
    finally:
        logs.ScalarLog = real
    return logged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--recipes", default="iql,dql-bc,dql-guidance-first")
    ap.add_argument("--transitions", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from hub.datasets import get_dataset
    from hub.training import build
    from modules.train.loop import run
    from modules.train.recipes import get_recipe

    ds = get_dataset("hopper-bullet-medium", transitions=args.transitions, make_if_missing=True, progress=False)
    torch.manual_seed(1)
    guide = build("iql", "guidance", {"obs_dim": ds.obs_dim, "act_dim": ds.act_dim})
    run(get_recipe("iql").with_overrides(steps=args.steps), ds, critic=guide, progress=False)  # a trained guidance
    report: dict = {"machine": machine(args), "steps": args.steps, "dataset": ds.metadata.get("dataset_id"),
                    "transitions": len(ds), "recipes": {}}
    for name in args.recipes.split(","):
        a = curves(name, ds, args.steps, args.log_every, "fp32", guide)
        b = curves(name, ds, args.steps, args.log_every, "bf16", guide)
        rows = {}
        for key in a:
            x, y = np.asarray(a[key]), np.asarray(b[key])
            half = slice(len(x) // 2, None)
            rel = np.abs(y[half] - x[half]) / np.maximum(np.abs(x[half]), 1e-8)
            rows[key] = {"fp32_final": float(x[-1]), "bf16_final": float(y[-1]),
                         "rel_diff_median_2nd_half": float(np.median(rel)), "rel_diff_max_2nd_half": float(rel.max())}
            print(f"{name:20s} {key:12s} fp32 {x[-1]:.4g}  bf16 {y[-1]:.4g}  rel. diff (2nd half) median "
                  f"{np.median(rel):.3f}, max {rel.max():.3f}")
        report["recipes"][name] = rows
    out = Path(OUT) / "bf16_losses.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
