"""The training algorithms the hub offers, by name (torch-free: the CLI shows them as choices in `--help`).

--algo name -> the recipe in modules/train/recipes.py that trains it (hub.training runs them).
"""
from __future__ import annotations

from typing import Final

GUIDANCE_ALGOS: Final = {"iql": "iql", "idql": "idql", "dql": "dql-joint"}
DIFFUSION_ALGOS: Final = {"dql": "dql-guidance-first", "idql": "idql-bc", "swg": "swg", "cfg": "cfg"}

__all__ = ["DIFFUSION_ALGOS", "GUIDANCE_ALGOS"]
