"""Hub operations in milliseconds per module: how they grow with module size and with the number of stored modules.

1. Module size. For each `--sizes` hidden width, an IQL critic (guidance, `iql`) and a Diffusion-QL backbone
   (diffusion, `dql_mlp`) are made by the hub's own training entry points (`hub.train_guidance` /
   `hub.train_diffusion`, one gradient step on `toy-8gaussians`, so their cards are the ones training writes).
   Per module: `save` (hub.save into the store), `load` (hub.load by id: card, registry build, sha256, strict
   tensors), `push` (hub.push to a new repo on a loopback Hugging Face Hub, `tests/hub_server.py`, through the real
   `huggingface_hub` client), `pull_cold` (hub.pull into a fresh HF cache) and `pull_cached` (hub.pull again through
   a warm cache). Per guidance + diffusion pair: `check` (hub.check, mode resample), `combine` (hub.combine, mode
   resample, `--candidates` candidates) and `policy_save` (CombinedPolicy.save: the policy card).
2. Store size. A small critic (`--count-hidden`) is saved under N ids (`--counts`, cumulative); at each N:
   `save` (one more module), `load` (by id, a random stored one) and `list` (hub.list_modules).

Every operation runs `--warmup` untimed times, then `--repeats` timed times; the median and the p90 (nearest rank)
are reported in ms. Everything lives in a temporary folder (MDHUB_HOME, HF_HOME, HF cache) that is removed at the
end; HF_ENDPOINT points at the loopback server, so nothing leaves 127.0.0.1. Writes `--out`.json and `--out`.png
(ms vs module bytes, log-log, and ms vs store size).

    python benchmarks/hub_ops.py [--repeats 10] [--sizes 64,256,1024] [--counts 10,100,500] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, latency_summary, machine  # noqa: E402

if TYPE_CHECKING:
    from hub.store import Store
    from tests.hub_server import HubServer

DATA = "toy-8gaussians"
MODULE_OPS = ("save", "load", "push", "pull_cold", "pull_cached")
PAIR_OPS = ("check", "combine", "policy_save")
COUNT_OPS = ("save", "load", "list")

Stats = dict[str, float]


def measure(op: Callable[[int], Any], repeats: int, warmup: int) -> Stats:
    """Call `op(k)` for k = 0, 1, ... (a distinct k per call, for fresh ids): `warmup` untimed calls, then `repeats`
    timed ones."""
    times = []
    for k in range(warmup + repeats):
        t0 = time.perf_counter()
        op(k)
        if k >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    return latency_summary(times)


def isolate(tmp: Path) -> None:
    """Point the hub and huggingface_hub at `tmp` (before huggingface_hub is imported: it reads some at import)."""
    os.environ.update({
        "MDHUB_HOME": str(tmp / "home"), "HF_HOME": str(tmp / "hf-home"), "HF_HUB_CACHE": str(tmp / "hf-cache"),
        "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "MPLBACKEND": "Agg",
    })
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        os.environ.pop(name, None)


def weights_size(module: Any) -> int:
    from hub.store import WEIGHTS

    entry = module.card.file(WEIGHTS)
    return int(entry.size) if entry else 0


def pull_through(cache: Path, repo: str, local_id: str, store: Store) -> None:
    """hub.pull with the HF cache at `cache` (the backend reads HF_HUB_CACHE when a pull makes it)."""
    import hub

    os.environ["HF_HUB_CACHE"] = str(cache)
    hub.pull(repo, local_id=local_id, store=store)


def by_size(hidden: int, args: argparse.Namespace, tmp: Path, server: HubServer) -> dict[str, Any]:
    """Every operation on a guidance and a diffusion module of hidden width `hidden`."""
    import hub
    from hub.store import Store
    from hub.training import Budget

    store = Store()
    pulled = Store(tmp / "pull-store")
    budget = Budget(hidden=hidden, batch_size=32, checkpoint_every=0)
    g = hub.train_guidance("iql", DATA, steps=1, module_id=f"g{hidden}", store=store, budget=budget, progress=False)[0]
    d = hub.train_diffusion("dql", DATA, guidance=g, steps=1, module_id=f"d{hidden}", store=store, budget=budget,
                            progress=False)[0]
    out: dict[str, Any] = {"hidden": hidden, "modules": {}}
    for kind, m in (("guidance", g), ("diffusion", d)):
        repo = f"bench/{m.id}"
        hub.push(m.id, repo, store=store)  # what the pulls fetch
        warm_cache = tmp / f"hf-cache-warm-{m.id}"
        pull_through(warm_cache, repo, f"{m.id}-warming", pulled)
        ops: dict[str, Callable[[int], Any]] = {
            "save": lambda k, m=m: hub.save(m.net, m.card.model_copy(update={"id": f"{m.id}-save{k}"}), store=store),
            "load": lambda k, m=m: hub.load(m.id, store=store),
            "push": lambda k, m=m: hub.push(m.id, f"bench/{m.id}-push{k}", store=store),
            "pull_cold": lambda k, m=m, repo=repo: pull_through(tmp / f"hf-cache-cold-{m.id}-{k}", repo,
                                                                 f"{m.id}-cold{k}", pulled),
            "pull_cached": lambda k, m=m, repo=repo, cache=warm_cache: pull_through(cache, repo, f"{m.id}-cached{k}",
                                                                                   pulled),
        }
        params = sum(p.numel() for p in m.net.parameters())
        out["modules"][kind] = {"id": m.id, "architecture": m.card.architecture, "params": params,
                                "bytes": weights_size(m), "ops": {}}
        for name in MODULE_OPS:
            before = len(server.requests)
            stats = measure(ops[name], args.repeats, args.warmup)
            if name.startswith(("push", "pull")):
                stats["http_requests_per_call"] = (len(server.requests) - before) / (args.repeats + args.warmup)
            out["modules"][kind]["ops"][name] = stats
    latest: list[Any] = []  # only the newest policy is kept: holding every one inflates later calls (fresh memory)

    def combine(k: int) -> None:
        latest.clear()
        latest.append(hub.combine(g.id, d.id, mode="resample", n_candidates=args.candidates, store=store,
                                  progress=False))

    pair_ops: dict[str, Callable[[int], Any]] = {
        "check": lambda k: hub.check(g.id, d.id, mode="resample", store=store).raise_if_incompatible(),
        "combine": combine,
        "policy_save": lambda k: latest[0].save(f"p{hidden}-{k}", store=store),
    }
    out["pair"] = {"bytes": weights_size(g) + weights_size(d), "ops": {}}
    for name in PAIR_OPS:
        out["pair"]["ops"][name] = measure(pair_ops[name], args.repeats, args.warmup)
    return out


def by_count(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """save / load-by-id / list as the store grows to each of `args.counts` modules."""
    import hub
    from hub.store import Store
    from hub.training import Budget

    budget = Budget(hidden=args.count_hidden, batch_size=32, checkpoint_every=0)
    template = hub.train_guidance("iql", DATA, steps=1, module_id="template", store=Store(tmp / "template-store"),
                                  budget=budget, progress=False)[0]
    store = Store(tmp / "count-store")
    rng = random.Random(0)
    rows: list[dict[str, Any]] = []
    stored = 0

    def save_as(module_id: str) -> None:
        hub.save(template.net, template.card.model_copy(update={"id": module_id}), store=store)

    for n in sorted(args.counts):
        t0 = time.perf_counter()
        while stored < n:
            save_as(f"m{stored:06d}")
            stored += 1
        fill_s = time.perf_counter() - t0
        extra: list[str] = []

        def save_one(k: int, n: int = n, extra: list[str] = extra) -> None:
            extra.append(f"extra-{n}-{k}")
            save_as(extra[-1])

        ops: dict[str, Callable[[int], Any]] = {
            "save": save_one,
            "load": lambda k, n=n: hub.load(f"m{rng.randrange(n):06d}", store=store),
            "list": lambda k: hub.list_modules(store=store),
        }
        results: dict[str, Stats] = {}
        for name in COUNT_OPS:
            results[name] = measure(ops[name], args.repeats, args.warmup)
            for module_id in extra:  # keep the store at exactly n modules
                store.remove(module_id)
            extra.clear()
        rows.append({"n_modules": n, "module_bytes": weights_size(template), "fill_s": round(fill_s, 3),
                     "ops": results})
    return rows


def plot(report: dict[str, Any], path: Path) -> Path:
    """ms vs module bytes per operation (log-log), per pair operation, and ms vs store size; hub/plots.py style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes, counts = report["results"]["by_size"], report["results"]["by_count"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ax = axes[0]
    for j, op in enumerate(MODULE_OPS):
        for kind, style in (("guidance", "-o"), ("diffusion", "--s")):
            xs = [s["modules"][kind]["bytes"] for s in sizes]
            ys = [s["modules"][kind]["ops"][op]["median_ms"] for s in sizes]
            ax.plot(xs, ys, style, color=colours[j % len(colours)], label=f"{op} ({kind})")
    ax.set_title("per module (solid: iql guidance, dashed: dql_mlp)", fontsize=9)
    ax.set_xlabel("model.safetensors bytes")
    ax = axes[1]
    for j, op in enumerate(PAIR_OPS):
        ax.plot([s["pair"]["bytes"] for s in sizes], [s["pair"]["ops"][op]["median_ms"] for s in sizes], "-o",
                color=colours[(j + len(MODULE_OPS)) % len(colours)], label=op)
    ax.set_title("per guidance + diffusion pair", fontsize=9)
    ax.set_xlabel("bytes of both modules")
    ax = axes[2]
    for j, op in enumerate(COUNT_OPS):
        ax.plot([c["n_modules"] for c in counts], [c["ops"][op]["median_ms"] for c in counts], "-o",
                color=colours[j % len(colours)], label=op)
    ax.set_title(f"vs store size ({counts[0]['module_bytes'] if counts else 0}-byte modules)", fontsize=9)
    ax.set_xlabel("modules in the store")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel("median ms")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("mdhub operations: median ms per call")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _cells(ops: dict[str, Stats], names: tuple[str, ...]) -> str:
    return "  ".join(f"{ops[op]['median_ms']:>8.1f} /{ops[op]['p90_ms']:>7.1f}" for op in names)


def table(report: dict[str, Any]) -> str:
    """The figures as plain-text tables (median / p90 ms)."""
    lines = ["module size: median / p90 ms"]
    head = f"{'module':<10} {'bytes':>10}  " + "  ".join(f"{op:>17}" for op in MODULE_OPS)
    lines.append(head)
    for s in report["results"]["by_size"]:
        for m in s["modules"].values():
            lines.append(f"{m['id']:<10} {m['bytes']:>10}  {_cells(m['ops'], MODULE_OPS)}")
    lines.append("")
    lines.append(f"{'pair':<10} {'bytes':>10}  " + "  ".join(f"{op:>17}" for op in PAIR_OPS))
    for s in report["results"]["by_size"]:
        p = s["pair"]
        lines.append(f"{'h' + str(s['hidden']):<10} {p['bytes']:>10}  {_cells(p['ops'], PAIR_OPS)}")
    lines.append("")
    lines.append(f"{'modules':<10} {'fill s':>10}  " + "  ".join(f"{op:>17}" for op in COUNT_OPS))
    for c in report["results"]["by_count"]:
        lines.append(f"{c['n_modules']:<10} {c['fill_s']:>10.2f}  {_cells(c['ops'], COUNT_OPS)}")
    return "\n".join(lines)


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10, help="timed calls per operation")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per operation before the timed ones")
    ap.add_argument("--sizes", type=ints, default=[64, 256, 1024], help="hidden widths of the modules")
    ap.add_argument("--counts", type=ints, default=[10, 100, 500], help="store sizes (numbers of modules)")
    ap.add_argument("--count-hidden", type=int, default=32, help="hidden width of the modules of the store-size sweep")
    ap.add_argument("--candidates", type=int, default=50, help="n_candidates of the combined policy")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(OUT / "hub_ops"), help="output path without extension (.json, .png)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = ap.parse_args()
    if args.repeats < 1 or args.warmup < 0:
        ap.error("--repeats must be >= 1 and --warmup >= 0")

    tmp = Path(tempfile.mkdtemp(prefix="mdhub-hub-ops-"))
    isolate(tmp)
    from tests.hub_server import HubServer

    server = HubServer().start()
    os.environ["HF_ENDPOINT"] = server.url
    t_start = time.perf_counter()
    try:
        import torch

        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        import huggingface_hub

        from hub.datasets import get_dataset, make_and_store

        make_and_store(DATA, progress=False)
        ds = get_dataset(DATA)
        report: dict[str, Any] = {
            "what": "median and p90 ms of hub operations per module vs module size (iql guidance, dql_mlp diffusion) "
                    "and vs the number of modules in the store; push/pull against the loopback Hub server",
            "machine": {**machine(args), "torch": torch.__version__.split("+")[0],
                        "huggingface_hub": huggingface_hub.__version__},
            "settings": {**{k: v for k, v in vars(args).items() if k != "keep"}, "dataset": DATA,
                         "obs_dim": ds.obs_dim, "act_dim": ds.act_dim, "mode": "resample",
                         "p90": "nearest rank", "hub": "tests/hub_server.py on 127.0.0.1"},
            "results": {"by_size": [], "by_count": []},
        }
        for hidden in args.sizes:
            report["results"]["by_size"].append(by_size(hidden, args, tmp, server))
            print(f"hidden {hidden}: done ({time.perf_counter() - t_start:.0f} s)", flush=True)
        report["results"]["by_count"] = by_count(args, tmp)
        report["wall_time_s"] = round(time.perf_counter() - t_start, 1)
        report["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    finally:
        server.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    json_path, png_path = Path(args.out + ".json"), Path(args.out + ".png")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1))
    plot(report, png_path)
    print(table(report))
    print(f"wrote {json_path} and {png_path} ({report['wall_time_s']} s)")


if __name__ == "__main__":
    main()
