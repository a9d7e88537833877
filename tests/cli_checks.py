"""What CLI tests of the data commands check alike: success, or exactly one `error:` line with exit code 1."""
from __future__ import annotations

from typing import Any

from typer.testing import CliRunner, Result

from hub.cli.data import data_app

runner = CliRunner()


def data_ok(args: list[str]) -> Result:
    res = runner.invoke(data_app, args)
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def data_fails(args: list[str], *needles: Any) -> Result:
    """The command fails with one line that starts with `error:` and names every needle; no traceback."""
    res = runner.invoke(data_app, args)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for n in needles:
        assert n in res.output, res.output
    return res
