"""Packaging: declared dependencies match what the code imports, a LICENSE that matches pyproject, extras, URLs; the
library never switches matplotlib's backend."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (the project supports 3.10; this check needs 3.11)
ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _floor(name: str) -> tuple[int, ...]:
    spec = next(d for d in PROJECT["dependencies"] if re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0] == name)
    m = re.search(r">=\s*([0-9.]+)", spec)
    assert m, f"{name} has no floor: {spec}"
    return tuple(int(x) for x in m.group(1).split("."))


def _top_level_imports() -> set[str]:
    names: set[str] = set()
    for pkg in ("cards", "hub", "modules"):
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return names


# import name -> distribution name, for every third-party package the library imports
DISTRIBUTIONS = {"torch": "torch", "numpy": "numpy", "safetensors": "safetensors", "huggingface_hub": "huggingface-hub",
                 "httpx2": "httpx2", "pydantic": "pydantic", "yaml": "pyyaml", "typer": "typer", "rich": "rich",
                 "tqdm": "tqdm", "filelock": "filelock", "gymnasium": "gymnasium", "pybullet": "pybullet",
                 "pybullet_envs_gymnasium": "pybullet-envs-gymnasium", "matplotlib": "matplotlib"}
OPTIONAL = {"h5py", "minari", "tensorboard", "ray"}  # imported lazily, declared as extras


def test_every_imported_package_is_declared():
    stdlib = set(sys.stdlib_module_names)
    ours = {"cards", "hub", "modules"}
    third_party = _top_level_imports() - stdlib - ours - {"__future__"}
    declared = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() for d in PROJECT["dependencies"]}
    extras = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() for ds in PROJECT["optional-dependencies"].values()
              for d in ds}
    for name in sorted(third_party):
        if name in OPTIONAL:
            assert name in extras, f"{name} is imported but no extra declares it"
            continue
        assert name in DISTRIBUTIONS, f"the library imports {name}: declare it in pyproject.toml and here"
        assert DISTRIBUTIONS[name] in declared, f"{DISTRIBUTIONS[name]} is imported but not a dependency"


def test_floors_are_true_to_the_apis_used():
    # the httpx2 release: hub/remote/ imports httpx2 and catches its errors from huggingface_hub's session
    assert _floor("huggingface-hub") >= (2, 0)
    import huggingface_hub
    from huggingface_hub import errors

    assert hasattr(huggingface_hub, "set_client_factory") and hasattr(errors, "RevisionResolutionError")
    assert _floor("rich") >= (13,)


def test_license_extras_and_urls():
    text = (ROOT / "LICENSE").read_text()
    assert PROJECT["license"] == "MIT" and text.startswith("MIT License")
    assert "LICENSE" in PROJECT["license-files"]
    assert {"tensorboard", "ray", "hdf5", "minari"} <= set(PROJECT["optional-dependencies"])
    assert PROJECT["urls"] and all(u.startswith("https://") for u in PROJECT["urls"].values())


def test_the_library_never_switches_the_matplotlib_backend(tmp_path):
    for pkg in ("cards", "hub", "modules"):
        for path in (ROOT / pkg).rglob("*.py"):
            assert "matplotlib.use(" not in path.read_text(encoding="utf-8"), f"{path}: matplotlib.use(...)"
    import matplotlib

    from hub.plots import plot_curve

    before = matplotlib.get_backend()
    out = plot_curve([{"step": 1, "wall_time_s": 0.1, "normalized_score": 3.0},
                      {"step": 2, "wall_time_s": 0.2, "normalized_score": 5.0}], tmp_path / "c.png", "t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.get_backend() == before
