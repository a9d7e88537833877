"""Plots people would rather look at than read: learning curves.

Figures are drawn on matplotlib's object API (`matplotlib.figure.Figure` with the Agg canvas), never through pyplot:
the library must not switch the backend of the process that imports it (a notebook's inline backend, a GUI app's),
and a figure that is not registered with pyplot needs no closing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_curve(curve: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Evaluated score vs gradient steps and vs wall time, side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    key = "normalized_score" if "normalized_score" in curve[0] else next(
        (k for k in curve[0] if k not in ("step", "wall_time_s")), None)
    fig = Figure(figsize=(9, 3.4))
    FigureCanvasAgg(fig)  # attaches itself to the figure: savefig renders with Agg, whatever pyplot's backend is
    axes = fig.subplots(1, 2)
    for ax, x in zip(axes, ("step", "wall_time_s"), strict=True):
        ax.plot([c[x] for c in curve], [c.get(key) if key is not None else None for c in curve], marker="o")
        ax.set_xlabel("gradient steps" if x == "step" else "wall time (s)")
        ax.set_ylabel(key or "")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _series(records: list[dict[str, Any]], tag: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        v = r.get(tag)
        if isinstance(v, int | float) and not isinstance(v, bool):
            xs.append(float(r["step"]))
            ys.append(float(v))
    return xs, ys


def plot_runs(runs: dict[str, list[dict[str, Any]]], path: Path, title: str = "") -> Path:
    """Loss curves (left, log scale) and evaluation scores (right) of several runs, overlaid.

    `runs`: label -> the run's logged records (`modules.train.logs.read_scalars`: {"step", "<tag>": value}), tags
    `loss/...` and `eval/...`. A run without evaluations draws no score curve; the score panel says so when none has
    one."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    ax_loss, ax_score = fig.subplots(1, 2)
    scored = False
    for i, (label, records) in enumerate(runs.items()):
        color = f"C{i % 10}"
        tags = sorted({t for r in records for t in r if t.startswith("loss/")})
        for j, tag in enumerate(tags):
            xs, ys = _series(records, tag)
            if xs:
                ax_loss.plot(xs, ys, color=color, linestyle=("-", "--", ":", "-.")[j % 4],
                             label=f"{label}: {tag.removeprefix('loss/')}")
        score_tag = "eval/normalized_score" if any("eval/normalized_score" in r for r in records) else next(
            (t for r in records for t in r if t.startswith("eval/")), None)
        if score_tag is not None:
            xs, ys = _series(records, score_tag)
            ax_score.plot(xs, ys, color=color, marker="o", label=f"{label}: {score_tag.removeprefix('eval/')}")
            scored = True
    values = [v for line in ax_loss.lines for v in line.get_ydata()]
    if values and min(values) > 0:
        ax_loss.set_yscale("log")
    elif values:  # a loss that goes negative (DQL's Q term): logarithmic beyond the smallest magnitude logged
        small = min((abs(v) for v in values if v != 0), default=1.0)
        ax_loss.set_yscale("symlog", linthresh=small)
    ax_loss.set_xlabel("gradient steps")
    ax_loss.set_ylabel("loss")
    ax_loss.grid(alpha=0.3)
    if ax_loss.lines:
        ax_loss.legend(fontsize=7)
    ax_score.set_xlabel("gradient steps")
    ax_score.set_ylabel("evaluation score")
    ax_score.grid(alpha=0.3)
    if scored:
        ax_score.legend(fontsize=7)
    else:
        ax_score.text(0.5, 0.5, "no evaluations logged\n(train with --eval-every N)", ha="center", va="center",
                      transform=ax_score.transAxes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
