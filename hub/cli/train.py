"""`mdhub train ...`, `mdhub eval`, `mdhub check`, `mdhub combine`: thin wrappers over hub.training / hub.combine.

Those (and torch) are imported inside the commands only.
"""
from __future__ import annotations

import shlex
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, get_args

import typer
from rich.markup import escape

from hub.algos import DIFFUSION_ALGOS, GUIDANCE_ALGOS
from hub.cli.console import emit_json, err, out
from hub.cli.errors import EXIT_INCOMPATIBLE, handles_errors
from hub.errors import MdhubError
from hub.modes import mode_names
from hub.modes.base import Rule

if TYPE_CHECKING:
    from collections.abc import Iterable

    from hub.store import StoredModule

# CLI choices derived from the mode table (plug-in modes included) and the candidate rules
# (members computed at import, which mypy cannot enumerate: misc)
SamplingModeChoice = Enum(  # type: ignore[misc]
    "SamplingModeChoice", {name: name for name in mode_names("sampling")}, type=str)
RuleChoice = Enum("RuleChoice", {name: name for name in get_args(Rule)}, type=str)  # type: ignore[misc]
GuidanceAlgo = Enum("GuidanceAlgo", {name: name for name in GUIDANCE_ALGOS}, type=str)  # type: ignore[misc]
DiffusionAlgo = Enum("DiffusionAlgo", {name: name for name in DIFFUSION_ALGOS}, type=str)  # type: ignore[misc]
JSON_HELP = "Print one JSON document on stdout instead of text (schema: README, 'Scripting')."

# Options that `train guidance` and `train diffusion` share, declared once
STEPS_OPTION = typer.Option(None, "--steps", min=1, help="Gradient steps, at least 1 (default: the recipe's).")
CHECKPOINT_EVERY_OPTION = typer.Option(1000, "--checkpoint-every", min=0,
                                       help="Checkpoint every N steps (0: at the end only).")
LOG_EVERY_OPTION = typer.Option(100, "--log-every", min=1, help="Log losses, learning rates and steps/s every N "
                                "steps (runs/ID/scalars.csv, .jsonl).")
DEVICE_HELP = "Where to compute: auto (CUDA when present), cpu, cuda, cuda:N or mps."
DEVICE_OPTION = typer.Option("auto", "--device", help=DEVICE_HELP)
PRECISION_OPTION = typer.Option("fp32", "--precision", help="fp32, or bf16 (bfloat16 autocast: matmuls in bf16, "
                                "weights and optimizer state in fp32).")
COMPILE_OPTION = typer.Option(False, "--compile", help="Compile the training step with torch.compile (pays on long "
                              "runs; the first steps wait for the compiler).")
SEEDS_OPTION = typer.Option(None, "--seeds", help="Train several seeds at once as one batched computation, e.g. "
                            "'0,1,2,3' or '0-7'; each member is stored as ID-s<SEED> (instead of --seed).")
SAVE_EVERY_OPTION = typer.Option(0, "--save-every", min=0, help="Also store the networks every N steps as modules "
                                 "ID-step<N> (evaluate them afterwards with `mdhub eval-run ID`; 0: never).")
FORCE_OPTION = typer.Option(False, "--force", help="Replace a module already stored under the id (also one that "
                            "stored policies reference).")

train_app = typer.Typer(help="Train guidance modules and diffusion policies into the store (with progress bars, "
                        "checkpoints that resume after a crash or Ctrl-C, per-step logs (scalars.csv, scalars.jsonl, "
                        "TensorBoard with the tensorboard extra) and learning curves under $MDHUB_HOME/runs/ID; "
                        "`mdhub plot ID` draws them).",
                        no_args_is_help=True)


def stored_json(m: StoredModule) -> dict[str, Any]:
    """A stored module in `--json` output: id, kind, architecture, path, metrics."""
    return {"id": m.id, "kind": m.card.kind, "architecture": m.card.architecture, "path": str(m.path),
            "metrics": dict(m.card.metrics)}


def _run_files(module_id: str) -> tuple[Path, list[str]]:
    """The run folder of `module_id` and the names of the logs and plots in it."""
    from hub.paths import run_dir

    folder = run_dir(module_id)
    names = ["scalars.csv", "scalars.jsonl", "tb", "curve.png", "curve.json"]
    return folder, [n for n in names if (folder / n).exists()]


def _print_stored(modules: Iterable[StoredModule], as_json: bool = False, run_id: str | None = None) -> None:
    modules = list(modules)
    folder, files = _run_files(run_id) if run_id else (None, [])
    if as_json:
        emit_json({"modules": [stored_json(m) for m in modules], "run": str(folder) if folder and files else None})
        return
    for m in modules:
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in m.card.metrics.items() if isinstance(v, float))
        out.print(f"stored [bold]{escape(m.id)}[/] ({m.card.kind}, {m.card.architecture}) at {escape(str(m.path))}\n"
                  f"  {escape(metrics)}")
    if folder is not None and files:
        out.print(f"run logs: {folder} ({', '.join(files)}); draw them: mdhub plot {run_id}"
                  + ("; tensorboard --logdir " + str(folder / "tb") if "tb" in files else ""),
                  markup=False, highlight=False, soft_wrap=True)
        if "curve.png" in files:
            out.print(f"learning curve: {folder / 'curve.png'}", markup=False, highlight=False, soft_wrap=True)


def _note(line: str) -> None:
    """A one-line notice (already trained, resuming) on stderr, so that --json's stdout stays one document."""
    err.print(line, markup=False, highlight=False, soft_wrap=True)


def _rerun_command(ctx: typer.Context) -> str:
    """The command line that continues this run: the command's own options as given, without --fresh/--force."""
    words = (ctx.command_path or "mdhub train").split()
    words[0] = "mdhub"
    for param in ctx.command.params:
        if param.param_type_name != "option" or param.name in ("fresh", "force", "as_json", "resume"):
            continue
        value = ctx.params.get(param.name or "")
        if value is None or value == param.default or value is False:
            continue
        flag = max(param.opts, key=len)
        if value is True:
            words.append(flag)
        else:
            words += [flag, shlex.quote(str(getattr(value, "value", value)))]
    return " ".join(words)


def _interrupted(ctx: typer.Context, e: BaseException) -> NoReturn:
    """Ctrl-C: one line naming the last checkpoint and the command that resumes; exit code 130."""
    from modules.train.loop import TrainingInterrupted

    if isinstance(e, TrainingInterrupted) and e.checkpoint_step is not None:
        how = f"resume with: {_rerun_command(ctx)}"
    elif isinstance(e, TrainingInterrupted):
        how = f"rerun: {_rerun_command(ctx)}"
    else:
        how = "nothing was trained or stored"
    _note(f"{str(e) if isinstance(e, TrainingInterrupted) else 'interrupted'}; {how}")
    raise typer.Exit(130)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` was given on the command line (not its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _overrides(recipe_name: str, config: Path | None, **flags: Any) -> dict[str, Any]:
    """Recipe overrides: the --config file's (checked against recipe `recipe_name`'s settings, errors naming the
    file and the key), then the flags given (a flag wins over the file)."""
    from hub.training import apply_overrides, load_recipe_config
    from modules.train.recipes import get_recipe

    data = load_recipe_config(config) if config is not None else {}
    if data:
        apply_overrides(get_recipe(recipe_name), data, source=str(config))
    return {**data, **{k: v for k, v in flags.items() if v is not None}}


def parse_seeds(text: str | None, seed: int, seed_given: bool) -> list[int] | None:
    """'0,1,2' or '0-3' (or a mix: '0-2,7') -> [0, 1, 2, ...]; None when --seeds is not given."""
    if text is None:
        return None
    if seed_given:
        raise MdhubError("give --seed (one run) or --seeds (several at once), not both")
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not (lo.isdigit() and (not sep or hi.isdigit())):
            raise MdhubError(f"--seeds: expected e.g. '0,1,2' or '0-7', got '{text}'")
        seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    return seeds


def _run_id(stored: list[StoredModule], seeds: list[int] | None) -> str:
    from hub.training import run_name

    return run_name([stored[0].id] + [""] * (len(seeds) - 1), True) if seeds else stored[0].id


def _check_eta(algo: str, joint: bool, eta: float | None) -> None:
    from hub.algos import DIFFUSION_ALGOS
    from modules.train.recipes import get_recipe

    recipe = get_recipe("dql-joint" if joint else DIFFUSION_ALGOS.get(algo, algo))
    if eta is not None and recipe.diffusion_update != "q_loss":
        raise MdhubError(f"--eta weighs the Q-loss term of q_loss training (--algo dql); recipe '{recipe.name}' "
                         f"trains by {recipe.diffusion_update}")


CONFIG_HELP = ("YAML or JSON file of recipe settings (e.g. 'eta: 0.1', 'lr: 1e-4', 'ema_decay: 0.999'); flags given "
               "on the command line win. Keys are checked against the recipe's settings.")
RESUME_HELP = ("Continue the stored run's checkpoint, e.g. to more --steps (the same settings otherwise); replaces "
               "the stored module.")
FRESH_HELP = ("Start over: move the run's checkpoint aside (default: resume an interrupted run); replacing a stored "
              "module also needs --force.")


@train_app.command("guidance")
@handles_errors
def train_guidance_cmd(
    ctx: typer.Context,
    algo: GuidanceAlgo = typer.Option(..., "--algo", help="iql, idql (policy-free TD) or dql (joint: stores critic "
                                      "AND actor)."),
    dataset: str = typer.Option(..., "--dataset", help="A dataset id from `mdhub data list` (e.g. "
                                "hopper-bullet-medium)."),
    steps: int | None = STEPS_OPTION,
    seed: int = typer.Option(0, "--seed"),
    module_id: str | None = typer.Option(None, "--id", help="Store id (default: ALGO-critic-DATASET-sSEED; a "
                                         "joint run's actor: ID-actor, default dql-joint-actor-DATASET-sSEED)."),
    hidden: int | None = typer.Option(None, "--hidden", help="Hidden width (default: the architecture's, 256)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1),
    lr: float | None = typer.Option(None, "--lr", min=0.0, help="The critic's learning rate (critic_lr; a joint "
                                    "run's actor too; default 3e-4)."),
    eta: float | None = typer.Option(None, "--eta", min=0.0, help="Joint DQL (--algo dql): weight of the actor's "
                                     "Q-loss term (default 1)."),
    checkpoint_every: int = CHECKPOINT_EVERY_OPTION,
    log_every: int = LOG_EVERY_OPTION,
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    force: bool = FORCE_OPTION,
    fresh: bool = typer.Option(False, "--fresh", help=FRESH_HELP),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
    device: str = DEVICE_OPTION,
    precision: str = PRECISION_OPTION,
    compile_: bool = COMPILE_OPTION,
    seeds: str | None = SEEDS_OPTION,
    save_every: int = SAVE_EVERY_OPTION,
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Train a guidance module (Q, V) by TD learning on an offline dataset."""
    from hub.training import Budget, train_guidance

    if eta is not None and algo.value != "dql":
        raise MdhubError(f"--eta weighs a joint DQL actor's Q-loss term; --algo {algo.value} trains no actor")
    overrides = _overrides(GUIDANCE_ALGOS[algo.value], config, critic_lr=lr, eta=eta,
                           **({"lr": lr} if algo.value == "dql" else {}))
    seed_list = parse_seeds(seeds, seed, _given(ctx, "seed"))
    try:
        stored = train_guidance(algo.value, dataset, steps=steps, seed=seed, module_id=module_id,
                                budget=Budget(hidden=hidden, batch_size=batch_size, checkpoint_every=checkpoint_every,
                                              log_every=log_every),
                                recipe_overrides=overrides, overwrite=force, fresh=fresh, resume=resume,
                                report=_note, seeds=seed_list, device=device, precision=precision, compile=compile_,
                                save_every=save_every)
    except KeyboardInterrupt as e:
        _interrupted(ctx, e)
    _print_stored(stored, as_json, run_id=_run_id(stored, seed_list))


@train_app.command("diffusion")
@handles_errors
def train_diffusion_cmd(
    ctx: typer.Context,
    algo: DiffusionAlgo = typer.Option(..., "--algo", help="dql (BC + eta * Q-loss under the guidance) | idql (BC; the "
                             "guidance picks among candidates at sampling) | swg (the guidance's weights label the "
                             "data; one model over (action, weight), self-guided) | cfg (advantage-sign labels; "
                             "classifier-free guidance)."),
    dataset: str = typer.Option(..., "--dataset", help="A dataset id from `mdhub data list`."),
    guidance: str | None = typer.Option(None, "--guidance", help="Frozen guidance id (guidance-first training). "
                                        "With --seeds, 'g-s{seed}' pairs each seed with its own guidance."),
    joint: bool = typer.Option(False, "--joint", help="Train DQL's critic and actor together instead."),
    steps: int | None = STEPS_OPTION,
    seed: int = typer.Option(0, "--seed"),
    module_id: str | None = typer.Option(None, "--id", help="Store id (default: ALGO-actor-DATASET-sSEED)."),
    hidden: int | None = typer.Option(None, "--hidden"),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1),
    lr: float | None = typer.Option(None, "--lr", min=0.0, help="The diffusion model's learning rate (default "
                                    "3e-4)."),
    eta: float | None = typer.Option(None, "--eta", min=0.0, help="dql: weight of the Q-loss term against "
                                     "behaviour cloning (default 1; the README's results use 0.1)."),
    checkpoint_every: int = CHECKPOINT_EVERY_OPTION,
    log_every: int = LOG_EVERY_OPTION,
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    force: bool = FORCE_OPTION,
    fresh: bool = typer.Option(False, "--fresh", help=FRESH_HELP),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
    eval_every: int = typer.Option(0, "--eval-every", min=0, help="Evaluate in the env every N steps (learning "
                                   "curve; 0: never)."),
    eval_episodes: int = typer.Option(3, "--eval-episodes", min=1, help="Episodes per curve point."),
    device: str = DEVICE_OPTION,
    precision: str = PRECISION_OPTION,
    compile_: bool = COMPILE_OPTION,
    seeds: str | None = SEEDS_OPTION,
    save_every: int = SAVE_EVERY_OPTION,
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Train a diffusion policy: under a frozen guidance (--guidance ID), jointly (--joint), or BC-only (idql).

    swg and cfg need --guidance: it labels the data (a Q-only guidance gets a V fitted to it first)."""
    from hub.evaluation import curve_evaluator
    from hub.training import Budget, train_diffusion

    _check_eta(algo.value, joint, eta)
    overrides = _overrides("dql-joint" if joint else DIFFUSION_ALGOS[algo.value], config, lr=lr, eta=eta,
                           **({"critic_lr": lr} if joint else {}))
    factory = curve_evaluator(eval_episodes, progress=True, device=device) if eval_every else None
    seed_list = parse_seeds(seeds, seed, _given(ctx, "seed"))
    guidances: str | list[str | StoredModule] | None = guidance
    if guidance is not None and "{seed}" in guidance:
        if seed_list is None:
            raise MdhubError("--guidance with '{seed}' names one guidance per seed: give --seeds")
        guidances = [guidance.replace("{seed}", str(s)) for s in seed_list]
    try:
        stored = train_diffusion(algo.value, dataset, guidance=guidances, joint=joint, steps=steps, seed=seed,
                                 module_id=module_id,
                                 budget=Budget(hidden=hidden, batch_size=batch_size, eval_every=eval_every,
                                               checkpoint_every=checkpoint_every, log_every=log_every),
                                 eval_fn_factory=factory, recipe_overrides=overrides, overwrite=force, fresh=fresh,
                                 resume=resume, report=_note, seeds=seed_list, device=device, precision=precision,
                                 compile=compile_, save_every=save_every)
    except KeyboardInterrupt as e:
        _interrupted(ctx, e)
    _print_stored(stored, as_json, run_id=_run_id(stored, seed_list))


@handles_errors
def eval_cmd(
    ref: str = typer.Argument(..., help="A diffusion module or policy id (or folder)."),
    episodes: int = typer.Option(10, "--episodes", "-n", min=1),
    seed: int = typer.Option(0, "--seed"),
    no_write: bool = typer.Option(False, "--no-write", help="Do not record the result on the card."),
    device: str = typer.Option("cpu", "--device", help="Where the policy computes: " + DEVICE_HELP),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Processes rolling out blocks of episodes in "
                                "parallel (the same numbers as one process)."),
    compile_: bool = typer.Option(False, "--compile", help="Compile the policy's action selection (torch.compile: "
                                  "~20 s, then ~1.2x; float rounding differs, so the episodes differ from eager)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Run a policy in its pybullet task: mean and std return, normalised score (written to the card)."""
    from hub.evaluation import evaluate

    r = evaluate(ref, episodes=episodes, seed=seed, write=not no_write, progress=not as_json, device=device,
                 workers=workers, compile=compile_)
    if as_json:
        emit_json({"id": ref, **r})
        return
    out.print(f"{ref}: return {r['return_mean']:.1f} +- {r['return_std']:.1f} over {episodes} episodes, "
              f"normalised score {r['normalized_score']:.1f} ({r['sampling']}"
              + (f", scored by {r['guidance']}" if r["guidance"] else "") + ")", markup=False, highlight=False)
    if r["written"]:
        out.print(f"  added to the card's evaluations (`mdhub show {ref}`)", markup=False, highlight=False)


@handles_errors
def check_cmd(
    guidance: str = typer.Argument(..., help="Guidance module id."),
    diffusion: str = typer.Argument(..., help="Diffusion module id, or a backbone architecture id (training)."),
    mode: str = typer.Option("resample", "--mode", help=f"{' | '.join(mode_names('training'))} (training); "
                             f"{' | '.join(mode_names('sampling'))} (sampling)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Can GUIDANCE steer DIFFUSION in MODE? The checks, their results and the adapters it would apply.

    Exit code 0: COMPATIBLE; 3: INCOMPATIBLE (the report says why); 1: the check could not run (e.g. no such
    module)."""
    from hub.api import check

    report = check(guidance, diffusion, mode)
    if as_json:
        emit_json(report.as_dict())
    else:
        out.print(report.table(), highlight=False, markup=False)
    if not report.compatible:
        raise typer.Exit(EXIT_INCOMPATIBLE)


@handles_errors
def combine_cmd(
    guidance: str | None = typer.Option(None, "--guidance", "-g", help="Guidance id (training guidance of record; "
                                        "also the sampling one unless --infer-guidance)."),
    diffusion: str = typer.Option(..., "--diffusion", "-d", help="Diffusion module id, or with --train a backbone "
                                  "architecture id (see `mdhub registry`)."),
    infer_guidance: str | None = typer.Option(None, "--infer-guidance", help="Another guidance for sampling "
                                              "(double guidance)."),
    mode: SamplingModeChoice = typer.Option("resample", "--mode", help="Sampling mode (the mode table; "
                                            "`mdhub registry` describes each)."),
    candidates: int | None = typer.Option(None, "--candidates", "-N", help="Candidates per state (resample, "
                                          "self, cfg; default 50)."),
    rule: RuleChoice | None = typer.Option(None, "--rule", help="How one candidate is kept (resample, self, "
                                           "cfg; default argmax)."),
    rho: float | None = typer.Option(None, "--rho", help="Guidance scale (gradient, self; default 1)."),
    w: float | None = typer.Option(None, "--w", help="CFG weight (cfg; default 1.2)."),
    temperature: float | None = typer.Option(None, "--temperature", help="Sampling noise scale (0: "
                                             "deterministic; default 1)."),
    train: bool = typer.Option(False, "--train", help="Train the diffusion part under the frozen guidance first."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset for --train."),
    steps: int = typer.Option(5000, "--steps", min=1, help="Training steps for --train."),
    hidden: int | None = typer.Option(None, "--hidden", help="Hidden width for --train."),
    seed: int = typer.Option(0, "--seed"),
    eval_episodes: int = typer.Option(0, "--eval-episodes", min=0, help="Evaluate the result over N episodes."),
    module_id: str | None = typer.Option(None, "--id", help="Store id of the resulting policy card."),
    force: bool = typer.Option(False, "--force", help="Replace different modules already stored under the ids."),
    device: str = typer.Option("cpu", "--device", help="Where --train and the evaluation compute: " + DEVICE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Recombine a guidance with a diffusion policy: check, (train), (evaluate), and store a policy card.

    Examples: cross-algorithm transfer (an IDQL-recipe guidance steering a DQL actor), double guidance
    (--infer-guidance), or guidance-first training of a backbone (--train --dataset ID --diffusion dql_mlp).
    """
    from hub.combine import TrainSpec, combine

    spec = None
    if train:
        if not dataset:
            raise typer.BadParameter("--train needs --dataset")
        spec = TrainSpec(dataset=dataset, steps=steps, seed=seed, hidden=hidden)
    given = {"n_candidates": candidates, "rule": rule.value if rule else None, "rho": rho, "w": w,
             "temperature": temperature}
    settings: dict[str, Any] = {k: v for k, v in given.items() if v is not None}  # the mode's own defaults for the rest
    policy = combine(guidance, diffusion, mode=mode.value, infer_guidance=infer_guidance, train=spec,
                     module_id=module_id, save=True, overwrite=force, device=device, **settings)
    evaluation = None
    if eval_episodes:
        from hub.evaluation import evaluate

        evaluation = evaluate(policy.card.id, episodes=eval_episodes, progress=not as_json, device=device)
    p = policy.card.policy
    assert p is not None  # a policy card has its policy section
    if as_json:
        emit_json({"id": policy.card.id, "mode": p.mode, "settings": dict(p.params), "adapters": list(p.adapters),
                   "parts": {role: ref.id if ref else None for role, ref in (
                       ("diffusion", p.diffusion), ("train_guidance", p.train_guidance),
                       ("infer_guidance", p.infer_guidance))},
                   "report": policy.report.as_dict(),
                   "train_report": policy.train_report.as_dict() if policy.train_report else None,
                   "evaluation": evaluation})
        return
    if policy.train_report is not None:
        out.print(policy.train_report.table(), highlight=False, markup=False)
    out.print(policy.report.table(), highlight=False, markup=False)
    if evaluation is not None:
        out.print(f"return {evaluation['return_mean']:.1f} +- {evaluation['return_std']:.1f}, "
                  f"normalised score {evaluation['normalized_score']:.1f}", highlight=False, markup=False)
    out.print(f"stored policy [bold]{escape(policy.card.id)}[/] (parts: {escape(p.diffusion.id)}"
              + (f", {escape(p.infer_guidance.id)}" if p.infer_guidance else "") + ")")


def register(app: typer.Typer) -> None:
    """Mount `train` (guidance, diffusion) and add eval, check and combine to `app`."""
    app.add_typer(train_app, name="train")
    app.command("eval")(eval_cmd)
    app.command("check")(check_cmd)
    app.command("combine")(combine_cmd)
