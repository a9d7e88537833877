"""Recombination: a frozen guidance steering a diffusion policy, for inference and for training.

    policy = hub.combine("iql-a", "dql-under-iql-a", mode="resample", infer_guidance="iql-b")   # double guidance
    action = policy.act(obs)            # (obs_dim,) or (B, obs_dim)
    policy.save("my-policy")            # a `policy` card: its parts by id + sha256, never copies of weights
    policy = hub.load_policy("my-policy")   # loads the parts, re-checks sha256 and compatibility
    policy = hub.combine(..., device="auto")  # the parts moved once onto a device (cuda when present); act(obs)
                                              # still takes and returns numpy (act_tensor: device tensors)

    hub.combine("idql-g", "dql_mlp", train=TrainSpec(dataset="hopper-bullet-medium", steps=5000))  # guidance-first

Modes come from the mode table (hub.modes): its builder makes the runtime, its declaration drives the checks. The
reverse chain and the candidate scorer are shared (modules.sampling). Evaluation is its own step (hub.evaluation).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, overload

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cards import Interface, ModuleCard, ModuleRef, Origin, PolicySpec
from hub.compat import Report, check
from hub.errors import CompatibilityError, IntegrityError, MdhubError
from hub.modes import SamplingConfig, get_mode, mode_names
from hub.registry import registry
from hub.store import WEIGHTS, Store, StoredModule

if TYPE_CHECKING:
    import torch

    from modules.policy import GuidedPolicy



class TrainSpec(BaseModel):
    """Train the diffusion part under the frozen guidance (guidance-first training as a recombination)."""

    model_config = ConfigDict(extra="forbid")
    dataset: str
    steps: int = Field(default=5000, ge=1)
    seed: int = 0
    mode: str | None = Field(default=None, description="A training mode of the mode table (default: the first the "
                             "backbone accepts: q_loss, then labels, else none).")
    hidden: int | None = None
    batch_size: int | None = None
    module_id: str | None = None

    @field_validator("mode")
    @classmethod
    def _training_mode(cls, mode: str | None) -> str | None:
        if mode is not None:
            get_mode(mode, "training")
        return mode


def sampling_config(mode: str, settings: dict[str, Any]) -> SamplingConfig:
    """Validate sampling settings once, with errors that name the setting (a training mode is pointed to --train)."""
    if get_mode(mode).phases == ("training",):
        raise MdhubError(f"'{mode}' is a training mode: pass train=TrainSpec(..., mode='{mode}') (CLI: --train) and a "
                         f"sampling mode ({', '.join(mode_names('sampling'))})")
    return SamplingConfig(mode, **settings)


def to_device(m: StoredModule | None, device: str | torch.device | None) -> StoredModule | None:
    """Move a loaded module's network onto `device` (in place, once; `auto`, `cpu`, `cuda[:N]`, `mps` or a
    torch.device; None leaves it where it is). Returns the module. DeviceError (one line) where there is none."""
    if m is None or m.net is None or device is None:
        return m
    from modules.device import resolve_device

    m.net.to(resolve_device(device))
    return m


def build_runtime(cfg: SamplingConfig, d: StoredModule, g: StoredModule | None,
                  device: str | torch.device | None = None) -> Any:
    """The policy runtime of a sampling mode: the mode table's builder, with the mode's validated settings. With
    `device`, the parts are moved there first, so the runtime computes on it (act(numpy) moves only the batch)."""
    build = cfg.spec.build
    assert build is not None  # the mode table refuses a sampling mode without `build`
    if device is not None:
        from modules.device import resolve_device

        dev = resolve_device(device)
        to_device(d, dev)
        to_device(g, dev)
    return build(d, g, cfg.params)


@overload
def _module(x: str | StoredModule, store: Store) -> StoredModule: ...


@overload
def _module(x: str | StoredModule | None, store: Store) -> StoredModule | None: ...


def _module(x: str | StoredModule | None, store: Store) -> StoredModule | None:
    if x is None or isinstance(x, StoredModule):
        return x
    return store.load(x)


def _needs_fit_v(report: Report) -> bool:
    return "fit-v" in report.adapters


@dataclass
class CombinedPolicy:
    """A runnable recombination: act(obs), its policy card (lineage), and the compatibility report(s)."""

    card: ModuleCard
    runtime: GuidedPolicy
    report: Report
    parts: dict[str, StoredModule] = field(default_factory=dict)
    train_report: Report | None = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        """obs: (obs_dim,) or (B, obs_dim) -> action (act_dim,) or (B, act_dim)."""
        return self.runtime.act(obs)

    __call__ = act

    @property
    def device(self) -> torch.device:
        """Where the policy computes: its diffusion part's device."""
        from modules.policy import module_device

        d = self.parts.get("diffusion")
        return module_device(d.net) if d is not None and d.net is not None else module_device(self.runtime.model)

    def __repr__(self) -> str:
        p = self.card.policy
        assert p is not None  # a policy card has its policy section
        parts = [f"diffusion={p.diffusion.id!r}"]
        if p.train_guidance:
            parts.append(f"guidance={p.train_guidance.id!r}")
        if p.infer_guidance and (not p.train_guidance or p.infer_guidance.id != p.train_guidance.id):
            parts.append(f"infer_guidance={p.infer_guidance.id!r}")
        settings = ", ".join(f"{k}={v}" for k, v in sorted(p.params.items()))
        return f"CombinedPolicy(id={self.card.id!r}, {', '.join(parts)}, mode={p.mode!r}" + \
            (f", {settings})" if settings else ")")

    def save(self, module_id: str | None = None, store: Store | None = None, overwrite: bool = False) -> StoredModule:
        """Store the policy card (its parts by reference). A different policy under the same id needs `overwrite`."""
        card = self.card if module_id is None else self.card.model_copy(update={"id": module_id})
        saved = (store or Store()).save(None, card, overwrite=overwrite)
        self.card = saved.card
        return saved


def policy_card(module_id: str, d: StoredModule, train_g: ModuleRef | None, infer_g: StoredModule | None,
                cfg: SamplingConfig, adapters: list[str], metrics: dict[str, Any] | None = None) -> ModuleCard:
    algo = d.card.origin.algorithm
    return ModuleCard(
        id=module_id, kind="policy", architecture="combined", config={},
        interface=Interface(**d.card.interface.model_dump()),
        origin=Origin(algorithm=algo, recipe="combined", seed=d.card.origin.seed,
                      trained_with_guidance=train_g),
        policy=PolicySpec(diffusion=d.card.ref(), train_guidance=train_g,
                          infer_guidance=infer_g.card.ref() if infer_g else None, mode=cfg.mode,
                          params=cfg.settings(), adapters=adapters),
        metrics=metrics or {},
        description=f"`{d.id}` sampled in mode `{cfg.mode}`"
        + (f", steered at inference by `{infer_g.id}`" if infer_g else "") + ".",
    )


def _default_id(d: StoredModule, g: StoredModule | None, mode: str) -> str:
    return f"{d.id}.with.{g.id}.{mode}"[:96] if g else f"{d.id}.{mode}"[:96]


def combine(guidance: str | StoredModule | None, diffusion: str | StoredModule, mode: str = "resample",
            infer_guidance: str | StoredModule | None = None, train: TrainSpec | None = None,
            module_id: str | None = None, store: Store | None = None, progress: bool = True,
            save: bool = False, overwrite: bool = False, device: str | torch.device = "cpu",
            **sampling: Any) -> CombinedPolicy:
    """Recombine a guidance with a diffusion module (or, with `train`, a backbone architecture to train under it).

    `guidance` is the training guidance of record (and the sampling guidance unless `infer_guidance` is given:
    double guidance). `sampling` are the mode's settings (see `hub.modes`). `save` stores the policy card; evaluate
    the result with `hub.evaluate(policy)`. Raises CompatibilityError with the reasons when the pairing is unsound;
    nothing is written then.
    `overwrite` lets the trained module and the policy card replace different modules stored under their ids.
    `device` ("cpu", "auto", "cuda[:N]", "mps"): where the policy computes (and, with `train`, trains; a fitted V
    head is fitted there too); the parts are moved there once. Asking for a device this machine lacks is a
    DeviceError (one line).
    """
    from modules.device import resolve_device

    dev = resolve_device(device)  # an impossible device fails before anything is loaded or trained
    store = store or Store()
    cfg = sampling_config(mode, sampling)
    g = _module(guidance, store)
    train_report = None
    if train is not None:
        d, train_report = _train_under(g, diffusion, train, store, progress, overwrite, str(dev))
    else:
        if isinstance(diffusion, str) and not store.contains(diffusion) and diffusion in registry().architectures:
            raise MdhubError(f"'{diffusion}' is an architecture, not a stored module: pass train=TrainSpec(...) "
                             "(CLI: --train --dataset ID) to train it under the guidance")
        d = _module(diffusion, store)
    if d.card.kind != "diffusion":
        raise CompatibilityError(f"'{d.id}' is a {d.card.kind} module; combine needs a diffusion module")
    ig = _module(infer_guidance, store) if infer_guidance is not None else g
    if not cfg.spec.required(cfg.params) and infer_guidance is None and train is None:
        # a mode that needs no guidance: one that steers itself may still rank candidates by it; the rest ignore it
        ig = g if g is not None and cfg.spec.steers_itself else None
    report = check(ig.card if ig else None, d.card, cfg.mode, settings=cfg.params)
    report.raise_if_incompatible()
    adapters = list(report.adapters)
    if ig is not None and _needs_fit_v(report):
        from hub.adapters import fit_v

        ig = fit_v(ig, store=store, progress=progress, device=dev)
    runtime = build_runtime(cfg, d, ig, dev)
    train_ref = d.card.origin.trained_with_guidance or (g.card.ref() if g else None)
    card = policy_card(module_id or _default_id(d, ig, cfg.mode), d, train_ref, ig, cfg, adapters)
    parts = {"diffusion": d, **({"infer_guidance": ig} if ig else {})}
    combined = CombinedPolicy(card=card, runtime=runtime, report=report, parts=parts, train_report=train_report)
    if save:
        combined.save(store=store, overwrite=overwrite)
    return combined


def _train_under(g: StoredModule | None, diffusion: str | StoredModule, spec: TrainSpec, store: Store,
                 progress: bool, overwrite: bool = False, device: str = "cpu") -> tuple[StoredModule, Report]:
    """Guidance-first training of a backbone (architecture id or the architecture of a diffusion module)."""
    from hub.datasets import resolve_dataset
    from hub.training import Budget, algorithm_for, dataset_interface, train_diffusion

    if isinstance(diffusion, StoredModule):
        arch_id = diffusion.card.architecture
    elif diffusion in registry().architectures:
        arch_id = diffusion
    else:
        arch_id = store.card(diffusion).architecture
    arch = registry().get(arch_id, kind="diffusion")
    # the first training mode the backbone accepts that uses the guidance (q_loss, labels), else behaviour cloning
    guided = [m for m in arch.train_guidance if get_mode(m).needs]
    mode = get_mode(spec.mode or (guided[0] if guided and g is not None else "none"), "training")
    ds = resolve_dataset(spec.dataset)
    report = check(g.card if g else None, arch_id, mode.name, dataset_card=dataset_interface(ds), phase="training")
    report.raise_if_incompatible()
    algo = algorithm_for(arch_id, mode)
    if algo is None:
        raise MdhubError(f"no recipe trains '{arch_id}' in mode '{mode.name}'")
    budget = Budget(hidden=spec.hidden, batch_size=spec.batch_size)
    d = train_diffusion(algo, ds, guidance=g if mode.needs else None, steps=spec.steps,
                        seed=spec.seed, module_id=spec.module_id or (f"{arch_id}-under-{g.id}" if g else None),
                        store=store, budget=budget, progress=progress, backbone=arch_id, overwrite=overwrite,
                        device=device)[0]
    if g is not None and not mode.needs:
        # BC-trained backbone: record the guidance it was paired with (it picks among candidates at sampling)
        card = store.update_card(d.id, origin=d.card.origin.model_copy(
            update={"trained_with_guidance": g.card.ref(), "recipe": "guidance-first"}))
        d = StoredModule(card=card, net=d.net, path=store.folder_of(d.id))
    return d, report


class ModuleLoader(Protocol):
    """What loading a policy needs from a store: modules by id or path (a Store; hub.remote.sharing validates a pulled
    policy through a stand-in that serves the fetched parts first)."""

    def load(self, ref: str | Path) -> StoredModule: ...


def _verify_part(ref: ModuleRef, store: ModuleLoader, role: str, policy_id: str) -> StoredModule:
    try:
        part = store.load(ref.id)
    except MdhubError as err:
        raise IntegrityError(f"policy '{policy_id}': its {role} part '{ref.id}' cannot be loaded: {err}") from None
    weights = part.card.file(WEIGHTS)
    have = weights.sha256 if weights else None
    if ref.sha256 and have != ref.sha256:
        raise IntegrityError(f"policy '{policy_id}': its {role} part '{ref.id}' changed: the policy card references "
                             f"sha256 {ref.sha256[:12]}..., the store has {str(have)[:12]}...")
    return part


def load_policy(ref: str | StoredModule, store: ModuleLoader | None = None,
                device: str | torch.device = "cpu") -> CombinedPolicy:
    """Load a stored policy card: load its parts, verify their sha256 (lineage), re-check, rebuild the runtime on
    `device` (the parts are moved there once; "auto" picks cuda when present)."""
    from modules.device import resolve_device

    dev = resolve_device(device)
    store = store or Store()
    stored = ref if isinstance(ref, StoredModule) else store.load(ref)
    card = stored.card
    if card.kind != "policy":
        raise MdhubError(f"'{card.id}' is a {card.kind} module, not a policy")
    p = card.policy
    assert p is not None  # a policy card has its policy section (the card validates it)
    d = _verify_part(p.diffusion, store, "diffusion", card.id)
    ig = _verify_part(p.infer_guidance, store, "inference guidance", card.id) if p.infer_guidance else None
    cfg = SamplingConfig.from_card(p.mode, dict(p.params), f"policy '{card.id}'")
    report = check(ig.card if ig else None, d.card, p.mode, settings=cfg.params)
    report.raise_if_incompatible()
    runtime = build_runtime(cfg, d, ig, dev)
    return CombinedPolicy(card=card, runtime=runtime, report=report,
                          parts={"diffusion": d, **({"infer_guidance": ig} if ig else {})})

