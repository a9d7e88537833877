"""Store integrity under crashes and concurrency: many kill -9 trials and a concurrent card-update race.

    python benchmarks/store_torture.py --trials 200

Each crash trial forks a child that runs random store operations (card updates, replacing saves, policy saves,
removals) and kills it with SIGKILL at a random moment; the store is then opened (it recovers) and checked: no
leftovers, every acknowledged write present, nothing unacknowledged present, every module loads. The race runs
several processes merging metrics into one card while another replaces modules. Writes a JSON to benchmarks/out/.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import OUT  # noqa: E402
from tests.store_torture import concurrency_trial, crash_trial  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--ops", type=int, default=40, help="operations per crash trial")
    ap.add_argument("--max-delay", type=float, default=0.25, help="latest kill, seconds after the child is ready")
    ap.add_argument("--updaters", type=int, default=4)
    ap.add_argument("--updates", type=int, default=30)
    ap.add_argument("--out", default=str(OUT / "store_torture.json"))
    args = ap.parse_args()
    t0 = time.time()
    results, failures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.trials):
            try:
                results.append(crash_trial(Path(tmp) / f"t{seed}", seed=seed, n_ops=args.ops,
                                           max_delay_s=args.max_delay))
            except AssertionError as err:
                failures.append(str(err))
        race = concurrency_trial(Path(tmp) / "race", updaters=args.updaters, updates=args.updates)
    summary = {
        "trials": args.trials, "failures": len(failures), "failure_messages": failures[:10],
        "killed_mid_sequence": sum(r["killed"] for r in results),
        "killed_during_an_operation": sum(r["in_flight"] for r in results),
        "journal_found_after_kill": sum(r["journal_left"] for r in results),
        "in_flight_write_had_committed": sum(r["committed_in_flight"] for r in results),
        "concurrent_updates": race, "wall_s": round(time.time() - t0, 1), "settings": vars(args),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "failure_messages"}, indent=2))
    for msg in failures[:5]:
        print("FAILED:", msg)
    sys.exit(1 if failures or race["lost"] or race["failed_workers"] else 0)


if __name__ == "__main__":
    main()
