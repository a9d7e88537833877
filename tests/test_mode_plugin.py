"""A guidance mode as a plug-in: a real package (tests/fixtures/mdhub_topk_mode) installed with pip into a folder,
found through its `mdhub.modes` entry point by a fresh process, listed by `mdhub registry`, judged by `mdhub check`,
used by `mdhub combine` and by the Python API. A broken plug-in (tests/fixtures/mdhub_broken_mode) next to it gives
one warning line naming its package, and the hub works on."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """Install both fixture packages into a target folder (a real install: dist-info with entry points), and a
    store with a tiny IQL guidance and a DQL backbone and an SWG backbone."""
    site = tmp_path_factory.mktemp("site")
    for name in ("mdhub_topk_mode", "mdhub_broken_mode"):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(site), str(FIXTURES / name)], check=True,
                       capture_output=True)
    assert list(site.glob("mdhub_topk_mode-*.dist-info/entry_points.txt"))
    home = tmp_path_factory.mktemp("plugin-home")
    env = {**os.environ, "MDHUB_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
           "MPLBACKEND": "Agg", "COLUMNS": "300"}
    script = """
import torch
torch.set_num_threads(1)
from hub.datasets import make_and_store
from hub.training import Budget, train_diffusion, train_guidance
make_and_store("toy-8gaussians", transitions=512, progress=False)
b = Budget(hidden=8, batch_size=32, checkpoint_every=0)
g = train_guidance("iql", "toy-8gaussians", steps=3, module_id="g", budget=b, progress=False)[0]
train_diffusion("dql", "toy-8gaussians", guidance=g, steps=3, module_id="d", budget=b, progress=False)
train_diffusion("swg", "toy-8gaussians", guidance=g, steps=3, module_id="s", budget=b, progress=False)
"""
    subprocess.run([sys.executable, "-c", script], env={**env, "PYTHONPATH": str(ROOT)}, check=True,
                   capture_output=True)
    return env


def mdhub(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from hub.cli import main; main()", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_plugin_mode_is_listed_judged_and_used(plugin_env):
    r = mdhub(plugin_env, "registry")
    assert r.returncode == 0, r.stderr
    assert "topk-mean" in r.stdout and "mdhub-topk-mode" in r.stdout
    warnings = [line for line in r.stderr.splitlines() if "broken" in line]
    assert len(warnings) == 1 and "mdhub-broken-mode" in warnings[0] and "Traceback" not in r.stderr

    r = mdhub(plugin_env, "check", "g", "d", "--mode", "topk-mean")
    assert r.returncode == 0 and "COMPATIBLE" in r.stdout, r.stdout + r.stderr
    r = mdhub(plugin_env, "check", "g", "s", "--mode", "topk-mean")  # not declared for the SWG backbone
    assert r.returncode != 0 and "INCOMPATIBLE" in r.stdout

    r = mdhub(plugin_env, "combine", "-g", "g", "-d", "d", "--mode", "topk-mean", "--candidates", "8", "--id", "p")
    assert r.returncode == 0, r.stdout + r.stderr
    card = json.loads(next((Path(plugin_env["MDHUB_HOME"]) / "modules").glob("p.*/card.json")).read_text())
    assert card["policy"]["mode"] == "topk-mean" and card["policy"]["params"]["n_candidates"] == 8
    assert card["policy"]["params"]["k"] == 4  # the plug-in's own default, from its settings model

    script = """
import numpy as np, hub
from modules.sampling import reverse_chain
p = hub.load_policy("p")
a = p.act(np.zeros((3, 1), np.float32))
print(type(p.runtime).__name__, a.shape, float(np.abs(a).max()) <= 1.0)
try:
    hub.combine("g", "d", mode="topk-mean", k=0)
except hub.MdhubError as e:
    print("refused:", e)
"""
    r = subprocess.run([sys.executable, "-c", script], env=plugin_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "TopKMean (3, 2) True" in r.stdout and "refused:" in r.stdout and "'k'" in r.stdout


def test_without_the_plugin_its_policy_is_refused_in_one_line(plugin_env):
    env = {**plugin_env, "PYTHONPATH": str(ROOT)}
    r = mdhub(env, "eval", "p", "--episodes", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "unknown mode 'topk-mean'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
