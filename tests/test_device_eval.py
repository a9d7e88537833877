"""`device=` on evaluation and recombination (issue 15, item 1): cpu and auto work, a device this machine lacks is one
clear line before anything is loaded or written, modules are moved once onto the device, a policy acts on device
tensors (numpy only at the environment boundary), its noise is seeded per evaluation, scorers follow their inputs.

Paths that need a GPU run where one is present (skipped otherwise)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hub.combine import combine, load_policy
from hub.evaluation import evaluate, evaluate_many, runtime_for
from hub.store import Store
from modules.device import DeviceError, resolve_device
from modules.policy import GuidedPolicy, module_device
from modules.scores import advantage_score, q_score
from tests.conftest import critic_card, small_critic
from tests.test_eval_parallel import ACT, OBS, STEPS, diffusion_module

CUDA = torch.cuda.is_available()
MISSING = "cuda:99" if CUDA else "cuda"  # a device this machine does not have


@pytest.fixture
def stored(hub_home):
    store = Store()
    g = store.save(small_critic(0, OBS, ACT), critic_card(small_critic(0, OBS, ACT), "gq"))
    diffusion_module(store, "dq", seed=1, guidance=g, steps=10)
    combine("gq", "dq", mode="resample", n_candidates=4, save=True, module_id="pq", store=store, progress=False)
    return store


def one_line_device_error(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and "device" in msg and ("auto" in msg or "cuda:" in msg), msg
    return msg


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_evaluate_on_cpu_and_auto(stored, device):
    r = evaluate("dq", episodes=2, seed=0, store=stored, max_steps=STEPS, device=device, write=False)
    cpu = evaluate("dq", episodes=2, seed=0, store=stored, max_steps=STEPS, device="cpu", write=False)
    if resolve_device(device).type == "cpu":
        assert r["return_mean"] == cpu["return_mean"]  # the same computation
    assert r["episodes"] == 2 and np.isfinite(r["return_mean"])
    p = evaluate("pq", episodes=1, store=stored, max_steps=STEPS, device=device)
    assert p["written"] and stored.card("pq").evaluations[-1].episodes == 1


def test_missing_device_is_one_line_and_nothing_happens(stored):
    before = stored.card("dq")
    for call in (lambda: evaluate("dq", episodes=1, store=stored, device=MISSING),
                 lambda: evaluate_many(["dq", "pq"], episodes=1, store=stored, device=MISSING),
                 lambda: combine("gq", "dq", store=stored, device=MISSING, save=True, module_id="never"),
                 lambda: load_policy("pq", store=stored, device=MISSING),
                 lambda: runtime_for("dq", stored, MISSING)):
        with pytest.raises(DeviceError) as e:
            call()
        one_line_device_error(e)
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        evaluate("dq", episodes=1, store=stored, device="tpu")
    assert stored.card("dq") == before and not stored.contains("never")


def test_modules_are_moved_once_and_act_at_the_boundary(stored):
    dev = resolve_device("auto")
    card, runtime, cfg, g = runtime_for("dq", stored, "auto")
    assert isinstance(runtime, GuidedPolicy) and runtime.device == dev and g == "gq" and cfg.mode == "resample"
    obs = np.zeros((3, OBS), dtype=np.float32)
    a = runtime.act(obs)
    assert isinstance(a, np.ndarray) and a.shape == (3, ACT)
    assert runtime.act(obs[0]).shape == (ACT,)
    t = runtime.act_tensor(torch.zeros(3, OBS, device=dev))
    assert t.device == dev and t.shape == (3, ACT)
    policy = load_policy("pq", store=stored, device="auto")
    assert policy.device == dev and module_device(policy.parts["infer_guidance"].net) == dev
    assert policy.act(obs).shape == (3, ACT)


def test_run_episodes_on_a_device(stored):
    from hub.evaluation import run_episodes

    runtime = runtime_for("dq", stored, "cpu")[1]
    a = run_episodes(runtime, "hopper", 2, seed=1, max_steps=STEPS, device="auto")
    assert runtime.device == resolve_device("auto") and a["episodes"] == 2
    with pytest.raises(DeviceError):
        run_episodes(runtime, "hopper", 1, max_steps=STEPS, device=MISSING)


def test_seeded_noise_is_reproducible_and_leaves_the_global_stream_alone(stored):
    runtime = runtime_for("dq", stored, "cpu")[1]
    obs = np.random.default_rng(0).normal(size=(4, OBS)).astype(np.float32)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    with runtime.seeded(7):
        a = runtime.act(obs)
    with runtime.seeded(7):
        b = runtime.act(obs)
    with runtime.seeded(8):
        c = runtime.act(obs)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert torch.equal(torch.get_rng_state(), state) and runtime.generator is None


def test_scorers_follow_their_inputs():
    critic = small_critic(0, 3, 2)
    obs, x = torch.randn(5, 3), torch.randn(5, 2)
    for score in (q_score(critic, 2), q_score(critic, 2, mean=1.0, std=2.0), advantage_score(critic, 2)):
        s = score(obs, x)
        assert s.shape == (5,) and s.device == obs.device


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_scorer_on_cpu_critic_and_policy_on_gpu(stored):
    critic = small_critic(0, 3, 2)
    obs, x = torch.randn(5, 3, device="cuda"), torch.randn(5, 2, device="cuda")
    assert q_score(critic, 2)(obs, x).device == obs.device  # a CPU critic scores CUDA candidates, back on CUDA
    cpu = evaluate("dq", episodes=2, seed=0, store=stored, max_steps=STEPS, device="cpu", write=False)
    gpu = evaluate("dq", episodes=2, seed=0, store=stored, max_steps=STEPS, device="cuda", write=False)
    assert gpu["episodes"] == cpu["episodes"] == 2  # different generators (cpu vs cuda): not the same numbers
    many = evaluate_many(["dq", "pq"], episodes=2, store=stored, max_steps=STEPS, device="cuda", workers=2,
                         write=False)
    assert [r["id"] for r in many] == ["dq", "pq"]


def test_fit_v_on_a_device(hub_home):
    from hub.adapters import fit_v
    from hub.datasets import make_and_store

    make_and_store("toy-8gaussians", progress=False)
    store = Store()
    net = small_critic(0, 2, 2)
    g = store.save(net, critic_card(net, "q-only", interface={"obs_dim": 2, "act_dim": 2, "dataset": {
        "id": "toy-8gaussians"}}, guidance={"provides": ["q"]}))
    fitted = fit_v(g, store=store, steps=3, batch_size=8, device="auto")
    assert fitted.card.guidance is not None and fitted.card.guidance.v_fitted
    assert module_device(fitted.net) == resolve_device("auto")
    with pytest.raises(DeviceError):
        fit_v(g, store=store, steps=1, device=MISSING)


def test_compiled_evaluation_runs_the_compiled_selection(stored):
    from hub.evaluation import runtime_for

    _, runtime, _, _ = runtime_for("pq", stored, "cpu", compile=True)
    assert runtime._compiled is not None  # the selection is the compiled one
    r = evaluate("pq", episodes=2, seed=0, store=stored, max_steps=STEPS, write=False, compile=True)
    assert r["episodes"] == 2 and np.isfinite(r["return_mean"])
