"""The one base of the user-facing errors raised in `modules` (no torch, no numpy: importing it costs nothing).

A `ModulesError` is about the user's input, not a bug: an unknown env or dataset id, a dataset file or a training
checkpoint that cannot be read. Its message is one line naming the file, id or field. The CLI's error policy
(`hub/cli/errors.py`) prints it as `error: <message>` with exit code 1 by catching this class, so it never has to
import the torch-heavy modules that raise it. It is a ValueError, as each of its subclasses was before.
"""
from __future__ import annotations


class ModulesError(ValueError):
    """A user-facing error of `modules`: subclasses are DatasetError, UnknownEnvError and CheckpointError."""
