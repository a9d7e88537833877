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
