"""A sweep spec expanded into its job graph: guidance jobs -> diffusion jobs -> combine jobs -> evaluation jobs.

A job's identity is the hash of its inputs: its spec entry (the arm, the combination, the evaluation settings), the
sweep's name, the dataset's sha256 and its parent jobs' identities. The module ids a job stores carry the first 8
hex digits of its identity (`<sweep>-<arm>-<id8>-s<seed>`): a changed arm trains new modules under new ids, and
everything that depends on it (only that) gets new identities too. Everything a spec can get wrong beyond its schema
(unknown arms, cycles, seeds an arm lacks, recipes without the guidance they need, and every pairing the compatibility
check refuses) is found here, before any job runs: one SpecError line naming the spec path.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cards import DatasetRef, GuidanceSpec, Interface, ModuleCard, Origin, ValueStats
from hub.algos import DIFFUSION_ALGOS, GUIDANCE_ALGOS
from hub.errors import MdhubError
from hub.modes.base import Phase
from hub.sweeps.spec import DiffusionArm, GuidanceArm, Resources, SpecError, Stage, SweepSpec

STAGE_ORDER: dict[str, int] = {"guidance": 0, "diffusion": 1, "combine": 2, "evaluate": 3}


@dataclass
class Job:
    """One call of the Python API. `payload` is all the job function needs (JSON); `meta` is for the leaderboard."""

    id: str
    kind: str  # guidance | diffusion | combine | evaluate | curve (the function in hub.sweeps.jobs)
    stage: Stage
    name: str
    deps: list[str]
    payload: dict[str, Any]
    resources: Resources
    outputs: list[str] = field(default_factory=list)  # module ids it stores (not counting checkpoint modules)
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "stage": self.stage, "name": self.name, "deps": list(self.deps),
                "outputs": list(self.outputs), "resources": self.resources.model_dump(), "payload": self.payload}


@dataclass
class Member:
    """One seed of an arm: the job that trains it and the module ids it stores."""

    job: str
    critic: str | None  # a guidance module (a guidance arm, or a joint arm's critic)
    actor: str | None  # a diffusion module
    critic_arch: str | None = None
    train_critic: tuple[str, int] | None = None  # (arm, seed) of the frozen guidance it trained under
    backbone: str | None = None  # the diffusion architecture (diffusion arms)


@dataclass
class Graph:
    spec: SweepSpec
    source: str
    jobs: dict[str, Job]
    datasets: dict[str, dict[str, Any]]
    members: dict[tuple[str, int], Member]

    def ordered(self) -> list[Job]:
        """By stage; within the evaluation stage the final evaluations before the learning curves, so that a grid
        interrupted late has its final scores (a curve is 10 checkpoint evaluations of one seed)."""
        return sorted(self.jobs.values(), key=lambda j: (STAGE_ORDER[j.stage], j.kind == "curve"))

    def describe(self) -> list[str]:
        """One line per job: stage, short id, name, the jobs it waits for."""
        lines = []
        for j in self.ordered():
            deps = f"  <- {', '.join(d[:8] for d in j.deps)}" if j.deps else ""
            lines.append(f"{j.stage:<9} {j.id[:8]}  {j.name}{deps}")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.spec.name, "source": self.source,
                "datasets": {k: v.get("sha256") for k, v in self.datasets.items()},
                "jobs": [j.as_dict() for j in self.ordered()]}


def identity(doc: dict[str, Any]) -> str:
    """The job identity: sha256 of the canonical JSON of its inputs (16 hex digits)."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dataset_interface(meta: dict[str, Any] | None, dataset_id: str) -> Interface:
    """The interface modules trained on a dataset will have (from its stored metadata; placeholders when the dataset
    is not made yet, in a dry run)."""
    if not meta:
        return Interface(obs_dim=1, act_dim=1, dataset=DatasetRef(id=dataset_id))
    return Interface(obs_dim=int(meta["obs_dim"]), act_dim=int(meta["act_dim"]), obs_normalised=True,
                     env_id=meta.get("gym_id") or meta.get("env"),
                     dataset=DatasetRef(id=dataset_id, sha256=meta.get("sha256")))


def planned_critic(name: str, algo: str, iface: Interface) -> ModuleCard:
    """The card a guidance arm's (or a joint arm's) critic will have, as far as the compatibility check reads it."""
    from hub.registry import registry
    from modules.train.recipes import get_recipe

    recipe = get_recipe(GUIDANCE_ALGOS[algo])
    assert recipe.critic_arch is not None
    arch = registry().get(recipe.critic_arch, kind="guidance")
    return ModuleCard(
        id=f"{name}-planned", kind="guidance", architecture=arch.id, interface=iface,
        origin=Origin(algorithm=recipe.algorithm, recipe=recipe.recipe),
        guidance=GuidanceSpec(provides=list(arch.provides), discount=recipe.discount,
                              expectile=recipe.expectile if recipe.critic_update == "iql" else None,
                              value_stats=ValueStats(mean=0.0, std=1.0, min=-1.0, max=1.0)))


class _Expander:
    def __init__(self, spec: SweepSpec, source: str, datasets: dict[str, dict[str, Any] | None]):
        self.spec, self.source, self.meta = spec, source, datasets
        self.jobs: dict[str, Job] = {}
        self.members: dict[tuple[str, int], Member] = {}
        self.where: dict[str, str] = {}  # arm name -> its spec path (guidance[i] / diffusion[i])
        self.guidance = {a.name: a for a in spec.guidance}
        self.diffusion = {a.name: a for a in spec.diffusion}

    def fail(self, path: str, msg: str) -> SpecError:
        return SpecError(f"{self.source}: {path}: {msg}")

    # --- names, datasets, references ------------------------------------------------------------------------------
    def check_names(self) -> None:
        ids = [d.id for d in self.spec.datasets]
        for i, d in enumerate(self.spec.datasets):
            if ids.index(d.id) != i:
                raise self.fail(f"datasets[{i}].id", f"'{d.id}' is listed twice")
        for kind, arms in (("guidance", self.spec.guidance), ("diffusion", self.spec.diffusion)):
            for i, arm in enumerate(arms):
                if arm.name in self.where:
                    raise self.fail(f"{kind}[{i}].name", f"the name '{arm.name}' is taken by {self.where[arm.name]}")
                self.where[arm.name] = f"{kind}[{i}]"
                ds = arm.dataset or ids[0]
                if ds not in ids:
                    raise self.fail(f"{kind}[{i}].dataset", f"'{ds}' is not one of the sweep's datasets "
                                    f"({', '.join(ids)})")

    def dataset_of(self, arm: GuidanceArm | DiffusionArm) -> str:
        return arm.dataset or self.spec.datasets[0].id

    def critic_arm(self, name: str, path: str) -> tuple[str, str]:
        """(kind 'guidance' | 'joint', critic algo) of an arm that provides a guidance; errors name `path`."""
        if name in self.guidance:
            return "guidance", self.guidance[name].algo
        if name in self.diffusion:
            d = self.diffusion[name]
            if d.guidance.kind == "joint":
                return "joint", "dql"
            raise self.fail(path, f"'{name}' is a diffusion arm without a critic of its own (only joint arms train "
                            "one); name a guidance arm or a joint arm")
        known = [*self.guidance, *(n for n, a in self.diffusion.items() if a.guidance.kind == "joint")]
        raise self.fail(path, f"no arm '{name}' to take a guidance from (arms with a critic: "
                        f"{', '.join(known) or 'none'})")

    def check_cycles(self) -> None:
        """Diffusion arms trained under another arm's critic form a graph; a cycle can never start."""
        edges = {n: a.guidance.arm for n, a in self.diffusion.items() if a.guidance.kind == "frozen"}
        for start in edges:
            path, node = [start], edges[start]
            while node is not None and node in edges:
                if node in path:
                    loop = path[path.index(node):] + [node]
                    raise self.fail(f"{self.where[start]}.guidance", f"a cycle: {' -> '.join(loop)}")
                path.append(node)
                node = edges[node]

    def seed_of(self, arm: str, seed: int | str, own: int, path: str) -> int:
        """The seed of `arm` that pairs with seed `own`: same, other (the next of the arm's seeds), or fixed."""
        seeds = self.arm_seeds(arm)
        if seed == "same":
            if own not in seeds:
                raise self.fail(path, f"seed {own} is not a seed of arm '{arm}' (seeds {_seeds(seeds)}); pair them "
                                "with {arm: NAME, seed: N}")
            return own
        if seed == "other":
            if len(seeds) < 2:
                raise self.fail(path, f"seed 'other' needs an arm with two seeds or more; '{arm}' has "
                                f"{_seeds(seeds)}")
            base = own if own in seeds else seeds[0]
            return seeds[(seeds.index(base) + 1) % len(seeds)]
        assert isinstance(seed, int)
        if seed not in seeds:
            raise self.fail(path, f"seed {seed} is not a seed of arm '{arm}' (seeds {_seeds(seeds)})")
        return seed

    def arm_seeds(self, arm: str) -> list[int]:
        a = self.guidance.get(arm) or self.diffusion[arm]
        return list(a.seeds)

    # --- recipes and compatibility --------------------------------------------------------------------------------
    def check_overrides(self, recipe_name: str, overrides: dict[str, Any], path: str) -> None:
        import difflib

        from pydantic import ValidationError

        from modules.train.recipes import Recipe, get_recipe

        structural = {"name", "algorithm", "recipe", "critic_update", "critic_arch", "diffusion_update", "backbone",
                      "needs_guidance", "steps", "batch_size"}
        allowed = sorted(set(Recipe.model_fields) - structural)
        for key in overrides:
            if key not in allowed:
                near = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                raise self.fail(f"{path}.{key}", f"not a recipe setting{hint}; settings: {', '.join(allowed)} "
                                "(steps and batch_size are arm fields)")
        try:
            get_recipe(recipe_name).with_overrides(**overrides)
        except ValidationError as e:
            first = e.errors()[0]
            key = ".".join(str(x) for x in first.get("loc", ()))
            raise self.fail(f"{path}.{key}", f"{first.get('msg', 'invalid')} (got {first.get('input')!r})") from None

    def interface(self, dataset: str) -> Interface:
        return dataset_interface(self.meta.get(dataset), dataset)

    def critic_card(self, arm: str) -> ModuleCard:
        kind, algo = self.critic_arm(arm, self.where.get(arm, arm))
        a = self.guidance.get(arm) or self.diffusion[arm]
        return planned_critic(arm, algo, self.interface(self.dataset_of(a)))

    def check_pairing(self, g: ModuleCard | None, backbone: str, mode: str, dataset: str, path: str,
                      phase: Phase = "sampling", settings: Any = None) -> None:
        from hub.compat import check

        report = check(g, backbone, mode, dataset_card=self.interface(dataset), phase=phase, settings=settings)
        if not report.compatible:
            who = f"arm '{g.id.removesuffix('-planned')}'" if g is not None else "no guidance"
            raise self.fail(path, f"{who} cannot steer '{backbone}' in mode '{mode}' ({phase}): "
                            + "; ".join(report.reasons()))

    # --- jobs -----------------------------------------------------------------------------------------------------
    def add(self, kind: str, stage: Stage, name: str, doc: dict[str, Any], deps: list[str], payload: dict[str, Any],
            resources: Resources, meta: dict[str, Any] | None = None) -> Job:
        jid = identity({"kind": kind, "sweep": self.spec.name, **doc, "deps": sorted(deps)})
        payload = {**payload, "device": self.spec.device, "threads": max(1, int(resources.num_cpus)),
                   "remote": self.spec.remote}
        job = Job(jid, kind, stage, name, sorted(set(deps)), payload, resources, meta=meta or {})
        self.jobs[jid] = job
        return job

    def prefix(self, arm: str, jid: str) -> str:
        return f"{self.spec.name}-{arm}-{jid[:8]}"

    def dataset_doc(self, dataset: str) -> dict[str, Any]:
        spec = next(d for d in self.spec.datasets if d.id == dataset)
        meta = self.meta.get(dataset)
        return {"id": dataset, "sha256": meta.get("sha256") if meta else f"to be made: {spec.model_dump_json()}"}

    def training_payload(self, arm: GuidanceArm | DiffusionArm, seeds: list[int]) -> dict[str, Any]:
        return {"algo": arm.algo, "dataset": self.dataset_of(arm), "steps": arm.steps, "seeds": seeds,
                "overrides": dict(arm.overrides), "hidden": arm.hidden, "batch_size": arm.batch_size,
                "save_every": arm.save_every, "precision": self.spec.precision, "compile": self.spec.compile}

    def guidance_jobs(self) -> None:
        from modules.train.recipes import get_recipe

        for i, arm in enumerate(self.spec.guidance):
            self.check_overrides(GUIDANCE_ALGOS[arm.algo], arm.overrides, f"guidance[{i}].overrides")
            ds = self.dataset_of(arm)
            doc = {"arm": arm.model_dump(mode="json", exclude={"resources"}), "dataset": self.dataset_doc(ds),
                   "precision": self.spec.precision}
            job = self.add("guidance", "guidance", f"guidance {arm.name} ({arm.algo}, seeds {_seeds(arm.seeds)})",
                           doc, [], self.training_payload(arm, list(arm.seeds)),
                           self.spec.resources_for("guidance", arm), {"arm": arm.name})
            prefix = self.prefix(arm.name, job.id)
            job.payload["module_id"] = prefix
            joint = get_recipe(GUIDANCE_ALGOS[arm.algo]).backbone is not None
            for s in arm.seeds:
                m = Member(job.id, f"{prefix}-s{s}", f"{prefix}-s{s}-actor" if joint else None,
                           critic_arch=get_recipe(GUIDANCE_ALGOS[arm.algo]).critic_arch)
                self.members[(arm.name, s)] = m
                job.outputs += [x for x in (m.critic, m.actor) if x]

    def diffusion_order(self) -> list[tuple[int, DiffusionArm]]:
        """Diffusion arms, each after the arm whose critic it trains under."""
        done: set[str] = set()
        out: list[tuple[int, DiffusionArm]] = []
        todo = list(enumerate(self.spec.diffusion))
        while todo:
            for k, (i, a) in enumerate(todo):
                ref = a.guidance.arm if a.guidance.kind == "frozen" else None
                if ref is None or ref in self.guidance or ref in done:
                    out.append((i, a))
                    done.add(a.name)
                    todo.pop(k)
                    break
            else:  # pragma: no cover - check_cycles and critic_arm refuse such specs first
                raise MdhubError("diffusion arms reference each other in a cycle")
        return out

    def diffusion_jobs(self) -> None:
        from hub.modes import DEFAULT_PAIRING, training_mode_for
        from hub.registry import registry
        from modules.train.recipes import get_recipe

        for i, arm in self.diffusion_order():
            path = f"diffusion[{i}]"
            ref = arm.guidance
            recipe_name = DIFFUSION_ALGOS[arm.algo]
            if ref.kind == "joint":
                if arm.algo != "dql":
                    raise self.fail(f"{path}.guidance", "joint trains a DQL actor with its critic: use algo dql")
                if arm.backbone is not None:
                    raise self.fail(f"{path}.backbone", "a joint run trains its recipe's own backbone (dql_mlp)")
                recipe_name = GUIDANCE_ALGOS["dql"]
            self.check_overrides(recipe_name, arm.overrides, f"{path}.overrides")
            recipe = get_recipe(recipe_name)
            backbone = arm.backbone or recipe.backbone
            assert backbone is not None
            try:
                arch = registry().get(backbone, kind="diffusion")
            except MdhubError as e:
                raise self.fail(f"{path}.backbone", str(e)) from None
            ds = self.dataset_of(arm)
            base = {"arm": arm.model_dump(mode="json", exclude={"resources"}), "dataset": self.dataset_doc(ds),
                    "precision": self.spec.precision}
            resources = self.spec.resources_for("diffusion", arm)
            if ref.kind == "none":
                if recipe.needs_guidance:
                    raise self.fail(f"{path}.guidance", f"algo '{arm.algo}' trains under a frozen guidance: name a "
                                    "guidance arm" + (" (or joint)" if arm.algo == "dql" else ""))
                self.diffusion_group(arm, arm.seeds, base, [], None, resources, backbone)
                continue
            if ref.kind == "joint":
                self.diffusion_group(arm, arm.seeds, base, [], None, resources, backbone, joint=True)
                continue
            assert ref.arm is not None
            self.critic_arm(ref.arm, f"{path}.guidance")
            mode = training_mode_for(recipe.diffusion_update)
            assert mode is not None
            phase: Phase
            pairing, phase = (mode.name, "training") if mode.needs else (DEFAULT_PAIRING, "sampling")
            if arm.backbone is not None and mode.name not in arch.train_guidance:
                raise self.fail(f"{path}.backbone", f"'{arch.id}' does not train in mode '{mode.name}' (it accepts: "
                                f"{', '.join(arch.train_guidance)})")
            self.check_pairing(self.critic_card(ref.arm), backbone, pairing, ds, f"{path}.guidance", phase)
            pairs = {s: (ref.arm, self.seed_of(ref.arm, ref.seed, s, f"{path}.guidance")) for s in arm.seeds}
            if len(set(pairs.values())) == 1 or mode.name == "q_loss":
                # one batched job: all seeds under one guidance, or (q_loss) each seed under its own, stacked
                self.diffusion_group(arm, list(arm.seeds), base, sorted(set(pairs.values())), pairs, resources,
                                     backbone)
            else:  # a labels mode with one guidance per seed: the labels differ, so a job per seed
                for s in arm.seeds:
                    self.diffusion_group(arm, [s], base, [pairs[s]], {s: pairs[s]}, resources, backbone)

    def diffusion_group(self, arm: DiffusionArm, seeds: list[int], base: dict[str, Any],
                        parents: list[tuple[str, int]], under: dict[int, tuple[str, int]] | None,
                        resources: Resources, backbone: str, joint: bool = False) -> None:
        """One training job for `seeds` of `arm`; `under` maps each seed to the (guidance arm, seed) it trains under
        (one guidance for all: a single id; one per seed: a list, stacked in one batched run)."""
        deps = list(dict.fromkeys(self.members[p].job for p in parents))
        guides = [under[s] for s in seeds] if under else []
        one = len(set(guides)) == 1
        guidance: str | list[str | None] | None = None
        if guides:
            guidance = self.members[guides[0]].critic if one else [self.members[g].critic for g in guides]
        payload = {**self.training_payload(arm, seeds), "joint": joint, "backbone": arm.backbone,
                   "guidance": guidance}
        doc = {**base, "seeds": seeds,
               "guidance": (list(guides[0]) if one else [list(g) for g in guides]) if guides else arm.guidance.kind}
        how = ((f"under {guides[0][0]} s{guides[0][1]}" if one else
                f"under {guides[0][0]} s{','.join(str(g[1]) for g in guides)}") if guides else arm.guidance.kind)
        job = self.add("diffusion", "diffusion", f"diffusion {arm.name} ({arm.algo} {how}, seeds {_seeds(seeds)})",
                       doc, deps, payload, resources, {"arm": arm.name})
        prefix = self.prefix(arm.name, job.id)
        job.payload["module_id"] = prefix
        for s in seeds:
            m = Member(job.id, f"{prefix}-s{s}" if joint else None, f"{prefix}-s{s}-actor" if joint else
                       f"{prefix}-s{s}", critic_arch="dql" if joint else None,
                       train_critic=under[s] if under else None, backbone=backbone)
            self.members[(arm.name, s)] = m
            job.outputs += [x for x in (m.critic, m.actor) if x]
            if arm.save_every:
                self.curve_job(arm, s, job, m)

    def curve_job(self, arm: DiffusionArm, seed: int, parent: Job, m: Member) -> None:
        ev = self.spec.evaluation
        episodes = ev.curve_episodes or ev.episodes
        assert m.actor is not None
        doc = {"run": m.actor, "episodes": episodes, "seed": ev.seeds[0], "max_steps": ev.max_steps}
        self.add("curve", "evaluate", f"curve {arm.name} s{seed} ({episodes} episodes per checkpoint)", doc,
                 [parent.id], {"module_id": m.actor, "episodes": episodes, "seed": ev.seeds[0],
                               "max_steps": ev.max_steps},
                 self.spec.resources_for("evaluate"), {"arm": arm.name, "seed": seed})

    def combination_jobs(self) -> None:
        from hub.modes import SamplingConfig

        ev = self.spec.evaluation
        for i, c in enumerate(self.spec.combinations):
            path = f"combinations[{i}]"
            if c.diffusion not in self.diffusion:
                known = ", ".join(self.diffusion) or "none"
                raise self.fail(f"{path}.diffusion", f"no diffusion arm '{c.diffusion}' (diffusion arms: {known})")
            arm = self.diffusion[c.diffusion]
            try:
                cfg = SamplingConfig(c.mode, **c.settings)
            except MdhubError as e:
                raise self.fail(f"{path}.settings", str(e)) from None
            ref = c.infer_guidance
            train_label = arm.guidance.label()
            infer_arm: str | None = None
            if ref.kind == "arm":
                assert ref.arm is not None
                self.critic_arm(ref.arm, f"{path}.infer_guidance")
                infer_arm = ref.arm
            elif ref.kind == "same":
                if arm.guidance.kind == "frozen":
                    infer_arm = arm.guidance.arm
                elif arm.guidance.kind == "joint":
                    infer_arm = arm.name
            card = self.critic_card(infer_arm) if infer_arm else None
            backbone = self.members[(arm.name, arm.seeds[0])].backbone
            assert backbone is not None
            self.check_pairing(card, backbone, c.mode, self.dataset_of(arm),
                               f"{path}.mode" if _mode_refused(card, backbone, c.mode) else f"{path}.infer_guidance",
                               settings=cfg.params)
            name = c.name or f"c{i}"
            for s in arm.seeds:
                m = self.members[(arm.name, s)]
                train = m.critic if arm.guidance.kind == "joint" else (
                    self.members[m.train_critic].critic if m.train_critic else None)
                if ref.kind == "arm":
                    assert infer_arm is not None
                    pair = (infer_arm, self.seed_of(infer_arm, ref.seed, s, f"{path}.infer_guidance"))
                    infer: str | None = self.members[pair].critic
                    deps = [m.job, self.members[pair].job]
                    infer_label = infer_arm + ("" if ref.seed == "same" else f"@{ref.seed}")
                else:
                    infer = train if ref.kind == "same" else None
                    deps = [m.job]
                    infer_label = ref.kind
                doc = {"combination": c.model_dump(mode="json", exclude={"name"}), "name": name, "seed": s,
                       "diffusion": m.actor, "train": train, "infer": infer}
                payload = {"guidance": None if ref.kind == "none" else train, "diffusion": m.actor,
                           "infer_guidance": infer if ref.kind == "arm" else None, "mode": c.mode,
                           "settings": dict(c.settings)}
                meta = {"combination": name, "index": i, "seed": s, "arm": arm.name, "backbone": backbone,
                        "algo": arm.algo, "dataset": self.dataset_of(arm), "train_guidance": train_label,
                        "infer_guidance": infer_label, "mode": c.mode, "settings": cfg.settings(),
                        "parts": [x for x in (m.actor, train, infer) if x]}
                job = self.add("combine", "combine", f"combine {name} s{s} ({arm.name} x {infer_label}, {c.mode})",
                               doc, deps, payload, self.spec.resources_for("combine"), meta)
                policy = f"{self.spec.name}-{name}-{job.id[:8]}-s{s}"
                job.payload["module_id"] = policy
                job.outputs.append(policy)
                for es in ev.seeds:
                    edoc = {"policy": policy, "episodes": ev.episodes, "seed": es, "max_steps": ev.max_steps}
                    self.add("evaluate", "evaluate", f"evaluate {name} s{s} (eval seed {es})", edoc, [job.id],
                             {"module_id": policy, "episodes": ev.episodes, "seed": es, "max_steps": ev.max_steps},
                             self.spec.resources_for("evaluate"), {**meta, "policy": policy, "eval_seed": es})


def _mode_refused(card: ModuleCard | None, backbone: str, mode: str) -> bool:
    """Whether the compatibility check refuses the mode itself (not the guidance) for this backbone."""
    from hub.compat import check

    return any(c.name == "mode" and c.status == "fail" for c in check(card, backbone, mode).checks)


def _seeds(seeds: list[int]) -> str:
    return ",".join(str(s) for s in seeds)


def expand(spec: SweepSpec, source: str, datasets: dict[str, dict[str, Any] | None]) -> Graph:
    """The job graph of `spec` (`datasets`: each dataset id's stored metadata, None when not made yet)."""
    e = _Expander(spec, source, datasets)
    e.check_names()
    e.check_cycles()
    for i, arm in enumerate(spec.diffusion):
        if arm.guidance.kind == "frozen":
            assert arm.guidance.arm is not None
            e.critic_arm(arm.guidance.arm, f"diffusion[{i}].guidance")
    e.guidance_jobs()
    e.diffusion_jobs()
    e.combination_jobs()
    return Graph(spec, source, e.jobs, {k: v or {} for k, v in datasets.items()}, e.members)
