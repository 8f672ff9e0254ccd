"""Hogwild A3C: the shared optimizers against torch's, the traps of A3C code in the wild, and the
algorithm learning."""

import multiprocess as mp
import numpy as np
import pytest
import torch

from rlteach.algos.a2c import make_optimizer
from rlteach.algos.common import build_agent
from rlteach.distributed import Cluster
from rlteach.distributed.configs import A3CConfig
from rlteach.distributed.driver import worker_env_factories
from rlteach.distributed.hogwild import SharedOptimizer, run_a3c
from rlteach.distributed.shared import SharedParams
from rlteach.nets import ActorCritic, flat_parameters
from tests.distributed import workers as W
from tests.distributed.test_algorithms import greedy_mean
from tests.distributed.test_runtime import child_pids

P = 7
OPTIMIZERS = list(SharedOptimizer.ROWS)


def shared_params(theta: np.ndarray, rows: int) -> SharedParams:
    shared = SharedParams(theta.size, 2, mp.get_context("spawn"), state_rows=rows)
    shared.publish(theta, 0)
    return shared


def torch_steps(name: str, theta: np.ndarray, grads: list[np.ndarray], lr: float) -> np.ndarray:
    """θ after single-process A2C's optimizer ``name`` takes one step per gradient of ``grads``."""
    param = torch.nn.Parameter(torch.tensor(theta))
    optimizer = make_optimizer(name, [param], lr)
    for grad in grads:
        param.grad = torch.tensor(grad)
        optimizer.step()
    return param.detach().numpy()


@pytest.mark.parametrize("lock", [False, True], ids=["hogwild", "locked"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_two_workers_interleaved_on_one_state_equal_one_torch_optimizer(name, lock):
    """Two workers (two SharedOptimizer objects on one shared θ and state) take turns; the result
    is that of single-process A2C's torch optimizer over the same sequence of gradients. A
    per-worker step counter (Adam's bias correction with t = 1, 1, 2, 2, … instead of 1, 2, 3, …)
    or a gradient aliased once and never refreshed (every step different here) would not be."""
    rng = np.random.default_rng(0)
    theta = rng.normal(size=P).astype(np.float32)
    grads = [rng.normal(size=P).astype(np.float32) for _ in range(8)]
    shared = shared_params(theta, SharedOptimizer.ROWS[name])
    workers = [SharedOptimizer(shared, name, lock) for _ in range(2)]
    counts = [workers[i % 2].step(grad, 0.01) for i, grad in enumerate(grads)]
    assert counts == list(range(1, 9))  # one shared count of updates
    np.testing.assert_allclose(
        shared.params, torch_steps(name, theta, grads, 0.01), rtol=1e-5, atol=1e-6
    )


def test_a_step_counter_per_worker_would_be_caught():
    """The test above can fail: Adam whose two workers each count their own steps ends elsewhere
    than torch's Adam over the same gradients, by far more than its tolerance."""
    rng = np.random.default_rng(0)
    theta = rng.normal(size=P).astype(np.float32)
    grads = [rng.normal(size=P).astype(np.float32) for _ in range(8)]
    shared = shared_params(theta, 2)
    workers = [SharedOptimizer(shared, "adam") for _ in range(2)]
    for i, grad in enumerate(grads):
        worker = workers[i % 2]
        worker._apply(grad, 0.01, t=i // 2 + 1)  # the wrong count: this worker's own
    gap = np.abs(shared.params - torch_steps("adam", theta, grads, 0.01)).max()
    assert gap > 1e-3


def test_reads_give_the_shared_theta_and_the_count_of_updates():
    theta = np.arange(P, dtype=np.float32)
    shared = shared_params(theta, 1)
    optimizer = SharedOptimizer(shared, "sgd")
    out = np.empty(P, dtype=np.float32)
    assert optimizer.read(out) == 0 and np.array_equal(out, theta)
    optimizer.step(np.ones(P, dtype=np.float32), 0.5)
    assert optimizer.read(out) == 1 and np.array_equal(out, theta - 0.5)


def test_bad_optimizer_settings_name_the_problem():
    shared = shared_params(np.zeros(P, dtype=np.float32), 1)
    with pytest.raises(ValueError, match="optimizer = 'adagrad' is invalid"):
        SharedOptimizer(shared, "adagrad")
    with pytest.raises(ValueError, match="adam needs 2 rows of shared state, the buffer has 1"):
        SharedOptimizer(shared, "adam")


@pytest.fixture(scope="module")
def probed_run():
    """Two A3C workers on one shared θ through the runtime, each also reporting its threads."""
    cfg = A3CConfig(total_steps=3000, envs_per_worker=2, rollout_steps=8, optimizer="adam")
    env = build_agent(cfg.env_id, 1, cfg.seed, cfg.hidden)
    theta0 = flat_parameters(env.policy)
    env.close()
    with Cluster(
        W.a3c_probe,
        workers=2,
        params=theta0,
        serve=False,
        state_rows=2,
        args=(cfg, worker_env_factories(cfg)),
    ) as cluster:
        return theta0, cluster.run(timeout=120)


def test_every_worker_runs_one_math_thread(probed_run):
    _, result = probed_run
    assert [threads for _, threads, _ in result.results] == [1, 1]
    assert [omp for _, _, omp in result.results] == ["1", "1"]


def test_every_update_of_every_worker_is_counted_once_and_changes_the_shared_theta(probed_run):
    theta0, result = probed_run
    versions = sorted(report["version"] for _, report in result.reports)
    assert versions == list(range(1, result.version + 1))  # no count lost between processes
    assert {worker for worker, _ in result.reports} == {0, 1}
    assert np.abs(result.params - theta0).max() > 1e-3
    assert child_pids() == []


def test_staleness_counts_the_other_workers_updates_between_read_and_update(probed_run):
    _, result = probed_run
    staleness = np.array([report["staleness"] for _, report in result.reports])
    assert staleness.min() >= 0 and staleness.max() <= result.version


@pytest.mark.slow
def test_a3c_default_config_solves_cartpole_with_two_workers():
    result = run_a3c(seed=0, eval_interval=0)
    assert result.config.workers == 2 and result.config.total_steps <= 500_000
    assert greedy_mean(result) >= 475
    assert isinstance(result.policy, ActorCritic) and child_pids() == []
