"""Plots people would rather look at than read: learning curves."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_curve(curve: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Evaluated score vs gradient steps and vs wall time, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "normalized_score" if "normalized_score" in curve[0] else next(
        (k for k in curve[0] if k not in ("step", "wall_time_s")), None)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, x in zip(axes, ("step", "wall_time_s"), strict=True):
        ax.plot([c[x] for c in curve], [c.get(key) if key is not None else None for c in curve], marker="o")
        ax.set_xlabel("gradient steps" if x == "step" else "wall time (s)")
        ax.set_ylabel(key or "")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
