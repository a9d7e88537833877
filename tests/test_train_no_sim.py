"""Training needs no simulator (issue 15, item 4): a GPU machine often has PyTorch but neither pybullet nor gymnasium.

In a fresh interpreter where importing pybullet, pybullet_envs(_gymnasium) or gymnasium fails, a tiny guidance and a
diffusion policy under it train into a temporary store, and the modules that evaluation and the CLI's training
commands import load as well (the simulator is imported only when episodes are rolled out)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NO_SIM = """
import json, sys
for name in ("pybullet", "pybullet_envs", "pybullet_envs_gymnasium", "gymnasium"):
    sys.modules[name] = None  # `import name` now raises ImportError
import torch
torch.set_num_threads(1)
import hub
from hub.datasets import make_and_store
from hub.training import Budget

make_and_store("toy-8gaussians", progress=False)
tiny = Budget(hidden=8, batch_size=32, checkpoint_every=0)
g = hub.train_guidance("iql", "toy-8gaussians", steps=20, budget=tiny, progress=False)[0]
d = hub.train_diffusion("dql", "toy-8gaussians", guidance=g.id, steps=20, budget=tiny, progress=False)[0]
import hub.cli.train, hub.cli.runs, hub.evaluation, hub.combine  # what `mdhub train ...` and evaluation import
policy = hub.combine(g.id, d.id, mode="resample", n_candidates=4, progress=False)
action = policy.act(torch.zeros(d.card.interface.obs_dim).numpy())
json.dump({"ids": [g.id, d.id], "action_shape": list(action.shape),
           "simulator": sorted(m for m in ("pybullet", "gymnasium") if sys.modules.get(m) is not None)},
          open(sys.argv[1], "w"))
"""


def test_training_runs_without_pybullet_or_gymnasium(tmp_path):
    report = tmp_path / "report.json"
    env = {**os.environ, "MDHUB_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = subprocess.run([sys.executable, "-c", NO_SIM, str(report)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"training imported the simulator or failed without it:\n{proc.stderr[-4000:]}"
    out = json.loads(report.read_text())
    assert out["ids"] == ["iql-critic-toy-8gaussians-s0", "dql-actor-toy-8gaussians-s0"]
    assert out["action_shape"] == [2] and out["simulator"] == []
    assert (tmp_path / "home" / "modules").is_dir()
