"""REINFORCE with reward-to-go and an optional learned baseline (notebook 02), single process.

The deep version of ``tabular.episode_gradients`` (notebook 01): the gradient estimate is
``E[Σ_t ∇ log π(a_t|s_t) (G_t − b(s_t))]`` with ``G_t`` the reward-to-go and ``b = V_w`` a learned
critic (``baseline=True``) or 0. Like most code — and unlike eq. 1.7 — it leaves out ``γ^t``
(notebook 01, step 6 says what that changes).

A batch of ``T`` steps cuts some episodes short. Their reward-to-go is unknown: with a critic it is
bootstrapped from ``V(s_T)``; without one those unfinished tails are left out of the update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlteach import advantages, losses
from rlteach.algos.common import (
    Interruptible,
    TrainResult,
    annealed,
    build_agent,
    gradient_step,
    one_thread,
    set_learning_rate,
)
from rlteach.config import make_config, setting
from rlteach.history import History


@dataclass(frozen=True)
class ReinforceConfig:
    """REINFORCE settings."""

    env_id: str = setting("CartPole-v1", help="a registered gymnasium id")
    total_steps: int = setting(200_000, low=1, help="env steps (valid transitions) to train for")
    num_envs: int = setting(8, low=1, high=256, help="parallel environments N")
    rollout_steps: int = setting(256, low=1, high=8192, help="steps T per env per update")
    baseline: bool = setting(True, help="subtract a learned V_w(s) from the reward-to-go")
    gamma: float = setting(0.99, low=0.0, high=1.0, help="discount γ")
    lr: float = setting(
        3e-3, low=0.0, high=1.0, low_inclusive=False, log=True, help="Adam step size"
    )
    anneal_lr: bool = setting(False, help="decay the step size linearly to 0")
    vf_coef: float = setting(0.5, low=0.0, help="weight of the value loss")
    normalize_advantages: bool = setting(True, help="standardise the weights Ψ per batch")
    max_grad_norm: float = setting(0.5, low=0.0, help="gradient-norm clip (0: off)")
    hidden: tuple = setting((64, 64), help="hidden layer widths")
    seed: int = setting(0, low=0, help="one integer seeds everything")


def finished_episodes(batch) -> torch.Tensor:
    """``[T, N]`` bool: step ``t`` of env ``i`` belongs to an episode that ends within the batch."""
    done = (batch.terminated | batch.truncated).int()
    return done.flip(0).cummax(0).values.flip(0).bool()


def reinforce_loss(policy, data: dict, cfg: ReinforceConfig) -> tuple[torch.Tensor, dict]:
    """``−E[log π(a|s) Ψ] + c_v · ½E[(V(s) − G)²]`` with ``Ψ = G − V(s)`` or ``Ψ = G``."""
    logp, entropy, values = policy.evaluate_actions(data["obs"], data["actions"])
    weights = data["ret"] - data["values"] if cfg.baseline else data["ret"]
    if cfg.normalize_advantages:
        weights = advantages.normalize(weights)
    policy_objective = losses.policy_gradient_objective(logp, weights)
    loss = -policy_objective
    stats = {"policy_objective": policy_objective.item(), "entropy": entropy.mean().item()}
    if cfg.baseline:
        value_loss = losses.value_loss(values, data["ret"])
        loss = loss + cfg.vf_coef * value_loss
        stats["value_loss"] = value_loss.item()
    return loss, stats


def train_reinforce(
    config: ReinforceConfig | None = None, callback=None, env_fn=None, **overrides
) -> TrainResult:
    """Train REINFORCE; returns a :class:`TrainResult`. Arguments as for :func:`rlteach.train_ppo`."""
    cfg = make_config(ReinforceConfig, config, **overrides)
    one_thread()
    agent = build_agent(cfg.env_id, cfg.num_envs, cfg.seed, cfg.hidden, env_fn)
    policy, collector = agent.policy, agent.collector
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr, fused=True)
    history = History(meta={"algorithm": "reinforce", "config": cfg.__dict__})

    with Interruptible() as run:
        while collector.env_steps < cfg.total_steps:
            lr = annealed(cfg.lr, collector.env_steps / cfg.total_steps, cfg.anneal_lr)
            set_learning_rate(optimizer, lr)
            # 1. Run the policy: T steps in each of N envs.
            batch = collector.collect(cfg.rollout_steps)
            # 2. Reward-to-go G_t; cut episodes bootstrap from V (baseline) or are left out.
            bootstrap = batch.next_values if cfg.baseline else None
            ret = advantages.returns_to_go(
                batch.rewards, batch.terminated, batch.truncated, cfg.gamma, bootstrap
            )
            data = batch.flat(mask=None if cfg.baseline else finished_episodes(batch), ret=ret)
            # 3. One gradient step on −E[log π(a|s) Ψ] (+ the critic's regression).
            loss, stats = reinforce_loss(policy, data, cfg)
            stats["grad_norm"] = gradient_step(optimizer, loss, cfg.max_grad_norm)
            history.log_episodes(batch.episode_returns, batch.episode_lengths, batch.env_steps)
            history.log_update(env_steps=batch.env_steps, lr=lr, samples=len(data["obs"]), **stats)
            if callback is not None:
                callback(history)
    agent.close()
    return TrainResult(policy, history, cfg, interrupted=run.interrupted)
