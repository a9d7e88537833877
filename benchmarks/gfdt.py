"""Guidance-first vs joint DQL, double guidance, cross-algorithm transfer, guidance necessity: the sweep spec
benchmarks/sweeps/gfdt.yaml, run by `hub.sweep` with this script's flags applied to it.

The grid itself (arms, pairings, evaluation) lives in the spec; this wrapper only resizes it (--env, --seeds,
--steps, --eta, --grid core, ...) and writes <out>.json (settings, machine, the leaderboard) and copies the sweep's
heatmap and learning curves beside it. The same runs: `mdhub sweep benchmarks/sweeps/gfdt.yaml`. A finished job is
not rerun (the sweep folder under the benchmark's hub home records it); an interrupted benchmark continues.

    python benchmarks/gfdt.py [--env hopper] [--seeds 3] [--steps 10000] [--parallel 2] [--executor ray]
    python benchmarks/gfdt.py --steps 1000000 --guidance-steps 1000000 --transitions 1000000 --eval-every 10000  # paper
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, machine  # noqa: E402

SPEC = Path(__file__).parent / "sweeps" / "gfdt.yaml"
CORE = {"gf", "joint"}  # --grid core: guidance-first vs joint and double guidance only


def resized(args: argparse.Namespace) -> dict[str, Any]:
    """The spec with the flags applied."""
    spec = yaml.safe_load(SPEC.read_text())
    data = f"{args.env}-bullet-medium"
    spec["name"] = f"gfdt-{args.env}"
    spec["datasets"] = [{"id": data, "make": True, "transitions": args.transitions}]
    seeds = list(range(args.seeds))
    for arm in spec["guidance"]:
        arm["steps"] = args.guidance_steps
        if arm["name"] == "iql":
            arm["seeds"] = seeds
    late = {f"late-{k}": k for k in (2500, 5000, 7500)}
    keep = []
    for arm in spec["diffusion"]:
        if args.grid == "core" and arm["name"] not in CORE:
            continue
        arm["steps"] = args.steps
        arm["hidden"] = args.hidden
        if "save_every" in arm:
            arm["save_every"] = args.eval_every
        if arm["name"] in CORE:
            arm["seeds"] = seeds
        over = arm.setdefault("overrides", {})
        if "eta" in over and over["eta"] != 0.0:
            over["eta"] = args.eta
        if arm["name"] in late:  # switched on at 1/4, 1/2, 3/4 of the steps
            over["guidance_start"] = args.steps * late[arm["name"]] // 10000
        keep.append(arm)
    spec["diffusion"] = keep
    names = {a["name"] for a in keep}
    spec["combinations"] = [c for c in spec["combinations"] if c["diffusion"] in names
                            and (args.seeds > 1 or c["name"] != "gf-double")]
    if args.grid == "core":
        spec["guidance"] = [a for a in spec["guidance"] if a["name"] == "iql"]
    for arm in spec["guidance"]:
        arm["hidden"] = args.hidden
    spec["evaluation"] = {"episodes": args.final_episodes, "seeds": [args.eval_seed],
                          "curve_episodes": args.curve_episodes}
    return spec


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
    ap.add_argument("--eval-every", type=int, default=1_000, help="a checkpoint module (curve point) every N steps")
    ap.add_argument("--curve-episodes", type=int, default=5)
    ap.add_argument("--final-episodes", type=int, default=10)
    ap.add_argument("--eval-seed", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=2, help="jobs at a time (local executor)")
    ap.add_argument("--executor", default="local", choices=["local", "ray"])
    ap.add_argument("--address", default=None, help="Ray cluster address (auto: the running one)")
    ap.add_argument("--home", default=None, help="hub home for the benchmark's modules (default <out>/home)")
    ap.add_argument("--out", default=None, help="output folder (default benchmarks/out/gfdt-<env>)")
    ap.add_argument("--dry-run", action="store_true", help="print the job graph and stop")
    args = ap.parse_args()
    args.out = args.out or str(OUT / f"gfdt-{args.env}")
    args.threads = 1  # torch threads per job (the spec's resources: num_cpus 1)
    os.environ["MDHUB_HOME"] = args.home or str(Path(args.out) / "home")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import hub

    spec = resized(args)
    t0 = time.perf_counter()
    r = hub.sweep(spec, executor=args.executor, address=args.address,
                  workers=args.parallel if args.executor == "local" else None, dry_run=args.dry_run)
    if args.dry_run:
        print("\n".join(r.graph.describe()))
        return
    out = Path(args.out)
    report = {"what": "guidance-first vs joint DQL, double guidance, transfer and guidance necessity "
                      f"(sweep spec {SPEC.name}, resized by the flags)",
              "machine": machine(args), "settings": vars(args), "spec": spec,
              "grid_wall_s": round(time.perf_counter() - t0, 1), "ran": len(r.ran), "skipped": len(r.skipped),
              "failed": r.failed, "leaderboard": r.leaderboard}
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.parent / f"{out.name}.json").write_text(json.dumps(report, indent=1, default=str))
    for key, suffix in (("heatmap", ".png"), ("curves", "-curves.png")):
        if key in r.files:
            shutil.copyfile(r.files[key], out.parent / f"{out.name}{suffix}")
    if r.leaderboard:
        from rich.console import Console

        from hub.sweeps.leaderboard import table

        Console().print(table(r.leaderboard))
    if not r.ok:
        sys.exit(f"{len(r.failed)} job(s) failed, {len(r.blocked)} blocked: see {r.folder / 'failed'}")


if __name__ == "__main__":
    main()
