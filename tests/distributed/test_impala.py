"""IMPALA: the learner's loss against A2C's on on-policy data, the bounded queue of experience,
the lifecycle of a run without a server, and the algorithm learning."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from rlteach.algos.a2c import A2CConfig, a2c_loss, estimate_advantages
from rlteach.algos.common import build_agent
from rlteach.distributed import Cluster, WorkerError
from rlteach.distributed.configs import IMPALAConfig
from rlteach.distributed.impala import SEGMENT, run_impala, segment_of, vtrace_loss
from tests.distributed import workers as W
from tests.distributed.test_algorithms import greedy_mean
from tests.distributed.test_runtime import (
    child_pids,
    kill_the_parent_of,
    leaked_shm_entries,
    shm_entries,
)

QUICK = dict(total_steps=3000, envs_per_worker=2, rollout_steps=16, eval_interval=0.5)


def gradient(loss: torch.Tensor, policy: torch.nn.Module) -> torch.Tensor:
    policy.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in policy.parameters()])


@pytest.mark.parametrize("correction", ["vtrace", "none"])
def test_on_policy_the_learners_loss_is_a2cs_with_lambda_one_returns(correction):
    """On data its own policy collected (ρ = c = 1, no truncation at ρ̄ = c̄ = 1), V-trace's target
    is the λ = 1 return and its advantage A2C's GAE(λ = 1) advantage: the learner's loss and its
    gradient equal single-process A2C's with ``advantage="gae", gae_lambda=1`` on the batch
    (including the reset rows of NEXT_STEP envs and the time-limit cuts of a short episode)."""
    agent = build_agent("CartPole-v1", 3, seed=0, hidden=(16, 16))
    batch = agent.collector.collect(40)
    policy = agent.policy
    cfg = IMPALAConfig(correction=correction, ent_coef=0.01)
    a2c = A2CConfig(advantage="gae", gae_lambda=1.0, ent_coef=0.01, gamma=cfg.gamma)
    adv, ret = estimate_advantages(batch, a2c)
    expected, expected_stats = a2c_loss(policy, batch.flat(adv=adv, ret=ret), a2c)
    segment = {name: torch.from_numpy(a) for name, a in segment_of(batch).items()}
    loss, stats = vtrace_loss(policy, segment, cfg)
    assert batch.terminated.any() and not batch.valid.all()  # episode ends and reset rows
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gradient(loss, policy), gradient(expected, policy))
    assert stats["rho_mean"] == pytest.approx(1.0, abs=1e-6)
    agent.close()


def test_off_policy_the_correction_changes_the_targets_and_none_ignores_it():
    """Data from another policy μ: V-trace weighs it by the ratios π/μ (here all below ρ̄ and
    c̄), 'none' does not, and the losses differ."""
    agent = build_agent("CartPole-v1", 3, seed=0, hidden=(16, 16))
    segment = {
        name: torch.from_numpy(a) for name, a in segment_of(agent.collector.collect(20)).items()
    }
    segment["logp"] = segment["logp"] + 0.5  # as if μ had been likelier to take these actions
    losses = {
        c: vtrace_loss(agent.policy, segment, IMPALAConfig(correction=c))
        for c in ("vtrace", "none")
    }
    stats = losses["vtrace"][1]
    assert stats["rho_mean"] == pytest.approx(np.exp(-0.5), rel=1e-5)  # π/μ = e^−0.5 < ρ̄ = 1
    assert stats["log_ratio"] == pytest.approx(0.5, rel=1e-5)
    assert abs(losses["vtrace"][0].item() - losses["none"][0].item()) > 1e-3
    agent.close()


def test_a_segment_holds_what_the_learner_needs():
    agent = build_agent("CartPole-v1", 2, seed=0, hidden=(16, 16))
    segment = segment_of(agent.collector.collect(5))
    assert set(segment) == set(SEGMENT)
    assert segment["obs"].shape == segment["next_obs"].shape == (5, 2, 4)
    assert all(segment[name].shape == (5, 2) for name in SEGMENT if "obs" not in name)
    agent.close()


# ------------------------------------------------------------------ the bounded queue


@pytest.mark.parametrize("slots", [2, 8])
def test_actors_wait_only_while_the_bounded_queue_is_full(slots):
    """A learner that needs 0.1 s per segment, an actor that sends 6 at once: the first
    ``slots`` sends return at once, each later one waits for the learner to free a place."""
    handled = []

    def slow_learner(worker, segment):
        time.sleep(0.1)
        handled.append(segment["index"])

    with Cluster(
        W.send_and_time,
        workers=1,
        params=np.zeros(1),
        serve=False,
        experience_slots=slots,
        args=(6,),
    ) as cluster:
        result = cluster.run(on_report=slow_learner, timeout=60)
    waits = np.array(result.results[0])
    assert (waits[:slots] < 0.05).all(), waits
    assert (waits[slots:] > 0.05).all(), waits
    assert handled == list(range(6)) and result.reports == []  # segments are not kept as reports
    assert child_pids() == []


# ------------------------------------------------------------------ lifecycle without a server


def serverless(worker_fn, **kwargs):
    return Cluster(
        worker_fn, workers=2, params=np.zeros(3), serve=False, experience_slots=2, **kwargs
    )


def run_serverless(worker_fn, **kwargs):
    """One run to its end; the Cluster (and its semaphores) goes with the call."""
    with serverless(worker_fn, **kwargs) as cluster:
        return cluster.run(timeout=60)


def test_an_actor_that_raises_stops_the_run_with_its_id_and_traceback():
    start = time.monotonic()
    with serverless(W.send_until_stopped, args=(1,)) as cluster:
        with pytest.raises(WorkerError, match="worker 1 raised") as info:
            cluster.run(timeout=60)
    assert time.monotonic() - start < 6
    assert "actor is broken on purpose" in info.value.remote_traceback
    assert child_pids() == []


def test_an_actor_that_dies_without_a_word_is_detected():
    with serverless(W.send_until_stopped, args=(None, 0)) as cluster:
        with pytest.raises(WorkerError, match=r"worker 0 died without a word \(exit code 3\)"):
            cluster.run(timeout=60)
    assert child_pids() == []


def test_a_kernel_interrupt_stops_the_actors_and_keeps_what_was_learned():
    seen = []
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    with serverless(W.send_until_stopped) as cluster:
        result = cluster.run(on_report=lambda w, segment: seen.append(w), timeout=60)
    assert result.interrupted and seen
    assert child_pids() == []


ORPHANED_ACTORS = """
import numpy as np
from rlteach.distributed import Cluster
from tests.distributed import workers as W

if __name__ == "__main__":
    cluster = Cluster(
        W.send_until_stopped, workers=2, params=np.zeros(3), serve=False, experience_slots=2
    )
    with cluster:
        cluster.run(on_report=lambda worker, segment: None)
"""


def test_actors_whose_notebook_is_killed_end_without_a_server_to_tell_them(tmp_path):
    """No server watches the notebook's process here: each actor notices that its parent has
    gone (``ctx.stopping``), also while it waits for room in the queue, and ends."""
    kill_the_parent_of(ORPHANED_ACTORS, tmp_path, processes=4)  # tracker, fork server, 2 actors


def test_twenty_start_stop_cycles_without_a_server_leak_nothing():
    shm_before, kids_before = shm_entries(), child_pids()
    for _ in range(20):
        result = run_serverless(W.send_and_time, args=(3,))
        assert [len(waits) for waits in result.results] == [3, 3]
    assert leaked_shm_entries(shm_before) == set()
    assert child_pids() == kids_before == []


# ------------------------------------------------------------------ the algorithm


def test_a_run_records_every_segments_lag_and_the_learners_updates():
    result = run_impala(**QUICK)
    h, cfg = result.history, result.config
    segments = len(h.meta["lags"])
    assert len(h.updates) == h.meta["versions"] == segments // cfg.batch_segments
    assert min(h.meta["lags"]) >= 0
    assert {row["worker"] for row in h.episodes} == {0, 1}
    for key in ("lag", "lag_max", "policy_objective", "value_loss", "rho_mean", "log_ratio"):
        assert key in h.updates[-1]
    assert h.evaluations[-1]["version"] == h.meta["versions"]
    assert not result.interrupted and child_pids() == []


def test_a_crashing_actor_raises_with_its_id_and_leaves_nothing_behind():
    with pytest.raises(WorkerError, match="simulator crashed on purpose") as info:
        run_impala(**QUICK, env_fn=W.cartpole_that_breaks)
    assert info.value.worker in (0, 1)
    assert child_pids() == []


def test_bad_settings_fail_before_any_process_starts():
    with pytest.raises(ValueError, match="queue_size = 0"):
        run_impala(queue_size=0)
    with pytest.raises(ValueError, match="correction = 'retrace'"):
        run_impala(correction="retrace")


@pytest.mark.slow
def test_impala_default_config_solves_cartpole_with_two_actors():
    result = run_impala(seed=0, eval_interval=0)
    assert result.config.workers == 2 and result.config.total_steps <= 500_000
    assert greedy_mean(result) >= 475
    assert child_pids() == []
