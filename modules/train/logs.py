"""Per-step scalars of a training run, beside its checkpoint: ``scalars.csv``, ``scalars.jsonl`` and, when the
optional ``tensorboard`` package is installed, TensorBoard event files under ``tb/``.

The loop hands over a few Python floats every ``log_every`` steps (losses read with one ``.item()`` per logged step,
never per step; learning rates read from the optimizers; steps/s over the interval) and every learning-curve point
(``eval/...``). Tags are grouped like TensorBoard's: ``loss/bc_loss``, ``lr/diffusion``, ``speed/steps_per_s``,
``eval/normalized_score``.

- ``scalars.jsonl``: one JSON object per logged step: ``{"step", "wall_time_s", "<tag>": value, ...}``.
- ``scalars.csv``: the same, one row per scalar: ``step,wall_time_s,tag,value`` (a tidy table; pivot on ``tag``).

A resumed run first drops the rows after its checkpoint's step (they are logged again), so the files always
describe one run from step 0; a run started over (``fresh``) moves the old files into the folder the old checkpoint
was moved to.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

JSONL, CSV, TB_DIR = "scalars.jsonl", "scalars.csv", "tb"
CSV_HEADER = ["step", "wall_time_s", "tag", "value"]


def tensorboard_available() -> bool:
    """Whether TensorBoard event files can be written (the optional `tensorboard` package is installed)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def read_scalars(run_dir: Path) -> list[dict[str, Any]]:
    """The logged records of a run (``scalars.jsonl``), in order; [] when there are none. Unreadable lines (a crash
    mid-write) are skipped."""
    path = Path(run_dir) / JSONL
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            out.append(rec)
    return out


def _clean(value: Any) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


class ScalarLog:
    """Appends scalars to the run folder's CSV and JSONL files (and TensorBoard events when available)."""

    def __init__(self, run_dir: Path, start_step: int = 0, moved_to: Path | None = None, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if moved_to is not None and Path(moved_to).is_dir():
            for name in (JSONL, CSV):
                if (self.run_dir / name).exists():
                    os.replace(self.run_dir / name, Path(moved_to) / name)
        self._truncate(start_step)
        self._jsonl = open(self.run_dir / JSONL, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        new_csv = not (self.run_dir / CSV).exists() or (self.run_dir / CSV).stat().st_size == 0
        self._csv_file = open(self.run_dir / CSV, "a", encoding="utf-8", newline="")  # noqa: SIM115
        self._csv = csv.writer(self._csv_file)
        if new_csv:
            self._csv.writerow(CSV_HEADER)
        self.tb: Any = None
        if tensorboard and tensorboard_available():
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: events at or after the resumed step, written by the interrupted run, are hidden
            self.tb = SummaryWriter(str(self.run_dir / TB_DIR), purge_step=start_step + 1 if start_step else None)

    @property
    def paths(self) -> list[Path]:
        """The files (and the TensorBoard folder) this log writes."""
        return [self.run_dir / CSV, self.run_dir / JSONL] + ([self.run_dir / TB_DIR] if self.tb is not None else [])

    def _truncate(self, start_step: int) -> None:
        """Keep only the rows of steps up to `start_step` (0: none) in both files."""
        jsonl, csv_path = self.run_dir / JSONL, self.run_dir / CSV
        if jsonl.exists():
            kept = [r for r in read_scalars(self.run_dir) if r["step"] <= start_step]
            jsonl.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        if csv_path.exists():
            rows = []
            try:
                with open(csv_path, encoding="utf-8", newline="") as f:
                    rows = [r for r in csv.reader(f)][1:]
            except (OSError, csv.Error):
                rows = []
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(CSV_HEADER)
            for r in rows:
                if len(r) == 4 and r[0].isdigit() and int(r[0]) <= start_step:
                    w.writerow(r)
            csv_path.write_text(buf.getvalue(), encoding="utf-8")

    def write(self, step: int, wall_time_s: float, scalars: dict[str, Any]) -> None:
        """Log `scalars` (tag -> number) at `step`; non-finite values are written as null / empty."""
        values = {k: _clean(v) for k, v in scalars.items()}
        if not values:
            return
        rec: dict[str, Any] = {"step": int(step), "wall_time_s": round(float(wall_time_s), 3), **values}
        self._jsonl.write(json.dumps(rec, sort_keys=True) + "\n")
        self._jsonl.flush()
        for tag, v in values.items():
            self._csv.writerow([int(step), f"{wall_time_s:.3f}", tag, "" if v is None else repr(v)])
        self._csv_file.flush()
        if self.tb is not None:
            for tag, v in values.items():
                if v is not None:
                    self.tb.add_scalar(tag, v, global_step=int(step))

    def close(self) -> None:
        for f in (self._jsonl, self._csv_file):
            if not f.closed:
                f.close()
        if self.tb is not None:
            self.tb.close()
