"""The sweep's leaderboard: one row per combination (backbone arm x training guidance x inference guidance x mode).

Per row: the final normalised score of each training seed (the mean over the evaluation seeds), aggregated as IQM
with a 95% stratified-bootstrap interval (hub.sweeps.stats) and as mean +- std; the area under the learning curve
when the diffusion arm stored checkpoint modules (`save_every`, evaluated by the curve jobs); the training wall time
and peak memory read from the parts' card metrics (a batched seed group reports its run's shared figures). Written as
leaderboard.csv and leaderboard.json, drawn as heatmap.png (training guidance x inference guidance, one panel per
backbone) and curves.png (learning curves overlaid), printed as a rich table by the CLI.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hub.sweeps.graph import Graph
from hub.sweeps.stats import auc, iqm_ci

if TYPE_CHECKING:
    from rich.table import Table

CSV_FIELDS = ("combination", "dataset", "diffusion_arm", "algo", "backbone", "train_guidance", "infer_guidance",
              "mode", "settings", "seeds", "iqm", "ci_low", "ci_high", "mean", "std", "auc", "train_wall_s",
              "eval_wall_s", "peak_memory_mb", "episodes", "scores")


def _score(result: dict[str, Any]) -> float:
    v = result.get("normalized_score")
    return float(v if v is not None else result["return_mean"])


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def build(graph: Graph, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The leaderboard of the finished jobs' records ({job id: record}); rows of combinations with any result."""
    modules: dict[str, dict[str, Any]] = {}  # module id -> its summary (metrics) from its training job's record
    for r in records.values():
        for m in (r.get("result") or {}).get("modules", []):
            modules[m["id"]] = m
    curves: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for job in graph.jobs.values():
        rec = records.get(job.id)
        if job.kind == "curve" and rec is not None:
            curves[(job.meta["arm"], job.meta["seed"])] = rec["result"]["points"]
    rows = []
    for i, c in enumerate(graph.spec.combinations):
        evals = [(j, records[j.id]) for j in graph.jobs.values()
                 if j.kind == "evaluate" and j.meta["index"] == i and j.id in records]
        if not evals:
            continue
        meta = evals[0][0].meta
        by_seed: dict[int, list[float]] = {}
        eval_wall: dict[int, float] = {}
        for j, r in evals:
            by_seed.setdefault(j.meta["seed"], []).append(_score(r["result"]))
            eval_wall[j.meta["seed"]] = eval_wall.get(j.meta["seed"], 0.0) + float(r.get("wall_s", 0.0))
        seeds = sorted(by_seed)
        scores = np.asarray([np.mean(by_seed[s]) for s in seeds])
        center, lo, hi = iqm_ci(scores)
        arm = graph.spec.diffusion[[a.name for a in graph.spec.diffusion].index(c.diffusion)]
        aucs = [auc([(p["step"], p["normalized_score"]) for p in curves[(arm.name, s)] if p["step"] is not None])
                for s in seeds if curves.get((arm.name, s))]
        walls, peaks = [], []
        for s in seeds:
            m = graph.members[(arm.name, s)]
            # one card per training run: the actor's (a joint run's critic card repeats its figures), and the run
            # of the frozen guidance it trained under (guidance-first costs both)
            runs = [m.actor, graph.members[m.train_critic].critic if m.train_critic else None]
            metrics = [modules[p]["metrics"] for p in runs if p and p in modules]
            walls.append(sum(_num(x.get("wall_time_s")) or 0.0 for x in metrics))
            peaks += [v for v in (_num(x.get("peak_memory_mb")) for x in metrics) if v is not None]
        rows.append({
            "combination": meta["combination"], "dataset": meta["dataset"], "diffusion_arm": arm.name,
            "algo": meta["algo"], "backbone": meta["backbone"], "train_guidance": meta["train_guidance"],
            "infer_guidance": meta["infer_guidance"], "mode": meta["mode"],
            "settings": ", ".join(f"{k}={v}" for k, v in sorted(meta["settings"].items())),
            "seeds": len(seeds), "iqm": center, "ci_low": lo, "ci_high": hi, "mean": float(scores.mean()),
            "std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
            "auc": float(np.mean(aucs)) if aucs else None,
            "train_wall_s": float(np.mean(walls)) if walls else None,
            "eval_wall_s": float(np.mean([eval_wall[s] for s in seeds])),
            "peak_memory_mb": max(peaks) if peaks else None, "episodes": graph.spec.evaluation.episodes,
            "scores": [float(x) for x in scores], "seed_ids": seeds,
            "policies": sorted({j.meta["policy"] for j, _ in evals})})
    rows.sort(key=lambda r: -r["iqm"])
    curve_rows = [{"arm": arm, "seed": seed, "points": [{"step": p["step"], "normalized_score": p["normalized_score"]}
                                                       for p in pts if p["step"] is not None]}
                  for (arm, seed), pts in sorted(curves.items())]
    return {"name": graph.spec.name, "metric": "normalized_score", "ci": "95% stratified bootstrap (2000 resamples)",
            "rows": rows, "curves": curve_rows}


def write(board: dict[str, Any], folder: Path) -> dict[str, str]:
    """leaderboard.csv, leaderboard.json, heatmap.png and (when curves exist) curves.png in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"json": folder / "leaderboard.json", "csv": folder / "leaderboard.csv"}
    files["json"].write_text(json.dumps(board, indent=1, allow_nan=False) + "\n")
    with open(files["csv"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_FIELDS)
        for r in board["rows"]:
            w.writerow([";".join(f"{x:.6g}" for x in r[k]) if k == "scores" else ("" if r[k] is None else r[k])
                        for k in CSV_FIELDS])
    if board["rows"]:
        files["heatmap"] = heatmap(board["rows"], folder / "heatmap.png", board["name"])
    if board["curves"]:
        files["curves"] = plot_curves(board["curves"], folder / "curves.png", board["name"])
    return {k: str(v) for k, v in files.items()}


def heatmap(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """IQM final score: training guidance (rows) x inference guidance and mode (columns), a panel per backbone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    backbones = sorted({r["backbone"] for r in rows})
    panels = []
    for b in backbones:
        mine = [r for r in rows if r["backbone"] == b]
        ys = sorted({f"{r['diffusion_arm']}: {r['train_guidance']}" for r in mine})
        xs = sorted({f"{r['infer_guidance']} / {r['mode']}" for r in mine})
        grid = np.full((len(ys), len(xs)), np.nan)
        for r in mine:
            grid[ys.index(f"{r['diffusion_arm']}: {r['train_guidance']}"),
                 xs.index(f"{r['infer_guidance']} / {r['mode']}")] = r["iqm"]
        panels.append((b, ys, xs, grid))
    values = np.concatenate([p[3].ravel() for p in panels])
    vmin, vmax = float(np.nanmin(values)), float(np.nanmax(values))
    fig = Figure(figsize=(max(5.0, sum(2.0 + 1.3 * len(p[2]) for p in panels)),
                          max(3.0, 1.5 + 0.6 * max(len(p[1]) for p in panels))))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False, gridspec_kw={"wspace": 0.6})[0]
    image = None
    for k, (ax, (b, ys, xs, grid)) in enumerate(zip(axes, panels, strict=True)):
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1,
                          aspect="auto")
        ax.set_xticks(range(len(xs)), xs, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(ys)), ys, fontsize=8)
        ax.set_xlabel("inference guidance / mode")
        if k == 0:
            ax.set_ylabel("diffusion arm: training guidance")
        ax.set_title(f"backbone {b}", fontsize=10)
        for (y, x), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(x, y, f"{v:.1f}", ha="center", va="center", color="w", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="IQM normalised score")
    fig.suptitle(f"sweep {title}: final score (IQM over seeds)", fontsize=10, y=1.04)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def plot_curves(curves: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Learning curves of the diffusion arms' checkpoints, overlaid: each seed faint, the arm's mean bold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    arms = sorted({c["arm"] for c in curves})
    for k, arm in enumerate(arms):
        color = f"C{k % 10}"
        mine = [c for c in curves if c["arm"] == arm and c["points"]]
        for c in mine:
            ax.plot([p["step"] for p in c["points"]], [p["normalized_score"] for p in c["points"]], color=color,
                    alpha=0.3, lw=1)
        steps = sorted({p["step"] for c in mine for p in c["points"]})
        mean = [np.mean([p["normalized_score"] for c in mine for p in c["points"] if p["step"] == s]) for s in steps]
        ax.plot(steps, mean, color=color, lw=2, marker="o", ms=3, label=f"{arm} ({len(mine)} seeds)")
    ax.set_xlabel("gradient steps")
    ax.set_ylabel("normalised score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"sweep {title}: learning curves (checkpoint modules)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def table(board: dict[str, Any]) -> Table:
    """The leaderboard as a rich table (best IQM first)."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"sweep {board['name']}: normalised score, IQM [95% CI] over seeds")
    left = ("combination", "backbone arm", "train guidance", "infer guidance", "mode")
    for col in (*left, "seeds", "IQM [95% CI]", "mean +- std", "AUC", "train s", "peak MB"):
        t.add_column(col, justify="left" if col in left else "right", overflow="fold")

    def f(v: float | None, spec: str = ".1f") -> str:
        return "-" if v is None else format(v, spec)

    for r in board["rows"]:
        t.add_row(escape(r["combination"]), escape(f"{r['diffusion_arm']} ({r['algo']})"), escape(r["train_guidance"]),
                  escape(r["infer_guidance"]), escape(r["mode"]),
                  str(r["seeds"]),
                  f"{r['iqm']:.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]", f"{r['mean']:.1f} +- {r['std']:.1f}",
                  f(r["auc"]), f(r["train_wall_s"]), f(r["peak_memory_mb"], ".0f"))
    return t
