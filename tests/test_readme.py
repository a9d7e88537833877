"""The README's Python snippet runs as written on a fresh store, at tiny sizes, against the loopback Hub.

The snippet is taken from README.md (the first ```python block under '## Python'); the one line that sets the sizes,
`STEPS, TRANSITIONS, EPISODES = ...`, is replaced by tiny ones (the README says so). Nothing else is changed."""
from __future__ import annotations

import re
from pathlib import Path

import hub
from tests.test_sharing import hub_server  # noqa: F401  (the loopback Hub fixture)

README = Path(__file__).resolve().parent.parent / "README.md"
SIZES = re.compile(r"^STEPS, TRANSITIONS, EPISODES = .*$", re.MULTILINE)


def readme_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Python\n"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("\n```\n", start) + 1]


def test_the_snippet_sets_its_sizes_on_one_line():
    code = readme_snippet()
    assert len(SIZES.findall(code)) == 1, "the README snippet must set STEPS, TRANSITIONS, EPISODES on one line"
    assert "obs =" in code and "make_and_store(" in code  # it makes its own data and state


def test_the_readme_snippet_runs_on_a_fresh_store(hub_server, capsys):  # noqa: F811
    code = SIZES.sub("STEPS, TRANSITIONS, EPISODES = 3, 1000, 1", readme_snippet())
    namespace: dict = {"__name__": "readme_snippet"}
    exec(compile(code, str(README) + " (Python snippet)", "exec"), namespace)  # noqa: S102 - our own README
    printed = capsys.readouterr().out
    assert "COMPATIBLE" in printed and "CombinedPolicy(" in printed
    assert namespace["action"].shape == (namespace["d"].card.interface.act_dim,)
    assert hub.show("hopper-dql-double").evaluations[0].episodes == 1
    assert namespace["copy"].card.kind == "policy" and namespace["copy"].card.hub_source is not None
    assert "me/hopper-dql-double" in hub_server.repos
