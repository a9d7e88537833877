"""Make the golden modules: one tiny module per registered architecture, in today's on-disk format.

    .venv/bin/python tests/golden/make_golden.py              # make the folders that do not exist yet
    .venv/bin/python tests/golden/make_golden.py swg_resnet   # make these; refuses if one exists
    .venv/bin/python tests/golden/make_golden.py --force iql  # overwrite (changes the reference: see below)

Each `tests/golden/<architecture>/` is exactly what `hub.save(net, card, path=...)` writes (`model.safetensors`,
`card.json`, `README.md`) plus `expected.json`: fixed inputs and the module's outputs on them (guidance: q_all, q and
v where provided; diffusion: the denoiser's predicted noise `eps(x, t, obs[, cond])`). `tests/test_golden.py` loads
every folder with `hub.load` and compares, so a change of the format, of the registry or of a network that would stop
old modules from loading, or make them compute something else, fails a test.

Overwriting a golden folder (`--force`) changes the reference itself: do it only for an intended format change, and
then old modules need a migration (`cards/io.py: MIGRATIONS`) or a loud note. Everything is seeded: the same code
and torch give the same files, except the versions recorded in the card (`origin.versions`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from cards import (  # noqa: E402
    DatasetRef,
    DiffusionSpec,
    GuidanceSpec,
    Interface,
    ModuleCard,
    Origin,
    RewardTransform,
    ValueStats,
)

GOLDEN_DIR = Path(__file__).resolve().parent
EXPECTED = "expected.json"
OBS_DIM, ACT_DIM, BATCH = 3, 2, 4
SEED = 1234

# The smallest sensible config of every registered architecture (obs 3, act 2, hidden 8). An architecture added to
# registry.yaml needs an entry here (and a golden folder: tests/test_golden.py checks both).
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "iql": {"hidden": 8},
    "idql": {"hidden": 8},
    "dql": {"hidden": 8},
    "dql_mlp": {"hidden": 8, "time_dim": 4},
    "idql_resnet": {"hidden": 8, "blocks": 2, "expand": 2, "time_dim": 4, "time_hidden": 8},
    "swg_resnet": {"hidden": 8, "blocks": 2, "expand": 2, "time_dim": 4, "time_hidden": 8},
    "cfg_resnet": {"hidden": 8, "blocks": 2, "expand": 2, "time_dim": 4, "time_hidden": 8},
}
ALGORITHMS = {"iql": "IQL", "idql": "IDQL", "dql": "DQL", "dql_mlp": "DQL", "idql_resnet": "IDQL",
              "swg_resnet": "SWG", "cfg_resnet": "CFG"}


def registered(entry_points: bool = False) -> dict[str, Any]:
    """The architectures of registry.yaml (by id); entry-point ones only when asked (they are not ours)."""
    from hub.registry import load_registry

    return {a.id: a for a in load_registry(entry_points=entry_points)}


def tiny_config(arch_id: str, **over: Any) -> dict[str, Any]:
    if arch_id not in TINY_CONFIGS:
        raise KeyError(f"architecture '{arch_id}' has no tiny config in tests/golden/make_golden.py: TINY_CONFIGS; "
                       "add one (and make its golden folder)")
    return {"obs_dim": OBS_DIM, "act_dim": ACT_DIM, **TINY_CONFIGS[arch_id], **over}


def build(arch_id: str, seed: int = SEED, **over: Any):
    """A tiny network with seeded weights that are all off their initial values (LayerNorm included) and
    non-trivial observation statistics, so a buffer or parameter lost on the way shows in the outputs."""
    arch = registered()[arch_id]
    torch.manual_seed(seed)
    net = arch.make(tiny_config(arch_id, **over), source=f"tiny config of '{arch_id}'")
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        net.obs_norm.set_stats(torch.randn(OBS_DIM, generator=g), 0.5 + torch.rand(OBS_DIM, generator=g))
    return net.eval()


def card_for(arch_id: str, net, module_id: str | None = None) -> ModuleCard:
    """A card as training would write it (every section filled), for a tiny network."""
    arch = registered()[arch_id]
    common = dict(
        id=module_id or f"golden-{arch_id}", kind=arch.kind, architecture=arch_id,
        config=net.cfg.model_dump(mode="json"),
        interface=Interface(obs_dim=OBS_DIM, act_dim=ACT_DIM, obs_normalised=True,
                            dataset=DatasetRef(id="golden-synthetic")),
        metrics={"golden": 1}, tags=["golden"],
        description=f"A tiny `{arch_id}` module with seeded weights: a golden file of mdhub's on-disk format "
                    "(tests/golden/make_golden.py), not a trained model.",
    )
    if arch.kind == "guidance":
        provides = list(net.provides)
        return ModuleCard(
            **common,
            origin=Origin(algorithm=ALGORITHMS[arch_id], recipe="joint" if arch_id == "dql" else "policy-free",
                          seed=SEED, steps=0),
            guidance=GuidanceSpec(provides=provides, q_heads=net.cfg.q_heads, reduction=net.cfg.reduction,
                                  discount=0.99, expectile=0.7 if "v" in provides else None,
                                  reward_transform=RewardTransform(kind="return-range", scale=0.5),
                                  value_stats=ValueStats(mean=0.1, std=0.5, min=-1.0, max=1.0)),
        )
    cfg = net.cfg
    return ModuleCard(
        **common,
        origin=Origin(algorithm=ALGORITHMS.get(arch_id, arch_id.upper()), recipe="behaviour-only", seed=SEED, steps=0),
        diffusion=DiffusionSpec(schedule=cfg.schedule, T=cfg.T, prediction="eps", x_dim=net.x_dim,
                                train_guidance=list(arch.train_guidance), sample_guidance=list(arch.sample_guidance),
                                condition="label" if cfg.cond_dim else "none"),
    )


def inputs_for(net, kind: str, seed: int = SEED + 2) -> dict[str, torch.Tensor]:
    """Fixed inputs: obs (B, obs_dim); guidance: act (B, act_dim); diffusion: x (B, x_dim), t (B,) spread over
    [0, T), cond (B, cond_dim) with a 'good', a 'bad' and an unconditional (zero) row when the backbone has one."""
    g = torch.Generator().manual_seed(seed)
    out = {"obs": torch.randn(BATCH, OBS_DIM, generator=g)}
    if kind == "guidance":
        out["act"] = torch.rand(BATCH, ACT_DIM, generator=g) * 2 - 1
        return out
    T = net.cfg.T
    out["x"] = torch.randn(BATCH, net.x_dim, generator=g)
    out["t"] = torch.tensor([0, T // 3, (2 * T) // 3, T - 1])
    if net.cfg.cond_dim:
        cond = torch.rand(BATCH, net.cfg.cond_dim, generator=g)
        if hasattr(net, "good_cond"):
            good = net.good_cond()
            cond[0] = good
            cond[1] = 1.0 - good if net.cfg.cond_dim > 1 else -good
        cond[2] = 0.0
        out["cond"] = cond
    return out


@torch.no_grad()
def outputs_for(net, kind: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What a golden module must keep computing on its inputs."""
    if kind == "guidance":
        out = {"q_all": net.q_all(inputs["obs"], inputs["act"]), "q": net.q(inputs["obs"], inputs["act"])}
        if "v" in net.provides:
            out["v"] = net.v(inputs["obs"])
        return out
    return {"eps": net.eps(inputs["x"], inputs["t"], inputs["obs"], inputs.get("cond"))}


def tensors_from_json(data: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=torch.long if k == "t" else torch.float32) for k, v in data.items()}


def make(arch_id: str, folder: Path) -> dict[str, Any]:
    """Write one golden folder (module files via hub.save, then expected.json). Returns the expected record."""
    import hub

    kind = registered()[arch_id].kind
    net = build(arch_id)
    stored = hub.save(net, card_for(arch_id, net), path=folder)
    inputs = inputs_for(net, kind)
    record = {
        "architecture": arch_id,
        "kind": kind,
        "note": "Outputs of the module in this folder on these inputs (float32, eval mode); made by "
                "tests/golden/make_golden.py, checked by tests/test_golden.py.",
        "made_with": dict(stored.card.origin.versions),
        "inputs": {k: v.tolist() for k, v in inputs.items()},
        "outputs": {k: v.tolist() for k, v in outputs_for(net, kind, inputs).items()},
    }
    (folder / EXPECTED).write_text(dump_expected(record))
    return record


def dump_expected(record: dict[str, Any]) -> str:
    """JSON with one line per tensor (rows as nested lists; float32 values written exactly)."""
    lines = []
    for key, value in record.items():
        if key in ("inputs", "outputs"):
            inner = [f'  {json.dumps(k)}: {json.dumps(v)}' for k, v in value.items()]
            lines.append(f' {json.dumps(key)}: {{\n' + ",\n".join(inner) + "\n }")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    assert json.loads(text) == record
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("architectures", nargs="*", help="architecture ids (default: every registered one that has no "
                    "golden folder yet)")
    ap.add_argument("--force", action="store_true", help="overwrite existing golden folders (changes the reference)")
    ap.add_argument("--out", type=Path, default=GOLDEN_DIR, help="where the folders go (default: tests/golden)")
    args = ap.parse_args(argv)
    known = registered()
    unknown = [a for a in args.architectures if a not in known]
    if unknown:
        print(f"unknown architecture(s) {', '.join(unknown)}; registered: {', '.join(known)}", file=sys.stderr)
        return 1
    todo = args.architectures or list(known)
    existing = [a for a in todo if (args.out / a).exists()]
    if existing and not args.force:
        if args.architectures:
            print(f"refusing to overwrite golden folder(s) {', '.join(existing)} in {args.out}: they are the "
                  "reference old modules are checked against; pass --force only for an intended format change",
                  file=sys.stderr)
            return 1
        for a in existing:
            print(f"kept     {a} (exists; --force to overwrite)")
        todo = [a for a in todo if a not in existing]
    torch.set_num_threads(1)
    for arch_id in todo:
        folder = args.out / arch_id
        make(arch_id, folder)
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(f"wrote    {arch_id}: {folder} ({size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
