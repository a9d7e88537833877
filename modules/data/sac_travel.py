"""Resumable SAC run that picks behaviour policies by measured forward TRAVEL, not by return.

The return of these tasks is mostly an alive bonus (about 1 per step), so a policy that stands still for 1000 steps
scores ~1000 (the shipped hopper "medium" does). This script trains SAC (`modules.data.sac`: same agent, same
protocol) and, every ``--eval-every`` steps, measures the deterministic actor's forward travel over 10 episodes with
fixed reset seeds (`modules.data.measure.rollout_travel`). With ``ref`` the expert's travel (``--reference-travel``:
a number, ``expert`` = pybullet's shipped expert measured on the same seeds, the default where one exists, or
``none`` = the run's own best so far):

* ``medium.safetensors`` (+ ``.json``): the FIRST evaluated actor whose mean travel lies in
  [``band_lo``, ``band_hi``] x ref (default 25%-60%) and whose travel on 10 held-out episodes is in the band too
  (otherwise it is marked ``medium_rejected`` and the search goes on). With ``ref`` the run's best, the choice
  is revisited as the best improves (the first in-band actor of the history, from
  ``checkpoints/actor_<step>.safetensors``), and no medium is picked before the best travels
  ``--min-reference`` metres (default 5).
  ``medium_replay.npz`` is the replay buffer up to that actor's step (`OfflineDataset`, metadata ``medium_step``):
  what ``medium-replay`` ships.
* ``expert.safetensors`` (+ ``.json``): the actor with the best mean travel so far (the expert candidate).
* Both JSONs hold ``measured``: return, normalised score and travel (mean, std, min, max) over 10 held-out
  episodes (`modules.data.measure.MEASURE_SEED`), deterministic and sampled.

Stop rule: a medium exists and either ``ref`` is external (the expert is not this run's) or the best travel has not
improved by 5% for ``--patience`` evaluations; or ``--max-steps`` / ``--max-wall-s``.

Resume: every ``--checkpoint-every-s`` seconds (at the next episode end, so no episode is cut), the whole state
(networks, optimisers, temperature, RNGs, replay buffer, history) is written to ``state/ckpt_<step>/`` (safetensors,
npz and JSON; no pickle) and ``state/latest.json`` is replaced atomically to point at it. Running the same command
again continues from there::

    nohup .venv/bin/python -m modules.data.sac_travel hopper --out benchmarks/out/sac_travel_hopper \\
        >> benchmarks/out/sac_travel_hopper.log 2>&1 &

``--status`` prints where a run stands (last checkpoint, last evaluations, medium and expert with their
measurements). ``log.jsonl`` has one record per evaluation (step, wall time, return and travel of the 10
episodes). After a resume it may repeat steps: the records of the segment after the last checkpoint stay, then
the resumed run logs those steps again; the checkpoint's ``run.json`` history is the authoritative one.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..envs import env_spec, make_env
from .dataset import OfflineDataset, build_metadata
from .measure import MEASURE_EPISODES, MEASURE_SEED, measure_policy, rollout_travel
from .sac import SACAgent, SACConfig, explore_step, save_actor

__all__ = ["TravelRunConfig", "run", "status", "main"]


@dataclass
class TravelRunConfig(SACConfig):
    """`SACConfig` plus the reference travel, the band, the stop rule's patience and the checkpoint interval."""

    reference_travel: float | str | None = "auto"
    band_lo: float = 0.25
    band_hi: float = 0.60
    patience: int = 20
    checkpoint_every_s: float = 180.0
    min_reference: float = 5.0  # with the run's own best as reference: no medium before the best travels this far

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------------------- state on disk
_OPTS = ("actor_opt", "critic_opt", "alpha_opt")


def _state_tensors(agent: SACAgent) -> dict[str, torch.Tensor]:
    t: dict[str, torch.Tensor] = {}
    for name in ("actor", "critic", "critic_target"):
        for k, v in getattr(agent, name).state_dict().items():
            t[f"{name}.{k}"] = v.detach().clone().contiguous()
    t["log_alpha"] = agent.log_alpha.detach().clone().reshape(1)
    for name in _OPTS:
        for i, st in getattr(agent, name).state_dict()["state"].items():
            for k, v in st.items():
                t[f"{name}.{i}.{k}"] = torch.as_tensor(v).detach().clone().reshape(-1) if k == "step" \
                    else v.detach().clone().contiguous()
    t["rng.torch"] = torch.get_rng_state()
    return t


def _load_state_tensors(agent: SACAgent, t: dict[str, torch.Tensor]) -> None:
    for name in ("actor", "critic", "critic_target"):
        mod = getattr(agent, name)
        mod.load_state_dict({k[len(name) + 1:]: v for k, v in t.items() if k.startswith(name + ".")
                             and not k.startswith(name + "_")})
    with torch.no_grad():
        agent.log_alpha.copy_(t["log_alpha"].reshape(()))
    for name in _OPTS:
        opt = getattr(agent, name)
        sd = opt.state_dict()
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in t.items():
            if k.startswith(name + "."):
                _, i, key = k.split(".", 2)
                state.setdefault(int(i), {})[key] = v.reshape(()) if key == "step" else v
        sd["state"] = state
        opt.load_state_dict(sd)
    torch.set_rng_state(t["rng.torch"])


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _save_state(out: Path, step: int, agent: SACAgent, buf: Any, rng: np.random.Generator,
                run: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    sdir = out / "state"
    ck = sdir / f"ckpt_{step:08d}"
    if ck.exists():
        shutil.rmtree(ck)
    ck.mkdir(parents=True)
    save_file(_state_tensors(agent), str(ck / "nets.safetensors"))
    np.savez(ck / "replay.npz", **buf.arrays())
    _atomic_json(ck / "run.json", {**run, "step": step, "buffer_size": buf.size,
                                   "rng_numpy": rng.bit_generator.state})
    old = json.loads((sdir / "latest.json").read_text())["dir"] if (sdir / "latest.json").is_file() else None
    _atomic_json(sdir / "latest.json", {"dir": ck.name, "step": step})
    if old and old != ck.name and (sdir / old).is_dir():
        shutil.rmtree(sdir / old)
    return ck


def _load_state(out: Path) -> tuple[Path, dict[str, Any]] | None:
    latest = out / "state" / "latest.json"
    if not latest.is_file():
        return None
    ck = out / "state" / json.loads(latest.read_text())["dir"]
    return ck, json.loads((ck / "run.json").read_text())


# ----------------------------------------------------------------------------------------------- the run
def _reference(cfg: TravelRunConfig, eval_seed: int) -> tuple[float | None, str]:
    from .behaviour import EXPERT_ENVS, load_expert

    ref = cfg.reference_travel
    if ref in ("auto", "expert"):
        if cfg.env in EXPERT_ENVS:
            r = rollout_travel(load_expert(cfg.env), cfg.env, cfg.eval_episodes, seed=eval_seed)
            return float(r["travel_m"].mean()), "pybullet expert (deterministic), same evaluation seeds"
        if ref == "expert":
            raise SystemExit(f"no pybullet expert for {cfg.env}; give --reference-travel METRES or none")
        return None, "the run's best so far"
    if ref in (None, "none"):
        return None, "the run's best so far"
    return float(ref), "given"


def _measured(actor: Any, env: str) -> dict[str, Any]:
    def policy(deterministic: bool) -> Callable[[np.ndarray], np.ndarray]:
        return lambda o: actor.act(o, deterministic=deterministic)

    return {mode: measure_policy(policy(det), env, MEASURE_EPISODES, MEASURE_SEED)
            for mode, det in (("deterministic", True), ("sampled", False))}


def _band_pick(history: list[dict], ref: float, lo: float, hi: float) -> dict | None:
    """The first record whose selection travel is in the band and that was not rejected on held-out episodes."""
    for rec in history:
        if lo * ref <= rec["travel_mean"] <= hi * ref and "medium_rejected" not in rec:
            return rec
    return None


def run(cfg: TravelRunConfig, out_dir: str | Path, log=print) -> dict[str, Any]:
    """Train (or resume) and return the run record; see the module docstring."""
    from safetensors.torch import load_file

    from .sac import Actor, ReplayBuffer

    torch.set_num_threads(1)
    spec = env_spec(cfg.env)
    out = Path(out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    eval_seed = 10_000 + cfg.seed * 1000
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    agent = SACAgent(spec, cfg)
    buf = ReplayBuffer(spec.obs_dim, spec.act_dim, min(cfg.max_steps, 2_000_000))
    loaded = _load_state(out)
    if loaded is not None:
        ck, st = loaded
        _load_state_tensors(agent, load_file(str(ck / "nets.safetensors")))
        with np.load(ck / "replay.npz", allow_pickle=False) as z:
            n = int(st["buffer_size"])
            for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
                getattr(buf, k)[:n] = z[k]
            buf.size = buf.ptr = n
        rng.bit_generator.state = st["rng_numpy"]
        step0, n_eps, wall0 = int(st["step"]), int(st["episodes"]), float(st["wall_s"])
        history, ref, ref_src = st["history"], st["reference_travel"], st["reference_source"]
        train_returns = st["train_returns"]
        log(json.dumps({"resumed_from": str(ck), "step": step0}))
    else:
        step0, n_eps, wall0 = 0, 0, 0.0
        history, train_returns = [], []
        ref, ref_src = _reference(cfg, eval_seed)
        log(json.dumps({"start": cfg.as_dict(), "reference_travel": ref, "reference_source": ref_src}))
    env = make_env(spec, seed=None)
    obs, _ = env.reset(seed=cfg.seed * 1_000_003 + n_eps)
    ep_ret = 0.0
    t_start = time.time()
    last_ckpt = time.time()
    logf = open(out / "log.jsonl", "a")
    medium = next((h for h in history if h.get("is_medium")), None)
    if medium is not None and ref is not None and not cfg.band_lo * ref <= medium["travel_mean"] <= cfg.band_hi * ref:
        # resumed with a narrower --band: the old medium no longer qualifies, so the search goes on
        log(json.dumps({"medium_outside_new_band": medium["step"], "travel_mean": medium["travel_mean"],
                        "band_m": [round(cfg.band_lo * ref, 3), round(cfg.band_hi * ref, 3)]}))
        medium.pop("is_medium", None)
        medium = None
    stop_reason = None

    def wall() -> float:
        return wall0 + time.time() - t_start

    def run_state() -> dict[str, Any]:
        return {"config": cfg.as_dict(), "episodes": n_eps, "wall_s": round(wall(), 1), "history": history,
                "reference_travel": ref, "reference_source": ref_src, "train_returns": train_returns[-100:]}

    def ship(name: str, rec: dict, why: str, band_m: tuple[float, float] | None = None) -> bool:
        """Measure the actor of ``rec`` on held-out episodes and write ``name``.safetensors (+ json); with
        ``band_m`` only when the held-out deterministic travel lies in it (returns whether it was written)."""
        actor = Actor(spec.obs_dim, spec.act_dim, cfg.hidden)
        actor.load_state_dict(load_file(str(out / "checkpoints" / f"actor_{rec['step']:07d}.safetensors")))
        measured = _measured(actor, spec.name)
        held_out = measured["deterministic"]["travel_m"]["mean"]
        if band_m is not None and not band_m[0] <= held_out <= band_m[1]:
            rec["medium_rejected"] = held_out
            log(json.dumps({"rejected": name, "step": rec["step"], "held_out_travel": held_out,
                            "band_m": [round(b, 3) for b in band_m]}))
            return False
        info = {"env": spec.name, "role": name, "why": why, "step": rec["step"], "seed": cfg.seed,
                "selection_eval": {k: rec[k] for k in ("travel_mean", "travel_std", "return_mean", "return_std")},
                "reference_travel_m": ref, "reference_source": ref_src, "band": [cfg.band_lo, cfg.band_hi],
                "measured": measured,
                "measured_note": f"{MEASURE_EPISODES} episodes, reset seeds {MEASURE_SEED}+i (held out from the "
                                 f"selection evaluation, seeds {eval_seed}+i)",
                "config": cfg.as_dict(), "torch": torch.__version__}
        save_actor(actor, out / f"{name}.safetensors", info)
        if name == "medium":
            arrays = {k: v[: rec["step"]] for k, v in buf.arrays().items()}
            meta = build_metadata(arrays, env=spec.name, policy=f"sac-replay(seed={cfg.seed})", seed=cfg.seed,
                                  extra={"sac_steps": rec["step"], "medium_step": rec["step"]})
            OfflineDataset(**arrays, metadata=meta).save(out / "medium_replay.npz")
        log(json.dumps({"shipped": name, "step": rec["step"], "why": why,
                        "measured_travel": info["measured"]["deterministic"]["travel_m"]}))
        return True

    if loaded is not None:  # files written after the checkpoint belong to a lost segment: rewrite them from history
        best_rec = max(history, key=lambda h: h["travel_mean"], default=None)
        for name, old in (("expert", best_rec), ("medium", medium)):
            side = out / f"{name}.json"
            if old is not None and side.is_file() and json.loads(side.read_text()).get("step", 0) > step0:
                ship(name, old, "rewritten on resume (the file came from steps after the checkpoint)")

    step = step0
    while step < cfg.max_steps:
        step += 1
        obs, r, ended, n_eps = explore_step(env, agent, buf, obs, step, cfg.start_steps, rng, cfg.seed, n_eps)
        ep_ret += r
        if ended:
            train_returns.append(round(ep_ret, 1))
            ep_ret = 0.0
        if step > cfg.start_steps // 10 and buf.size >= cfg.batch_size:
            agent.update(buf.sample(rng, cfg.batch_size))
        if step % cfg.eval_every == 0:
            res = rollout_travel(lambda o: agent.actor.act(o, deterministic=True), spec, cfg.eval_episodes,
                                 seed=eval_seed)
            rec: dict[str, Any] = {
                "step": step, "wall_s": round(wall(), 1),
                "travel_mean": round(float(res["travel_m"].mean()), 3),
                "travel_std": round(float(res["travel_m"].std()), 3),
                "return_mean": round(float(res["returns"].mean()), 1),
                "return_std": round(float(res["returns"].std()), 1),
                "length_mean": float(res["lengths"].mean()),
                "travel": [round(float(x), 2) for x in res["travel_m"]],
                "alpha": round(float(agent.log_alpha.detach().exp()), 4),
                "train_last10": float(np.mean(train_returns[-10:])) if train_returns else None,
            }
            save_actor(agent.actor, out / "checkpoints" / f"actor_{step:07d}.safetensors",
                       {"env": spec.name, "step": step, **{k: rec[k] for k in ("travel_mean", "return_mean")}})
            best_before = max((h["travel_mean"] for h in history), default=-math.inf)
            history.append(rec)
            if rec["travel_mean"] > best_before:
                rec["is_best"] = True
                ship("expert", rec, "best mean travel so far")
            # medium: first in-band evaluation against the reference (the run's best when there is none)
            r_now = ref if ref is not None else max(h["travel_mean"] for h in history)
            usable = r_now > 0 and (ref is not None or r_now >= cfg.min_reference)
            band_m = (cfg.band_lo * r_now, cfg.band_hi * r_now)
            pick = _band_pick(history, r_now, cfg.band_lo, cfg.band_hi) if usable else None
            while pick is not None and (medium is None or pick["step"] != medium["step"]):
                why = (f"first evaluation with travel in [{cfg.band_lo}, {cfg.band_hi}] x {r_now:.2f} m ({ref_src}), "
                       "confirmed on held-out episodes")
                if ship("medium", pick, why, band_m):
                    for h in history:
                        h.pop("is_medium", None)
                    pick["is_medium"] = True
                    medium = pick
                    break
                pick = _band_pick(history, r_now, cfg.band_lo, cfg.band_hi)
            rec["reference_now"] = r_now
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(json.dumps({k: v for k, v in rec.items() if k != "travel"}))
            best_step = max(history, key=lambda h: h["travel_mean"])["step"]
            stale = (step - best_step) // cfg.eval_every
            if medium is not None and (ref is not None or stale >= cfg.patience):
                stop_reason = ("medium found (external reference)" if ref is not None
                               else f"medium found and no better travel for {stale} evaluations")
        if ended and (time.time() - last_ckpt >= cfg.checkpoint_every_s or stop_reason):
            _save_state(out, step, agent, buf, rng, run_state())
            last_ckpt = time.time()
            if stop_reason:
                break
        if cfg.max_wall_s is not None and wall() > cfg.max_wall_s and ended:
            stop_reason = "max wall time"
            _save_state(out, step, agent, buf, rng, run_state())
            break
    else:
        stop_reason = stop_reason or "max steps"
    logf.close()
    env.close()
    summary = {"env": spec.name, "steps": step, "stop": stop_reason, "wall_s": round(wall(), 1),
               "medium_step": medium["step"] if medium else None,
               "best_travel": max((h["travel_mean"] for h in history), default=None),
               "reference_travel": ref}
    _atomic_json(out / "summary.json", summary)
    return summary


def status(out_dir: str | Path) -> dict[str, Any]:
    """Where a run stands, from its files: last checkpoint, evaluations, best travel, medium and expert."""
    out = Path(out_dir)
    rec: dict[str, Any] = {"out": str(out)}
    loaded = _load_state(out)
    if loaded is not None:
        ck, st = loaded
        hist = st["history"]
        rec.update(checkpoint=str(ck), step=st["step"], wall_s=st["wall_s"], evaluations=len(hist),
                   reference_travel=st["reference_travel"], reference_source=st["reference_source"],
                   last=[{k: h[k] for k in ("step", "travel_mean", "travel_std", "return_mean")} for h in hist[-5:]])
    for name in ("medium", "expert"):
        side = out / f"{name}.json"
        if side.is_file():
            info = json.loads(side.read_text())
            m = info.get("measured", {}).get("deterministic", {})
            rec[name] = {"step": info.get("step"), "travel_m": m.get("travel_m"), "return": m.get("return"),
                         "score": m.get("score")}
    if (out / "summary.json").is_file():
        rec["summary"] = json.loads((out / "summary.json").read_text())
    return rec


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Resumable SAC run that keeps a medium (travel band) and the "
                                "best-travel policy. Rerun the same command to resume.")
    p.add_argument("env")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=1_000_000)
    p.add_argument("--max-wall-s", type=float, default=None)
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--start-steps", type=int, default=10_000)
    p.add_argument("--reference-travel", default="auto",
                   help="expert travel in metres, 'expert' (pybullet's, measured), 'none' (the run's best), or "
                        "'auto' (expert where pybullet ships one, else none)")
    p.add_argument("--band", type=float, nargs=2, default=(0.25, 0.60), metavar=("LO", "HI"))
    p.add_argument("--patience", type=int, default=20, help="evaluations without a better travel before stopping "
                   "(when the reference is the run's own best)")
    p.add_argument("--checkpoint-every-s", type=float, default=180.0)
    p.add_argument("--min-reference", type=float, default=5.0, help="with the run's own best as reference: pick "
                   "no medium before the best mean travel reaches this many metres")
    d = SACConfig(env="x")
    p.add_argument("--gamma", type=float, default=d.gamma, help=f"discount (default {d.gamma})")
    p.add_argument("--tau", type=float, default=d.tau, help=f"Polyak rate of the target critics (default {d.tau})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate of every optimizer (default {d.lr})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--hidden", type=int, default=d.hidden, help=f"width of the 2 hidden layers (default {d.hidden})")
    p.add_argument("--status", action="store_true", help="print where the run in --out stands and exit")
    a = p.parse_args(argv)
    if a.status:
        print(json.dumps(status(a.out), indent=2))
        return
    ref: float | str | None = a.reference_travel
    try:
        ref = float(a.reference_travel)
    except ValueError:
        pass
    cfg = TravelRunConfig(env=env_spec(a.env).name, seed=a.seed, max_steps=a.max_steps, max_wall_s=a.max_wall_s,
                          eval_every=a.eval_every, start_steps=a.start_steps, reference_travel=ref,
                          band_lo=a.band[0], band_hi=a.band[1], patience=a.patience,
                          checkpoint_every_s=a.checkpoint_every_s, min_reference=a.min_reference,
                          gamma=a.gamma, tau=a.tau, lr=a.lr, batch_size=a.batch_size, hidden=a.hidden)
    print(json.dumps(run(cfg, a.out, log=lambda s: print(s, flush=True)), indent=2), flush=True)


if __name__ == "__main__":
    main()
