"""Our hot loops against an eager re-creation of the public Diffusion-QL design, side by side in one process.

Both sides run on hopper's dimensions (obs 15, act 3), hidden 256, T 5, vp, batch 256, 50 candidates, on the same
batch tensors and the same device. The reference side is `benchmarks/dql_reference.py` (see its docstring for the
files it follows); our side is built by `build_ours` from `modules/`. Step kinds:

    joint           one joint DQL iteration: critic TD update (next actions from the EMA actor) + actor update with
                    q_loss through the reverse chain (reference: Diffusion_QL.train's loop body)
    guidance_first  the actor update with q_loss under a frozen critic (reference: the same loop's actor half alone,
                    its critic frozen)
    bc              a BC update, the diffusion loss only (reference: Diffusion_BC.train's loop body)
    select_1        action selection for 1 state x 50 candidates, numpy in / numpy out (reference: sample_action)
    select_16       batched selection, 16 states x 50 candidates (reference: sample_action done for 16 states at once)
    ensemble        K seeds (default 8) of one step kind (default guidance_first); reference: K separate models one
                    after another; reported in seed-steps/s

Method: build both sides, warm each up, then for each of --rounds rounds and each kind run one window of --window
seconds of ours and one of the reference (the order swaps every round, so drift in the machine's load falls on both
sides alike). Each window gives a rate; per kind we report the median rates and the median of the per-round ratios
ours / reference with its min-max and interquartile range. No reference figure is stored anywhere: every number
comes from this run. On CUDA the device is synchronised at the edges of each window.

    .venv/bin/python benchmarks/speed.py [--threads 2] [--device auto] [--window 0.5] [--rounds 10]
                                         [--kinds joint,guidance_first,...] [--out benchmarks/out/speed.json]
    .venv/bin/python benchmarks/speed.py --quick        # a smoke test: tiny windows, 2 rounds
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common import OUT, latency_summary  # benchmarks/ is on sys.path when this script runs

KINDS: tuple[str, ...] = ("joint", "guidance_first", "bc", "select_1", "select_16", "ensemble")
LABELS = {
    "joint": "joint DQL iteration (critic TD + actor with q_loss)",
    "guidance_first": "guidance-first iteration (actor with q_loss, frozen critic)",
    "bc": "BC update (diffusion loss only)",
    "select_1": "action selection, 1 state x {n} candidates",
    "select_16": "batched selection, {s} states x {n} candidates",
    "ensemble": "ensemble of {k} seeds ({step}); ours {mode}, reference one after another",
}
# issue 15's targets for the ratio ours / reference (what we aim at, not a measurement of either side)
TARGETS = {"joint": 2.0, "guidance_first": 2.0, "bc": 2.0, "select_1": 3.0, "select_16": 3.0, "ensemble": 3.0}
TRAIN_KINDS = ("joint", "guidance_first", "bc")
REFERENCE_REPO = "Zhendong-Wang/Diffusion-Policies-for-Offline-RL"
REFERENCE_COMMIT = "d871f5c6b4a3a3a19a10c662a54f32d5819dfcdb"


@dataclass
class Dims:
    obs_dim: int = 15
    act_dim: int = 3
    hidden: int = 256
    T: int = 5
    batch: int = 256
    candidates: int = 50
    select_states: int = 16
    ensemble_k: int = 8
    ensemble_step: str = "guidance_first"
    eta: float = 1.0
    grad_norm: float = 9.0  # main.py's hopper-medium "gn"
    first_step: int = 1000  # both sides count steps from here: past the EMA start, the EMA updates run as in a long run


@dataclass
class Bench:
    """One unit of timed work: fn() does `units` units (steps, calls or seed-steps)."""

    fn: Callable[[], object]
    units: int = 1
    unit: str = "it/s"
    keep: list = field(default_factory=list)  # objects the closure needs alive (modules, optimisers)


class OptionNotWired(RuntimeError):
    """An option of our side that build_ours does not implement yet (one line)."""


# ----------------------------------------------------------------------------------------------- shared batch data


def make_batch(dims: Dims, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """One fixed batch for both sides (the sampling from a buffer is left out of both). Rewards and done: (B,)."""
    g = torch.Generator().manual_seed(seed)
    B = dims.batch
    b = {"obs": torch.randn(B, dims.obs_dim, generator=g), "act": torch.rand(B, dims.act_dim, generator=g) * 2 - 1,
         "rew": torch.randn(B, generator=g), "next_obs": torch.randn(B, dims.obs_dim, generator=g),
         "done": (torch.rand(B, generator=g) < 0.01).float()}
    return {k: v.to(device) for k, v in b.items()}


def states_np(n: int, dims: Dims, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dims.obs_dim)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------- our side


def one_after_another(make: Callable[[], Bench], k: int) -> Bench:
    """K seeds trained as K separate models in turn (seed i's networks built after torch.manual_seed(i)): one call
    steps each once -> K seed-steps."""
    benches = []
    for seed in range(k):
        torch.manual_seed(seed)
        benches.append(make())
    fns = [b.fn for b in benches]

    def run() -> None:
        for f in fns:
            f()

    return Bench(run, units=k, unit="seed-steps/s", keep=benches)


def build_ours(kind: str, device: torch.device, options: dict, dims: Dims | None = None,
               batch: dict[str, torch.Tensor] | None = None) -> Bench:
    """Our implementation of one step kind, on `device`, from modules/. The one place our side is built."""
    from modules.device import check_precision
    from modules.diffusion.dql_mlp import DQLDiffusion, DQLMLPConfig
    from modules.guidance.dql import DQLCritic, DQLCriticConfig
    from modules.policy import GuidedPolicy
    from modules.scores import q_score
    from modules.train.updates import DiffusionUpdate, DQLCriticUpdate

    dims = dims or Dims()
    b = batch if batch is not None else make_batch(dims, device)

    # ==== OPTIONS HOOK (issue 15) ===================================================================================
    # options["compile"]   (--compile):   torch.compile of the update losses (Update.compile) and of the whole
    #                                     action selection from its draws (GuidedPolicy.compile)
    # options["precision"] (--precision): "fp32" | "bf16" (bf16 autocast inside the updates' losses)
    # options["ensemble"]  (--ensemble):  "sequential" (K models one after another) | "batched" (one K-seed
    #                                     computation: the updates' members, vmap over stacked tensors)
    # A value this function cannot honour is refused (OptionNotWired), never silently ignored.
    compile_ = bool(options.get("compile", False))
    precision = check_precision(str(options.get("precision", "fp32")), device)
    ensemble = str(options.get("ensemble", "sequential"))
    if ensemble not in ("sequential", "batched"):
        raise OptionNotWired(f"--ensemble {ensemble} is not known to build_ours")
    # ================================================================================================================

    def new_actor() -> DQLDiffusion:
        return DQLDiffusion(DQLMLPConfig(obs_dim=dims.obs_dim, act_dim=dims.act_dim, hidden=dims.hidden,
                                         T=dims.T)).to(device)

    def new_critic() -> DQLCritic:  # twin Q, 3 x hidden Mish: the reference critic's shape
        return DQLCritic(DQLCriticConfig(obs_dim=dims.obs_dim, act_dim=dims.act_dim, hidden=dims.hidden)).to(device)

    def seeded(make: Callable[[], nn.Module], seeds: Sequence[int]) -> list:
        out = []
        for s in seeds:
            torch.manual_seed(s)
            out.append(make())
        return out

    def updates(step_kind: str, members: int | None) -> list:
        """The updates of one step kind, in the order the training loop runs them (critic, then diffusion); with
        `members` K, one update trains K seeds at once (lists of networks)."""
        seeds = list(range(members or 1))
        actor = seeded(new_actor, seeds) if members else new_actor()
        if step_kind == "joint":
            critics = seeded(new_critic, seeds) if members else [new_critic()]
            actor_upd = DiffusionUpdate(actor, guidance=critics[0], eta=dims.eta, grad_clip=dims.grad_norm,
                                        precision=precision)
            critic_upd = DQLCriticUpdate(critics if members else critics[0], actor_upd, grad_clip=dims.grad_norm,
                                         precision=precision)
            actor_upd.bind_guidance(critic_upd)
            return [critic_upd, actor_upd]
        if step_kind == "guidance_first":
            frozen = [c.requires_grad_(False).eval() for c in seeded(new_critic, seeds)]
            return [DiffusionUpdate(actor, guidance=frozen if members else frozen[0], eta=dims.eta,
                                    grad_clip=dims.grad_norm, precision=precision)]
        if step_kind == "bc":
            return [DiffusionUpdate(actor, precision=precision)]
        raise ValueError(f"unknown step kind {step_kind!r}")

    def bench(step_kind: str, members: int | None = None, units: int = 1, unit: str = "it/s") -> Bench:
        upds = updates(step_kind, members)
        if compile_:
            for u in upds:
                u.compile()
        bb = b if members is None else {k: v.unsqueeze(0).repeat(members, *([1] * v.dim())) for k, v in b.items()}
        step = [dims.first_step]

        def one_step() -> None:
            step[0] += 1
            for u in upds:
                u.step(bb, step[0])

        return Bench(one_step, units=units, unit=unit, keep=upds)

    if kind in TRAIN_KINDS:
        return bench(kind)
    if kind in ("select_1", "select_16"):
        actor = new_actor().eval().requires_grad_(False)
        critic = new_critic().eval().requires_grad_(False)
        policy = GuidedPolicy(actor, n_candidates=dims.candidates, scorer=q_score(critic, dims.act_dim),
                              rule="softmax", precision=precision)
        if compile_:
            policy.compile()
        obs = states_np(1 if kind == "select_1" else dims.select_states, dims, seed=1)
        if kind == "select_1":
            obs = obs[0]
        if device.type == "cpu":
            return Bench(lambda: policy.act(obs), unit="calls/s", keep=[policy])
        # numpy in / numpy out on another device: the same boundary as the reference's sample_action

        def act_on_device() -> np.ndarray:
            x = torch.from_numpy(obs).to(device)
            out = policy.act_tensor(x[None] if x.dim() == 1 else x)
            return out.cpu().numpy()

        return Bench(act_on_device, unit="calls/s", keep=[policy])
    if kind == "ensemble":
        K = dims.ensemble_k
        # ==== ENSEMBLE HOOK (issue 15) ==============================================================================
        if ensemble == "batched":  # one K-seed computation (the updates' members)
            return bench(dims.ensemble_step, members=K, units=K, unit="seed-steps/s")
        # sequential: K single-seed models, one after another (as the reference has to)
        return one_after_another(lambda: bench(dims.ensemble_step), K)
    raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")


# ----------------------------------------------------------------------------------------------- reference side


def build_reference(kind: str, device: torch.device, dims: Dims | None = None,
                    batch: dict[str, torch.Tensor] | None = None) -> Bench:
    """The eager re-creation of Diffusion-QL (benchmarks/dql_reference.py) for one step kind, on `device`."""
    from dql_reference import DiffusionBC, DiffusionQL

    dims = dims or Dims()
    b = batch if batch is not None else make_batch(dims, device)
    # the reference's sampler keeps rewards and not_done as (B, 1) columns
    state, action, next_state = b["obs"], b["act"], b["next_obs"]
    reward, not_done = b["rew"].view(-1, 1), 1.0 - b["done"].view(-1, 1)
    if dims.hidden != 256:
        raise ValueError("the reference design's denoiser is fixed at 256 wide")

    def agent() -> DiffusionQL:
        a = DiffusionQL(dims.obs_dim, dims.act_dim, max_action=1.0, device=device, eta=dims.eta, n_timesteps=dims.T,
                        grad_norm=dims.grad_norm)
        a.step = dims.first_step
        return a

    def step_fn(step_kind: str) -> Bench:
        if step_kind == "joint":
            a = agent()
            return Bench(lambda: a.train_iteration(state, action, next_state, reward, not_done), keep=[a])
        if step_kind == "guidance_first":
            a = agent()
            a.freeze_critic()
            return Bench(lambda: a.actor_iteration(state, action), keep=[a])
        if step_kind == "bc":
            bc = DiffusionBC(dims.obs_dim, dims.act_dim, max_action=1.0, device=device, n_timesteps=dims.T)
            return Bench(lambda: bc.train_iteration(state, action), keep=[bc])
        raise ValueError(f"unknown step kind {step_kind!r}")

    if kind in TRAIN_KINDS:
        return step_fn(kind)
    if kind in ("select_1", "select_16"):
        a = agent()
        if kind == "select_1":
            one = states_np(1, dims, seed=1)[0]
            return Bench(lambda: a.sample_action(one), unit="calls/s", keep=[a])
        many = states_np(dims.select_states, dims, seed=1)
        return Bench(lambda: a.sample_actions(many, n=dims.candidates), unit="calls/s", keep=[a])
    if kind == "ensemble":
        return one_after_another(lambda: step_fn(dims.ensemble_step), dims.ensemble_k)
    raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")


# ------------------------------------------------------------------------------------------------------- timing


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def run_window(bench: Bench, seconds: float, sync: Callable[[], None],
               call_ms: list[float] | None = None) -> tuple[float, int]:
    """Calls bench.fn until `seconds` have passed (at least once). -> (units per second, calls)."""
    sync()
    t0 = now = time.perf_counter()
    n = 0
    while True:
        bench.fn()
        n += 1
        if call_ms is not None:  # per-call latency: only for selection, whose numpy output syncs every call
            t = time.perf_counter()
            call_ms.append((t - now) * 1000)
            now = t
        if time.perf_counter() - t0 >= seconds:
            break
    sync()
    return n * bench.units / (time.perf_counter() - t0), n


def warm_up(bench: Bench, seconds: float, sync: Callable[[], None], min_calls: int = 2) -> None:
    for _ in range(min_calls):
        bench.fn()
    if seconds > 0:
        run_window(bench, seconds, sync)


def spread(xs: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(xs, dtype=np.float64)
    q25, q75 = np.percentile(arr, [25, 75])
    return {"median": float(np.median(arr)), "min": float(arr.min()), "max": float(arr.max()),
            "q25": float(q25), "q75": float(q75)}


# ------------------------------------------------------------------------------------------------------ machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags(wanted: Sequence[str] = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")) -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(threads: int, device: torch.device) -> dict:
    info = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "threads": threads, "torch": torch.__version__, "python": platform.python_version(),
            "device": str(device), "load_avg_start": [round(x, 2) for x in os.getloadavg()]}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# --------------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(doc.splitlines()[2:]))
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--device", default="auto", help="auto|cpu|cuda[:N]|mps (default auto: CUDA when present)")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    ap.add_argument("--window", type=float, default=0.5, help="seconds per window (default 0.5)")
    ap.add_argument("--rounds", type=int, default=10, help="windows per side and kind (default 10)")
    ap.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per side and kind (default 1.0)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--select-states", type=int, default=16, help="states in the batched selection (default 16)")
    ap.add_argument("--ensemble-k", type=int, default=None,
                    help="seeds in the ensemble row (default 8; 2 with --quick)")
    ap.add_argument("--ensemble-step", choices=TRAIN_KINDS, default="guidance_first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT / "speed.json"))
    ap.add_argument("--quick", action="store_true", help="smoke test: 0.02 s windows, 2 rounds, no warm-up window")
    # our side's options (issue 15): wired in build_ours
    ap.add_argument("--compile", action="store_true", help="our side: torch.compile (see build_ours)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="our side's compute precision")
    ap.add_argument("--ensemble", default="sequential", choices=("sequential", "batched"),
                    help="our side's ensemble: K models one after another, or one batched K-seed computation")
    args = ap.parse_args(argv)
    if args.quick:
        args.window, args.rounds, args.warmup = min(args.window, 0.02), min(args.rounds, 2), 0.0
    if args.ensemble_k is None:
        args.ensemble_k = 2 if args.quick else 8
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        ap.error(f"--kinds: unknown {', '.join(bad) or '(none given)'}; known: {', '.join(KINDS)}")
    args.kinds = kinds
    if args.window <= 0 or args.rounds < 1 or args.ensemble_k < 1 or args.threads < 1:
        ap.error("--window must be > 0, --rounds, --ensemble-k and --threads >= 1")
    return args


def label(kind: str, dims: Dims, options: dict) -> str:
    return LABELS[kind].format(n=dims.candidates, s=dims.select_states, k=dims.ensemble_k, step=dims.ensemble_step,
                               mode=options.get("ensemble", "sequential"))


def measure(args: argparse.Namespace, device: torch.device, dims: Dims, options: dict,
            log: Callable[[str], None] = print) -> tuple[dict, dict[str, str]]:
    """Builds both sides of every kind, warms them up, runs the alternating windows. -> (results, skipped kinds)"""
    sync = synchronizer(device)
    batch = make_batch(dims, device, seed=args.seed)
    benches: dict[str, dict[str, Bench]] = {}
    skipped: dict[str, str] = {}
    for kind in args.kinds:
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        try:
            ours = build_ours(kind, device, options, dims, batch)
        except OptionNotWired as e:
            skipped[kind] = str(e)
            log(f"skipped {kind}: {e}")
            continue
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        ref = build_reference(kind, device, dims, batch)
        benches[kind] = {"ours": ours, "reference": ref}
    for kind, sides in benches.items():
        log(f"warm-up {kind}")
        for bench in sides.values():
            warm_up(bench, args.warmup, sync)

    rates: dict[str, dict[str, list[float]]] = {k: {"ours": [], "reference": []} for k in benches}
    calls: dict[str, dict[str, int]] = {k: {"ours": 0, "reference": 0} for k in benches}
    lat: dict[str, dict[str, list[float]]] = {k: {"ours": [], "reference": []} for k in benches}
    gc.collect()
    for r in range(args.rounds):
        order = ("ours", "reference") if r % 2 == 0 else ("reference", "ours")
        for kind, sides in benches.items():
            for side in order:
                call_ms = lat[kind][side] if kind.startswith("select") else None
                rate, n = run_window(sides[side], args.window, sync, call_ms)
                rates[kind][side].append(rate)
                calls[kind][side] += n
        log(f"round {r + 1}/{args.rounds} done")

    results = {}
    for kind, sides in benches.items():
        o, f = rates[kind]["ours"], rates[kind]["reference"]
        ratios = [a / c for a, c in zip(o, f, strict=True)]
        entry: dict[str, Any] = {
            "label": label(kind, dims, options), "unit": sides["ours"].unit,
            "ours": {"median": statistics.median(o), "per_round": o, "calls": calls[kind]["ours"]},
            "reference": {"median": statistics.median(f), "per_round": f, "calls": calls[kind]["reference"]},
            "ratio": {**spread(ratios), "per_round": ratios},
            "target_ratio": TARGETS[kind],
        }
        if kind.startswith("select"):
            entry["ours"]["latency"] = latency_summary(lat[kind]["ours"])
            entry["reference"]["latency"] = latency_summary(lat[kind]["reference"])
        results[kind] = entry
    return results, skipped


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    m = report["machine"]
    title = (f"ours vs eager Diffusion-QL re-creation, same process - {m['device']}, {m['threads']} threads, "
             f"{m['cpu']}" + (f", {m['gpu']}" if "gpu" in m else ""))
    t = Table(title=title)
    for col, just in (("step kind", "left"), ("ours", "right"), ("reference", "right"), ("unit", "left"),
                      ("ratio (median)", "right"), ("min-max", "right"), ("IQR", "right"), ("target", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for res in report["results"].values():
        q = res["ratio"]
        t.add_row(res["label"], f"{res['ours']['median']:.4g}", f"{res['reference']['median']:.4g}", res["unit"],
                  f"{q['median']:.2f}x", f"{q['min']:.2f}-{q['max']:.2f}", f"{q['q25']:.2f}-{q['q75']:.2f}",
                  f">= {res['target_ratio']:g}x")
    s = report["settings"]
    Console(width=None if sys.stdout.isatty() else 150).print(t)
    print(f"{s['rounds']} rounds of {s['window_s']} s windows per side; load average "
          f"{m['load_avg_start']} -> {m['load_avg_end']}; wrote {report['out']}")
    for kind, why in report["skipped"].items():
        print(f"skipped {kind}: {why}")
    if m.get("warning"):
        print(f"warning: {m['warning']}")


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from modules.device import DeviceError, resolve_device

    try:
        device = resolve_device(args.device)
    except DeviceError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    dims = Dims(batch=args.batch, candidates=args.candidates, select_states=args.select_states,
                ensemble_k=args.ensemble_k, ensemble_step=args.ensemble_step)
    options = {"compile": args.compile, "precision": args.precision, "ensemble": args.ensemble}
    info = machine_info(args.threads, device)
    log = (lambda s: None) if args.quick else (lambda s: print(s, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    try:
        results, skipped = measure(args, device, dims, options, log)
    except DeviceError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    info["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    busy = max(info["load_avg_start"][0], info["load_avg_end"][0]) - 1.0  # this process counts about 1
    if device.type == "cpu" and busy + args.threads > info["cores_usable"]:
        info["warning"] = (f"other work was running (load average about {busy + 1:.1f} on {info['cores_usable']} "
                           f"cores, this run uses {args.threads} threads): rates and ratios are unreliable; "
                           "measure on a quiet machine")
    report = {
        "what": "rates of our hot loops and of an eager re-creation of the public Diffusion-QL design, measured in "
                "the same process in alternating windows; ratio = ours / reference per round",
        "reference": {"design": REFERENCE_REPO, "commit": REFERENCE_COMMIT,
                      "re_creation": "benchmarks/dql_reference.py"},
        "git_commit": git_commit(),
        "machine": info,
        "settings": {**asdict(dims), "window_s": args.window, "rounds": args.rounds, "warmup_s": args.warmup,
                     "kinds": args.kinds, "seed": args.seed, "quick": args.quick,
                     "order": "ours first on even rounds, reference first on odd rounds",
                     "wall_s": round(time.perf_counter() - t0, 1)},
        "options": options,
        "results": results,
        "skipped": skipped,
        "out": args.out,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print_table(report)
    return report


if __name__ == "__main__":
    main()
