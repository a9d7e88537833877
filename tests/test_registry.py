"""The registry: ids resolve to builders in `modules`, unknown ids list the known ones, entry points extend it."""
from __future__ import annotations

import sys
import textwrap

import pytest

from hub.errors import RegistryError
from hub.registry import load_registry, registry


def test_every_registered_architecture_imports():
    reg = registry()
    for arch in reg:
        assert arch.builder() is not None, arch.id


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(RegistryError, match=r"unknown guidance architecture 'nope'; known: .*iql"):
        registry().get("nope", kind="guidance")


def test_bad_registry_files_are_reported(tmp_path):
    bad = tmp_path / "registry.yaml"
    bad.write_text("format_version: 1\nguidance:\n  x: {build: 'not a path'}\n")
    with pytest.raises(RegistryError, match=r"registry.yaml: invalid registry: field 'guidance.x.build'"):
        load_registry(bad, entry_points=False)
    bad.write_text("format_version: 1\nguidance:\n  x: {build: 'a.b:C', colour: red}\n")
    with pytest.raises(RegistryError, match=r"unknown field 'guidance.x.colour'"):
        load_registry(bad, entry_points=False)
    with pytest.raises(RegistryError, match="not found"):
        load_registry(tmp_path / "missing.yaml")


def test_third_party_architectures_come_through_entry_points(tmp_path, monkeypatch):
    """A fake installed distribution declares an architecture in the `mdhub.architectures` group."""
    pkg = tmp_path / "thirdparty_arch"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from modules.guidance.iql import IQLCritic
        class TinyCritic(IQLCritic):
            pass
        REGISTRY = {"guidance": {"tiny_critic": {"build": "thirdparty_arch:TinyCritic", "provides": ["q", "v"]}}}
    """))
    dist = tmp_path / "thirdparty_arch-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-arch\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mdhub.architectures]\ntiny = thirdparty_arch:REGISTRY\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = load_registry()
    arch = reg.get("tiny_critic", kind="guidance")
    assert arch.source == "entry point 'tiny'"
    net = arch.make({"obs_dim": 2, "act_dim": 1, "hidden": 8})
    assert type(net).__name__ == "TinyCritic"
    sys.modules.pop("thirdparty_arch", None)


def test_each_backbone_defaults_to_the_reverse_step_its_registry_entry_declares():
    from hub.registry import registry

    backbones = [a for a in registry() if a.kind == "diffusion"]
    assert backbones
    for arch in backbones:
        assert arch.reverse is not None, f"{arch.id}: registry.yaml declares no reverse step"
        default = arch.builder().Config.model_fields["reverse"].default
        assert default == arch.reverse, f"{arch.id}: builder default {default}, registry says {arch.reverse}"
