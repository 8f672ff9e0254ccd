"""PPO with the clipped objective (seed §3.2 step 3; notebook 04), single process.

Reading order: :class:`PPOConfig` (every knob, with its range), :func:`ppo_loss` (one minibatch),
:func:`ppo_update` (epochs of minibatch ascent on one batch), :func:`train_ppo` (the loop).
DPPO (notebook 07) reuses ``ppo_loss`` and ``ppo_update`` on each worker.
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
class PPOConfig:
    """PPO settings. Defaults solve CartPole-v1 in well under 100k env steps."""

    env_id: str = setting("CartPole-v1", help="a registered gymnasium id")
    total_steps: int = setting(100_000, low=1, help="env steps (valid transitions) to train for")
    num_envs: int = setting(8, low=1, high=256, help="parallel environments N")
    rollout_steps: int = setting(64, low=1, high=8192, help="steps T per env per update")
    epochs: int = setting(10, low=1, high=100, help="passes over each batch")
    minibatches: int = setting(4, low=1, high=512, help="minibatches per epoch")
    lr: float = setting(
        1e-3, low=0.0, high=1.0, low_inclusive=False, log=True, help="Adam step size"
    )
    anneal_lr: bool = setting(True, help="decay the step size linearly to 0")
    gamma: float = setting(0.98, low=0.0, high=1.0, help="discount γ")
    gae_lambda: float = setting(
        0.9, low=0.0, high=1.0, help="GAE λ (0: one-step TD, 1: Monte Carlo)"
    )
    clip_eps: float = setting(
        0.2,
        low=0.0,
        high=1.0,
        low_inclusive=False,
        high_inclusive=False,
        help="clip range ε of the ratio",
    )
    vf_coef: float = setting(0.5, low=0.0, help="weight of the value loss")
    ent_coef: float = setting(0.0, low=0.0, help="weight of the entropy bonus")
    max_grad_norm: float = setting(0.5, low=0.0, help="gradient-norm clip (0: off)")
    normalize_advantages: bool = setting(True, help="standardise advantages per minibatch")
    clip_value_loss: bool = setting(False, help="PPO2-style clipped value loss")
    hidden: tuple = setting((64, 64), help="hidden layer widths")
    seed: int = setting(0, low=0, help="one integer seeds everything")


def gae_data(batch, cfg) -> dict:
    """GAE(λ) advantages ``adv`` and returns ``ret`` of a ``[T, N]`` batch (notebook 03, with
    ``cfg.gamma`` and ``cfg.gae_lambda``), flattened with the batch over its valid steps."""
    adv, ret = advantages.gae(
        batch.rewards,
        batch.values,
        batch.next_values,
        batch.terminated,
        batch.truncated,
        cfg.gamma,
        cfg.gae_lambda,
    )
    return batch.flat(adv=adv, ret=ret)


def ppo_loss(policy, mb: dict, cfg: PPOConfig) -> tuple[torch.Tensor, dict]:
    """Loss to minimise on one minibatch, and its values.

    ``−L^CLIP + c_v · L^V − c_e · H[π]`` with ``L^CLIP = E[min(r Â, clip(r, 1−ε, 1+ε) Â)]``,
    ``r = π_θ(a|s)/π_old(a|s)`` (notebook 04, eq. 4.2). ``mb`` holds ``obs [M, obs_dim]``,
    ``actions [M, ...]``, ``logp`` (old), ``values`` (old), ``adv`` and ``ret``, all ``[M]``.
    """
    logp, entropy, values = policy.evaluate_actions(mb["obs"], mb["actions"])
    adv = advantages.normalize(mb["adv"]) if cfg.normalize_advantages else mb["adv"]
    policy_objective = losses.ppo_clip_objective(logp, mb["logp"], adv, cfg.clip_eps)
    old_values = mb["values"] if cfg.clip_value_loss else None
    value_loss = losses.value_loss(
        values, mb["ret"], old_values, cfg.clip_eps if cfg.clip_value_loss else None
    )
    entropy = entropy.mean()
    loss = -policy_objective + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
    stats = {
        "policy_objective": policy_objective.item(),
        "value_loss": value_loss.item(),
        "entropy": entropy.item(),
    }
    return loss, stats


def ppo_update(policy, optimizer, data: dict, cfg: PPOConfig, generator: torch.Generator) -> dict:
    """``cfg.epochs`` passes over ``data`` (flat ``[M, ...]`` tensors) in ``cfg.minibatches`` shuffled
    minibatches, one gradient step each. Returns the loss values averaged over all steps and, for
    the whole update, how far it moved the policy: ``approx_kl`` and ``clip_fraction`` measured on
    ``data`` after the last step."""
    size = len(data["obs"])
    totals: dict[str, float] = {}
    steps = 0
    for _ in range(cfg.epochs):
        for idx in torch.randperm(size, generator=generator).chunk(cfg.minibatches):
            loss, stats = ppo_loss(policy, {k: v[idx] for k, v in data.items()}, cfg)
            stats["grad_norm"] = gradient_step(optimizer, loss, cfg.max_grad_norm)
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value
            steps += 1
    with torch.no_grad():
        logp, _, _ = policy.evaluate_actions(data["obs"], data["actions"])
    return {
        **{key: value / steps for key, value in totals.items()},
        "approx_kl": losses.approx_kl(logp, data["logp"]),
        "clip_fraction": losses.clip_fraction(logp, data["logp"], cfg.clip_eps),
    }


def train_ppo(
    config: PPOConfig | None = None, callback=None, env_fn=None, **overrides
) -> TrainResult:
    """Train PPO; returns a :class:`TrainResult` (``.policy``, ``.history``).

    ``config`` and/or keyword ``overrides`` (fields of :class:`PPOConfig`; a bad value raises
    ``ValueError`` naming it). ``callback(history)`` runs after every update, e.g. a ``LivePlot``.
    ``env_fn`` (a zero-argument env constructor) replaces ``env_id`` for custom environments.
    Interrupting the kernel stops the run and returns the partial result.
    """
    cfg = make_config(PPOConfig, config, **overrides)
    one_thread()
    agent = build_agent(cfg.env_id, cfg.num_envs, cfg.seed, cfg.hidden, env_fn)
    policy, collector = agent.policy, agent.collector
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5, fused=True)
    history = History(meta={"algorithm": "ppo", "config": cfg.__dict__})

    with Interruptible() as run:
        while collector.env_steps < cfg.total_steps:
            lr = annealed(cfg.lr, collector.env_steps / cfg.total_steps, cfg.anneal_lr)
            set_learning_rate(optimizer, lr)
            # 1. Collect T steps from N envs with the current policy π_old.
            batch = collector.collect(cfg.rollout_steps)
            # 2. Advantages Â_t by GAE(λ) from the critic's values (notebook 03).
            data = gae_data(batch, cfg)
            # 3. Several epochs of minibatch ascent on L^CLIP (and descent on the value loss).
            stats = ppo_update(policy, optimizer, data, cfg, agent.generator)
            history.log_episodes(batch.episode_returns, batch.episode_lengths, batch.env_steps)
            history.log_update(
                env_steps=batch.env_steps,
                lr=lr,
                **stats,
                explained_variance=losses.explained_variance(data["values"], data["ret"]),
            )
            if callback is not None:
                callback(history)
    agent.close()
    return TrainResult(policy, history, cfg, interrupted=run.interrupted)
