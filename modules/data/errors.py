"""Errors of the dataset code. Messages name the file or dataset id, the field, and what was expected versus found."""
from __future__ import annotations

from ..errors import ModulesError


class DatasetError(ModulesError):
    """A dataset that cannot be made, read or imported (unknown id, corrupted file, wrong keys, shapes or dtypes)."""


class MissingDependencyError(DatasetError):
    """An optional package (h5py, minari) that an importer needs is not installed."""
