"""Golden modules: old modules on disk keep loading and computing the same thing.

`tests/golden/<architecture>/` holds one tiny module per registered architecture, written once by
`tests/golden/make_golden.py` in the on-disk format of its day, with `expected.json` (fixed inputs and outputs).
A change of the card format, the registry, the weights layout or a network that breaks old modules fails here.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import hub
from hub.module_folder import CARD, README, WEIGHTS
from hub.registry import load_registry

GOLDEN = Path(__file__).resolve().parent / "golden"
ATOL, RTOL = 1e-6, 1e-5


def _make_golden():
    spec = importlib.util.spec_from_file_location("mdhub_make_golden", GOLDEN / "make_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


mg = _make_golden()
REGISTERED = sorted(a.id for a in load_registry(entry_points=False))
FOLDERS = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and (p / mg.EXPECTED).is_file())


def test_every_registered_architecture_has_a_golden_module():
    missing = [a for a in REGISTERED if not (GOLDEN / a / mg.EXPECTED).is_file()]
    assert not missing, (f"no golden module for {missing}: add a tiny config to tests/golden/make_golden.py "
                         "(TINY_CONFIGS) and run `.venv/bin/python tests/golden/make_golden.py`, then commit the "
                         "folder")
    for a in REGISTERED:
        for name in (WEIGHTS, CARD, README):
            assert (GOLDEN / a / name).is_file(), f"tests/golden/{a}/{name} is missing"


@pytest.mark.parametrize("arch_id", FOLDERS)
def test_golden_module_loads_and_computes_its_expected_outputs(arch_id):
    folder = GOLDEN / arch_id
    expected = json.loads((folder / mg.EXPECTED).read_text())
    m = hub.load(folder)  # validated card, built through the local registry, sha256 checked, tensors strict
    assert m.card.architecture == arch_id == expected["architecture"]
    assert m.card.kind == expected["kind"]
    assert not m.net.training
    inputs = mg.tensors_from_json(expected["inputs"])
    got = mg.outputs_for(m.net, m.card.kind, inputs)
    assert sorted(got) == sorted(expected["outputs"]), f"{arch_id}: outputs {sorted(got)} != expected"
    for key, want in mg.tensors_from_json(expected["outputs"]).items():
        torch.testing.assert_close(got[key], want, atol=ATOL, rtol=RTOL, msg=lambda m, key=key: f"{arch_id} {key}: {m}")


# Every registered architecture at its tiny config, plus the config variants that change the weights layout.
BATTERY = [(a, {}) for a in REGISTERED] + [
    ("swg_resnet", {"weight_head": True}),
    ("cfg_resnet", {"label": "sign-scalar"}),
    ("cfg_resnet", {"label": "value"}),
    ("dql_mlp", {"cond_dim": 2}),
    ("iql", {"q_heads": 3, "reduction": "mean"}),
]


@pytest.mark.parametrize("arch_id,over", BATTERY, ids=[f"{a}{'-' + '-'.join(map(str, o.values())) if o else ''}"
                                                       for a, o in BATTERY])
def test_build_save_load_forward_save_roundtrip(tmp_path, arch_id, over):
    """build -> save -> load -> the same outputs -> save again gives the same bytes (all three files)."""
    net = mg.build(arch_id, **over)
    kind = mg.registered()[arch_id].kind
    first = hub.save(net, mg.card_for(arch_id, net), path=tmp_path / "a")
    loaded = hub.load(tmp_path / "a")
    assert loaded.card == first.card
    assert type(loaded.net) is type(net)
    inputs = mg.inputs_for(net, kind)
    want, got = mg.outputs_for(net, kind, inputs), mg.outputs_for(loaded.net, kind, inputs)
    assert sorted(want) == sorted(got)
    for key in want:
        assert torch.equal(want[key], got[key]), f"{arch_id} {key}: outputs differ after save/load"
    hub.save(loaded.net, loaded.card, path=tmp_path / "b")
    for name in (WEIGHTS, CARD, README):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), \
            f"{arch_id}: {name} differs when a loaded module is saved again"
