"""The four patterns of notebook 05 compute what they claim, with real processes."""

import numpy as np
import pytest
import torch

from rlteach.distributed import patterns
from rlteach.envs import DelayWrapper, env_factory, physics_variations, set_physics
from rlteach.nets import flat_gradient


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 3)).astype(np.float32)
    return X, np.sin(X[:, 0]).astype(np.float32)


def test_data_parallel_average_equals_full_batch_only_for_equal_shards(data):
    X, y = data
    equal = patterns.data_parallel_gradients(X, y, [slice(0, 30), slice(30, 60), slice(60, 90)])
    np.testing.assert_allclose(equal["averaged"], equal["full"], atol=1e-6)  # float32 sums
    unequal = patterns.data_parallel_gradients(X, y, [slice(0, 10), slice(10, 90)])
    assert np.abs(unequal["averaged"] - unequal["full"]).max() > 1e-3
    weighted = (unequal["sizes"][:, None] * unequal["per_worker"]).sum(0) / 90
    np.testing.assert_allclose(weighted, unequal["full"], atol=1e-6)


def test_model_split_across_two_processes_gives_the_same_loss_and_gradient(data):
    X, y = data
    whole = patterns.regression_mlp(3)
    whole.zero_grad()
    loss = ((whole(torch.as_tensor(X)).squeeze(-1) - torch.as_tensor(y)) ** 2).mean()
    loss.backward()
    with patterns.TwoProcessMLP(3) as split:
        split_loss, split_grad = split.loss_and_gradients(X, y)
        assert split._proc.is_alive()
    assert split._proc is None  # closed on exit
    assert split_loss == pytest.approx(loss.item(), rel=1e-6)
    np.testing.assert_allclose(split_grad, flat_gradient(whole), atol=1e-7)


@pytest.mark.parametrize(
    "local_steps, optimizer, same", [(1, "sgd", True), (3, "sgd", False), (1, "adam", False)]
)
def test_gradient_and_parameter_averaging_agree_only_for_one_sgd_step(local_steps, optimizer, same):
    cmp = patterns.averaging_comparison(
        workers=2, rounds=4, local_steps=local_steps, optimizer=optimizer
    )
    assert (cmp["distance"] < 1e-5) == same, cmp["distance"]


def test_async_staleness_is_recorded_and_sync_has_none():
    assert patterns.staleness_run(workers=2, rounds=10, mode="sync").staleness.max() == 0
    run = patterns.staleness_run(workers=3, rounds=30, mode="async")
    assert len(run.staleness) == 90 and run.staleness.min() >= 0  # start-line pushes left out


def test_async_staleness_grows_with_the_workers_when_a_gradient_takes_time():
    """With 2 ms per gradient, each push is stale by the pushes the other W − 1 workers land in
    those 2 ms: between (W − 1)/2 (all in step) and W − 1 (spread evenly) on average, so from
    0.5–1 at W = 2 to 1.5–3 at W = 4. Without the 2 ms, scheduling sets it (0.3–1.1 here for both)."""
    mean = {w: patterns.staleness_run(workers=w, rounds=20).staleness.mean() for w in (2, 4)}
    assert mean[4] > mean[2] + 0.5, mean


def test_async_staleness_run_starts_every_worker_from_a_common_start_line():
    """No worker computes a gradient before all three have pushed their start-line change, so
    every reported pull is of version >= 3 (without the line, the first worker starts at 0)."""
    run = patterns.staleness_run(workers=3, rounds=5, mode="async")
    first_pulls = {}
    for worker, report in run.reports:
        first_pulls.setdefault(worker, report["version"])
    assert sorted(first_pulls) == [0, 1, 2] and min(first_pulls.values()) >= 3


def test_sampling_pools_every_workers_experience():
    out = patterns.sampling_throughput("CartPole-v1", workers=2, steps_per_worker=200)
    assert out["samples"] == 400 and out["obs"].shape == (400, 4)
    assert out["samples_per_second"] > 0


def test_amdahl_fit_recovers_a_known_serial_fraction():
    w = np.array([1, 2, 4, 8])
    assert patterns.fit_amdahl(w, patterns.amdahl_speedup(0.2, w)) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        patterns.fit_amdahl([1], [1.0])


def test_delay_wrapper_and_physics_variations():
    import time

    env = env_factory("CartPole-v1", delay=0.005)()
    assert isinstance(env, DelayWrapper)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(10):
        env.step(0)
        env.reset()
    assert time.perf_counter() - start >= 10 * 0.005
    variations = physics_variations("CartPole-v1", workers=4, seed=1, spread=0.5)
    assert variations == physics_variations("CartPole-v1", workers=4, seed=1, spread=0.5)
    assert all(0.25 <= v["length"] <= 0.75 and 0.05 <= v["masspole"] <= 0.15 for v in variations)
    varied = env_factory("CartPole-v1", physics=variations[0])().unwrapped
    assert varied.polemass_length == pytest.approx(
        variations[0]["length"] * variations[0]["masspole"]
    )
    with pytest.raises(ValueError, match="CartPole only"):
        physics_variations("Pendulum-v1", workers=2)
    with pytest.raises(ValueError, match="cannot set"):
        set_physics(env_factory("Pendulum-v1")(), length=1.0)
    with pytest.raises(ValueError, match="delay"):
        env_factory("CartPole-v1", delay=-1)


@pytest.mark.parametrize("kind", ["sleep", "busy"])
def test_a_sleeping_delay_frees_the_cpu_and_a_busy_one_uses_it(kind):
    """Ten 20 ms steps: both take at least 0.2 s of wall time; the busy loop spends 0.2 s of this
    process's CPU time (more in wall time when the core is shared), the sleep almost none (bound: a
    quarter of it, for CartPole's own work and the timer)."""
    import time

    env = env_factory("CartPole-v1", delay=0.02, delay_kind=kind)()
    env.reset(seed=0)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(10):
        env.step(0)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert wall >= 0.2
    if kind == "busy":
        assert cpu >= 0.2
    else:
        assert cpu < 0.25 * 0.2


def test_an_unknown_delay_kind_is_named():
    with pytest.raises(ValueError, match="delay kind 'nap' is invalid"):
        env_factory("CartPole-v1", delay=0.01, delay_kind="nap")
