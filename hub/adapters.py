"""Adapters that make a guidance fit a mode soundly. fit_v: V(s) fitted to a Q-only critic by expectile regression."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hub.errors import CompatibilityError
from hub.registry import registry
from hub.store import Store, StoredModule
from modules.train.updates import expectile_loss

if TYPE_CHECKING:
    from modules.data.dataset import OfflineDataset


def fit_v(g: StoredModule, store: Store | None = None, dataset: OfflineDataset | str | None = None, steps: int = 2000,
          batch_size: int = 256, lr: float = 3e-4, seed: int = 0, progress: bool = False,
          device: str | torch.device | None = None) -> StoredModule:
    """A copy of guidance `g` with a V head fitted to its frozen Q: L = expectile(Q(s, a) - V(s)) on its dataset.
    Stored as '<id>-fitted-v' with `v_fitted: true` on its card (reused when already there and current).
    `device` ("cpu", "auto", "cuda[:N]", "mps"; default: where `g` is): where the fit runs, the dataset resident
    there; the returned module's network is on that device."""
    from hub.datasets import resolve_dataset
    from modules.device import resolve_device
    from modules.policy import module_device

    dev = resolve_device(device) if device is not None else module_device(g.net)
    store = store or Store()
    card = g.card
    spec = card.guidance
    if spec is None:
        raise CompatibilityError(f"cannot fit V to '{card.id}': it is a {card.kind} module, not a guidance module")
    new_id = f"{card.id}-fitted-v"[:96]
    if store.contains(new_id):
        existing = store.load(new_id)
        if existing.card.origin.trained_with_guidance and existing.card.origin.trained_with_guidance.sha256 == \
                card.ref().sha256:
            existing.net.to(dev)
            return existing
    if dataset is None:
        if card.interface.dataset is None:
            raise CompatibilityError(f"cannot fit V to '{card.id}': its card records no dataset")
        dataset = card.interface.dataset.id
    ds = resolve_dataset(dataset)
    cfg = {**card.config, "with_v": True}
    net = registry().get(card.architecture, kind="guidance").make(cfg)
    missing, unexpected = net.load_state_dict(g.net.state_dict(), strict=False)
    if unexpected or any(not k.startswith("v_net.") for k in missing):
        raise CompatibilityError(f"cannot fit V to '{card.id}': its architecture has no V head to add")
    torch.manual_seed(seed)
    net.to(dev)
    obs = torch.as_tensor(ds.observations).to(dev)
    act = torch.as_tensor(ds.actions).to(dev).clamp(-1, 1)
    opt = torch.optim.Adam(net.v_net.parameters(), lr=lr)
    tau = spec.expectile or 0.7
    gen = torch.Generator().manual_seed(seed)  # the batch indices: the same on every device
    for _ in range(steps):
        idx = torch.randint(0, len(obs), (batch_size,), generator=gen).to(dev)
        with torch.no_grad():
            q = net.q(obs[idx], act[idx])
        loss = expectile_loss(q - net.v(obs[idx]), tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    new_card = card.model_copy(update={
        "id": new_id, "config": net.cfg.model_dump(mode="json"), "files": [], "hub_source": None,
        "guidance": spec.model_copy(update={"provides": ["q", "v"], "v_fitted": True, "expectile": tau}),
        "origin": card.origin.model_copy(update={"trained_with_guidance": card.ref()}),
        "description": f"'{card.id}' with V(s) fitted to its Q by expectile regression (tau {tau}, {steps} steps).",
    })
    return store.save(net, new_card)
