"""An eager re-creation of the public Diffusion-QL design, the yardstick `benchmarks/speed.py` runs in its own process.

Follows Zhendong-Wang/Diffusion-Policies-for-Offline-RL at commit d871f5c6b4a3a3a19a10c662a54f32d5819dfcdb
(Apache-2.0), read file by file; this is our own code written after it, plain eager PyTorch, with the same modules,
the same order of operations and the same per-step host work:

- `agents/helpers.py`: SinusoidalPosEmb, extract, vp_beta_schedule (numpy, cast to float32), WeightedL2, EMA (the
  `.data =` reassignment of every parameter);
- `agents/model.py`: MLP, time_mlp = SinusoidalPosEmb(16) -> Linear(16, 32) -> Mish -> Linear(32, 16), mid_layer
  = 3 x (Linear 256 + Mish) on [x, t, state], final Linear(256, act);
- `agents/diffusion.py`: Diffusion with its registered buffers, q_sample, p_losses, loss, p_mean_variance (x0 from
  the predicted noise, clamped in place to +-max_action), q_posterior (posterior mean), p_sample (noise masked at
  t == 0), p_sample_loop, sample (final clamp) and forward = sample;
- `agents/ql_diffusion.py`: Critic (q1_model and q2_model, each 3 x 256 Mish on [s, a]; q_min), Diffusion_QL.train
  (critic TD: next action from `ema_model` - not under no_grad, as there -, target = r + not_done * gamma * min of the
  target critics, detached; MSE + MSE; grad clip with max_norm; then the actor: bc_loss + eta * q_loss with
  q_loss = -q1_new.mean() / q2_new.abs().mean().detach() or the other way round on np.random.uniform(); the actor's
  backward also fills the live critic's .grad, as there; EMA step every `update_ema_every` steps once
  step >= step_start_ema; soft target update by `.data.copy_`; four `.item()` reads per step for the metric
  lists), sample_action (the state repeated 50x, sample, critic_target.q_min, softmax + multinomial);
- `agents/bc_diffusion.py`: Diffusion_BC.train (the diffusion loss only, Adam, no clip, no EMA);
- `utils/data_sampler.py` keeps rewards and not_done as (B, 1) columns; `main.py`'s hopper-medium settings:
  T 5, vp, eta 1.0, grad norm 9.0, lr 3e-4, batch 256, discount 0.99, tau 0.005.

What is not there, and is added here for the benchmark (each says so): `train_iteration` is the body of the
`train` loop for one batch given as tensors (the sampling from the replay buffer is left out on both sides of the
comparison); `actor_iteration` is that loop's policy-training half alone under a frozen critic (the reference
design has no guidance-first mode); `sample_actions` is `sample_action` for B states at once (softmax per state).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------- agents/helpers.py


class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device
        half_dim = self.dim // 2
        emb = math.log(10000) / (half_dim - 1)
        emb = torch.exp(torch.arange(half_dim, device=device) * -emb)
        emb = x[:, None] * emb[None, :]
        return torch.cat((emb.sin(), emb.cos()), dim=-1)


def extract(a: torch.Tensor, t: torch.Tensor, x_shape) -> torch.Tensor:
    b, *_ = t.shape
    out = a.gather(-1, t)
    return out.reshape(b, *((1,) * (len(x_shape) - 1)))


def vp_beta_schedule(timesteps: int, dtype=torch.float32) -> torch.Tensor:
    t = np.arange(1, timesteps + 1)
    T = timesteps
    b_max = 10.0
    b_min = 0.1
    alpha = np.exp(-b_min / T - 0.5 * (b_max - b_min) * (2 * t - 1) / T**2)
    betas = 1 - alpha
    return torch.tensor(betas, dtype=dtype)


def linear_beta_schedule(timesteps: int, beta_start=1e-4, beta_end=2e-2, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(np.linspace(beta_start, beta_end, timesteps), dtype=dtype)


class WeightedL2(nn.Module):
    def forward(self, pred: torch.Tensor, targ: torch.Tensor, weights=1.0) -> torch.Tensor:
        loss = F.mse_loss(pred, targ, reduction="none")
        return (loss * weights).mean()


class EMA:
    """Empirical moving average (each parameter's .data replaced by a new tensor, as in the reference)."""

    def __init__(self, beta: float):
        self.beta = beta

    def update_model_average(self, ma_model: nn.Module, current_model: nn.Module) -> None:
        for current_params, ma_params in zip(current_model.parameters(), ma_model.parameters(), strict=True):
            old_weight, up_weight = ma_params.data, current_params.data
            ma_params.data = self.update_average(old_weight, up_weight)

    def update_average(self, old, new):
        if old is None:
            return new
        return old * self.beta + (1 - self.beta) * new


# ------------------------------------------------------------------------------------------------ agents/model.py


class MLP(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, device=None, t_dim: int = 16):
        super().__init__()
        self.device = device
        self.time_mlp = nn.Sequential(
            SinusoidalPosEmb(t_dim),
            nn.Linear(t_dim, t_dim * 2),
            nn.Mish(),
            nn.Linear(t_dim * 2, t_dim),
        )
        input_dim = state_dim + action_dim + t_dim
        self.mid_layer = nn.Sequential(nn.Linear(input_dim, 256), nn.Mish(),
                                       nn.Linear(256, 256), nn.Mish(),
                                       nn.Linear(256, 256), nn.Mish())
        self.final_layer = nn.Linear(256, action_dim)

    def forward(self, x: torch.Tensor, time: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        t = self.time_mlp(time)
        x = torch.cat([x, t, state], dim=1)
        x = self.mid_layer(x)
        return self.final_layer(x)


# -------------------------------------------------------------------------------------------- agents/diffusion.py


class Diffusion(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, model: nn.Module, max_action: float,
                 beta_schedule: str = "vp", n_timesteps: int = 5, clip_denoised: bool = True,
                 predict_epsilon: bool = True):
        super().__init__()
        self.state_dim, self.action_dim, self.max_action = state_dim, action_dim, max_action
        self.model = model
        if beta_schedule == "vp":
            betas = vp_beta_schedule(n_timesteps)
        elif beta_schedule == "linear":
            betas = linear_beta_schedule(n_timesteps)
        else:
            raise ValueError(f"schedule {beta_schedule!r} is not re-created here (vp, linear)")
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat([torch.ones(1), alphas_cumprod[:-1]])

        self.n_timesteps = int(n_timesteps)
        self.clip_denoised = clip_denoised
        self.predict_epsilon = predict_epsilon

        self.register_buffer("betas", betas)
        self.register_buffer("alphas_cumprod", alphas_cumprod)
        self.register_buffer("alphas_cumprod_prev", alphas_cumprod_prev)
        # q(x_t | x_{t-1})
        self.register_buffer("sqrt_alphas_cumprod", torch.sqrt(alphas_cumprod))
        self.register_buffer("sqrt_one_minus_alphas_cumprod", torch.sqrt(1.0 - alphas_cumprod))
        self.register_buffer("log_one_minus_alphas_cumprod", torch.log(1.0 - alphas_cumprod))
        self.register_buffer("sqrt_recip_alphas_cumprod", torch.sqrt(1.0 / alphas_cumprod))
        self.register_buffer("sqrt_recipm1_alphas_cumprod", torch.sqrt(1.0 / alphas_cumprod - 1))
        # posterior q(x_{t-1} | x_t, x_0)
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        self.register_buffer("posterior_variance", posterior_variance)
        self.register_buffer("posterior_log_variance_clipped", torch.log(torch.clamp(posterior_variance, min=1e-20)))
        # np.sqrt in the reference (of these float32 tensors: the same float32 values, without numpy's warning)
        self.register_buffer("posterior_mean_coef1",
                             betas * torch.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod))
        self.register_buffer("posterior_mean_coef2",
                             (1.0 - alphas_cumprod_prev) * torch.sqrt(alphas) / (1.0 - alphas_cumprod))
        self.loss_fn = WeightedL2()

    # --- sampling
    def predict_start_from_noise(self, x_t, t, noise):
        if self.predict_epsilon:
            return (extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
                    - extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * noise)
        return noise

    def q_posterior(self, x_start, x_t, t):
        posterior_mean = (extract(self.posterior_mean_coef1, t, x_t.shape) * x_start
                          + extract(self.posterior_mean_coef2, t, x_t.shape) * x_t)
        posterior_variance = extract(self.posterior_variance, t, x_t.shape)
        posterior_log_variance_clipped = extract(self.posterior_log_variance_clipped, t, x_t.shape)
        return posterior_mean, posterior_variance, posterior_log_variance_clipped

    def p_mean_variance(self, x, t, s):
        x_recon = self.predict_start_from_noise(x, t=t, noise=self.model(x, t, s))
        if self.clip_denoised:
            x_recon.clamp_(-self.max_action, self.max_action)
        model_mean, posterior_variance, posterior_log_variance = self.q_posterior(x_start=x_recon, x_t=x, t=t)
        return model_mean, posterior_variance, posterior_log_variance

    def p_sample(self, x, t, s):
        b = x.shape[0]
        model_mean, _, model_log_variance = self.p_mean_variance(x=x, t=t, s=s)
        noise = torch.randn_like(x)
        nonzero_mask = (1 - (t == 0).float()).reshape(b, *((1,) * (len(x.shape) - 1)))
        return model_mean + nonzero_mask * (0.5 * model_log_variance).exp() * noise

    def p_sample_loop(self, state, shape):
        device = self.betas.device
        batch_size = shape[0]
        x = torch.randn(shape, device=device)
        for i in reversed(range(0, self.n_timesteps)):
            timesteps = torch.full((batch_size,), i, device=device, dtype=torch.long)
            x = self.p_sample(x, timesteps, state)
        return x

    def sample(self, state):
        batch_size = state.shape[0]
        action = self.p_sample_loop(state, (batch_size, self.action_dim))
        return action.clamp_(-self.max_action, self.max_action)

    # --- training
    def q_sample(self, x_start, t, noise=None):
        if noise is None:
            noise = torch.randn_like(x_start)
        return (extract(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
                + extract(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise)

    def p_losses(self, x_start, state, t, weights=1.0):
        noise = torch.randn_like(x_start)
        x_noisy = self.q_sample(x_start=x_start, t=t, noise=noise)
        x_recon = self.model(x_noisy, t, state)
        assert noise.shape == x_recon.shape
        if self.predict_epsilon:
            return self.loss_fn(x_recon, noise, weights)
        return self.loss_fn(x_recon, x_start, weights)

    def loss(self, x, state, weights=1.0):
        batch_size = len(x)
        t = torch.randint(0, self.n_timesteps, (batch_size,), device=x.device).long()
        return self.p_losses(x, state, t, weights)

    def forward(self, state):
        return self.sample(state)


# ----------------------------------------------------------------------------------------- agents/ql_diffusion.py


class Critic(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, hidden_dim: int = 256):
        super().__init__()

        def head() -> nn.Sequential:
            return nn.Sequential(nn.Linear(state_dim + action_dim, hidden_dim), nn.Mish(),
                                 nn.Linear(hidden_dim, hidden_dim), nn.Mish(),
                                 nn.Linear(hidden_dim, hidden_dim), nn.Mish(),
                                 nn.Linear(hidden_dim, 1))

        self.q1_model = head()
        self.q2_model = head()

    def forward(self, state, action):
        x = torch.cat([state, action], dim=-1)
        return self.q1_model(x), self.q2_model(x)

    def q1(self, state, action):
        return self.q1_model(torch.cat([state, action], dim=-1))

    def q_min(self, state, action):
        q1, q2 = self.forward(state, action)
        return torch.min(q1, q2)


class DiffusionQL:
    """Diffusion_QL (no lr decay, no max-Q backup: hopper-medium's settings)."""

    def __init__(self, state_dim: int, action_dim: int, max_action: float = 1.0, device="cpu",
                 discount: float = 0.99, tau: float = 0.005, eta: float = 1.0, beta_schedule: str = "vp",
                 n_timesteps: int = 5, ema_decay: float = 0.995, step_start_ema: int = 1000,
                 update_ema_every: int = 5, lr: float = 3e-4, grad_norm: float = 9.0):
        self.model = MLP(state_dim=state_dim, action_dim=action_dim, device=device)
        self.actor = Diffusion(state_dim=state_dim, action_dim=action_dim, model=self.model, max_action=max_action,
                               beta_schedule=beta_schedule, n_timesteps=n_timesteps).to(device)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.grad_norm = grad_norm

        self.step = 0
        self.step_start_ema = step_start_ema
        self.ema = EMA(ema_decay)
        self.ema_model = copy.deepcopy(self.actor)
        self.update_ema_every = update_ema_every

        self.critic = Critic(state_dim, action_dim).to(device)
        self.critic_target = copy.deepcopy(self.critic)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=3e-4)

        self.state_dim, self.max_action, self.action_dim = state_dim, max_action, action_dim
        self.discount, self.tau, self.eta, self.device = discount, tau, eta, device

    def step_ema(self) -> None:
        if self.step < self.step_start_ema:
            return
        self.ema.update_model_average(self.ema_model, self.actor)

    def train(self, replay_buffer, iterations: int, batch_size: int = 100) -> dict[str, list[float]]:
        """The reference's loop: a batch from the buffer, then one iteration."""
        metric: dict[str, list[float]] = {"bc_loss": [], "ql_loss": [], "actor_loss": [], "critic_loss": []}
        for _ in range(iterations):
            m = self.train_iteration(*replay_buffer.sample(batch_size))
            for k, v in m.items():
                metric[k].append(v)
        return metric

    def train_iteration(self, state, action, next_state, reward, not_done) -> dict[str, float]:
        """One iteration of Diffusion_QL.train's loop (reward and not_done: (B, 1))."""
        # Q training
        current_q1, current_q2 = self.critic(state, action)
        next_action = self.ema_model(next_state)
        target_q1, target_q2 = self.critic_target(next_state, next_action)
        target_q = torch.min(target_q1, target_q2)
        target_q = (reward + not_done * self.discount * target_q).detach()
        critic_loss = F.mse_loss(current_q1, target_q) + F.mse_loss(current_q2, target_q)

        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        if self.grad_norm > 0:
            nn.utils.clip_grad_norm_(self.critic.parameters(), max_norm=self.grad_norm, norm_type=2)
        self.critic_optimizer.step()

        # policy training
        bc_loss, q_loss, actor_loss = self._actor_update(state, action)

        # target networks
        if self.step % self.update_ema_every == 0:
            self.step_ema()
        for param, target_param in zip(self.critic.parameters(), self.critic_target.parameters(), strict=True):
            target_param.data.copy_(self.tau * param.data + (1 - self.tau) * target_param.data)
        self.step += 1

        return {"actor_loss": actor_loss.item(), "bc_loss": bc_loss.item(), "ql_loss": q_loss.item(),
                "critic_loss": critic_loss.item()}

    def _actor_update(self, state, action):
        bc_loss = self.actor.loss(action, state)
        new_action = self.actor(state)
        q1_new_action, q2_new_action = self.critic(state, new_action)
        if np.random.uniform() > 0.5:
            q_loss = -q1_new_action.mean() / q2_new_action.abs().mean().detach()
        else:
            q_loss = -q2_new_action.mean() / q1_new_action.abs().mean().detach()
        actor_loss = bc_loss + self.eta * q_loss

        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        if self.grad_norm > 0:
            nn.utils.clip_grad_norm_(self.actor.parameters(), max_norm=self.grad_norm, norm_type=2)
        self.actor_optimizer.step()
        return bc_loss, q_loss, actor_loss

    # --- added for the benchmark: the guidance-first iteration (not in the reference design)
    def freeze_critic(self) -> None:
        """The critic becomes a fixed guidance: no gradients into it (the natural way to freeze it in PyTorch)."""
        self.critic.requires_grad_(False)
        self.critic_target.requires_grad_(False)

    def actor_iteration(self, state, action) -> dict[str, float]:
        """The policy-training half of train's loop alone, under the (frozen) critic: actor update, EMA step, step
        count, and the metric reads of the actor's losses. No critic update, so no target update."""
        bc_loss, q_loss, actor_loss = self._actor_update(state, action)
        if self.step % self.update_ema_every == 0:
            self.step_ema()
        self.step += 1
        return {"actor_loss": actor_loss.item(), "bc_loss": bc_loss.item(), "ql_loss": q_loss.item()}

    # --- action selection
    def sample_action(self, state: np.ndarray) -> np.ndarray:
        state_t = torch.FloatTensor(state.reshape(1, -1)).to(self.device)
        state_rpt = torch.repeat_interleave(state_t, repeats=50, dim=0)
        with torch.no_grad():
            action = self.actor.sample(state_rpt)
            q_value = self.critic_target.q_min(state_rpt, action).flatten()
            idx = torch.multinomial(F.softmax(q_value, dim=0), 1)  # the reference's implicit dim of a 1-D tensor
        return action[idx].cpu().data.numpy().flatten()

    def sample_actions(self, states: np.ndarray, n: int = 50) -> np.ndarray:
        """Added for the benchmark: sample_action for B states in one pass (softmax over each state's n candidates).
        states: (B, obs_dim) -> (B, act_dim)."""
        state_t = torch.FloatTensor(states.reshape(len(states), -1)).to(self.device)
        b = state_t.shape[0]
        state_rpt = torch.repeat_interleave(state_t, repeats=n, dim=0)
        with torch.no_grad():
            action = self.actor.sample(state_rpt)
            q_value = self.critic_target.q_min(state_rpt, action).view(b, n)
            idx = torch.multinomial(F.softmax(q_value, dim=1), 1).squeeze(1)
            chosen = action.view(b, n, -1)[torch.arange(b, device=action.device), idx]
        return chosen.cpu().data.numpy()


# ----------------------------------------------------------------------------------------- agents/bc_diffusion.py


class DiffusionBC:
    """Diffusion_BC: the diffusion (denoising) loss only."""

    def __init__(self, state_dim: int, action_dim: int, max_action: float = 1.0, device="cpu",
                 beta_schedule: str = "vp", n_timesteps: int = 5, lr: float = 2e-4):
        self.model = MLP(state_dim=state_dim, action_dim=action_dim, device=device)
        self.actor = Diffusion(state_dim=state_dim, action_dim=action_dim, model=self.model, max_action=max_action,
                               beta_schedule=beta_schedule, n_timesteps=n_timesteps).to(device)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.max_action, self.action_dim, self.device = max_action, action_dim, device

    def train_iteration(self, state, action) -> dict[str, float]:
        """One iteration of Diffusion_BC.train's loop."""
        loss = self.actor.loss(action, state)
        self.actor_optimizer.zero_grad()
        loss.backward()
        self.actor_optimizer.step()
        return {"actor_loss": 0.0, "bc_loss": loss.item(), "ql_loss": 0.0, "critic_loss": 0.0}
