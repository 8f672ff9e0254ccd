"""Asynchronous parameter averaging adds each worker's change Δ = θ' − θ_pulled (Downpour), and so
keeps the progress other workers made since the pull; moving θ towards a stale θ' does not.

The schedule is replayed deterministically through the real :class:`Server` and the workers' real
:class:`ParameterChange`: W workers push in turn, each from the θ it pulled W − 1 versions earlier
(staleness W − 1, the steady state of W equally fast async workers)."""

import multiprocess as mp
import numpy as np
import pytest

from rlteach.distributed import ServerConfig, run_cluster
from rlteach.distributed.patterns import _least_squares_worker, least_squares_problem
from rlteach.distributed.server import Server
from rlteach.distributed.shared import SharedParams
from rlteach.distributed.worker import ParameterChange

WORKERS, PUSHES, LR = 4, 200, 0.05


def excess_loss(A, b, theta):
    """mean_w |A_w θ − b_w|²/(2n) minus its minimum over θ (from the pooled least-squares fit)."""
    stacked_A = A.reshape(-1, A.shape[2]).astype(np.float64)
    stacked_b = b.reshape(-1).astype(np.float64)
    best = np.linalg.lstsq(stacked_A, stacked_b, rcond=None)[0]

    def loss(t):
        return float(np.mean((stacked_A @ t - stacked_b) ** 2) / 2)

    return loss(theta) - loss(best)


def gradient(A, b, w, theta):
    return A[w].T @ (A[w] @ theta - b[w]) / len(b[w])


def replay(average, local_steps=1, stale_rule=False, scale=False):
    """Round-robin async pushes through a real ``Server``; returns the final θ.

    ``stale_rule=True`` replays the rule the library used to have, ``θ += (θ' − θ)/W``, which needs
    the workers to push θ' itself."""
    A, b = least_squares_problem(WORKERS, seed=0)
    shared = SharedParams(A.shape[2], WORKERS, mp.get_context("spawn"))
    cfg = ServerConfig(
        mode="async", average=average, optimizer="sgd", lr=LR, scale_async_changes=scale
    ).validate(WORKERS)
    server = Server(shared, cfg)
    changes = [ParameterChange() for _ in range(WORKERS)]
    pulls = [shared.read() for _ in range(WORKERS)]  # everybody starts from θ0, version 0
    for w, change in enumerate(changes):
        change.remember(*pulls[w])
    for push in range(PUSHES):
        w = push % WORKERS
        theta, version = pulls[w]
        if average == "gradients":
            np.copyto(shared.slot(w), gradient(A, b, w, theta))
        else:
            local = theta.copy()
            for _ in range(local_steps):
                local -= LR * gradient(A, b, w, local)
            if stale_rule:
                shared.slot(w)[:] = (local - server.theta) / WORKERS  # becomes θ += (θ' − θ)/W
            else:
                changes[w].change(local, version, out=shared.slot(w))
        server.on_push(w, version)
        pulls[w] = shared.read()
        changes[w].remember(*pulls[w])
    assert server.stats.applied == PUSHES
    assert max(p[2] for p in server.stats.pushes) == WORKERS - 1  # stale pushes were replayed
    return A, b, server.theta.astype(np.float64)


def test_one_local_sgd_step_pushed_as_a_change_is_exactly_async_gradient_averaging():
    """Δ = −α∇f_w(θ_pulled) and the server's SGD step −α∇f_w(θ_pulled) are the same update, so
    the two runs agree up to float32 rounding of θ (≈1e-7 relative per step)."""
    A, b, by_gradients = replay("gradients")
    _, _, by_changes = replay("parameters", local_steps=1)
    np.testing.assert_allclose(by_changes, by_gradients, rtol=1e-4, atol=1e-5)
    assert excess_loss(A, b, by_changes) < 1e-3 * excess_loss(A, b, np.zeros_like(by_changes))


def test_several_local_steps_reach_the_loss_of_gradient_averaging():
    """Three local steps per push drift a little towards each worker's own optimum, so the end
    point differs; within the same 200 pushes both runs get within 1e-4 of the starting excess loss
    of the optimum (measured: 4e-5 with three local steps, 4e-6 with gradients)."""
    A, b, by_gradients = replay("gradients")
    _, _, by_changes = replay("parameters", local_steps=3)
    start = excess_loss(A, b, np.zeros_like(by_changes))
    assert excess_loss(A, b, by_gradients) < 1e-4 * start
    assert excess_loss(A, b, by_changes) < 1e-4 * start


def test_moving_towards_stale_parameters_loses_the_other_workers_progress():
    """The old rule θ += (θ' − θ)/W: after the same 200 pushes it keeps 10% of the starting excess
    loss, over 1000× what adding changes keeps (measured: 0.10 against 4e-6), because each push
    drags θ back towards the θ its worker pulled three versions earlier."""
    A, b, by_changes = replay("parameters", local_steps=1)
    _, _, stale = replay("parameters", local_steps=1, stale_rule=True)
    start = excess_loss(A, b, np.zeros_like(stale))
    assert excess_loss(A, b, stale) > 0.05 * start
    assert excess_loss(A, b, stale) > 1000 * excess_loss(A, b, by_changes)


def test_scaled_changes_add_one_wth_of_each_change():
    """``scale_async_changes``: Δ/W per push is SGD with step α/W, which the gradient replay with
    lr α/W reproduces."""
    global LR
    _, _, scaled = replay("parameters", local_steps=1, scale=True)
    lr, LR = LR, LR / WORKERS
    try:
        _, _, slower = replay("gradients")
    finally:
        LR = lr
    np.testing.assert_allclose(scaled, slower, rtol=1e-4, atol=1e-5)


def test_a_change_must_come_from_the_last_pull():
    change = ParameterChange()
    change.remember(np.zeros(3, np.float32), version=4)
    with pytest.raises(ValueError, match="must follow the pull of that version"):
        change.change(np.ones(3, np.float32), version=3, out=np.empty(3, np.float32))


def test_scale_async_changes_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="scale_async_changes only applies"):
        ServerConfig(mode="sync", average="parameters", scale_async_changes=True).validate(2)


def test_real_async_workers_averaging_parameters_converge_like_gradient_averaging():
    """Four processes, async, one local SGD step per push, 40 pushes each: the parameter-change run
    gets as close to the optimum as the gradient run (both below 2% of the starting excess loss;
    the interleaving of real processes differs between runs, so they are not equal)."""
    A, b = least_squares_problem(WORKERS, seed=0)
    start = excess_loss(A, b, np.zeros(A.shape[2]))
    for average in ("gradients", "parameters"):
        result = run_cluster(
            _least_squares_worker,
            workers=WORKERS,
            params=np.zeros(A.shape[2]),
            server=ServerConfig(mode="async", average=average, optimizer="sgd", lr=LR),
            args=(A, b, 40, 1, LR, "sgd"),
        )
        assert result.server["applied"] == WORKERS * 40
        assert excess_loss(A, b, result.params.astype(np.float64)) < 0.02 * start, average
