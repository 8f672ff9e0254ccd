"""One synchronous DPPO round (gradient averaging) is one step of single-process PPO on the union
of the workers' minibatch shares: replayed through the real :class:`Server` and the workers' real
:func:`gradient_rounds`, in this process (the server's rules do not depend on processes)."""

import copy
import dataclasses

import multiprocess as mp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlteach import losses
from rlteach.algos.common import gradient_step
from rlteach.algos.ppo import ADAM_EPS, gae_data, ppo_loss
from rlteach.distributed.dppo import (
    DPPOConfig,
    gradient_agreement,
    gradient_rounds,
    initial_policy,
    large_batch_difference,
    server_config,
    worker_batches,
)
from rlteach.distributed.server import Optimizer, Server, ServerConfig, clip_norm
from rlteach.distributed.shared import SharedParams
from rlteach.distributed.worker import PushReceipt
from rlteach.envs import make_vector_env
from rlteach.nets import flat_parameters
from rlteach.rollout import Collector, evaluate, returns_across_physics

# float32 θ of magnitude < 1 is rounded to ~6e-8; a round's Adam step moves each weight by ~lr =
# 1e-3, so 1e-6 separates rounding (which the test allows) from any difference in the update
# (a per-worker clip or an unweighted mean changes the step by a fraction of lr, checked below).
TOLERANCE = 1e-6
WORKERS = 3
CFG = DPPOConfig(
    workers=WORKERS,
    envs_per_worker=4,
    rollout_steps=32,
    epochs=1,
    minibatches=1,  # one round: every worker pushes the gradient of its whole batch
    max_grad_norm=0.05,  # small enough that the server's clip is active (asserted below)
    normalize_advantages=False,  # tested both ways below
    anneal_lr=False,
)


class InProcessContext:
    """What ``gradient_rounds`` needs of a worker's ``ctx``, talking straight to a ``Server``. The
    workers run one after another, so a sum over them cannot be a barrier here: ``totals`` is the
    answer, computed beforehand from every worker's data (the runtime's own sum is tested with
    real processes in test_runtime)."""

    def __init__(self, server: Server, worker_id: int, totals=None):
        self.server, self.worker_id, self.stopping = server, worker_id, False
        self.totals = totals

    def sum_over_workers(self, vector):
        assert self.totals is not None and np.size(vector) == len(self.totals)
        return self.totals

    @property
    def slot(self):
        return self.server.shared.slot(self.worker_id)

    def pull(self):
        return self.server.shared.read()

    def push(self, vector, version, weight=1.0, progress=0.0):
        np.copyto(self.slot, vector)  # a no-op when the gradient was written into the slot
        self.server.on_push(self.worker_id, version, weight, progress)
        return PushReceipt(True, self.server.stats.version, 0, 0.0)


def worker_data(policy, cfg, seed=0):
    """Each worker's batch from the fast vector env (NEXT_STEP resets: invalid steps are dropped,
    so the workers' sample counts differ, which exercises the weighted mean)."""
    data = []
    for w in range(cfg.workers):
        envs = make_vector_env(cfg.env_id, cfg.envs_per_worker)
        data.append(
            gae_data(Collector(envs, policy, seed=seed + w).collect(cfg.rollout_steps), cfg)
        )
        envs.close()
    return data


def advantage_totals(data):
    """``(n, ΣA, ΣA²)`` over every worker's whole batch, in float64: with one epoch of one
    minibatch, a round's global minibatch is all of the data."""
    adv = np.concatenate([d["adv"].double().numpy() for d in data])
    return np.array([len(adv), adv.sum(), (adv**2).sum()])


def dppo_round(policy, data, cfg):
    """θ after one round of the workers' real ``gradient_rounds`` through a real ``Server``."""
    totals = advantage_totals(data)
    theta0 = flat_parameters(policy)
    shared = SharedParams(theta0.size, cfg.workers, mp.get_context("spawn"))
    shared.publish(theta0, 0)
    server = Server(shared, server_config(cfg).validate(cfg.workers))
    for w, worker_batch in enumerate(data):
        node = copy.deepcopy(policy)
        shuffle = torch.Generator().manual_seed(w)
        ctx = InProcessContext(server, w, totals)
        gradient_rounds(ctx, node, worker_batch, cfg, shuffle, 0, 0.0)
    assert server.stats.version == 1 and server.stats.applied == cfg.workers
    return server.theta.copy()


def ppo_step(policy, data, cfg):
    """θ after one step of single-process PPO (notebook 04) on the pooled data."""
    big = copy.deepcopy(policy)
    optimizer = torch.optim.Adam(big.parameters(), lr=cfg.lr, eps=ADAM_EPS)
    pooled = {k: torch.cat([d[k] for d in data]) for k in data[0]}
    loss, _ = ppo_loss(big, pooled, cfg)
    norm = gradient_step(optimizer, loss, cfg.max_grad_norm)
    return flat_parameters(big), norm


@pytest.fixture(scope="module")
def setting():
    policy = initial_policy(CFG)
    data = worker_data(policy, CFG)
    return policy, data


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "normalised"])
@pytest.mark.parametrize("max_grad_norm", [0.05, 1e3], ids=["clipped", "not-clipped"])
def test_one_dppo_round_is_one_large_batch_ppo_step(setting, max_grad_norm, normalize):
    """Clipped: the clip fixes the step's norm, so only the direction (the weighting) is tested;
    not clipped: Adam's ε (1e-5, near some coordinates' |g|) also makes the scale of ḡ matter.
    Normalised: each worker standardises its share with the global minibatch's statistics, as
    single-process PPO standardises the pooled minibatch."""
    policy, data = setting
    cfg = dataclasses.replace(CFG, max_grad_norm=max_grad_norm, normalize_advantages=normalize)
    sizes = [len(d["obs"]) for d in data]
    assert len(set(sizes)) > 1, f"the workers' batches should differ in size: {sizes}"
    by_dppo = dppo_round(policy, data, cfg)
    by_ppo, norm = ppo_step(policy, data, cfg)
    assert (norm > cfg.max_grad_norm) == (max_grad_norm < 1)  # clip active iff meant to be
    np.testing.assert_allclose(by_dppo, by_ppo, rtol=0, atol=TOLERANCE)


def test_the_old_rule_per_worker_clip_and_plain_mean_is_not_that_step(setting):
    """The test above can fail: clipping each worker's mean gradient and averaging them without
    weights (what DPPO did before) misses the large-batch step by far more than the tolerance."""
    policy, data = setting
    theta0 = flat_parameters(policy)
    clipped = []
    for d in data:
        node = copy.deepcopy(policy)
        loss, _ = ppo_loss(node, d, CFG)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(node.parameters(), CFG.max_grad_norm)
        clipped.append(torch.cat([p.grad.reshape(-1) for p in node.parameters()]).numpy())
    theta = theta0.copy()
    Optimizer("adam", CFG.lr, theta.size, eps=ADAM_EPS).step(theta, np.mean(clipped, axis=0))
    by_ppo, _ = ppo_step(policy, data, CFG)
    assert np.abs(theta - by_ppo).max() > 100 * TOLERANCE


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "normalised"])
def test_large_batch_difference_is_rounding_with_or_without_normalisation(normalize):
    cfg = dataclasses.replace(CFG, minibatches=4, epochs=1, normalize_advantages=normalize)
    result = large_batch_difference(cfg, rounds=3)
    assert result["difference"] < TOLERANCE < result["moved"]


def test_per_share_normalisation_would_not_be_the_large_batch_step(setting):
    """The normalised test above can fail: standardising each share with its own statistics (what
    DPPO did before, and still does with drop_stragglers) misses the step by far more."""
    policy, data = setting
    cfg = dataclasses.replace(CFG, normalize_advantages=True)
    per_share = [
        {**d, "adv": (d["adv"] - d["adv"].mean()) / d["adv"].std(correction=0)} for d in data
    ]
    by_ppo, _ = ppo_step(policy, data, cfg)
    by_shares = dppo_round(policy, per_share, dataclasses.replace(cfg, normalize_advantages=False))
    assert np.abs(by_shares - by_ppo).max() > 10 * TOLERANCE  # 2.6e-5 when written


def test_server_mean_is_weighted_by_the_pushed_weights():
    shared = SharedParams(3, 2, mp.get_context("spawn"))
    shared.publish(np.zeros(3, np.float32), 0)
    server = Server(shared, ServerConfig(optimizer="sgd", lr=1.0).validate(2))
    shared.slot(0)[:] = [2.0, 4.0, 6.0]  # a sum over 2 samples
    shared.slot(1)[:] = [3.0, 0.0, 0.0]  # a sum over 1 sample
    server.on_push(0, 0, 2.0)
    server.on_push(1, 0, 1.0)
    np.testing.assert_allclose(server.theta, -np.array([5.0, 4.0, 6.0]) / 3, rtol=1e-6)


@pytest.mark.parametrize("scale", [0.01, 100.0])  # below and above the limit
def test_clip_norm_follows_torch(scale):
    g = np.random.default_rng(0).standard_normal(50).astype(np.float32) * scale
    param = torch.nn.Parameter(torch.zeros(50))
    param.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_norm_([param], 0.5)
    np.testing.assert_allclose(clip_norm(g, 0.5), param.grad.numpy(), rtol=1e-6)


def test_server_adam_with_eps_follows_torch_adam():
    rng = np.random.default_rng(1)
    theta = rng.standard_normal(20).astype(np.float32)
    param = torch.nn.Parameter(torch.from_numpy(theta.copy()))
    torch_adam = torch.optim.Adam([param], lr=1e-3, eps=ADAM_EPS)
    ours = Optimizer("adam", 1e-3, 20, eps=ADAM_EPS)
    for _ in range(5):
        g = (rng.standard_normal(20) * 1e-5).astype(np.float32)  # |g| ~ ε: ε matters
        param.grad = torch.from_numpy(g.copy())
        torch_adam.step()
        ours.step(theta, g.copy())
    np.testing.assert_allclose(theta, param.detach().numpy(), rtol=0, atol=1e-7)


def test_server_config_refuses_a_clip_for_parameter_averaging():
    with pytest.raises(ValueError, match="max_grad_norm"):
        ServerConfig(average="parameters", max_grad_norm=0.5).validate(2)


def test_gradient_agreement_is_the_mean_cosine_of_the_workers_batch_gradients():
    """Against torch's own cosine of autograd gradients of −L^CLIP, the batch mean (the scale of a
    gradient does not change a cosine), advantages not normalised as in CFG; float32 sums of ~10⁴
    terms: 1e-5."""
    cfg = dataclasses.replace(CFG, workers=3)
    policy = initial_policy(cfg)
    (cosine,) = gradient_agreement(policy, cfg, draws=1)
    grads = []
    for data in worker_batches(policy, cfg, cfg.seed):
        logp, _, _ = policy.evaluate_actions(data["obs"], data["actions"])
        loss = -losses.ppo_clip_objective(logp, data["logp"], data["adv"], cfg.clip_eps)
        grads.append(
            torch.cat(
                [g.reshape(-1) for g in torch.autograd.grad(loss, [*policy.actor.parameters()])]
            )
        )
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = np.mean([F.cosine_similarity(grads[i], grads[j], dim=0).item() for i, j in pairs])
    assert cosine == pytest.approx(expected, abs=1e-5)
    assert -1 < cosine < 1 - 1e-3  # different samples: not the same direction


def test_returns_across_physics_evaluates_each_physics_as_evaluate_does():
    """The standard physics reproduce ``rlteach.evaluate`` on the plain env (same episode seeds);
    a pole four times shorter is another environment, where this untrained policy's returns
    differ."""
    policy = initial_policy(CFG)
    standard, short = returns_across_physics(
        policy, "CartPole-v1", [{}, {"length": 0.125}], episodes=4, seed=3
    )
    assert standard == pytest.approx(np.mean(evaluate(policy, "CartPole-v1", 4, 3)))
    assert short != standard


def test_share_gradient_seconds_times_each_share_size_with_one_torch_thread():
    from rlteach.distributed.dppo import share_gradient_seconds

    seconds = share_gradient_seconds(DPPOConfig(envs_per_worker=2), sizes=(4, 40), repeats=3)
    assert list(seconds) == [4, 40]
    assert all(0 < s < 1.0 for s in seconds.values())  # seconds, not ms: a unit check
    assert torch.get_num_threads() == 1
