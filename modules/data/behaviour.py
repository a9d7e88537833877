"""Behaviour policies that act in numpy on batches: pybullet's shipped experts, saved SAC actors, uniform random.

Every policy maps ``obs: (B, obs_dim) float32`` to ``actions: (B, act_dim) float32`` in [-1, 1] (``__call__``).

* `load_expert(env)`: the pretrained MLPs (obs -> 128 -> 64 -> act, ReLU) that ship as numpy literals inside the
  ``pybullet`` wheel, ``pybullet_envs/examples/enjoy_TF_<Env>_v0_2017may.py``. The file text is parsed with `ast`
  (the scripts import the old ``gym``; they are never imported or executed). Available for hopper, halfcheetah
  and ant; the walker2d one does not transfer to the gymnasium port.
* `SACPolicy`: a SAC actor saved as safetensors by `modules.data.sac.save_actor`, run deterministically
  (``tanh(mean)``) or stochastically, without torch.
* `RandomPolicy`: uniform actions in [-1, 1].
* `GaussianNoisePolicy`: a deterministic policy (a pybullet expert) sampled: ``clip(mu(s) + std * eps, -1, 1)``,
  ``eps ~ N(0, I)``; how ``expert`` data are collected from pybullet's experts (`EXPERT_NOISE_STD`).
"""
from __future__ import annotations

import ast
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..envs import EnvSpec, env_spec
from .errors import DatasetError

__all__ = [
    "EXPERT_ENVS",
    "EXPERT_FILES",
    "MLPPolicy",
    "SACPolicy",
    "RandomPolicy",
    "GaussianNoisePolicy",
    "EXPERT_NOISE_STD",
    "expert_file",
    "parse_expert_weights",
    "load_expert",
    "policies_dir",
    "shipped_sac_path",
    "shipped_sac_expert_path",
]

EXPERT_FILES: dict[str, str] = {
    "hopper": "enjoy_TF_HopperBulletEnv_v0_2017may.py",
    "halfcheetah": "enjoy_TF_HalfCheetahBulletEnv_v0_2017may.py",
    "ant": "enjoy_TF_AntBulletEnv_v0_2017may.py",
}
EXPERT_ENVS = tuple(EXPERT_FILES)
_EXPERT_KEYS = ("weights_dense1_w", "weights_dense1_b", "weights_dense2_w", "weights_dense2_b",
                "weights_final_w", "weights_final_b")


@dataclass
class MLPPolicy:
    """ReLU MLP in numpy. ``weights[i]: (d_in, d_out)``, ``biases[i]: (d_out,)``; ``out_act`` 'tanh' or 'clip'.

    ``__call__(obs: (B, obs_dim)) -> (B, act_dim) float32``; the final layer's first ``act_dim`` outputs are used.
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    act_dim: int
    out_act: str = "clip"
    name: str = "mlp"

    @property
    def obs_dim(self) -> int:
        return int(self.weights[0].shape[0])

    def __post_init__(self) -> None:
        self.weights = [np.ascontiguousarray(w, dtype=np.float32) for w in self.weights]
        self.biases = [np.ascontiguousarray(b, dtype=np.float32) for b in self.biases]

    def mean(self, obs: np.ndarray) -> np.ndarray:
        """The last layer's output before squashing: ``(B, d_out)`` float32."""
        x = np.asarray(obs, dtype=np.float32)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w
            x += b
            if i < last:
                np.maximum(x, 0.0, out=x)
        return x

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = self.mean(obs)[:, : self.act_dim]
        if self.out_act == "tanh":
            return np.tanh(x)
        return np.clip(x, -1.0, 1.0, out=x)


@dataclass
class RandomPolicy:
    """Uniform random actions in [-1, 1]^act_dim from its own seeded generator."""

    act_dim: int
    seed: int = 0
    name: str = "random"
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=(len(obs), self.act_dim)).astype(np.float32)


EXPERT_NOISE_STD = 0.1
"""Std of the Gaussian noise added to pybullet's deterministic experts when ``expert`` data are *sampled* (then
clipped to [-1, 1]). Their actions are mostly saturated at +-1, so 0.1 perturbs without knocking them over: on
hopper the sampled expert keeps most of its forward travel (docs/data.md has the measurements)."""


@dataclass
class GaussianNoisePolicy:
    """A deterministic policy sampled with Gaussian action noise: ``clip(base(obs) + std * eps, -1, 1)``.

    ``__call__(obs: (B, obs_dim)) -> (B, act_dim) float32``; ``eps ~ N(0, I)`` from its own seeded generator.
    """

    base: MLPPolicy
    std: float = EXPERT_NOISE_STD
    seed: int = 0
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    @property
    def act_dim(self) -> int:
        return self.base.act_dim

    @property
    def name(self) -> str:
        return f"{self.base.name}+N(0,{self.std:g}^2)"

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        mu = self.base(obs)
        noisy = mu + self.std * self.rng.standard_normal(mu.shape).astype(np.float32)
        return np.clip(noisy, -1.0, 1.0).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------- pybullet experts
def expert_file(env: str | EnvSpec) -> Path:
    """Path of the example script holding ``env``'s expert weights inside the installed pybullet wheel."""
    spec = env_spec(env)
    if spec.name not in EXPERT_FILES:
        raise DatasetError(
            f"no shipped expert policy for {spec.name!r} (pybullet's walker2d expert does not transfer to the "
            f"gymnasium port); experts exist for: {', '.join(EXPERT_ENVS)}"
        )
    found = importlib.util.find_spec("pybullet_envs")  # locates the package without importing its modules
    if found is None or not found.submodule_search_locations:
        raise DatasetError("package 'pybullet_envs' (part of the pybullet wheel) not found: pip install pybullet")
    for base in found.submodule_search_locations:
        p = Path(base) / "examples" / EXPERT_FILES[spec.name]
        if p.is_file():
            return p
    raise DatasetError(f"expert file examples/{EXPERT_FILES[spec.name]} not found in the pybullet wheel")


def _literal_array(node: ast.expr, path: Path, name: str) -> np.ndarray:
    """``np.array(<literal>)`` -> ndarray; only literal lists of numbers are accepted."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "array"
            and len(node.args) == 1):
        raise DatasetError(f"{path}: {name} is not of the form np.array([...])")
    try:
        return np.asarray(ast.literal_eval(node.args[0]), dtype=np.float64)
    except (ValueError, SyntaxError) as e:
        raise DatasetError(f"{path}: {name} is not a literal list of numbers: {e}") from None


def parse_expert_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Read the six ``weights_*`` arrays from an ``enjoy_TF_*`` script by parsing its text (never executing it)."""
    path = Path(path)
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError) as e:
        raise DatasetError(f"{path}: cannot parse expert script: {e}") from None
    out: dict[str, np.ndarray] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in _EXPERT_KEYS:
                out[name] = _literal_array(node.value, path, name)
    missing = [k for k in _EXPERT_KEYS if k not in out]
    if missing:
        raise DatasetError(f"{path}: expert weights {missing} not found")
    return out


def load_expert(env: str | EnvSpec) -> MLPPolicy:
    """pybullet's pretrained expert for ``env`` (hopper, halfcheetah, ant) as a batched numpy policy.

    Checks the parsed shapes: ``(obs_dim, 128)``, ``(128, 64)``, ``(64, act_dim)``. Actions are clipped to [-1, 1].
    """
    spec = env_spec(env)
    path = expert_file(spec)
    w = parse_expert_weights(path)
    expected = {
        "weights_dense1_w": (spec.obs_dim, 128), "weights_dense1_b": (128,),
        "weights_dense2_w": (128, 64), "weights_dense2_b": (64,),
        "weights_final_w": (64, spec.act_dim), "weights_final_b": (spec.act_dim,),
    }
    for k, shape in expected.items():
        if w[k].shape != shape:
            raise DatasetError(f"{path}: {k} has shape {w[k].shape}, expected {shape}")
    return MLPPolicy(
        weights=[w["weights_dense1_w"], w["weights_dense2_w"], w["weights_final_w"]],
        biases=[w["weights_dense1_b"], w["weights_dense2_b"], w["weights_final_b"]],
        act_dim=spec.act_dim,
        out_act="clip",
        name=f"pybullet-expert({spec.name})",
    )


# ---------------------------------------------------------------------------------------------- SAC actors
def policies_dir() -> Path:
    """The folder of shipped behaviour policies: ``modules/data/policies``."""
    return Path(__file__).resolve().parent / "policies"


def shipped_sac_path(env: str | EnvSpec) -> Path:
    """``modules/data/policies/<env>_sac_medium.safetensors`` (may not exist for every task)."""
    return policies_dir() / f"{env_spec(env).name}_sac_medium.safetensors"


def shipped_sac_expert_path(env: str | EnvSpec) -> Path:
    """``modules/data/policies/<env>_sac_expert.safetensors``: a SAC actor that, where shipped, replaces pybullet's
    expert as the ``expert`` policy (walker2d has no pybullet expert; halfcheetah's flips). May not exist."""
    return policies_dir() / f"{env_spec(env).name}_sac_expert.safetensors"


_SAC_KEYS = ("trunk.0.weight", "trunk.0.bias", "trunk.2.weight", "trunk.2.bias", "head.weight", "head.bias")


@dataclass
class SACPolicy:
    """A saved SAC actor run in numpy. Deterministic: ``tanh(mean)``; else ``tanh(mean + std * eps)``.

    ``__call__(obs: (B, obs_dim)) -> (B, act_dim) float32``. ``info`` is the JSON sidecar (how it was trained).
    """

    mlp: MLPPolicy
    deterministic: bool = True
    seed: int = 0
    info: dict = field(default_factory=dict)
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    @property
    def act_dim(self) -> int:
        return self.mlp.act_dim

    @property
    def name(self) -> str:
        return self.mlp.name

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    @classmethod
    def load(cls, path: str | Path, deterministic: bool = True, seed: int = 0,
             env: str | EnvSpec | None = None) -> SACPolicy:
        """Read ``path`` (safetensors, keys ``trunk.0.weight`` ... ``head.bias``) and its ``.json`` sidecar."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"{path}: no such SAC actor file")
        try:
            t = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise DatasetError(f"{path}: not a readable safetensors file: {e}") from None
        missing = [k for k in _SAC_KEYS if k not in t]
        if missing:
            raise DatasetError(f"{path}: missing tensors {missing}; found {sorted(t)}")
        w = [t["trunk.0.weight"].T, t["trunk.2.weight"].T, t["head.weight"].T]
        b = [t["trunk.0.bias"], t["trunk.2.bias"], t["head.bias"]]
        act_dim = int(b[2].shape[0]) // 2
        if env is not None:
            spec = env_spec(env)
            if (w[0].shape[0], act_dim) != (spec.obs_dim, spec.act_dim):
                raise DatasetError(
                    f"{path}: actor has obs_dim {w[0].shape[0]}, act_dim {act_dim}; expected "
                    f"{spec.obs_dim}, {spec.act_dim} for {spec.name}"
                )
        side = path.with_suffix(".json")
        info = json.loads(side.read_text()) if side.is_file() else {}
        mlp = MLPPolicy(list(w), list(b), act_dim, "tanh", name=f"sac({path.stem})")
        return cls(mlp=mlp, deterministic=deterministic, seed=seed, info=info)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        out = self.mlp.mean(obs)
        mu, log_std = out[:, : self.act_dim], out[:, self.act_dim:]
        if not self.deterministic:
            std = np.exp(np.clip(log_std, -20.0, 2.0))
            mu = mu + std * self.rng.standard_normal(mu.shape).astype(np.float32)
        return np.tanh(mu).astype(np.float32, copy=False)
