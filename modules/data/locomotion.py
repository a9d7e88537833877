"""What the observations of the pybullet walker tasks hold, read back as physics: forward speed, travel, alive.

pybullet's walker state (``pybullet_envs_gymnasium/robot_locomotors.py: WalkerBase.calc_state``) is, for every task
here::

    [z - z0, sin(alpha), cos(alpha), 0.3 vx, 0.3 vy, 0.3 vz, roll, pitch, (joint position, 0.1 speed) x n, feet]

clipped to +-5, where ``alpha`` is the angle from the torso's heading (yaw) to the walk target (x = 1000 m, y = 0)
and ``(vx, vy, vz)`` is the torso's velocity rotated into its yaw frame. The velocity towards the target is then
``vx cos(alpha) + vy sin(alpha)``: for the planar walkers (hopper, walker2d, halfcheetah) and the ant near y = 0
this is the world-frame forward speed ``dx/dt`` of the torso, also when the body is flipped (yaw = pi).
One env step is ``DT = 0.0165 s`` (timestep 0.0165 / 4, frame skip 4), so the distance covered in a step is
about ``DT * (v(s_t) + v(s_{t+1})) / 2`` (trapezoid rule), and an episode's forward travel is their sum
(`episode_travel`). On 300-step expert rollouts this agrees with the simulator's torso x displacement within 0.2 %
(``tests/test_data_info.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..envs import ENVS, EnvSpec, UnknownEnvError, env_spec

__all__ = ["DT", "VELOCITY_SCALE", "Layout", "LAYOUTS", "layout_for", "forward_speed", "step_travel",
           "episode_travel", "alive", "travel_stats", "sampling_of"]

DT = 0.0165
"""Seconds per env step: ``SinglePlayerStadiumScene(timestep=0.0165 / 4, frame_skip=4)``."""
VELOCITY_SCALE = 0.3
"""The observation holds ``0.3 * v`` ("scaling typical speed into -1..+1")."""


@dataclass(frozen=True)
class Layout:
    """The observation layout of one walker task, and its alive rule (``alive_bonus`` in pybullet)."""

    env: str
    n_joints: int
    n_feet: int
    initial_z: float  # torso z at reset (``robot.initial_z``): the same on every reset
    min_z: float  # alive needs z > min_z
    max_pitch: float | None  # alive needs |pitch| < max_pitch (None: not checked)
    n_parts: int  # bodies in ``robot.parts``, the static floor included (see `progress_scale`)
    forbidden_contacts: tuple[int, ...] = ()  # halfcheetah: contact of these parts with the ground is a fall

    @property
    def progress_scale(self) -> float:
        """pybullet's progress term is the speed of the mean x of ``robot.parts``, and that mean includes the
        floor, which does not move: the body's speed times (n - 1) / n."""
        return (self.n_parts - 1) / self.n_parts

    @property
    def obs_dim(self) -> int:
        return 8 + 2 * self.n_joints + self.n_feet

    @property
    def joints(self) -> slice:
        return slice(8, 8 + 2 * self.n_joints)

    @property
    def feet(self) -> slice:
        return slice(8 + 2 * self.n_joints, self.obs_dim)


LAYOUTS: dict[str, Layout] = {
    "hopper": Layout("hopper", 3, 1, 1.25, 0.8, 1.0, n_parts=11),
    "walker2d": Layout("walker2d", 6, 2, 1.25, 0.8, 1.0, n_parts=17),
    "halfcheetah": Layout("halfcheetah", 6, 6, 0.7, -np.inf, 1.0, n_parts=17, forbidden_contacts=(1, 2, 4, 5)),
    "ant": Layout("ant", 8, 4, 0.75, 0.26, None, n_parts=22),
}
assert all(LAYOUTS[n].obs_dim == s.obs_dim for n, s in ENVS.items())


def layout_for(env: str | EnvSpec | None, obs_dim: int) -> Layout | None:
    """The layout of a walker task whose observations have ``obs_dim`` entries, or None (toy data, another task, or
    observations that are not pybullet's walker state)."""
    if env is None:
        return None
    try:
        name = env_spec(env).name
    except UnknownEnvError:
        return None
    lay = LAYOUTS.get(name)
    return lay if lay is not None and lay.obs_dim == int(obs_dim) else None


def forward_speed(obs: np.ndarray) -> np.ndarray:
    """Torso speed towards the walk target (m/s): ``(N, obs_dim) -> (N,) float64``."""
    o = np.asarray(obs, dtype=np.float64)
    return (o[:, 3] * o[:, 2] + o[:, 4] * o[:, 1]) / VELOCITY_SCALE


def step_travel(obs: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """Metres covered towards the target in each transition (trapezoid rule): ``(N,) float64``."""
    return DT * 0.5 * (forward_speed(obs) + forward_speed(next_obs))


def episode_travel(obs: np.ndarray, next_obs: np.ndarray, bounds: list[tuple[int, int]]) -> np.ndarray:
    """Forward travel (m) of each episode ``[start, end)`` in ``bounds``: ``(n_episodes,) float64``."""
    if not bounds:
        return np.zeros(0, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(step_travel(obs, next_obs))])
    s = np.array([b[0] for b in bounds])
    e = np.array([b[1] for b in bounds])
    return np.asarray(csum[e] - csum[s], dtype=np.float64)


def alive(layout: Layout, next_obs: np.ndarray) -> np.ndarray:
    """The task's alive term of each transition, +1 or -1, from the state it reached (-1 ends the episode)."""
    o = np.asarray(next_obs, dtype=np.float64)
    ok = o[:, 0] + layout.initial_z > layout.min_z
    if layout.max_pitch is not None:
        ok &= np.abs(o[:, 7]) < layout.max_pitch
    feet = o[:, layout.feet]
    for i in layout.forbidden_contacts:
        ok &= feet[:, i] < 0.5
    return np.where(ok, 1.0, -1.0)


def travel_stats(arrays: dict[str, np.ndarray], env: str | None) -> dict[str, float | int] | None:
    """mean / std / min / max / count of the forward travel (m) of the finished episodes, or None when the
    observations are not a walker task's state (toy data, imported data of another layout)."""
    from .dataset import episode_bounds, return_stats

    obs = arrays["observations"]
    if layout_for(env, obs.shape[1]) is None:
        return None
    bounds = episode_bounds(arrays["terminals"], arrays["timeouts"])
    return return_stats(episode_travel(obs, arrays["next_observations"], bounds))


def sampling_of(meta: dict[str, object]) -> str:
    """How a dataset's actions were drawn: the metadata's ``sampling``, else read from its ``policy`` (datasets
    made before the field existed): 'uniform' (random actions), 'deterministic' (a policy's mean action),
    'stochastic' (sampled from a policy or a behaviour distribution), or 'unknown'."""
    if isinstance(meta.get("sampling"), str):
        return str(meta["sampling"])
    policy = str(meta.get("policy") or "")
    if policy == "uniform-random":
        return "uniform"
    if "stochastic" in policy or policy == "sac-replay-buffer" or policy.endswith("-behaviour"):
        return "stochastic"
    if "deterministic" in policy or policy.startswith("pybullet-expert"):
        return "deterministic"
    return "unknown"
