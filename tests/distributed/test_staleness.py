"""DA3C's injected staleness (notebook 06, on-policy data and staleness).

The worker function runs in this process against :class:`OneWorkerSyncServer`, a parameter server
for a single worker in sync mode that records every θ it published and every gradient pushed to
it. Each pushed gradient is then recomputed independently: a second collector, built and seeded
like the worker's, is replayed with the parameter vector the push should have used, and the
actor-critic gradient is written out by hand from the policy's distributions and values.
"""

import numpy as np
import pytest
import torch

from rlteach.algos.a2c import a2c_loss, estimate_advantages
from rlteach.distributed.da3c import DA3CConfig, da3c_worker, run_da3c
from rlteach.distributed.worker import PushReceipt
from rlteach.envs import make_vector_env
from rlteach.nets import ActorCritic, flat_gradient, flat_parameters, set_flat_parameters
from rlteach.rollout import Collector

SEED = 3
PUSHES = 12
SERVER_LR = 0.5  # plain SGD on the server; large, so consecutive θ differ clearly
CFG = DA3CConfig(
    workers=1,
    mode="sync",
    envs_per_worker=3,
    rollout_steps=5,
    total_steps=3 * 5 * PUSHES,
    advantage="td",
    vf_coef=0.5,
    ent_coef=0.01,
    max_grad_norm=0.5,
    eval_interval=0.0,
    hidden=(16,),
)
# The replay repeats the worker's float32 arithmetic with the same data; only the order of a few
# reductions may differ (a hand-written loss against a2c_loss), which moves float32 results by a
# few ulps of values of order 1: 1e-5 relative is far below any difference a wrong θ would make
# (the θ_t differ by steps of about SERVER_LR · max_grad_norm = 0.25 in norm).
RTOL, ATOL = 1e-5, 1e-6


class OneWorkerSyncServer:
    """A stand-in for the worker's ``ctx``: one worker, sync mode, ``θ ← θ − lr · g`` on each
    push; ``thetas[v]`` is the θ of version ``v``, ``pushes[n]`` the n-th gradient received."""

    worker_id, workers, seed, stopping = 0, 1, SEED, False

    def __init__(self, theta0: np.ndarray, lr: float = SERVER_LR):
        self.thetas, self.pushes, self.reports, self.lr = [theta0.copy()], [], [], lr
        self.progress = []  # the training progress each push carried

    def pull(self, out=None):
        if out is None:
            out = np.empty_like(self.thetas[-1])
        np.copyto(out, self.thetas[-1])  # as the real ctx: into ``out`` when given
        return out, len(self.thetas) - 1

    def push(self, vector, version, progress=0.0):
        self.progress.append(progress)
        assert version == len(self.thetas) - 1, "sync mode: a push must carry the newest version"
        self.pushes.append(np.array(vector, dtype=np.float32))
        self.thetas.append(self.thetas[-1] - self.lr * self.pushes[-1])
        return PushReceipt(True, len(self.thetas) - 1, 0, 0.0)

    def report(self, **metrics):
        self.reports.append(metrics)


def new_agent(cfg):
    """A policy of the worker's architecture and a collector seeded like the worker's."""
    envs = make_vector_env(cfg.env_id, cfg.envs_per_worker)
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space, cfg.hidden)
    return policy, Collector(envs, policy, seed=SEED)


def run_worker(worker, **overrides):
    """Run ``worker`` in this process against a fresh recording server; return the server."""
    cfg = DA3CConfig(**{**CFG.__dict__, **overrides})
    torch.manual_seed(0)
    policy, collector = new_agent(cfg)
    collector.envs.close()
    server = OneWorkerSyncServer(flat_parameters(policy))
    worker(server, cfg, [None])
    assert len(server.pushes) >= PUSHES  # steps that only reset an env do not count
    return server


def clipped(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_``'s rule: scale by ``max_norm / (‖g‖ + 1e-6)`` when that is below 1."""
    return grad * min(1.0, max_norm / (grad.norm().item() + 1e-6))


def hand_gradient(policy, batch, weights=None) -> np.ndarray:
    """∇ of ``−mean(ρ Â log π(a|s)) + c_v ½ mean((V(s) − R)²) − c_e mean(H)`` at ``policy``'s
    parameters, with the one-step TD advantage ``Â = r + γ V(s')(1 − terminated) − V(s)`` of the
    batch's recorded values, ``R = Â + V(s)``, and ``ρ = weights`` (1 when None), over the valid
    steps; clipped."""
    cfg, keep = CFG, batch.valid
    adv = batch.rewards + cfg.gamma * batch.next_values * (~batch.terminated) - batch.values
    ret, adv, obs = (adv + batch.values)[keep], adv[keep], batch.obs[keep]
    dist = policy.dist(obs)
    weighted = adv if weights is None else weights[keep] * adv
    loss = (
        -(weighted * dist.log_prob(batch.actions[keep])).mean()
        + cfg.vf_coef * 0.5 * ((policy.value(obs) - ret) ** 2).mean()
        - cfg.ent_coef * dist.entropy().mean()
    )
    grads = torch.autograd.grad(loss, list(policy.parameters()))
    return clipped(torch.cat([g.reshape(-1) for g in grads]), cfg.max_grad_norm).numpy()


def replay(server, k):
    """The batches a worker with staleness ``k`` should have collected: push ``n`` acts with
    ``θ_{max(n−k, 0)}``. Yields ``(n, policy holding that θ, batch)``."""
    policy, collector = new_agent(CFG)
    for n in range(len(server.pushes)):
        set_flat_parameters(policy, server.thetas[max(n - k, 0)])
        yield n, policy, collector.collect(CFG.rollout_steps)
    collector.envs.close()


def test_with_staleness_two_the_gradient_of_push_n_comes_from_theta_n_minus_2():
    server = run_worker(da3c_worker, staleness=2)
    for n, policy, batch in replay(server, k=2):
        np.testing.assert_allclose(server.pushes[n], hand_gradient(policy, batch), RTOL, ATOL)
    # and not from the newest θ: the same data differentiated at θ_n gives another vector
    n, policy, batch = list(replay(server, k=2))[-1]
    set_flat_parameters(policy, server.thetas[n])
    assert not np.allclose(server.pushes[n], hand_gradient(policy, batch), RTOL, ATOL)


def test_kl_stale_is_the_mean_kl_from_the_newest_to_the_acting_policy():
    server = run_worker(da3c_worker, staleness=2)
    fresh, _ = new_agent(CFG)
    for n, stale, batch in replay(server, k=2):
        set_flat_parameters(fresh, server.thetas[n])
        states = batch.obs[batch.valid]  # the states of the batch's samples
        with torch.no_grad():  # KL(p ‖ q) = Σ_a p(a) (ln p(a) − ln q(a)), in float64
            p = fresh.dist(states).probs.double()
            q = stale.dist(states).probs.double()
        expected = (p * (p.log() - q.log())).sum(-1).mean().item()
        # float32 log-probabilities carry ~1e-7 absolute error each; these KLs are 0 at the first
        # push (θ_0 is then both the newest and the acting θ) and about 1e-4 to 1e-2 after it
        assert server.reports[n]["kl_stale"] == pytest.approx(expected, rel=1e-3, abs=1e-7)
    assert server.reports[0]["kl_stale"] == 0.0
    assert min(report["kl_stale"] for report in server.reports[1:]) > 1e-5


def test_importance_correction_differentiates_at_the_newest_theta_with_truncated_ratios():
    server = run_worker(da3c_worker, staleness=2, staleness_correction="importance", rho_bar=1.0)
    truncated = 0
    for n, policy, batch in replay(server, k=2):
        with torch.no_grad():
            behaviour = policy.dist(batch.obs).log_prob(batch.actions)
        set_flat_parameters(policy, server.thetas[n])
        with torch.no_grad():
            ratio = torch.exp(policy.dist(batch.obs).log_prob(batch.actions) - behaviour)
        truncated += int((ratio > 1.0).sum())
        weights = ratio.clamp(max=1.0)
        np.testing.assert_allclose(
            server.pushes[n], hand_gradient(policy, batch, weights), RTOL, ATOL
        )
    assert truncated > 0  # the truncation min(ρ̄, ·) was exercised


def plain_worker(ctx, cfg, factories):
    """The DA3C worker as it was before staleness existed (gradients path): pull, collect, TD
    advantages, actor-critic loss, clipped gradient, push."""
    torch.manual_seed(0)
    policy, collector = new_agent(cfg)
    while collector.env_steps < cfg.total_steps:
        theta, version = ctx.pull()
        set_flat_parameters(policy, theta)
        batch = collector.collect(cfg.rollout_steps)
        adv, ret = estimate_advantages(batch, cfg)
        loss, _ = a2c_loss(policy, batch.flat(adv=adv, ret=ret), cfg)
        policy.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        ctx.push(flat_gradient(policy), version)


def test_staleness_zero_is_the_plain_worker():
    """The same gradients up to float32 rounding: the worker's parameters are views of one flat
    vector (``worker_agent``), the plain worker's are tensors of their own, and on some CPUs the
    vectorised kernels then round a few sums differently (seen: 1 ulp, 5e-7 relative)."""
    ours = run_worker(da3c_worker, staleness=0)
    plain = run_worker(plain_worker)
    for mine, theirs in zip(ours.pushes, plain.pushes, strict=True):
        np.testing.assert_allclose(mine, theirs, RTOL, ATOL)
    assert all("kl_stale" not in report for report in ours.reports)


@pytest.mark.parametrize(
    "options, field",
    [
        (dict(staleness=-1), "staleness"),
        (dict(staleness=1.5), "staleness"),
        (dict(staleness=2, average="parameters"), "staleness"),
        (dict(staleness_correction="vtrace"), "staleness_correction"),
        (dict(rho_bar=0.0), "rho_bar"),
    ],
)
def test_invalid_staleness_settings_raise_before_any_process_starts(options, field):
    with pytest.raises(ValueError, match=field):
        run_da3c(total_steps=100, **options)


def test_a_stale_run_with_two_workers_reports_kl_and_loses_no_push():
    result = run_da3c(
        total_steps=1200, workers=2, mode="sync", envs_per_worker=2, rollout_steps=10,
        staleness=3, eval_interval=0, seed=0,
    )  # fmt: skip
    kl = result.history.column("kl_stale", "updates")
    assert len(kl) >= 1200 // 40 and np.all(kl >= 0) and kl[-1] > 0
    # the injected staleness is invisible to the server: every push carries the newest version
    assert result.history.meta["pushes_dropped"] == 0
    assert set(result.history.meta["staleness"]) == {0}


def test_each_push_carries_the_share_of_the_budget_spent_before_its_batch():
    """The server anneals its step size with this progress (``ServerConfig.anneal``): 0 at the
    first push, then the env steps the worker had reported after its previous batch over its
    budget, as single-process A2C computes its step size before collecting."""
    server = run_worker(da3c_worker)
    spent = [0] + [report["env_steps"] for report in server.reports[:-1]]
    np.testing.assert_allclose(server.progress, np.array(spent) / CFG.total_steps)
    assert server.progress[-1] < 1.0
