"""The evidence issue's verdicts from a finished (or partly finished) evidence sweep: each claim judged with IQM,
95% bootstrap intervals and the budget next to it.

    MDHUB_HOME=benchmarks/out/home-evidence mdhub sweep benchmarks/sweeps/evidence-halfcheetah.yaml --workers 2
    python benchmarks/evidence.py benchmarks/sweeps/evidence-halfcheetah.yaml [--home benchmarks/out/home-evidence]

Reads the sweep's leaderboard (`$MDHUB_HOME/sweeps/<name>/leaderboard.json`: per combination the final normalised
score of every training seed, each the mean of `evaluation.episodes` fixed-seed episodes; the learning curves of
the checkpoint modules) and the spec's budget. The spec follows one naming convention, which this script reads:
diffusion arms `joint` (DQL's joint run), `gf-iql` (guidance-first under a frozen IQL critic), `gf-mish` (frozen,
the joint critic's architecture trained by IQL), `bc` (eta 0); combinations `<arm>-common` (N candidates ranked by
one independent critic), `<arm>-unguided` (one sample), `gf-iql-own` / `gf-iql-double` (the same actors scored by
their own training critic / another seed's). A claim whose arms are missing is reported as not run.

How a claim is judged: the relative difference of IQMs over seeds (e.g. guidance-first / joint - 1) with a 95%
bootstrap interval (seeds resampled within each arm; paired comparisons resample seed indices jointly).
`confirmed`: the interval lies on the paper's side of 0; `refuted`: on the other side; `not distinguishable`: it
contains 0. Compute and memory are single measurements per run (ratios, no interval). Writes `--out`.json
(everything, with the budget, seeds and machine), `--out`.md (the verdict table) and `--out`.png (learning curves
and final scores).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).parent / "results"
REPS = 2000


def _boot(a: np.ndarray, b: np.ndarray, fn: Callable[[np.ndarray, np.ndarray], float], paired: bool,
          seed: int = 0) -> tuple[float, float, float]:
    """fn(a, b) and its 95% percentile bootstrap interval (seeds resampled within each arm; paired: the same
    resampled seed indices for both)."""
    rng = np.random.default_rng(seed)
    point = fn(a, b)
    out = np.empty(REPS)
    for r in range(REPS):
        ia = rng.integers(0, len(a), len(a))
        ib = ia if paired else rng.integers(0, len(b), len(b))
        out[r] = fn(a[ia], b[ib])
    out = out[np.isfinite(out)]
    lo, hi = np.quantile(out, [0.025, 0.975]) if out.size else (np.nan, np.nan)
    return float(point), float(lo), float(hi)


def _iqm(x: np.ndarray) -> float:
    from hub.sweeps.stats import iqm

    return iqm(x)


def _iqr(x: np.ndarray) -> float:
    q1, q3 = np.quantile(x, [0.25, 0.75])
    return float(q3 - q1)


def _verdict(lo: float, hi: float, direction: int | str) -> str:
    """direction +1: the paper says a > b; -1: a < b; "ge": a is at least at b's level (transfer, SWG >= IDQL,
    double guidance keeps the score)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not distinguishable"
    if direction == "ge":
        return "confirmed (higher)" if lo > 0 else "refuted (lower)" if hi < 0 else \
            "confirmed (no difference found)"
    lo, hi = (lo, hi) if direction == 1 else (-hi, -lo)
    return "confirmed" if lo > 0 else "refuted" if hi < 0 else "not distinguishable"


def _of(stats: dict[str, dict[int, float]] | None, key: str) -> dict[int, float] | None:
    return stats[key] if stats else None


def _summary(x: np.ndarray) -> dict[str, Any]:
    from hub.sweeps.stats import iqm_ci

    m, lo, hi = iqm_ci(x)
    return {"iqm": round(m, 2), "ci95": [round(lo, 2), round(hi, 2)], "mean": round(float(x.mean()), 2),
            "std": round(float(x.std(ddof=1)), 2) if len(x) > 1 else 0.0, "n_seeds": len(x)}


def load(home: Path, spec_path: Path) -> tuple[Any, dict[str, Any]]:
    from hub.sweeps.spec import load_spec

    spec, _ = load_spec(spec_path)
    board_path = home / "sweeps" / spec.name / "leaderboard.json"
    if not board_path.is_file():
        raise SystemExit(f"{board_path}: no leaderboard yet; run the sweep first "
                         f"(MDHUB_HOME={home} mdhub sweep {spec_path})")
    return spec, json.loads(board_path.read_text())


def judge(spec: Any, board: dict[str, Any]) -> dict[str, Any]:
    rows = {r["combination"]: r for r in board["rows"]}
    curves: dict[str, dict[int, list[tuple[int, float]]]] = {}
    for c in board["curves"]:
        curves.setdefault(c["arm"], {})[c["seed"]] = [(p["step"], p["normalized_score"]) for p in c["points"]]

    def scores(combo: str) -> dict[int, float] | None:
        r = rows.get(combo)
        return dict(zip(r["seed_ids"], r["scores"], strict=True)) if r else None

    def curve_stats(arm: str) -> dict[str, dict[int, float]] | None:
        from hub.sweeps.stats import auc

        per = curves.get(arm)
        if not per:
            return None
        return {"auc": {s: auc(p) for s, p in per.items()}, "peak": {s: max(v for _, v in p) for s, p in per.items()},
                "final_curve": {s: max(p)[1] for s, p in per.items()}}

    claims: list[dict[str, Any]] = []

    def compare(claim: str, paper: str, a: dict[int, float] | None, b: dict[int, float] | None,
                direction: int | str,
                paired: bool, what: str, stat: str = "iqm") -> None:
        if not a or not b:
            claims.append({"claim": claim, "paper": paper, "measure": what, "verdict": "not run"})
            return
        seeds = sorted(set(a) & set(b)) if paired else None
        xa = np.asarray([a[s] for s in (seeds or sorted(a))])
        xb = np.asarray([b[s] for s in (seeds or sorted(b))])
        entry: dict[str, Any] = {"claim": claim, "paper": paper, "measure": what, "stat": stat, "paired": paired,
                                 "a": _summary(xa), "b": _summary(xb)}
        if stat == "iqm":  # scores can be near 0 or negative: judge the difference in score points
            point, lo, hi = _boot(xa, xb, lambda u, v: _iqm(u) - _iqm(v), paired)
            base = _iqm(xb)
            entry.update({"difference": round(point, 3), "ci95": [round(lo, 3), round(hi, 3)],
                          "relative": round(point / base, 4) if base > 1 else None})
        else:  # spreads are non-negative: judge the ratio
            fn = _iqr if stat == "iqr" else (lambda x: float(np.std(x, ddof=1)))
            point, lo, hi = _boot(xa, xb, lambda u, v: fn(u) / fn(v) - 1 if fn(v) > 0 else np.nan, paired)
            entry.update({f"a_{stat}": round(fn(xa), 3), f"b_{stat}": round(fn(xb), 3), "relative": round(point, 4),
                          "ci95": [round(lo, 4), round(hi, 4)]})
        entry["verdict"] = _verdict(lo, hi, direction)
        claims.append(entry)

    gf, jt, mish, bc = (curve_stats(a) for a in ("gf-iql", "joint", "gf-mish", "bc"))
    for key, paper in (("peak", "+9.54% peak"), ("auc", "+4.09% AUC")):
        compare(f"guidance-first beats joint ({key}, learning curve)", paper, _of(gf, key), _of(jt, key), +1,
                False, f"{key} of the curve (training critic resamples, {spec.evaluation.curve_episodes} episodes "
                "per point)")
    compare("guidance-first beats joint (final, common sampler)", "higher", scores("gf-iql-common"),
            scores("joint-common"), +1, False, "final score, N=50 ranked by one independent critic")
    compare("guidance-first beats joint (final, unguided actor)", "higher", scores("gf-iql-unguided"),
            scores("joint-unguided"), +1, False, "final score, one sample (actor quality alone)")
    compare("frozen beats joint with the same critic architecture (final, common sampler)", "(implied)",
            scores("gf-mish-common"), scores("joint-common"), +1, False, "gf-mish vs joint, common sampler")
    compare("frozen beats joint with the same critic architecture (AUC)", "(implied)", _of(mish, "auc"),
            _of(jt, "auc"), +1, False, "gf-mish vs joint, AUC of the curve")
    compare("training with the frozen guidance beats BC + the same resampler (final)", "(implied)",
            scores("gf-iql-common"), scores("bc-common"), +1, False, "gf-iql vs bc (eta 0), common sampler")
    compare("training with the frozen guidance beats BC + the same resampler (AUC)", "(implied)",
            _of(gf, "auc"), _of(bc, "auc"), +1, False, "gf-iql vs bc, AUC (both resampled by the iql critic)")
    for arm in ("gf-iql", "joint", "gf-mish", "bc"):
        compare(f"guided sampling beats the unguided actor ({arm})", "(all papers)", scores(f"{arm}-common"),
                scores(f"{arm}-unguided"), +1, True, "the same actors: common sampler vs one sample (paired)")
    compare("double guidance cuts the spread across seeds (IQR)", "up to -86% IQR", scores("gf-iql-double"),
            scores("gf-iql-own"), -1, True, "IQR across seeds of the same actors, another seed's critic vs their own",
            stat="iqr")
    compare("double guidance cuts the spread across seeds (std)", "(same claim)", scores("gf-iql-double"),
            scores("gf-iql-own"), -1, True, "std across seeds, paired", stat="std")
    compare("double guidance keeps the score (IQM)", "(same level)", scores("gf-iql-double"), scores("gf-iql-own"),
            "ge", True, "IQM, paired")

    # the medium-replay spec (evidence-halfcheetah-replay.yaml): SWG, CFG, transfer, necessity
    for combo in [c for c in rows if c.startswith("swg-rho")] + ["swg-r", "cfg"]:
        compare(f"{combo} vs IDQL with the same critic (final)", "SWG >= IDQL" if combo != "cfg" else "(CFGRL)",
                scores(combo), scores("idql-by-iql"), "ge", False, f"{combo} vs the IDQL backbone resampled by the "
                "critic that labelled it (N=64)")
    compare("transfer: an IDQL-recipe critic drives DQL as well as IQL's (final)", "baseline level",
            scores("gf-idql-own"), scores("gf-0"), "ge", False,
            "gf-idql vs gf-0 (IQL critic), each resampled by its own")
    compare("transfer: DQL's joint critic samples IDQL's backbone as well as IDQL's critic (final)",
            "baseline level", scores("idql-by-joint"), scores("idql-native"), "ge", True,
            "the same IDQL actors, paired")
    for late in ("gf-25", "gf-50", "gf-75"):
        compare(f"guidance necessity: from the start beats switched on late ({late})", "guidance from the start",
                scores("gf-0"), scores(late), +1, False, f"gf-0 vs {late} (% of training without the guidance)")
    swg = {c: rows[c]["iqm"] for c in rows if c.startswith("swg-rho")}
    if swg:
        best = max(swg, key=lambda c: swg[c])
        compare(f"SWG at its best rho ({best}, chosen on these seeds: optimistic) vs IDQL", "SWG >= IDQL",
                scores(best), scores("idql-by-iql"), "ge", False, "rho picked on the evaluation seeds")

    # compute and memory: one measurement per run (the whole 10-seed ensemble); guidance-first pays its critic too
    cost = {}
    for combo in ("gf-iql-common", "joint-common", "gf-mish-common", "bc-common"):
        r = rows.get(combo)
        if r:
            cost[combo.removesuffix("-common")] = {"train_wall_s": r["train_wall_s"], "peak_memory_mb":
                                                   r["peak_memory_mb"]}
    if "gf-iql" in cost and "joint" in cost:
        for key, label in (("train_wall_s", "compute (training wall time, critic + actor)"),
                           ("peak_memory_mb", "peak memory")):
            a, b = cost["gf-iql"][key], cost["joint"][key]
            if a and b:
                rel = a / b - 1
                claims.append({"claim": f"guidance-first costs less: {label}", "paper": "about -38%",
                               "measure": f"{key}: {a:.0f} vs {b:.0f} (one run each, "
                                          f"{rows['joint-common']['seeds']}-seed ensembles)",
                               "relative": round(rel, 4), "verdict": "confirmed" if rel < 0 else "refuted"})
    ran = set(rows)
    for name, needs in (("cross-algorithm transfer (IDQL critic driving DQL; DQL's critic sampling IDQL's backbone)",
                         "gf-idql-own"), ("guidance necessity (guidance switched on at 25, 50, 75% of training)",
                                          "gf-25"),
                        ("SWG / SWG-R vs IDQL with the same critic, rho swept; CFG", "swg-r")):
        if needs not in ran:
            claims.append({"claim": name, "paper": "see the spec for medium-replay", "verdict": "not run here"})
    return {"claims": claims, "cost": cost}


def budget_line(spec: Any) -> str:
    steps = sorted({a.steps for a in spec.diffusion})
    gsteps = sorted({a.steps for a in spec.guidance})
    seeds = sorted({len(a.seeds) for a in spec.diffusion})
    ds = spec.datasets[0]
    return (f"{ds.id} ({ds.transitions or 'default'} transitions), {'/'.join(map(str, steps))} diffusion and "
            f"{'/'.join(map(str, gsteps))} guidance gradient steps, {'/'.join(map(str, seeds))} seeds per arm, "
            f"{spec.evaluation.episodes} final episodes per policy, device {spec.device}")


def _cell(c: dict[str, Any]) -> str:
    if "difference" in c:
        rel = f" ({c['relative']:+.1%})" if c.get("relative") is not None else ""
        return (f"{c['difference']:+.1f} points [{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}]{rel}; IQM "
                f"{c['a']['iqm']:.1f} vs {c['b']['iqm']:.1f}, {c['a']['n_seeds']} vs {c['b']['n_seeds']} seeds")
    if "stat" in c:
        st = c["stat"]
        return (f"{c['relative']:+.1%} [{c['ci95'][0]:+.1%}, {c['ci95'][1]:+.1%}]; {st.upper()} {c[f'a_{st}']:.2f} vs "
                f"{c[f'b_{st}']:.2f}, {c['a']['n_seeds']} seeds (paired)")
    return f"{c['relative']:+.1%}; {c['measure']}"


def markdown(spec: Any, result: dict[str, Any], budget: str) -> str:
    lines = [f"Budget: {budget}.", "", "| claim | paper | ours (a vs b) [95% CI] | verdict |", "|---|---|---|---|"]
    skipped = [c["claim"] for c in result["claims"] if c["verdict"] == "not run"]
    for c in result["claims"]:
        if c["verdict"] == "not run":
            continue
        lines.append(f"| {c['claim']} | {c['paper']} | {_cell(c) if 'relative' in c else '-'} | {c['verdict']} |")
    if skipped:
        lines += ["", f"Not in this sweep (its arms are missing): {'; '.join(skipped)}."]
    return "\n".join(lines) + "\n"


def plot(board: dict[str, Any], path: Path, budget: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 4.5))
    colors = {"joint": "#d62728", "gf-iql": "#1f77b4", "gf-mish": "#9467bd", "bc": "#7f7f7f"}
    by_arm: dict[str, list[list[tuple[int, float]]]] = {}
    for c in board["curves"]:
        by_arm.setdefault(c["arm"], []).append([(p["step"], p["normalized_score"]) for p in c["points"]])
    from hub.sweeps.stats import iqm, stratified_bootstrap_ci

    for arm, runs in by_arm.items():
        steps = sorted({s for r in runs for s, _ in r})
        mids, los, his = [], [], []
        for st in steps:
            vals = np.asarray([dict(r)[st] for r in runs if st in dict(r)])
            mids.append(iqm(vals))
            lo, hi = stratified_bootstrap_ci([vals], iqm, reps=500)
            los.append(lo)
            his.append(hi)
        col = colors.get(arm, None)
        ax1.plot(steps, mids, label=f"{arm} ({len(runs)} seeds)", color=col)
        ax1.fill_between(steps, los, his, alpha=0.15, color=col)
    ax1.set_xlabel("gradient steps")
    ax1.set_ylabel("normalised score (IQM, 95% CI)")
    ax1.set_title("learning curves (each checkpoint resampled by its training critic)", fontsize=9)
    if by_arm:
        ax1.legend(fontsize=8)
    else:
        ax1.text(0.5, 0.5, "no learning curves (no arm stored checkpoints)", ha="center", transform=ax1.transAxes)
    rows = sorted(board["rows"], key=lambda r: r["combination"])
    for i, r in enumerate(rows):
        ax2.bar(i, r["iqm"], color="#999999" if r["combination"].endswith("unguided") else "#1f77b4", alpha=0.7)
        ax2.errorbar(i, r["iqm"], yerr=[[r["iqm"] - r["ci_low"]], [r["ci_high"] - r["iqm"]]], color="k", capsize=3)
        ax2.scatter(np.full(len(r["scores"]), i), r["scores"], s=6, color="k", alpha=0.5, zorder=3)
    ax2.set_xticks(range(len(rows)), [r["combination"] for r in rows], rotation=35, ha="right", fontsize=7)
    ax2.set_title("final normalised score per combination (IQM, 95% CI, seeds as dots)", fontsize=9)
    fig.suptitle(budget, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", type=Path, help="the evidence sweep spec (YAML)")
    ap.add_argument("--home", type=Path, default=Path(os.environ.get("MDHUB_HOME") or
                                                      Path(__file__).parent / "out" / "home-evidence"))
    ap.add_argument("--out", type=Path, default=None, help="output path without extension (default: "
                    "benchmarks/results/evidence-<sweep name>)")
    args = ap.parse_args(argv)
    spec, board = load(args.home.resolve(), args.spec)
    result = judge(spec, board)
    budget = budget_line(spec)
    out = args.out or RESULTS / f"evidence-{spec.name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "evidence", "sweep": spec.name, "spec": spec.model_dump(mode="json"), "budget": budget,
           "machine": {"cores": os.cpu_count(), "cpu": platform.machine()}, **result,
           "leaderboard": board["rows"], "curves": board["curves"]}
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    table = markdown(spec, result, budget)
    out.with_suffix(".md").write_text(table)
    plot(board, out.with_suffix(".png"), budget)
    print(table)
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
