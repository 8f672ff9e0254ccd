"""Advantage actor-critic (A2C; seed §2.2, notebook 03), single process, synchronous.

Each update collects ``T`` steps from ``N`` envs, estimates advantages with the critic — the seed's
one-step TD advantage (§3.1 step 3), n-step returns, or GAE(λ) — and takes one gradient step on
``−E[log π(a|s) Â] + c_v · L^V − c_e · H[π]``. DA3C (notebook 06) runs :func:`a2c_loss` on every
worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from rlteach import advantages, losses
from rlteach.algos.common import (
    Interruptible,
    Samples,
    TrainResult,
    annealed,
    build_agent,
    combined_loss,
    gradient_step,
    one_thread,
    set_learning_rate,
    vector_parameter,
)
from rlteach.config import make_config, setting
from rlteach.envs import EnvFn
from rlteach.history import Callback, History
from rlteach.nets import ActorCritic
from rlteach.rollout import Batch

ADVANTAGE_ESTIMATORS = ("td", "nstep", "gae")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
RMSPROP_ALPHA, OPTIMIZER_EPS = 0.99, 1e-5  # RMSprop's decay (the A2C paper's); ε of RMSprop, Adam


@dataclass(frozen=True)
class A2CConfig:
    """A2C settings. Defaults solve CartPole-v1 within 300k env steps."""

    env_id: str = setting("CartPole-v1", help="a registered gymnasium id")
    total_steps: int = setting(
        300_000,
        low=1,
        help="env steps (valid transitions) to train for, summed over all environments",
    )
    num_envs: int = setting(8, low=1, high=256, help="parallel environments N")
    rollout_steps: int = setting(8, low=1, high=8192, help="steps T per env per batch")
    advantage: str = setting(
        "gae",
        choices=ADVANTAGE_ESTIMATORS,
        help="td: r + γV(s') − V(s), the seed's step 3; nstep; gae",
    )
    nstep: int = setting(5, low=1, help="n of the n-step return (advantage='nstep')")
    gae_lambda: float = setting(
        0.95, low=0.0, high=1.0, help="GAE λ (0: one-step TD, 1: Monte Carlo)"
    )
    gamma: float = setting(0.99, low=0.0, high=1.0, help="discount γ")
    lr: float = setting(1e-3, low=0.0, high=1.0, low_inclusive=False, log=True, help="step size α")
    optimizer: str = setting("adam", choices=OPTIMIZERS, help="optimizer")
    anneal_lr: bool = setting(True, help="decay the step size linearly to 0")
    vf_coef: float = setting(0.5, low=0.0, help="weight of the value loss")
    ent_coef: float = setting(0.0, low=0.0, help="weight of the entropy bonus")
    max_grad_norm: float = setting(0.5, low=0.0, help="gradient-norm clip (0: off)")
    normalize_advantages: bool = setting(False, help="standardise advantages per batch")
    bootstrap_truncated: bool = setting(
        True, help="bootstrap at time-limit cuts; False reproduces a common bug (notebook 03)"
    )
    hidden: tuple = setting((64, 64), help="hidden layer widths")
    seed: int = setting(0, low=0, help="one integer seeds everything")


class A2CSettings(Protocol):
    """What the advantage estimate and the A2C loss read of a config: :class:`A2CConfig` has it,
    and so does DA3C's config (:class:`rlteach.distributed.configs.DA3CConfig`), whose workers run
    the same loss."""

    @property
    def advantage(self) -> str: ...
    @property
    def bootstrap_truncated(self) -> bool: ...
    @property
    def gamma(self) -> float: ...
    @property
    def nstep(self) -> int: ...
    @property
    def gae_lambda(self) -> float: ...
    @property
    def normalize_advantages(self) -> bool: ...
    @property
    def vf_coef(self) -> float: ...
    @property
    def ent_coef(self) -> float: ...


def estimate_advantages(batch: Batch, cfg: A2CSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Â, return targets)``, both ``[T, N]``, with the estimator ``cfg.advantage`` names.

    With ``cfg.bootstrap_truncated = False`` a truncated step counts as terminated: the value of the
    state where the time limit cut the episode is replaced by 0 (the bug notebook 03 shows).
    """
    terminated = batch.terminated if cfg.bootstrap_truncated else batch.terminated | batch.truncated
    args = (batch.rewards, batch.values, batch.next_values, terminated, batch.truncated)
    if cfg.advantage == "td":
        return advantages.gae(*args, cfg.gamma, 0.0)  # λ = 0 is the one-step TD advantage
    if cfg.advantage == "nstep":
        return advantages.nstep_advantages(*args, cfg.gamma, cfg.nstep)
    return advantages.gae(*args, cfg.gamma, cfg.gae_lambda)


def a2c_loss(
    policy: ActorCritic, data: Samples, cfg: A2CSettings
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss to minimise on flat samples ``data`` (``obs``, ``actions``, ``adv``, ``ret``, all ``[M]``):
    ``−E[log π(a|s) Â] + c_v · ½E[(V(s) − R)²] − c_e · H[π]`` (notebook 03, eq. 3.4)."""
    logp, entropy, values = policy.evaluate_actions(data["obs"], data["actions"])
    adv = advantages.normalize(data["adv"]) if cfg.normalize_advantages else data["adv"]
    policy_objective = losses.policy_gradient_objective(logp, adv)
    value_loss = losses.value_loss(values, data["ret"])
    return combined_loss(policy_objective, value_loss, entropy, cfg)


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float
) -> torch.optim.Optimizer:
    """Adam, RMSprop (the A2C paper's choice) or plain SGD."""
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=RMSPROP_ALPHA, eps=OPTIMIZER_EPS)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, eps=OPTIMIZER_EPS, fused=True)


def train_a2c(
    config: A2CConfig | None = None,
    callback: Callback | None = None,
    env_fn: EnvFn | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train A2C; returns a :class:`TrainResult`. Arguments as for :func:`rlteach.train_ppo`."""
    cfg = make_config(A2CConfig, config, **overrides)
    one_thread()
    agent = build_agent(cfg.env_id, cfg.num_envs, cfg.seed, cfg.hidden, env_fn)
    policy, collector = agent.policy, agent.collector
    optimizer = make_optimizer(cfg.optimizer, [vector_parameter(policy)], cfg.lr)
    history = History(meta={"algorithm": "a2c", "config": cfg.__dict__})

    with Interruptible() as run:
        while collector.env_steps < cfg.total_steps:
            lr = annealed(cfg.lr, collector.env_steps / cfg.total_steps, cfg.anneal_lr)
            set_learning_rate(optimizer, lr)
            # 1. Each of the N envs takes T steps with the current policy.
            batch = collector.collect(cfg.rollout_steps)
            # 2. The critic turns them into advantages (TD, n-step or GAE).
            adv, ret = estimate_advantages(batch, cfg)
            data = batch.flat(adv=adv, ret=ret)
            # 3. One step on the actor-critic loss.
            loss, stats = a2c_loss(policy, data, cfg)
            stats["grad_norm"] = gradient_step(optimizer, loss, cfg.max_grad_norm)
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
