"""The compatibility layer: can this guidance steer this diffusion backbone in this mode, and with what adapters?

    report = hub.check(guidance, diffusion, mode="resample")
    print(report.table()); report.raise_if_incompatible()

Checks: the mode is known and accepted by the backbone (training or sampling side); the guidance provides what the
mode needs (q, v); obs/act dims; env; dataset identity (another dataset of the same env: allowed, with a warning
naming both); action bounds; observation normalisation. Adapters where sound: standardise Q by the guidance card's
value statistics for scale-sensitive modes; fit V by expectile regression to a Q-only guidance when the mode needs an
advantage. Everything else that does not fit is refused with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from cards import DatasetRef, Interface, ModuleCard
from hub.errors import CompatibilityError, MdhubError
from hub.modes import Phase, get_mode, mode_names
from hub.registry import registry

Status = Literal["ok", "warn", "adapt", "fail"]


@dataclass
class Check:
    name: str
    status: Status
    detail: str


@dataclass
class Report:
    guidance: str | None
    diffusion: str
    mode: str
    checks: list[Check] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    @property
    def adapters(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "adapt"]

    @property
    def warnings(self) -> list[str]:
        return [c.detail for c in self.checks if c.status == "warn"]

    def add(self, name: str, status: Status, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if c.status == "fail"]

    def raise_if_incompatible(self) -> Report:
        if not self.compatible:
            raise CompatibilityError(
                f"guidance '{self.guidance}' cannot steer '{self.diffusion}' in mode '{self.mode}': "
                + "; ".join(self.reasons())
            )
        return self

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (`mdhub check --json`): a stable schema, see the README."""
        return {"guidance": self.guidance, "diffusion": self.diffusion, "mode": self.mode,
                "compatible": self.compatible, "adapters": self.adapters,
                "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks]}

    def table(self) -> str:
        width = max(len(c.name) for c in self.checks) if self.checks else 5
        lines = [f"compatibility of guidance '{self.guidance}' with '{self.diffusion}' in mode '{self.mode}': "
                 + ("COMPATIBLE" if self.compatible else "INCOMPATIBLE")]
        lines += [f"  {c.status.upper():5}  {c.name:<{width}}  {c.detail}" for c in self.checks]
        return "\n".join(lines)


def _same_transitions(gd: DatasetRef, dd: DatasetRef) -> tuple[Literal["ok", "warn"], str] | None:
    """When one dataset is a reward relabelling of the other (or both relabel the same source): the same states and
    actions under another reward, i.e. reward retargeting at sampling. ("ok" | "warn", message), or None when the
    two are not related by relabelling. A source named but with other content (sha256) is a warning."""
    def source(d: DatasetRef) -> tuple[str, str | None]:
        return (d.source_id, d.source_sha256) if d.source_id else (d.id, d.sha256)

    if not (gd.reward or dd.reward) or source(gd)[0] != source(dd)[0]:
        return None
    (src, g_sha), (_, d_sha) = source(gd), source(dd)
    g_rew, d_rew = gd.reward or "the data's own", dd.reward or "the data's own"
    if g_sha and d_sha and g_sha != d_sha:
        return "warn", (f"both relabel '{src}' but from different data (sha256 {g_sha[:12]} vs {d_sha[:12]}): "
                        "regenerated with other settings?")
    if g_rew == d_rew:
        return "ok", f"both trained on '{src}' relabelled with the reward {g_rew}"
    return "ok", (f"reward retargeting: the guidance values the reward {g_rew} ('{gd.id}'), the diffusion model "
                  f"was trained on {d_rew} rewards ('{dd.id}'); the same states and actions of '{src}'")


def _diffusion_side(diffusion: ModuleCard | str) -> tuple[str, str, tuple[str, ...], tuple[str, ...], Interface | None]:
    """(name, architecture, train modes, sample modes, interface) of a diffusion card or an architecture id."""
    if isinstance(diffusion, ModuleCard):
        if diffusion.kind != "diffusion":
            raise CompatibilityError(f"'{diffusion.id}' is a {diffusion.kind} module, not a diffusion module")
        d = diffusion.diffusion
        assert d is not None  # a diffusion card has its diffusion section (the card validates it)
        return (diffusion.id, diffusion.architecture, tuple(d.train_guidance), tuple(d.sample_guidance),
                diffusion.interface)
    arch = registry().get(diffusion, kind="diffusion")
    return arch.id, arch.id, tuple(arch.train_guidance), tuple(arch.sample_guidance), None


def check(guidance: ModuleCard | None, diffusion: ModuleCard | str, mode: str,
          dataset_card: Interface | None = None, phase: Phase | None = None,
          settings: BaseModel | None = None) -> Report:
    """Check a (guidance, diffusion, mode) triple. `diffusion` is a diffusion card or a backbone architecture id
    (training a new one; then `dataset_card` gives the interface of the data it will be trained on).

    Everything about the mode comes from the mode table (hub.modes): its phases, what it needs from a guidance
    (with these `settings`, when they change it), whether it is sensitive to the scale of Q. A mode that applies in
    both phases (none) is judged for sampling unless `phase` says otherwise."""
    d_name, d_arch, d_train, d_sample, d_iface = _diffusion_side(diffusion)
    d_iface = d_iface or dataset_card
    report = Report(guidance.id if guidance else None, d_name, mode)
    try:
        spec = get_mode(mode)
    except MdhubError:
        report.add("mode", "fail", f"unknown mode '{mode}'; known: {', '.join(mode_names())}")
        return report
    if phase is None:
        phase = "sampling" if "sampling" in spec.phases else "training"
    if phase not in spec.phases:
        report.add("mode", "fail", f"'{mode}' is not a {phase} mode ({phase} modes: {', '.join(mode_names(phase))})")
        return report
    accepted = d_train if phase == "training" else d_sample
    if mode in accepted:
        report.add("mode", "ok", f"'{d_arch}' accepts '{mode}' for {phase}")
    elif d_arch in spec.backbones or "*" in spec.backbones:
        report.add("mode", "ok", f"'{mode}' ({spec.source}) declares it works with '{d_arch}' for {phase}")
    else:
        report.add("mode", "fail", f"'{d_arch}' does not accept '{mode}' for {phase} (it accepts: "
                   f"{', '.join(accepted) or 'nothing'})")
    needs = spec.required(settings)
    if guidance is None:
        if needs:
            report.add("guidance", "fail", f"mode '{mode}' needs a guidance providing {', '.join(needs)}")
        return report
    if guidance.kind != "guidance":
        report.add("guidance", "fail", f"'{guidance.id}' is a {guidance.kind} module, not a guidance module")
        return report
    g = guidance.guidance
    assert g is not None  # a guidance card has its guidance section (the card validates it)
    provides = set(g.provides)
    if needs:
        missing = [n for n in needs if n not in provides]
        if not missing:
            report.add("provides", "ok",
                       f"guidance provides {', '.join(sorted(provides))}; mode needs {', '.join(needs)}")
        elif missing == ["v"]:
            report.add("fit-v", "adapt", "the guidance provides q only: V(s) will be fitted to it by expectile "
                       f"regression (expectile {g.expectile or 0.7}) on the dataset, and the card will say so")
        else:
            report.add("provides", "fail", f"mode '{mode}' needs {', '.join(missing)}; the guidance provides "
                       f"{', '.join(sorted(provides))}")
    else:
        report.add("provides", "ok", f"mode '{mode}' uses no guidance at this stage (recorded only)")
    if spec.scale_sensitive:
        if g.value_stats is not None and g.value_stats.std > 0:
            report.add("standardize-q", "adapt", f"{spec.scale_sensitive} is not invariant to the scale of Q: Q is "
                       f"standardised by the card's statistics (mean {g.value_stats.mean:.4g}, "
                       f"std {g.value_stats.std:.4g})")
        else:
            report.add("scale", "warn", f"{spec.scale_sensitive} depends on the scale of Q and the guidance card "
                       "has no value statistics: Q is used as is")
    gi = guidance.interface
    if d_iface is None:
        report.add("interface", "warn", "no interface to compare for the diffusion side")
        return report
    for name in ("obs_dim", "act_dim"):
        a, b = getattr(gi, name), getattr(d_iface, name)
        report.add(name, "ok" if a == b else "fail",
                   f"{a} == {b}" if a == b else f"guidance has {a}, diffusion has {b}")
    if gi.env_id and d_iface.env_id and gi.env_id != d_iface.env_id:
        report.add("env", "fail", f"guidance is for '{gi.env_id}', diffusion for '{d_iface.env_id}'")
    else:
        report.add("env", "ok", gi.env_id or d_iface.env_id or "(unspecified)")
    gd, dd = gi.dataset, d_iface.dataset
    if gd and dd:
        same_data = _same_transitions(gd, dd)
        if same_data is not None:
            report.add("dataset", same_data[0], same_data[1])
        elif gd.id != dd.id:
            report.add("dataset", "warn", f"guidance trained on '{gd.id}', diffusion on '{dd.id}' (same env): values "
                       "may be off-distribution for the policy's actions")
        elif gd.sha256 and dd.sha256 and gd.sha256 != dd.sha256:
            report.add("dataset", "warn", f"both name '{gd.id}' but the data differ (sha256 {gd.sha256[:12]} vs "
                       f"{dd.sha256[:12]}): regenerated with other settings?")
        else:
            report.add("dataset", "ok", f"both trained on '{gd.id}'")
    else:
        report.add("dataset", "warn", "a dataset is unrecorded: identity cannot be checked")
    if (gi.action_low, gi.action_high) == (d_iface.action_low, d_iface.action_high):
        report.add("action bounds", "ok", f"[{gi.action_low}, {gi.action_high}]")
    else:
        report.add("action bounds", "fail", f"guidance acts in [{gi.action_low}, {gi.action_high}], diffusion in "
                   f"[{d_iface.action_low}, {d_iface.action_high}]")
    report.add("normalisation", "ok", "each module normalises raw observations with its own buffers"
               if gi.obs_normalised or d_iface.obs_normalised else "both take raw observations")
    return report
