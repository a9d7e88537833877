"""`mdhub data`: make, list and describe the offline datasets in the store (``$MDHUB_HOME/datasets``).

hub.datasets (numpy, the envs) is imported inside the commands only.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from hub.cli.errors import handles_errors

data_app = typer.Typer(
    help="Offline datasets made locally from pybullet (no downloads): ids '<env>-bullet-<quality>' with env in "
    "hopper, halfcheetah, walker2d, ant and quality in random, medium, medium-replay, expert, medium-expert (medium "
    "and expert sampled from the policy), medium-det, expert-det, medium-expert-det (deterministic), mixed, tiny; "
    "and 2D toys 'toy-8gaussians', 'toy-spiral'. Stored as .npz under $MDHUB_HOME/datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _print_json(result: Any, summary_of: str | None = None) -> None:
    """A command's result (a dataclass) as one JSON document on stdout; paths as strings; with `summary_of`, the
    dataset's summary (`data info --json` keys) under "summary"."""
    from dataclasses import asdict

    doc = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}
    if summary_of is not None:
        from hub import datasets as store

        doc["summary"] = store.dataset_summary(summary_of)
    typer.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


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
                                           "(default 100000; tiny 2000; toys 10000; medium-replay and mixed: the "
                                           "SAC replay buffer up to the medium point). medium-expert has this "
                                           "many of each part. The reference "
                                           "datasets used 1000000."),
    seed: int = typer.Option(0, "--seed", "-s", help="Seed of env resets and policy noise: same seed, same data "
                             "(same sha256)."),
    force: bool = typer.Option(False, "--force", "-f", help="Remake the dataset even if the store has it (replacing "
                               "it; stored modules trained on replaced data are named)."),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, help="Worker processes stepping envs "
                                       "(default: up to 2 for 10000+ transitions). Does not change the data."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (what was done, and the dataset's "
                                 "summary) instead of text; progress goes to stderr."),
) -> None:
    """Make a dataset (with a progress bar) and save it to the store.

    A dataset already in the store is kept unless --force. With --force it is remade; when its content (sha256)
    changes, the stored modules trained on the old data are named: they now point at data no longer in the store."""
    from hub import datasets as store

    out = store.make_in_store(dataset_id, transitions=transitions, seed=seed, force=force, progress=not quiet,
                              workers=workers)
    if as_json:
        return _print_json(out, summary_of=dataset_id)
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
            base = quality.removesuffix("-det")
            if base in ("medium", "mixed", "medium-expert"):
                reasons.append("a trained SAC policy (see modules/data/policies)")
            if base == "medium-replay":
                reasons.append("the replay buffer of a SAC run (see modules/data/policies)")
            if base in ("expert", "medium-expert") and env not in EXPERT_ENVS:
                reasons.append("an expert policy (pybullet's does not transfer; or a shipped SAC expert)")
            return "needs " + " and ".join(reasons)

        rows = [(f"{e}-bullet-{q}", ok, "can be made" if ok else why(e, q))
                for e in ENVS for q, ok in availability(e).items() if q in QUALITIES]
        rows += [(f"toy-{n}", True, "can be made") for n in TOY_NAMES]
        if as_json:
            typer.echo(json.dumps({i: ok for i, ok, _ in rows}, indent=2))
            return
        width = max(len(i) for i, _, _ in rows)
        for i, _, note in rows:
            typer.echo(f"{i:{width}} {note}")
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
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (what was done, and the dataset's "
                                 "summary) instead of text; progress goes to stderr."),
) -> None:
    """Relabel SRC's rewards with a registered reward function into a new dataset NEW."""
    from hub import datasets as store

    path = store.relabel(source, reward, new_id, force=force)
    summary = store.dataset_summary(path.stem)
    if as_json:
        typer.echo(json.dumps({"dataset_id": path.stem, "path": str(path), "source": source,
                               "reward": summary["reward"], "summary": summary}, indent=2, sort_keys=True, default=str))
        return
    typer.echo(f"made {path.stem} from {source} with reward {summary['reward']}: {path}")
    for line in _episode_lines(summary):
        typer.echo("  " + line)


# --- import, push, pull --------------------------------------------------------------------------------------------
import_app = typer.Typer(
    help="Import a dataset you already have into the store: a D4RL-style HDF5 file (needs h5py) or a local Minari "
    "dataset (needs minari). Extras: pip install 'modular-diffusion-hub[hdf5,minari]'.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app.add_typer(import_app, name="import")


def _report_import(out: Any, what: str, as_json: bool = False) -> None:
    from hub import datasets as store

    if as_json:
        return _print_json(out, summary_of=out.dataset_id)
    verb = {"stored": "imported", "unchanged": "imported (same content as the stored one, sha256 unchanged)",
            "replaced": "imported (the previous file with other content was replaced)"}[out.action]
    typer.echo(f"{verb} {what} as {out.dataset_id}")
    for line in _summary_lines(store.dataset_info(out.dataset_id)):
        typer.echo("  " + line)
    if out.orphaned:
        typer.echo(f"warning: {out.path}: replaced data that {len(out.orphaned)} stored module(s) were trained on: "
                   f"{store.format_ids(out.orphaned)}", err=True)


@import_app.command("d4rl")
@handles_errors
def import_d4rl_cmd(
    path: str = typer.Argument(..., metavar="PATH", help="A D4RL-style .hdf5 file (observations, actions, rewards, "
                               "terminals[, timeouts, next_observations])."),
    dataset_id: str = typer.Option(..., "--id", help="Store id for the dataset (lower-case letters, digits, '.', "
                                   "'_', '-')."),
    env: str | None = typer.Option(None, "--env", help="The task (hopper, HopperBulletEnv-v0, ...); default: the "
                                   "task whose obs/act dims match. Another name imports without normalised scores."),
    layout: str = typer.Option("auto", "--layout", help="d4rl: rewards on their own row, timeouts flagged; "
                               "d4rl-pybullet: the reward of row i in row i+1, each episode closed by a final-"
                               "observation row, time-limit ends flagged terminal (told apart by --max-episode-steps); "
                               "auto: detected from the file."),
    max_episode_steps: int | None = typer.Option(None, "--max-episode-steps", min=1, help="d4rl-pybullet: the "
                                                 "time limit (default the task's, 1000)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace a stored dataset of this id with other "
                               "content."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (what was done, and the dataset's "
                                 "summary) instead of text; progress goes to stderr."),
) -> None:
    """Import a D4RL-style HDF5 file into the store (verified; written atomically; never replaces other data
    without --force)."""
    from hub import datasets as store
    from modules.data.errors import DatasetError
    from modules.data.importers import LAYOUTS

    if layout not in LAYOUTS:
        raise DatasetError(f"unknown --layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    out = store.import_d4rl(path, dataset_id, env=env, layout=layout, max_episode_steps=max_episode_steps,
                            force=force)
    _report_import(out, path, as_json)


@import_app.command("minari")
@handles_errors
def import_minari_cmd(
    name: str = typer.Argument(..., metavar="NAME_OR_PATH", help="A Minari dataset id in the local Minari root "
                               "($MINARI_DATASETS_PATH, else ~/.minari/datasets), or a dataset folder. Nothing is "
                               "downloaded."),
    dataset_id: str | None = typer.Option(None, "--id", help="Store id (default: the Minari name, lower-cased, "
                                          "'/' -> '-')."),
    env: str | None = typer.Option(None, "--env", help="The task (default: the dataset's env spec)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace a stored dataset of this id with other "
                               "content."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (what was done, and the dataset's "
                                 "summary) instead of text; progress goes to stderr."),
) -> None:
    """Import a local Minari dataset into the store (flat Box observations; episodes joined, terminations and
    truncations kept apart)."""
    from hub import datasets as store

    out = store.import_minari(name, dataset_id, env=env, force=force)
    _report_import(out, f"minari:{name}", as_json)


@data_app.command("push")
@handles_errors
def push_cmd(
    dataset_id: str = typer.Argument(..., metavar="ID", help="A dataset id in the store."),
    repo: str = typer.Argument(..., metavar="REPO_ID", help="A Hub dataset repository: NAMESPACE/NAME, "
                               "hf://NAMESPACE/NAME or file:///ABS/ROOT::NAMESPACE/NAME."),
    revision: str | None = typer.Option(None, "--revision", help="Branch to commit to (default main; created "
                                        "from main if new)."),
    private: bool = typer.Option(False, "--private", help="Create the repository private (a new one only)."),
    license: str = typer.Option("mit", "--license", help="The dataset card's license."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (what was done, and the dataset's "
                                 "summary) instead of text; progress goes to stderr."),
) -> None:
    """Push a stored dataset to a Hub dataset repository in ONE commit: dataset.npz, metadata.json, README.md (a
    dataset card)."""
    from hub import datasets as store

    res = store.push(dataset_id, repo, revision=revision, private=private, license=license)
    if as_json:
        return _print_json(res)
    typer.echo(f"pushed {res.dataset_id} to {res.repo} (branch {res.revision}, commit {res.commit})")
    typer.echo(f"  files: {', '.join(res.files)}")
    typer.echo(f"  {res.url}")


@data_app.command("pull")
@handles_errors
def pull_cmd(
    repo: str = typer.Argument(..., metavar="REPO_ID[@REVISION]", help="A Hub dataset repository, at a branch or "
                               "a 40-hex commit (default main)."),
    dataset_id: str | None = typer.Option(None, "--id", help="Store id (default: the dataset's own id)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace a stored dataset of this id with other "
                               "content."),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds the whole pull may take (default "
                                         "$MDHUB_PULL_TIMEOUT, else 600)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (what was done, and the dataset's "
                                 "summary) instead of text; progress goes to stderr."),
) -> None:
    """Pull a dataset from a Hub dataset repository: sizes and sha256 verified before anything is stored; the
    stored metadata records the exact commit."""
    from hub import datasets as store

    res = store.pull(repo, dataset_id=dataset_id, force=force, timeout=timeout)
    if as_json:
        return _print_json(res, summary_of=res.dataset_id)
    verb = {"stored": "pulled", "unchanged": "pulled (same content as the stored one)",
            "replaced": "pulled (replacing other content)"}[res.action]
    typer.echo(f"{verb} {res.repo} as {res.dataset_id} (commit {res.commit}, sha256 {res.sha256[:12]})")
    typer.echo(f"  {res.path}")


def register(app: typer.Typer) -> None:
    """Mount `data` (make, list, info) on `app`."""
    app.add_typer(data_app, name="data")
