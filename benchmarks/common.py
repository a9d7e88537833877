"""What the benchmark scripts share: their hub home, thread count, the hopper-medium dataset, the machine record."""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
from pathlib import Path

OUT = Path(__file__).parent / "out"


def add_common_args(ap: argparse.ArgumentParser, name: str) -> None:
    ap.add_argument("--transitions", type=int, default=100_000, help="size of hopper-bullet-medium")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--home", default=str(OUT / "home"), help="hub home the benchmark stores its modules in")
    ap.add_argument("--out", default=str(OUT / name), help="output path without extension (.json, .png)")


def setup(args: argparse.Namespace):
    """Point the hub at the benchmark's home, set torch threads, return hopper-bullet-medium (made if missing)."""
    os.environ["MDHUB_HOME"] = args.home
    import torch

    torch.set_num_threads(args.threads)
    from hub.datasets import get_dataset

    return get_dataset("hopper-bullet-medium", transitions=args.transitions, seed=0, make_if_missing=True,
                       progress=True)


def machine(args: argparse.Namespace) -> dict:
    return {"cores": os.cpu_count(), "threads": args.threads, "cpu": platform.machine(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def latency_summary(times_ms: list[float]) -> dict[str, float]:
    """Median and p90 (nearest rank) of timings in ms, and how many there were."""
    ordered = sorted(times_ms)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return {"median_ms": round(statistics.median(ordered), 3), "p90_ms": round(p90, 3), "n": len(ordered)}
