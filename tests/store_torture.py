"""Store torture: kill a writing child at a random moment, or race several writers; then check the store's promises.

Used by tests/test_store_integrity.py (a few trials) and benchmarks/store_torture.py (many trials, for figures).

A crash trial: a forked child runs a random sequence of store operations (card updates that add a metric, saves that
replace a critic, saves of policy cards, removals). Before each operation it appends `start` to a log, after it
`ack`. The parent kills it with SIGKILL after a random delay, opens the store (which recovers) and checks:
- no leftovers: the folders under modules/ are exactly those the index names, no temporary file, no journal;
- every acknowledged write is there and nothing unacknowledged is: the store equals the log replayed up to the last
  acknowledged operation, or up to and including the one in flight (which may have committed before its ack);
- every module loads (weights match their card).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

from cards import ModuleRef, PolicySpec

CRITIC_IDS = ("m0", "m1", "m2")
POLICY_IDS = ("p0", "p1")
BASE = "base"


def _critic_card(module_id: str, version: str):
    from tests.conftest import critic_card, small_critic

    seed = abs(hash(version)) % 10_000
    net = small_critic(seed)
    return net, critic_card(net, module_id, description=version)


def _policy_card(module_id: str, version: str, base_ref: ModuleRef):
    from cards import ModuleCard

    net, card = _critic_card(module_id, version)
    return ModuleCard(**{**card.model_dump(), "kind": "policy", "architecture": "combined", "config": {},
                         "guidance": None, "files": [],
                         "policy": PolicySpec(diffusion=base_ref, mode="resample", params={"version": version})})


def _random_ops(rng: random.Random, n: int) -> list[dict[str, Any]]:
    ops = []
    for i in range(n):
        kind = rng.choice(["update", "update", "save", "policy", "remove"])
        if kind == "update":
            ops.append({"op": "update", "key": f"k{i}"})
        elif kind == "save":
            ops.append({"op": "save", "id": rng.choice(CRITIC_IDS), "version": f"v{i}"})
        elif kind == "policy":
            ops.append({"op": "policy", "id": rng.choice(POLICY_IDS), "version": f"v{i}"})
        else:
            ops.append({"op": "remove", "id": rng.choice(CRITIC_IDS + POLICY_IDS)})
    return ops


def _apply(store, op: dict[str, Any]) -> None:
    from hub.errors import NotFoundError

    if op["op"] == "update":
        store.update_card(BASE, metrics={op["key"]: 1.0})
    elif op["op"] == "save":
        net, card = _critic_card(op["id"], op["version"])
        store.save(net, card, overwrite=True)
    elif op["op"] == "policy":
        store.save(None, _policy_card(op["id"], op["version"], store.card(BASE).ref()), overwrite=True)
    else:
        try:
            store.remove(op["id"], force=True)
        except NotFoundError:
            pass


def _child(root: str, log: str, ops: list[dict[str, Any]]) -> None:
    import torch

    torch.set_num_threads(1)
    from hub.store import Store

    store = Store(Path(root))
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"ready\n")
    for i, op in enumerate(ops):
        os.write(fd, f"start {i}\n".encode())
        _apply(store, op)
        os.write(fd, f"ack {i}\n".encode())
    os.close(fd)


def expected_state(ops: list[dict[str, Any]]) -> dict[str, Any]:
    """The store's observable state after `ops`: base's metric keys, and each other id's version (or absent)."""
    state: dict[str, Any] = {BASE: frozenset()}
    for op in ops:
        if op["op"] == "update":
            state[BASE] = state[BASE] | {op["key"]}
        elif op["op"] in ("save", "policy"):
            state[op["id"]] = op["version"]
        else:
            state.pop(op["id"], None)
    return state


def observed_state(store) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for entry in store.entries():
        m = store.load(entry.id)  # verifies the weights against the card
        state[entry.id] = frozenset(m.card.metrics) if entry.id == BASE else m.card.description
    return state


def leftovers(root: Path) -> list[str]:
    """Anything under the store that the index does not account for."""
    index = json.loads((root / "index.json").read_text())["modules"]
    named = {e["folder"] for e in index.values()}
    extra = [p.name for p in (root / "modules").iterdir() if p.name not in named]
    extra += [p.name for p in root.iterdir() if p.name.startswith((".index-", ".journal-")) or p.name == "journal.json"]
    return sorted(extra)


def seed_store(root: Path) -> None:
    from hub.store import Store

    net, card = _critic_card(BASE, "base")
    Store(root).save(net, card)


def crash_trial(root: Path, seed: int, n_ops: int = 40, max_delay_s: float = 0.4) -> dict[str, Any]:
    """One crash trial in a fresh store at `root`. Returns what was checked; raises AssertionError on a broken
    promise."""
    from hub.store import Store

    root.mkdir(parents=True)
    seed_store(root)
    rng = random.Random(seed)
    ops = _random_ops(rng, n_ops)
    log = root.parent / f"{root.name}.log"
    proc = mp.get_context("fork").Process(target=_child, args=(str(root), str(log), ops))
    proc.start()
    deadline = time.monotonic() + 30
    while not (log.exists() and log.read_text().startswith("ready")):
        if time.monotonic() > deadline or not proc.is_alive() and proc.exitcode not in (None, 0):
            raise AssertionError(f"trial {seed}: the child did not start (exit {proc.exitcode})")
        time.sleep(0.002)
    time.sleep(rng.uniform(0, max_delay_s))
    killed = proc.is_alive()
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    lines = log.read_text().split()
    acked = [int(n) for word, n in zip(lines[1::2], lines[2::2], strict=False) if word == "ack"]
    started = [int(n) for word, n in zip(lines[1::2], lines[2::2], strict=False) if word == "start"]
    done = (max(acked) + 1) if acked else 0
    in_flight = started[-1] if started and started[-1] >= done else None

    store = Store(root)
    journal_left = (root / "journal.json").exists()
    observed = observed_state(store)  # opening the store recovers from the journal
    extra = leftovers(root)
    assert not extra, f"trial {seed}: leftovers after recovery: {extra}"
    allowed = [expected_state(ops[:done])]
    if in_flight is not None:
        allowed.append(expected_state(ops[:in_flight + 1]))
    assert observed in allowed, (f"trial {seed}: the store holds {observed}, expected one of {allowed} "
                                 f"(acked {done}, in flight {in_flight})")
    return {"seed": seed, "killed": killed, "acked": done, "in_flight": in_flight is not None,
            "journal_left": journal_left, "committed_in_flight": in_flight is not None and observed == allowed[-1]
            and observed != allowed[0]}


def _updater(root: str, worker: int, n: int, barrier) -> None:
    import torch

    torch.set_num_threads(1)
    from hub.store import Store

    store = Store(Path(root))
    barrier.wait()
    for i in range(n):
        store.card(BASE)  # read first, as `mdhub eval` does
        store.update_card(BASE, metrics={f"w{worker}-{i}": float(i)})


def _saver(root: str, worker: int, n: int, barrier) -> None:
    import torch

    torch.set_num_threads(1)
    from hub.store import Store

    store = Store(Path(root))
    barrier.wait()
    for i in range(n):
        net, card = _critic_card(f"s{worker}", f"v{i}")
        store.save(net, card, overwrite=True)
        store.load(BASE)  # a reader during everyone's updates: never "no such module"


def concurrency_trial(root: Path, updaters: int = 4, updates: int = 30, savers: int = 1) -> dict[str, Any]:
    """`updaters` processes each merge `updates` metrics into one card while `savers` replace other modules."""
    from hub.store import Store

    root.mkdir(parents=True)
    seed_store(root)
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(updaters + savers)
    procs = [ctx.Process(target=_updater, args=(str(root), w, updates, barrier)) for w in range(updaters)]
    procs += [ctx.Process(target=_saver, args=(str(root), w, updates // 3, barrier)) for w in range(savers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    metrics = Store(root).card(BASE).metrics
    wanted = {f"w{w}-{i}" for w in range(updaters) for i in range(updates)}
    return {"writes": len(wanted), "lost": len(wanted - set(metrics)), "failed_workers": len(failed),
            "leftovers": leftovers(root)}
