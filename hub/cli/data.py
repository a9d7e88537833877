"""`mdhub data`: make, list and describe the offline datasets in the store (``$MDHUB_HOME/datasets``).

hub.datasets (numpy, the envs) is imported inside the commands only.
"""
from __future__ import annotations

import json
from typing import Any

import typer

from hub.cli.errors import handles_errors

data_app = typer.Typer(
    help="Offline datasets made locally from pybullet (no downloads): ids '<env>-bullet-<quality>' with env in "
    "hopper, halfcheetah, walker2d, ant and quality in random, medium, mixed, expert, medium-expert, tiny; "
    "and 2D toys 'toy-8gaussians', 'toy-spiral'. Stored as .npz under $MDHUB_HOME/datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _fmt_stats(s: dict[str, Any] | None, digits: int = 1) -> str:
    if not s:
        return "-"
    return (f"{s['mean']:.{digits}f} +- {s['std']:.{digits}f} (min {s['min']:.{digits}f}, max {s['max']:.{digits}f}"
            + (f", {s['count']} episodes)" if "count" in s else ")"))


def _summary_lines(meta: dict[str, Any]) -> list[str]:
    gen = meta.get("generator") or {}
    lines = [
        f"id:        {meta.get('dataset_id') or meta.get('id')}",
        f"path:      {meta.get('path', '-')}",
        f"env:       {meta.get('env')} ({meta.get('gym_id') or 'toy'})",
        f"policy:    {meta.get('policy')}",
        f"seed:      {meta.get('seed')}",
        f"size:      {meta.get('size')} transitions (obs_dim {meta.get('obs_dim')}, act_dim {meta.get('act_dim')})",
        f"returns:   {_fmt_stats(meta.get('returns'))}",
        f"normalised score: {_fmt_stats(meta.get('normalized_scores'))}",
        f"sha256:    {meta.get('sha256')}",
    ]
    if gen.get("steps_per_s"):
        lines.append(f"generated: {gen.get('env_steps')} env steps in {gen.get('seconds')} s "
                     f"({gen.get('steps_per_s')} steps/s, {gen.get('workers')} worker(s))")
    if "file_bytes" in meta:
        lines.append(f"file:      {meta['file_bytes'] / 1e6:.1f} MB")
    return lines


@data_app.command("make")
@handles_errors
def make_cmd(
    dataset_id: str = typer.Argument(..., metavar="ID", help="Dataset id, e.g. hopper-bullet-medium, "
                                     "halfcheetah-bullet-expert, hopper-bullet-tiny, toy-8gaussians."),
    transitions: int | None = typer.Option(None, "--transitions", "-n", min=1, help="Number of transitions "
                                           "(default 100000; tiny 2000; toys 10000; mixed: the whole SAC replay "
                                           "buffer). medium-expert has this many of each part. The reference "
                                           "datasets used 1000000."),
    seed: int = typer.Option(0, "--seed", "-s", help="Seed of env resets and policy noise: same seed, same data "
                             "(same sha256)."),
    force: bool = typer.Option(False, "--force", "-f", help="Remake the dataset even if the store has it (replacing "
                               "it; stored modules trained on replaced data are named)."),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, help="Worker processes stepping envs "
                                       "(default: up to 2 for 10000+ transitions). Does not change the data."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Make a dataset (with a progress bar) and save it to the store.

    A dataset already in the store is kept unless --force. With --force it is remade; when its content (sha256)
    changes, the stored modules trained on the old data are named: they now point at data no longer in the store."""
    from hub import datasets as store

    out = store.make_in_store(dataset_id, transitions=transitions, seed=seed, force=force, progress=not quiet,
                              workers=workers)
    if out.action == "kept":
        typer.echo(f"{dataset_id} is already in the store, kept (use --force to remake): {out.path}")
        if out.trained_on:
            typer.echo(f"  {len(out.trained_on)} stored module(s) were trained on it: "
                       f"{store.format_ids(out.trained_on)} (a remake with different content leaves them naming "
                       "data no longer in the store)")
        return
    info = store.dataset_info(dataset_id)
    verb = {"made": "made", "unchanged": "remade (same content, sha256 unchanged)",
            "replaced": "remade (new content, the previous file was replaced)"}[out.action]
    typer.echo(f"{verb} {dataset_id}" if out.action == "made" else f"{dataset_id}: {verb}")
    for line in _summary_lines(info):
        typer.echo("  " + line)
    msg = out.orphan_message()
    if msg:
        typer.echo(f"warning: {msg}", err=True)


@data_app.command("list")
@handles_errors
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    available: bool = typer.Option(False, "--available", "-a", help="List every id `make` understands and whether "
                                   "what it needs (shipped SAC actor, replay buffer, pybullet expert) is here."),
) -> None:
    """List the datasets in the store with their size and returns."""
    if available:
        from modules.data.behaviour import EXPERT_ENVS
        from modules.data.make import QUALITIES, availability
        from modules.data.toy import TOY_NAMES
        from modules.envs import ENVS

        def why(env: str, quality: str) -> str:
            reasons = []
            if quality in ("medium", "mixed", "medium-expert"):
                reasons.append("a trained SAC policy (see modules/data/policies)")
            if quality in ("expert", "medium-expert") and env not in EXPERT_ENVS:
                reasons.append("an expert policy (pybullet's does not transfer)")
            return "needs " + " and ".join(reasons)

        rows = [(f"{e}-bullet-{q}", ok, "can be made" if ok else why(e, q))
                for e in ENVS for q, ok in availability(e).items() if q in QUALITIES]
        rows += [(f"toy-{n}", True, "can be made") for n in TOY_NAMES]
        if as_json:
            typer.echo(json.dumps({i: ok for i, ok, _ in rows}, indent=2))
            return
        for i, _, note in rows:
            typer.echo(f"{i:32} {note}")
        return
    from hub import datasets as store

    recs = store.list_datasets()
    if as_json:
        typer.echo(json.dumps(recs, indent=2, sort_keys=True))
        return
    if not recs:
        typer.echo(f"no datasets in {store.datasets_dir()}; make one with e.g. `mdhub data make hopper-bullet-tiny`")
        return
    header = f"{'id':32} {'size':>9} {'return mean':>12} {'norm. score':>11}  sha256"
    typer.echo(header)
    for r in recs:
        if "error" in r:
            typer.echo(f"{r['id']:32} {'?':>9} {'?':>12} {'?':>11}  unreadable: {r['error']}")
            continue
        ret = r.get("returns") or {}
        ns = r.get("normalized_scores") or {}
        score = f"{ns['mean']:.1f}" if ns else "-"
        typer.echo(f"{r['id']:32} {r.get('size', '?'):>9} {ret.get('mean', float('nan')):>12.1f} {score:>11}  "
                   f"{str(r.get('sha256'))[:12]}")


@data_app.command("info")
@handles_errors
def info_cmd(
    dataset_id: str = typer.Argument(..., metavar="ID", help="A dataset id in the store."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole metadata record as JSON."),
    verify: bool = typer.Option(False, "--verify", help="Also read every array and check the content sha256."),
) -> None:
    """Show a stored dataset: size, policy and its sampling mode, seed, per-episode return, normalised score and
    forward travel (mean +- std, min, max), sha256, and for relabelled data its source and reward.

    --json prints the metadata record plus the stable keys episodes, return_mean, return_std, return_min,
    return_max, score_mean, score_std, score_min, score_max, travel_mean_m, travel_std_m, travel_min_m,
    travel_max_m, policy, sampling, reward, source (None where a figure does not exist, e.g. travel for toys)."""
    from hub import datasets as store

    info = store.dataset_info(dataset_id, verify=verify)
    summary = store.dataset_summary(dataset_id)
    if as_json:
        typer.echo(json.dumps({**info, **summary}, indent=2, sort_keys=True))
        return
    for line in _summary_lines(info):
        typer.echo(line)
    for line in _episode_lines(summary):
        typer.echo(line)
    if verify:
        typer.echo("verified:  arrays and content sha256 OK")


def _episode_lines(s: dict[str, Any]) -> list[str]:
    """Per-episode lines of `mdhub data info` from `hub.datasets.dataset_summary`."""
    def stat(prefix: str, suffix: str = "", unit: str = "", digits: int = 1) -> str:
        if s.get(f"{prefix}_mean{suffix}") is None:
            return "-"
        v = {k: s[f"{prefix}_{k}{suffix}"] for k in ("mean", "std", "min", "max")}
        return (f"{v['mean']:.{digits}f} +- {v['std']:.{digits}f}{unit} (min {v['min']:.{digits}f}, "
                f"max {v['max']:.{digits}f})")

    lines = [
        f"episodes:  {s['episodes']} finished",
        f"sampling:  {s['sampling']}",
        f"per episode: return {stat('return')}",
        f"             normalised score {stat('score')}",
        f"             forward travel {stat('travel', '_m', ' m', 2)}",
    ]
    if s.get("reward"):
        src = s.get("source") or {}
        lines.append(f"relabelled: reward {s['reward']} on {src.get('id')} (sha256 {str(src.get('sha256'))[:12]})")
    return lines


@data_app.command("relabel", help="Make a dataset whose rewards come from a registered reward function of "
                  "(obs, action, next_obs), the source's transitions otherwise. Rewards (modules/data/rewards.py; "
                  "tests check this list against the registry): forward: the task's "
                  "own reward (torso speed for the body's); backward: the same with the speed negated; "
                  "target-speed:V gives -|v - V| (v the forward speed, m/s); energy: -sum(a^2). The new dataset "
                  "records its source's id and sha256 and the reward; it never overwrites (NEW must not exist unless "
                  "--force, and never data that stored modules name).")
@handles_errors
def relabel_cmd(
    source: str = typer.Argument(..., metavar="SRC", help="A dataset id in the store."),
    reward: str = typer.Option(..., "--reward", "-r", help="A registered reward: forward, backward, "
                               "target-speed:V (V in m/s, e.g. target-speed:1.5), energy."),
    new_id: str = typer.Option(..., "--id", help="Id of the new dataset (lower-case letters, digits, '.', '_', "
                               "'-'; not an id `data make` builds)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace NEW if the store has it (refused when stored "
                               "modules were trained on it)."),
) -> None:
    """Relabel SRC's rewards with a registered reward function into a new dataset NEW."""
    from hub import datasets as store

    path = store.relabel(source, reward, new_id, force=force)
    summary = store.dataset_summary(path.stem)
    typer.echo(f"made {path.stem} from {source} with reward {summary['reward']}: {path}")
    for line in _episode_lines(summary):
        typer.echo("  " + line)


def register(app: typer.Typer) -> None:
    """Mount `data` (make, list, info) on `app`."""
    app.add_typer(data_app, name="data")
