"""The three kinds of gradient update a recipe composes: policy-free TD (IQL), joint TD (DQL critic), diffusion.

Each update is a loss module (an `nn.Module` whose forward computes the losses of one batch from given random draws)
plus the tensors it trains and tracks (target network, EMA), one optimizer and the rules that run after a step.
The same code trains one seed or K seeds at once:

- one seed (`members is None`): the loss module holds the live networks and is called as it is;
- K seeds (a list of networks): every trained or tracked tensor is stacked along a leading member dimension (K, ...),
  and the loss module runs under `torch.func.vmap(functional_call(...))`: one batched computation. Adam, the EMA and
  the target updates are elementwise, so one optimizer over stacked tensors is K independent optimizers; gradient
  clipping is per member. Member k draws its batch indices and noise from its own generators (`Rng`), in the order
  the single run of its seed does, so it reproduces that run up to float rounding.

All randomness of a step is drawn before the loss runs (`draws`), so the loss is a pure function of (tensors, batch,
draws): the form `vmap` and `torch.compile` need. Losses stay on the device; they are read (one host sync) only on
logged steps.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn
from torch.func import functional_call, vmap

from modules.device import autocast
from modules.diffusion.model import DiffusionModel
from modules.guidance.iql import IQLCritic
from modules.sampling import chain_from_noise, chain_noise_shapes
from modules.train.rng import Rng

M = TypeVar("M", bound=nn.Module)
Tensors = dict[str, torch.Tensor]

TargetFn = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]
"""batch -> (x0: (B, x_dim), cond: (B, cond_dim) | None, weights: (B,) | None): what the diffusion model learns."""


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """E[ |tau - 1(diff < 0)| diff^2 ] with diff = Q_hat - V."""
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return (weight * diff.pow(2)).mean()


@torch.no_grad()
def polyak(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau online, for parameters (buffers are copied)."""
    tp: list[torch.Tensor] = list(target.parameters())
    op: list[torch.Tensor] = list(online.parameters())
    torch._foreach_lerp_(tp, op, tau)
    for tb, ob in zip(target.buffers(), online.buffers(), strict=True):
        tb.copy_(ob)


def frozen_copy(module: M) -> M:
    c = copy.deepcopy(module)
    c.requires_grad_(False)
    return c.eval()


@torch.no_grad()
def clip_grad_norm_members(params: list[torch.Tensor], max_norm: float, members: int | None) -> None:
    """torch.nn.utils.clip_grad_norm_ per member: with `members` K, each tensor's dim 0 is the member and each
    member's gradient is scaled by min(1, max_norm / (its norm + 1e-6)) on its own."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    if members is None:
        nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        return
    sq = torch.stack([g.reshape(members, -1).pow(2).sum(1) for g in grads]).sum(0)  # (K,)
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))


def _stack(modules: Sequence[nn.Module], prefix: str, grad: bool) -> Tensors:
    """Parameters of identically shaped modules stacked along a new dim 0: {prefix.name: (K, ...)}."""
    names = [n for n, _ in modules[0].named_parameters()]
    out: Tensors = {}
    for n in names:
        t = torch.stack([dict(m.named_parameters())[n].detach() for m in modules]).clone()
        out[f"{prefix}.{n}"] = t.requires_grad_(grad)
    return out


def _own(module: nn.Module, prefix: str) -> Tensors:
    """A module's own parameters under `prefix` (a single run: the live tensors themselves, not copies)."""
    return {f"{prefix}.{n}": p for n, p in module.named_parameters()}


def _strip(tensors: Tensors, prefix: str) -> Tensors:
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def _rename(tensors: Tensors, old: str, new: str, detach: bool = False) -> Tensors:
    return {new + k[len(old):]: (v.detach() if detach else v) for k, v in tensors.items() if k.startswith(old + ".")}


class Update:
    """What every update shares: the loss call (single or vmapped), the optimizer step, state and members.

    Subclasses set `loss_module`, `trained` (the optimizer's tensors), `tracked` (target / EMA tensors, same names
    order as `trained`'s source under their own prefix), and implement `draws` and `after_step`."""

    log_every = 100  # losses are read (one host sync) on these steps only; the loop sets it
    loss_module: nn.Module
    trained: Tensors
    tracked: Tensors
    members: int | None
    opt: torch.optim.Optimizer
    grad_clip: float | None = None
    precision: str = "fp32"
    rng: Rng
    _compiled: Callable[..., Tensors] | None = None

    def _externals(self) -> Tensors:
        """Tensors of other parts this loss reads (detached), keyed inside `loss_module`."""
        return {}

    reads_tracked = True  # the loss reads the tracked tensors (a target network); the EMA of a diffusion update not

    def _call_tensors(self) -> Tensors:
        ext = self._externals()
        if self.members is None:
            return ext
        return {**self.trained, **self.tracked, **ext} if self.reads_tracked else {**self.trained, **ext}

    def _losses_eager(self, tensors: Tensors, b: Tensors, d: Tensors) -> Tensors:
        if self.members is None:
            return functional_call(self.loss_module, tensors, (b, d), strict=False)

        def one(t: Tensors, bb: Tensors, dd: Tensors) -> Tensors:
            return functional_call(self.loss_module, t, (bb, dd), strict=False)

        return vmap(one, randomness="different")(tensors, b, d)

    def compile(self, **kwargs: Any) -> None:
        """Compile the loss (forward and backward) with torch.compile; the same code as the eager step. On CUDA the
        default mode is "reduce-overhead" (CUDA graphs: the step's kernels replayed without launch overhead)."""
        if self.rng.device.type == "cuda":
            kwargs.setdefault("mode", "reduce-overhead")
        self._compiled = torch.compile(self._losses_eager, **kwargs)

    def losses(self, b: Tensors, d: Tensors) -> Tensors:
        fn = self._compiled or self._losses_eager
        with autocast(self.rng.device, self.precision):
            return fn(self._call_tensors(), b, d)

    def draws(self, batch_size: int, step: int) -> Tensors:
        return {}

    def after_step(self, step: int) -> None:
        """Target / EMA updates after the optimizer step."""

    def step(self, b: Tensors, step: int) -> dict[str, float]:
        d = self.draws(b["obs"].shape[-2], step)
        out = self.losses(b, d)
        self.opt.zero_grad(set_to_none=True)
        out["loss"].sum().backward()
        if self.grad_clip:
            clip_grad_norm_members(list(self.trained.values()), self.grad_clip, self.members)
        self.opt.step()
        self.after_step(step)
        if step % self.log_every != 0:
            return {}
        names = [k for k in out if k != "loss"]
        values = torch.stack([out[k].detach().float().mean() for k in names]).tolist()  # one host sync
        return dict(zip(names, values, strict=True))

    # --- state --------------------------------------------------------------------------------------------------
    def _network(self, name: str) -> nn.Module:
        """The module behind tensors `name.*` (a single run's live module; an ensemble's template)."""
        return getattr(self.loss_module, name)

    def _stacked(self, name: str) -> Tensors:
        return _strip({**self.trained, **self.tracked}, name)

    def _sub_state(self, name: str) -> Tensors:
        return self._network(name).state_dict() if self.members is None else self._stacked(name)

    def _load_sub(self, name: str, saved: Tensors) -> None:
        if self.members is None:
            self._network(name).load_state_dict(saved)
            return
        with torch.no_grad():
            for k, v in self._stacked(name).items():
                v.copy_(saved[k])

    def member(self, name: str, k: int) -> nn.Module:
        """Member k's network `name` as a plain module (the single run's own module when there are no members)."""
        template = self._network(name)
        if self.members is None:
            return template
        m = copy.deepcopy(template)
        stacked = self._stacked(name)
        with torch.no_grad():
            for n, p in m.named_parameters():
                p.copy_(stacked[n][k])
        return m


def _adam(params: list[torch.Tensor], lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (AdamW with weight decay), fused: one kernel per tensor for the whole update (about 5x faster than the
    foreach implementation on this CPU for 256-wide layers); foreach where the device has no fused kernel."""
    fused = bool(params) and params[0].device.type in ("cpu", "cuda", "mps")
    if weight_decay:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None, foreach=not fused)
    return torch.optim.Adam(params, lr=lr, fused=fused or None, foreach=not fused)


# ------------------------------------------------------------------------------------------------------ IQL
class IQLLoss(nn.Module):
    """L_V = expectile(Q_target_hat - V), L_Q = sum_i (r + gamma (1 - d) V(s') - Q_i)^2."""

    def __init__(self, critic: IQLCritic, target: IQLCritic, discount: float, expectile: float):
        super().__init__()
        self.critic, self.target, self.discount, self.expectile = critic, target, discount, expectile

    def forward(self, b: Tensors, d: Tensors) -> Tensors:
        c = self.critic
        with torch.no_grad():
            q_t = self.target.q(b["obs"], b["act"])
            v_next = c.v(b["next_obs"])
            target = b["rew"] + self.discount * (1.0 - b["done"]) * v_next
        v = c.v(b["obs"])
        v_loss = expectile_loss(q_t - v, self.expectile)
        q_loss = (c.q_all(b["obs"], b["act"]) - target).pow(2).mean(1).sum()
        return {"loss": v_loss + q_loss, "v_loss": v_loss, "q_loss": q_loss}


def _members_of(x: M | Sequence[M]) -> tuple[M, list[M] | None]:
    if isinstance(x, nn.Module):
        return x, None
    xs = list(x)
    if not xs:
        raise ValueError("an ensemble needs at least one member")
    return xs[0], xs


class CriticUpdate(Update):
    """A TD update of a critic (one, or K stacked) with a Polyak target: what IQL's and DQL's critic updates share.
    The loss module has submodules `critic` and `target`."""

    tau: float

    def _setup_critic(self, critic: IQLCritic | Sequence[IQLCritic], make_loss: Callable[[IQLCritic], nn.Module],
                      lr: float) -> None:
        template, members = _members_of(critic)
        self.members = len(members) if members is not None else None
        self.loss_module = make_loss(template)
        if members is None:
            self.trained, self.tracked = _own(template, "critic"), _own(self.target, "target")
        else:
            self.trained = _stack(members, "critic", grad=True)
            self.tracked = _stack(members, "target", grad=False)
        self.opt = _adam(list(self.trained.values()), lr)

    @property
    def critic(self) -> IQLCritic:
        return self.loss_module.critic  # type: ignore[return-value]

    @property
    def target(self) -> IQLCritic:
        return self.loss_module.target  # type: ignore[return-value]

    def after_step(self, step: int) -> None:
        with torch.no_grad():
            torch._foreach_lerp_(list(self.tracked.values()), list(self.trained.values()), self.tau)

    def state(self) -> dict:
        return {"critic": self._sub_state("critic"), "target": self._sub_state("target"), "opt": self.opt.state_dict()}

    def load(self, s: dict) -> None:
        self._load_sub("critic", s["critic"])
        self._load_sub("target", s["target"])
        self.opt.load_state_dict(s["opt"])


class IQLUpdate(CriticUpdate):
    """Policy-free TD on one critic, or on K critics at once (a list)."""

    def __init__(self, critic: IQLCritic | Sequence[IQLCritic], lr: float = 3e-4, discount: float = 0.99,
                 expectile: float = 0.7, tau: float = 0.005, rng: Rng | None = None, precision: str = "fp32"):
        self.tau, self.precision = tau, precision
        self._setup_critic(critic, lambda c: IQLLoss(c, frozen_copy(c), discount, expectile), lr)
        self.rng = rng or Rng(list(range(self.members)) if self.members else 0, _device(self.critic))


def _device(m: nn.Module) -> torch.device:
    p = next(m.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# ------------------------------------------------------------------------------------------------------ DQL critic
class DQLCriticLoss(nn.Module):
    """Joint TD (DQL): sum_i MSE(Q_i(s,a), r + gamma (1 - d) min_i Q'_i(s', a')), a' ~ the EMA actor at s'."""

    def __init__(self, critic: IQLCritic, target: IQLCritic, actor: DiffusionModel, discount: float):
        super().__init__()
        self.critic, self.target, self.discount = critic, target, discount
        self.actor = actor  # the diffusion update's EMA model: read, never trained here

    def forward(self, b: Tensors, d: Tensors) -> Tensors:
        with torch.no_grad():
            actor = self.actor
            a_next = chain_from_noise(actor, b["next_obs"], d["x_T"], d["noise"])[:, : actor.cfg.act_dim]
            q_next = self.target.q_all(b["next_obs"], a_next).min(0).values
            target = b["rew"] + self.discount * (1.0 - b["done"]) * q_next
        loss = (self.critic.q_all(b["obs"], b["act"]) - target).pow(2).mean(1).sum()
        return {"loss": loss, "critic_loss": loss}


class DQLCriticUpdate(CriticUpdate):
    """The critic of joint DQL; `actor` is the diffusion update whose EMA model draws the next actions."""

    def __init__(self, critic: IQLCritic | Sequence[IQLCritic], actor: DiffusionUpdate, lr: float = 3e-4,
                 discount: float = 0.99, tau: float = 0.005, grad_clip: float | None = None,
                 precision: str = "fp32"):
        self.tau, self.grad_clip, self.precision, self.rng = tau, grad_clip, precision, actor.rng
        self.actor = actor
        self._setup_critic(critic, lambda c: DQLCriticLoss(c, frozen_copy(c), actor.ema, discount), lr)
        if self.members != actor.members:
            raise ValueError(f"critic members {self.members} and actor members {actor.members} differ")

    def _externals(self) -> Tensors:
        # the EMA actor's tensors: a single run's EMA module is the loss's own actor; an ensemble's are stacked
        return {} if self.members is None else _rename(self.actor.tracked, "ema", "actor", detach=True)

    def draws(self, batch_size: int, step: int) -> Tensors:
        xs, ns = chain_noise_shapes(self.actor.ema, batch_size)
        return {"x_T": self.rng.normal(*xs), "noise": self.rng.normal(*ns)}


# ------------------------------------------------------------------------------------------------------ diffusion
def default_targets(b: dict[str, torch.Tensor]):
    return b["act"], None, None


class DiffusionLoss(nn.Module):
    """BC denoising loss, plus (q_loss) eta * -Q_i(s, a_hat) / mean|Q_j(s, a_hat)| with a_hat drawn through the whole
    reverse chain with gradients; (i, j) a random order of two heads (drawn: `flip`)."""

    def __init__(self, model: DiffusionModel, guidance: IQLCritic | None, eta: float, targets: TargetFn):
        super().__init__()
        self.model: DiffusionModel = model
        self.guidance: IQLCritic | None = guidance
        self.eta, self.targets = eta, targets

    def q_loss(self, obs: torch.Tensor, d: Tensors) -> torch.Tensor:
        assert self.guidance is not None  # drawn only with a guidance
        a_hat = chain_from_noise(self.model, obs, d["x_T"], d["noise"])[:, : self.model.cfg.act_dim]
        qs = self.guidance.q_all(obs, a_hat)
        if qs.shape[0] >= 2:
            flip = d["flip"] < 0.5
            q_i, q_j = torch.where(flip, qs[1], qs[0]), torch.where(flip, qs[0], qs[1])
        else:
            q_i = q_j = qs[0]
        return -q_i.mean() / q_j.abs().mean().detach().clamp_min(1e-6)

    def forward(self, b: Tensors, d: Tensors) -> Tensors:
        x0, cond, weights = self.targets(b)
        bc = self.model.bc_loss(x0, b["obs"], cond, weights, t=d["t"], noise=d["bc_noise"])
        if "flip" not in d:
            return {"loss": bc, "bc_loss": bc}
        ql = self.q_loss(b["obs"], d)
        return {"loss": bc + self.eta * ql, "bc_loss": bc, "q_loss": ql}


class DiffusionUpdate(Update):
    """The diffusion model's update (one model or K at once). The guidance may be frozen (guidance-first: one shared
    critic, or one per member as a list) or the live critic of a joint run (`bind_guidance`); `guidance_start` > 0
    trains BC-only until that step. An EMA copy of the model is kept and is what gets stored and sampled."""

    reads_tracked = False
    loss_module: DiffusionLoss

    def __init__(self, model: DiffusionModel | Sequence[DiffusionModel], lr: float = 3e-4,
                 guidance: IQLCritic | Sequence[IQLCritic] | None = None, eta: float = 0.0,
                 grad_clip: float | None = None, ema_decay: float = 0.995, ema_every: int = 5, ema_start: int = 1000,
                 targets: TargetFn = default_targets, total_steps: int | None = None, cosine_lr: bool = False,
                 weight_decay: float = 0.0, guidance_start: int = 0, rng: Rng | None = None,
                 precision: str = "fp32"):
        template, members = _members_of(model)
        self.members = len(members) if members is not None else None
        self.eta, self.grad_clip, self.guidance_start, self.precision = eta, grad_clip, guidance_start, precision
        self.rng = rng or Rng(list(range(self.members)) if self.members else 0, _device(template))
        g_template, g_members = _members_of(guidance) if guidance is not None else (None, None)
        if g_members is not None and len(g_members) != (self.members or 1):
            raise ValueError(f"{len(g_members)} guidance members for {self.members or 1} diffusion members")
        self._guidance_tensors: Tensors = {}
        if g_members is not None and self.members is not None:
            self._guidance_tensors = _stack(g_members, "guidance", grad=False)
        self._live_guidance: Update | None = None
        self.loss_module = DiffusionLoss(template, g_template, eta, targets)
        self.ema = frozen_copy(template)
        self.ema_decay, self.ema_every, self.ema_start = ema_decay, ema_every, ema_start
        if members is None:
            self.trained, self.tracked = _own(template, "model"), _own(self.ema, "ema")
        else:
            self.trained = _stack(members, "model", grad=True)
            self.tracked = _stack(members, "ema", grad=False)
        self.opt = _adam(list(self.trained.values()), lr, weight_decay)
        self.sched = (torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(total_steps or 1, 1))
                      if cosine_lr else None)

    @property
    def model(self) -> DiffusionModel:
        return self.loss_module.model

    @property
    def guidance(self) -> IQLCritic | None:
        return self.loss_module.guidance

    def bind_guidance(self, critic_update: Update) -> None:
        """Joint training: the q_loss reads the live critic of `critic_update` (detached: the actor's loss does not
        train the critic)."""
        self._live_guidance = critic_update
        self.loss_module.guidance = critic_update.loss_module.critic  # type: ignore[assignment]

    def _externals(self) -> Tensors:
        if self._live_guidance is not None:
            return _rename(self._live_guidance.trained, "critic", "guidance", detach=True)
        return self._guidance_tensors

    def guided(self, step: int) -> bool:
        return self.guidance is not None and self.eta > 0 and step > self.guidance_start

    def draws(self, batch_size: int, step: int) -> Tensors:
        m = self.model
        d = {"t": self.rng.randint(m.cfg.T, batch_size), "bc_noise": self.rng.normal(batch_size, m.x_dim)}
        if self.guided(step):
            xs, ns = chain_noise_shapes(m, batch_size)
            d.update(x_T=self.rng.normal(*xs), noise=self.rng.normal(*ns), flip=self.rng.uniform())
        return d

    def q_loss(self, obs: torch.Tensor) -> torch.Tensor:
        """The guidance term alone on `obs` (single run), with fresh draws."""
        xs, ns = chain_noise_shapes(self.model, obs.shape[0])
        d = {"x_T": self.rng.normal(*xs), "noise": self.rng.normal(*ns), "flip": self.rng.uniform()}
        return self.loss_module.q_loss(obs, d)

    def step(self, b: Tensors, step: int) -> dict[str, float]:
        logs = super().step(b, step)
        if self.sched is not None:
            self.sched.step()
        return logs

    def after_step(self, step: int) -> None:
        if step % self.ema_every != 0:
            return
        ema, live = list(self.tracked.values()), list(self.trained.values())
        with torch.no_grad():
            if step < self.ema_start:
                torch._foreach_copy_(ema, live)
            else:
                torch._foreach_lerp_(ema, live, 1.0 - self.ema_decay)

    def state(self) -> dict:
        s = {"model": self._sub_state("model"), "ema": self._sub_state("ema"), "opt": self.opt.state_dict()}
        if self.sched is not None:
            s["sched"] = self.sched.state_dict()
        return s

    def _network(self, name: str) -> nn.Module:
        return self.ema if name == "ema" else super()._network(name)  # the EMA copy is not part of the loss

    def load(self, s: dict) -> None:
        self._load_sub("model", s["model"])
        self._load_sub("ema", s["ema"])
        self.opt.load_state_dict(s["opt"])
        if self.sched is not None and "sched" in s:
            self.sched.load_state_dict(s["sched"])
