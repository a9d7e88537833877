"""Recombination sweeps: every pairing of a spec trained, combined and evaluated, one leaderboard.

    import hub
    result = hub.sweep("benchmarks/sweeps/gfdt.yaml")          # `mdhub sweep SPEC.yaml`
    result.leaderboard["rows"]                                # IQM [95% CI], mean +- std, AUC, wall time, memory

One role per file: spec.py (the pydantic models), graph.py (expansion into jobs, job identities, the checks before
anything runs), jobs.py (one function per job kind, each one call of the Python API), executors.py (local process
pool, Ray), stats.py (IQM, stratified bootstrap), leaderboard.py (tables, CSV/JSON, plots), run.py (orchestration,
resume). Importing this package imports no torch.
"""
from __future__ import annotations

from hub.sweeps.graph import Graph, Job
from hub.sweeps.run import SweepResult, plan, sweep, sweep_dir
from hub.sweeps.spec import SpecError, SweepSpec, load_spec

__all__ = ["Graph", "Job", "SpecError", "SweepResult", "SweepSpec", "load_spec", "plan", "sweep", "sweep_dir"]
