"""Hostile input (issue 12): every case is refused with ONE line naming the file and the problem, exit code 1 from
the CLI, no traceback, and every file under the hub home unchanged.

1. parser bombs in card.json and README.md front matter (deep nesting, huge integers, huge floats);
2. module files that are directories, FIFOs, symlinks or oversized;
3. config bombs (a small card asking for a huge network), checked on the meta device against the safetensors header;
4. rich markup in ids, card fields, paths and server messages, printed literally;
5. index entries whose folder resolves outside the store;
6. a hub home that is a file, under a file, or not creatable.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

import hub
from cards import CardError, DatasetRef, HubSource, card_from_json, card_from_readme
from hub import IntegrityError, RegistryError, StoreError
from hub.cli import app
from hub.cli.errors import handles_errors
from hub.module_folder import CARD, MAX_CARD_BYTES, README, WEIGHTS, expected_tensors, inside
from hub.registry import registry
from modules.guidance.iql import IQLCritic
from tests.conftest import critic_card, small_critic

runner = CliRunner()
MDHUB = [str(Path(sys.executable).with_name("mdhub"))]


# --- helpers -------------------------------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, object]:
    """Every entry under `root` (never following links, never opening a FIFO): kind and bytes."""
    if not os.path.lexists(root):
        return {".": "absent"}
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode):
        return {".": Path(root).read_bytes() if stat.S_ISREG(st.st_mode) else stat.S_IFMT(st.st_mode)}
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = p.read_bytes()
            else:
                out[rel] = stat.S_IFMT(st.st_mode)
    return out


def one_error_line(output: str, exit_code: int, *needles: str) -> str:
    assert exit_code == 1, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def refused(hub_home: Path, args: list[str], *needles: str, proc: bool = False) -> str:
    """Run `mdhub ARGS`; it must print one error line containing `needles`, exit 1 and leave the hub home as it was.
    With `proc`, in a subprocess with a timeout (for cases that used to hang)."""
    before = snapshot(hub_home)
    if proc:
        r = subprocess.run(MDHUB + args, capture_output=True, text=True, timeout=120, env=dict(os.environ),
                           cwd=Path(__file__).resolve().parents[1])
        line = one_error_line(r.stdout + r.stderr, r.returncode, *needles)
    else:
        result = runner.invoke(app, args)
        line = one_error_line(result.output, result.exit_code, *needles)
    assert snapshot(hub_home) == before
    return line


def stored(module_id: str = "m") -> Path:
    net = small_critic()
    return hub.save(net, critic_card(net, module_id)).path


def set_weights(folder: Path, blob: bytes) -> None:
    """Replace model.safetensors and make the card consistent with it (size and sha256)."""
    (folder / WEIGHTS).write_bytes(blob)
    data = json.loads((folder / CARD).read_text())
    data["files"][0].update(sha256=hashlib.sha256(blob).hexdigest(), size=len(blob))
    (folder / CARD).write_text(json.dumps(data))


def edit_card(folder: Path, mutate) -> None:
    data = json.loads((folder / CARD).read_text())
    mutate(data)
    (folder / CARD).write_text(json.dumps(data))


# --- 1. parser bombs -----------------------------------------------------------------------------------------------
DEEP = 100_000
JSON_BOMBS = {
    "deep-array": ("[" * DEEP + "]" * DEEP, "nested more than"),
    "deep-object": ('{"a":' * DEEP + "1" + "}" * DEEP, "nested more than"),
    "5000-digit-int": ("1" * 5000, "an integer of 5000 characters"),
    "64-bit-overflow": ("1" + "0" * 30, "an integer of"),
    "huge-float": ("1e999999", "not a finite float"),
    "long-float": ("1." + "1" * 200_000, "a number of"),
    "infinity": ("-Infinity", "-Infinity is not allowed"),
}


@pytest.mark.parametrize("case", sorted(JSON_BOMBS))
def test_card_json_parser_bombs_are_refused(case, hub_home):
    body, message = JSON_BOMBS[case]
    folder = stored()
    text = (folder / CARD).read_text()
    (folder / CARD).write_text(text.replace('"description": ""', f'"description": {body}', 1))
    with pytest.raises(CardError, match=re.escape(message)):
        card_from_json((folder / CARD).read_bytes())
    refused(hub_home, ["show", "m"], str(folder / CARD), message)


YAML_BOMBS = {
    "deep-flow": ("[" * DEEP + "]" * DEEP, "nested more than"),
    "deep-mapping": ("{a: " * DEEP + "1" + "}" * DEEP, "nested more than"),
    "5000-digit-int": ("1" * 5000, "a number of 5000 characters"),
    "64-bit-overflow": ("1" + "0" * 30, "an integer of"),
    "huge-float": ("1.0e+999999", "not allowed (numbers must be finite)"),
    "sexagesimal": ("1:" * 3000 + "1", "a number of"),
}


@pytest.mark.parametrize("case", sorted(YAML_BOMBS))
def test_readme_front_matter_bombs_are_refused(case):
    body, message = YAML_BOMBS[case]
    net = small_critic()
    from cards import card_to_readme

    text = card_to_readme(critic_card(net))
    assert "  description: ''\n" in text
    bomb = text.replace("  description: ''\n", f"  description: {body}\n", 1)
    with pytest.raises(CardError, match=re.escape(message)) as err:
        card_from_readme(bomb.encode(), "alice/critic: README.md")
    assert str(err.value).startswith("alice/critic: README.md")
    assert "\n" not in str(err.value)


def test_pulling_a_readme_bomb_is_one_line_and_stores_nothing(hub_home, tmp_path):
    from cards import card_to_readme
    from hub.remote.folder import FileBackend

    folder = stored("keep")
    card = (folder / CARD).read_bytes()
    readme = card_to_readme(hub.load("keep").card).replace("---\n", "---\nbomb: " + "[" * DEEP + "]" * DEEP + "\n", 1)
    root = tmp_path / "remote"
    files = {CARD: card, README: readme.encode(), WEIGHTS: (folder / WEIGHTS).read_bytes()}
    FileBackend(root).upload("team/bomb", files, revision="main", message="hostile")
    refused(hub_home, ["pull", f"file://{root}::team/bomb", "--id", "bomb"], "README.md", "nested more than")


# --- 2. module files that are not plain files inside the folder -----------------------------------------------------
def _card_dir(folder: Path, outside: Path) -> None:
    (folder / CARD).unlink()
    (folder / CARD).mkdir()


def _card_to_dev_zero(folder: Path, outside: Path) -> None:
    (folder / CARD).unlink()
    (folder / CARD).symlink_to("/dev/zero")


def _card_outside(folder: Path, outside: Path) -> None:
    outside.write_bytes((folder / CARD).read_bytes())  # a perfectly valid card, but not in the folder
    (folder / CARD).unlink()
    (folder / CARD).symlink_to(outside)


def _card_huge(folder: Path, outside: Path) -> None:
    (folder / CARD).write_text((folder / CARD).read_text() + " " * MAX_CARD_BYTES)


def _readme_link(folder: Path, outside: Path) -> None:
    outside.write_bytes((folder / README).read_bytes())
    (folder / README).unlink()
    (folder / README).symlink_to(outside)


CARD_FILE_CASES = {
    "card-is-a-directory": (_card_dir, CARD, "is a directory"),
    "card-links-to-dev-zero": (_card_to_dev_zero, CARD, "symlink"),
    "card-links-outside": (_card_outside, CARD, "symlink"),
    "card-over-1MB": (_card_huge, CARD, "over the 1000000-byte limit"),
    "readme-links-outside": (_readme_link, README, "symlink"),
}


@pytest.mark.parametrize("case", sorted(CARD_FILE_CASES))
def test_card_files_must_be_plain_files_inside_the_folder(case, hub_home, tmp_path):
    make, name, message = CARD_FILE_CASES[case]
    folder = stored()
    make(folder, tmp_path / "outside-file")
    with pytest.raises(StoreError, match=re.escape(message)):
        hub.load("m")
    refused(hub_home, ["show", "m"], str(folder / name), message)


def _weights_dir(folder: Path, outside: Path) -> None:
    (folder / WEIGHTS).unlink()
    (folder / WEIGHTS).mkdir()


def _weights_to_dev_zero(folder: Path, outside: Path) -> None:
    (folder / WEIGHTS).unlink()
    (folder / WEIGHTS).symlink_to("/dev/zero")


def _weights_outside(folder: Path, outside: Path) -> None:
    outside.write_bytes((folder / WEIGHTS).read_bytes())  # the right bytes, the right sha256, but elsewhere
    (folder / WEIGHTS).unlink()
    (folder / WEIGHTS).symlink_to(outside)


def _weights_longer(folder: Path, outside: Path) -> None:
    with open(folder / WEIGHTS, "ab") as f:
        f.write(b"\0" * 4096)


def _weights_declared_huge(folder: Path, outside: Path) -> None:
    edit_card(folder, lambda d: d["files"][0].update(size=10**15))


WEIGHT_FILE_CASES = {
    "weights-is-a-directory": (_weights_dir, "is a directory"),
    "weights-link-to-dev-zero": (_weights_to_dev_zero, "symlink"),
    "weights-link-outside": (_weights_outside, "symlink"),
    "weights-longer-than-declared": (_weights_longer, "the card says"),
    "weights-declared-1PB": (_weights_declared_huge, "limit"),
}


@pytest.mark.parametrize("case", sorted(WEIGHT_FILE_CASES))
def test_weights_must_be_a_plain_file_of_the_declared_size(case, hub_home, tmp_path):
    make, message = WEIGHT_FILE_CASES[case]
    folder = stored()
    make(folder, tmp_path / "outside-file")
    with pytest.raises(IntegrityError, match=re.escape(message)):
        hub.load("m")
    refused(hub_home, ["push", "m", f"file://{tmp_path / 'remote'}::team/m"], WEIGHTS, message)
    assert not (tmp_path / "remote").exists()


@pytest.mark.parametrize("name", [CARD, WEIGHTS])
def test_a_fifo_is_refused_without_hanging(name, hub_home, tmp_path):
    folder = stored()
    (folder / name).unlink()
    os.mkfifo(folder / name)
    args = ["show", "m"] if name == CARD else ["push", "m", f"file://{tmp_path / 'remote'}::team/m"]
    refused(hub_home, args, str(folder / name), "a FIFO", proc=True)


# --- 3. config bombs ------------------------------------------------------------------------------------------------
@pytest.fixture
def real_builds(monkeypatch):
    """The devices IQLCritic was built on (meta for the shape check, cpu for the real build)."""
    devices: list[str] = []
    original = IQLCritic.__init__

    def spy(self, cfg):
        devices.append(torch.empty(0).device.type)
        original(self, cfg)

    monkeypatch.setattr(IQLCritic, "__init__", spy)
    return devices


CONFIG_BOMBS = {
    "hidden-20000": ({"hidden": 20000}, RegistryError, "config.hidden"),
    "100000-layers": ({"layers": 100000}, RegistryError, "config.layers"),
    "10000-heads": ({"q_heads": 10000}, RegistryError, "config.q_heads"),
    "in-bounds-but-45G-params": ({"hidden": 16000, "layers": 60}, StoreError, "over the 200,000,000"),
    "config-wider-than-weights": ({"hidden": 32}, IntegrityError, "weights do not fit the architecture"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_BOMBS))
def test_config_bombs_are_refused_before_building(case, hub_home, tmp_path, real_builds):
    change, error, message = CONFIG_BOMBS[case]
    folder = stored()
    edit_card(folder, lambda d: d["config"].update(change))
    real_builds.clear()
    with pytest.raises(error, match=re.escape(message)):
        hub.load("m")
    assert "cpu" not in real_builds  # only ever built on the meta device
    refused(hub_home, ["push", "m", f"file://{tmp_path / 'remote'}::team/m"], message)


def _header_length(n: int):
    def make(blob: bytes) -> bytes:
        return struct.pack("<Q", n) + blob[8:]
    return make


def _header_deep(blob: bytes) -> bytes:
    header = b"[" * DEEP + b"]" * DEEP
    return struct.pack("<Q", len(header)) + header


def _header_lies(blob: bytes) -> bytes:
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    for info in header.values():
        if isinstance(info, dict) and "shape" in info:
            info["shape"] = [10**9, 10**9]
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + blob[8 + n:]


HEADER_BOMBS = {
    "header-length-2^63": (_header_length(2**63), "not a valid safetensors file"),
    "header-length-past-the-file": (_header_length(10**6), "not a valid safetensors file"),
    "header-nested-100k-deep": (_header_deep, "nested more than"),
    "header-claims-10^18-floats": (_header_lies, "not a valid safetensors file"),
}


@pytest.mark.parametrize("case", sorted(HEADER_BOMBS))
def test_safetensors_header_bombs_are_refused(case, hub_home, tmp_path, real_builds):
    make, message = HEADER_BOMBS[case]
    folder = stored()
    set_weights(folder, make((folder / WEIGHTS).read_bytes()))
    real_builds.clear()
    with pytest.raises(IntegrityError, match=re.escape(message)):
        hub.load("m")
    assert "cpu" not in real_builds
    refused(hub_home, ["push", "m", f"file://{tmp_path / 'remote'}::team/m"], WEIGHTS, message)


@pytest.mark.parametrize("arch_id", sorted(a.id for a in registry() if a.kind != "policy"))
def test_every_registered_architecture_builds_on_meta_with_the_real_shapes(arch_id):
    arch = registry().get(arch_id)
    config = {"obs_dim": 5, "act_dim": 2, "hidden": 16}
    expected = expected_tensors(arch, config, "card.json")
    real = arch.make(config).state_dict()
    assert {k: v[1] for k, v in expected.items()} == {k: tuple(t.shape) for k, t in real.items()}


# --- 4. rich markup is printed literally ----------------------------------------------------------------------------
@pytest.mark.parametrize("ref", ["no[/such]", "[link=https:evil.example]x[/link]", "[bold red]x", "a\x1b[31mred"])
def test_markup_in_an_id_or_path_is_printed_literally(ref, hub_home):
    stored("keep")
    line = refused(hub_home, ["show", ref], "no ")
    shown = ref.replace("\x1b", "\\x1b")
    assert shown in line


def test_markup_in_card_fields_and_server_messages_is_printed_literally(hub_home, tmp_path):
    net = small_critic()
    card = critic_card(net, "marked", interface={"obs_dim": 3, "act_dim": 2, "env_id": "[/env]",
                                                 "dataset": DatasetRef(id="[link=http://evil.example]d[/link]")},
                       hub_source=HubSource(backend="file", repo="[/repo]", commit="[bold]c"))
    hub.save(net, card)
    result = runner.invoke(app, ["show", "marked"])
    assert result.exit_code == 0, result.output
    assert "[/env]" in result.output and "[link=http://evil.example]d[/link]" in result.output
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0 and "[/repo]" in result.output, result.output
    refused(hub_home, ["pull", f"file://{tmp_path}/no[/such]::team/x"], "no[/such]")


# --- 5. index entries that point outside the store ------------------------------------------------------------------
def test_inside_refuses_escapes_and_symlinks(tmp_path):
    root = tmp_path / "modules"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "ok.1234").mkdir()
    assert inside(root, root / "ok.1234") == root / "ok.1234"
    assert inside(root, Path("not-yet-made")) == root / "not-yet-made"
    (root / "link").symlink_to(tmp_path / "elsewhere")
    (root / "inner-link").symlink_to(root / "ok.1234")
    for bad in ["../elsewhere", "../../etc", "/etc", str(tmp_path / "elsewhere"), "", ".", "ok.1234/..", "link",
                "inner-link", "link/sub"]:
        with pytest.raises(StoreError, match="refused"):
            inside(root, root / bad if bad and not bad.startswith("/") else Path(bad))


def _point_index_at(hub_home: Path, module_id: str, folder: str) -> None:
    index = json.loads((hub_home / "index.json").read_text())
    index["modules"][module_id]["folder"] = folder
    (hub_home / "index.json").write_text(json.dumps(index))


def test_an_index_entry_outside_the_store_is_refused_and_never_deleted(hub_home, tmp_path):
    victim = tmp_path / "victim"
    folder = stored("m")
    shutil.copytree(folder, victim)  # a valid module folder, outside the store
    _point_index_at(hub_home, "m", "../../victim")
    assert (hub_home / "modules" / "../../victim").resolve() == victim.resolve()
    with pytest.raises(StoreError, match="outside|refused"):
        hub.load("m")
    refused(hub_home, ["show", "m"], "victim")
    net = small_critic(3)
    for attempt in (lambda: hub.save(net, critic_card(net, "m"), overwrite=True), lambda: hub.Store().remove("m")):
        try:
            attempt()
        except StoreError:
            pass
        assert victim.is_dir() and (victim / CARD).is_file(), "a tampered index deleted a folder outside the store"


def test_a_module_folder_that_is_a_symlink_is_refused(hub_home, tmp_path):
    folder = stored("m")
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(folder), elsewhere)
    folder.symlink_to(elsewhere)
    with pytest.raises(StoreError, match="symlink"):
        hub.load("m")
    refused(hub_home, ["show", "m"], "symlink")


# --- 6. a hub home that cannot be used ------------------------------------------------------------------------------
def _home_file(tmp_path: Path) -> Path:
    p = tmp_path / "home-is-a-file"
    p.write_text("not a folder\n")
    return p


HOMES = {
    "a-regular-file": lambda tmp_path: _home_file(tmp_path),
    "under-a-file": lambda tmp_path: _home_file(tmp_path) / "mdhub",
    "under-a-file-with-markup": lambda tmp_path: _home_file(tmp_path) / "[/x]",
    "under-proc": lambda tmp_path: Path("/proc/mdhub-no-such-dir/home"),
}
NAMED = {"a-regular-file": "home-is-a-file", "under-a-file": "home-is-a-file", "under-a-file-with-markup": "[/x]",
         "under-proc": "/proc/mdhub-no-such-dir"}


@pytest.mark.parametrize("case", sorted(HOMES))
@pytest.mark.parametrize("args", [["list"], ["show", "x"], ["reindex"]], ids=["list", "show", "reindex"])
def test_an_unusable_hub_home_is_one_line(case, args, tmp_path, monkeypatch):
    home = HOMES[case](tmp_path)
    monkeypatch.setenv("MDHUB_HOME", str(home))
    before = snapshot(tmp_path)
    result = runner.invoke(app, args)
    one_error_line(result.output, result.exit_code, NAMED[case])
    assert snapshot(tmp_path) == before


def test_os_errors_are_one_line_and_other_errors_are_not_swallowed(capsys):
    @handles_errors
    def full_disk():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/hub/[/x]/index.json")

    with pytest.raises(typer.Exit) as exit_:
        full_disk()
    assert exit_.value.exit_code == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: /hub/[/x]/index.json: No space left on device"

    @handles_errors
    def bug():
        raise KeyError("a programming error")

    with pytest.raises(KeyError):
        bug()
