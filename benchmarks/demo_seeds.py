"""The demo over several seeds: does guided sampling beat unguided, are recombinations no worse than native?

    python benchmarks/demo_seeds.py                                   # the demo's defaults, seeds 0-4
    python benchmarks/demo_seeds.py --set dataset=halfcheetah-bullet-medium --set eta=0.3 --seeds 0-4

Each seed runs the whole demo (`hub.demo.run_demo`: its own dataset, two guidances, a DQL and an IDQL backbone,
six recombinations) in its own hub home under `--work`, resumably (a finished seed's rows are kept as JSON).
Reports, per recombination, the normalised score over seeds (mean, std, IQM with a 95% bootstrap interval) and the
paired differences that judge the demo: guided (native resample) minus unguided, per backbone, and double minus
native. Writes `--out`.json (config, seeds, rows, machine) and `--out`.png.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).parent / "out"
RESULTS = Path(__file__).parent / "results"
PAIRS = [("dql-native", "dql-unguided"), ("idql-native", "idql-unguided"), ("dql-double", "dql-native"),
         ("idql-double", "idql-native"), ("idql-native", "dql-native")]


def parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


def parse_set(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE (a DemoConfig field)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _say(seed: int) -> Callable[[str], None]:
    def say(message: str) -> None:
        print(f"[seed {seed}] {message}", flush=True)

    return say


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE: a DemoConfig field (repeatable)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default=None, help="homes and per-seed rows (default: benchmarks/out/demo_seeds/<tag>)")
    ap.add_argument("--out", default=None, help="output path without extension (default: benchmarks/results/"
                    "demo_seeds[-<tag>])")
    ap.add_argument("--tag", default="", help="a name for this configuration (folders and files)")
    args = ap.parse_args(argv)

    from hub.demo import DemoConfig

    overrides = parse_set(args.set)
    cfg0 = DemoConfig(**overrides)
    seeds = parse_seeds(args.seeds)
    tag = args.tag or "defaults"
    work = Path(args.work or OUT / "demo_seeds" / tag)
    work.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    rows_of: dict[int, dict[str, float]] = {}
    wall: dict[int, float] = {}
    for s in seeds:
        f = work / f"seed{s}.json"
        if f.exists():
            rec = json.loads(f.read_text())
            if rec["config"] == cfg0.model_copy(update={"seed": s}).model_dump():
                rows_of[s], wall[s] = rec["scores"], rec["wall_s"]
                continue
        os.environ["MDHUB_HOME"] = str((work / f"home-s{s}").resolve())
        from hub.demo import run_demo
        from hub.store import Store

        cfg = cfg0.model_copy(update={"seed": s})
        t0 = time.perf_counter()
        rows = run_demo(cfg, store=Store(), say=_say(s), progress=False)
        wall[s] = round(time.perf_counter() - t0, 1)
        rows_of[s] = {r.policy: round(float(r.normalized_score), 3) for r in rows}
        tmp = f.with_suffix(".tmp")
        tmp.write_text(json.dumps({"config": cfg.model_dump(), "scores": rows_of[s], "wall_s": wall[s]}))
        tmp.replace(f)

    from hub.sweeps.stats import iqm_ci, stratified_bootstrap_ci

    names = list(next(iter(rows_of.values())))
    table: dict[str, Any] = {}
    for n in names:
        v = np.asarray([rows_of[s][n] for s in seeds])
        m, lo, hi = iqm_ci(v)
        table[n] = {"mean": round(float(v.mean()), 2), "std": round(float(v.std(ddof=1)), 2) if len(v) > 1 else 0.0,
                    "iqm": round(m, 2), "ci95": [round(lo, 2), round(hi, 2)], "per_seed": v.tolist()}
    paired: dict[str, Any] = {}
    for a, b in PAIRS:
        d = np.asarray([rows_of[s][a] - rows_of[s][b] for s in seeds])
        lo, hi = stratified_bootstrap_ci([d], lambda x: float(np.mean(x)))
        paired[f"{a} - {b}"] = {"mean": round(float(d.mean()), 2), "ci95": [round(lo, 2), round(hi, 2)],
                                "wins": int((d > 0).sum()), "n": len(d)}
    summary = {"benchmark": "demo_seeds", "config": cfg0.model_dump(), "seeds": seeds, "table": table,
               "paired": paired, "wall_s_per_seed": wall,
               "budget": f"{cfg0.transitions} transitions of {cfg0.dataset}, {cfg0.guidance_steps} guidance and "
                         f"{cfg0.diffusion_steps} diffusion steps, hidden {cfg0.hidden}, {cfg0.episodes} episodes "
                         f"per policy, N={cfg0.n_candidates}",
               "machine": {"cores": os.cpu_count(), "threads": args.threads, "cpu": platform.machine(),
                           "torch": torch.__version__}}
    out = Path(args.out or RESULTS / ("demo_seeds" + (f"-{args.tag}" if args.tag else "")))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    _plot(summary, names, seeds, out.with_suffix(".png"))
    print(f"\n{summary['budget']}; seeds {args.seeds}")
    print(f"{'policy':>16} {'mean':>7} {'std':>6} {'IQM [95% CI]':>24}   per seed")
    for n in names:
        t = table[n]
        print(f"{n:>16} {t['mean']:7.1f} {t['std']:6.1f} {t['iqm']:8.1f} [{t['ci95'][0]:6.1f}, {t['ci95'][1]:6.1f}]   "
              + " ".join(f"{x:.0f}" for x in t["per_seed"]))
    for k, p in paired.items():
        print(f"{k:>30}: {p['mean']:+7.1f} [{p['ci95'][0]:+.1f}, {p['ci95'][1]:+.1f}]  "
              f"({p['wins']}/{p['n']} seeds > 0)")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


def _plot(summary: dict[str, Any], names: list[str], seeds: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    for i, n in enumerate(names):
        t = summary["table"][n]
        color = "#999999" if n.endswith("unguided") else ("#d62728" if "double" in n else "#1f77b4")
        ax.bar(i, t["mean"], color=color, alpha=0.7)
        ax.scatter(np.full(len(seeds), i), t["per_seed"], color="k", s=10, zorder=3)
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set_ylabel("normalised score")
    ax.set_title(f"demo over {len(seeds)} seeds: {summary['budget']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
