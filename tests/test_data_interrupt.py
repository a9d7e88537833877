"""`data make` interrupted never hangs: Ctrl-C (SIGINT to the whole foreground process group, as a terminal sends
it) ends a parallel collection promptly; the pool's workers leave Ctrl-C to the parent, which terminates them (a
worker killed while holding the task queue's lock would make Pool.terminate wait forever)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
from modules.data.collect import PolicySpec, collect
print("start", flush=True)
collect(PolicySpec(kind="random", env="hopper"), 150_000, workers=2, progress=False)  # 3 shards on 2 workers
print("finished", flush=True)
"""


@pytest.mark.parametrize("delay", [0.5, 2.0])
def test_ctrl_c_ends_a_parallel_collection_promptly(delay):
    p = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == b"start"
        time.sleep(delay)
        os.killpg(p.pid, signal.SIGINT)
        t0 = time.monotonic()
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail("the collection hung after Ctrl-C")
    assert time.monotonic() - t0 < 30
    assert b"finished" not in out and p.returncode != 0
    assert b"KeyboardInterrupt" in err and b"ForkPoolWorker" not in err  # only the parent handled Ctrl-C
    children = subprocess.run(["pgrep", "-g", str(p.pid)], capture_output=True).stdout.split()
    assert children == []  # no worker left behind
