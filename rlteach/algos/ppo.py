"""PPO with the clipped objective (seed §3.2 step 3; notebook 04), single process.

Reading order: :class:`PPOConfig` (every knob, with its range), :func:`ppo_loss` (one minibatch),
:func:`ppo_update` (epochs of minibatch ascent on one batch, with a pluggable step),
:func:`train_ppo` (the loop). DPPO (notebook 07) and DD-PPO (notebook 08) run the same
``ppo_update`` on each worker; only its ``step`` differs.

Two options, both off by default: ``target_kl`` ends an update's epochs early once the policy has
moved too far, and ``kl_penalty`` replaces the clip by the adaptive KL penalty of Schulman et al.
(2017, §4), with the exact per-state KL as in the paper; Heess et al. (2017) used an adaptive KL
penalty like it for their DPPO (rlteach's DPPO implements only the clip).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.distributions import kl_divergence

from rlteach import advantages, losses
from rlteach.algos.common import (
    Interruptible,
    LossWeights,
    Samples,
    Step,
    TrainResult,
    annealed,
    build_agent,
    combined_loss,
    local_step,
    one_thread,
    set_learning_rate,
    vector_parameter,
)
from rlteach.config import make_config, setting
from rlteach.envs import EnvFn
from rlteach.history import Callback, History
from rlteach.nets import ActorCritic
from rlteach.rollout import Batch

ADAM_EPS = 1e-5  # Adam's ε in PPO implementations (torch's default is 1e-8); DPPO's server uses it


@dataclass(frozen=True)
class PPOConfig:
    """PPO settings. Defaults solve CartPole-v1 in well under 100k env steps."""

    env_id: str = setting("CartPole-v1", help="a registered gymnasium id")
    total_steps: int = setting(
        100_000,
        low=1,
        help="env steps (valid transitions) to train for, summed over all environments",
    )
    num_envs: int = setting(8, low=1, high=256, help="parallel environments N")
    rollout_steps: int = setting(64, low=1, high=8192, help="steps T per env per batch")
    epochs: int = setting(10, low=1, high=100, help="passes over each batch")
    minibatches: int = setting(4, low=1, high=512, help="minibatches per epoch")
    lr: float = setting(1e-3, low=0.0, high=1.0, low_inclusive=False, log=True, help="step size α")
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
    target_kl: float = setting(
        0.0,
        low=0.0,
        high=1.0,
        help="end an update once the batch's approx KL passes this, checked after every "
        "minibatch step (0: off)",
    )
    kl_penalty: float = setting(
        0.0,
        low=0.0,
        high=1.0,
        help="KL target d_targ of the adaptive-penalty objective, which replaces the clip (0: off)",
    )
    kl_coef: float = setting(
        1.0,
        low=0.0,
        high=1000.0,
        low_inclusive=False,
        log=True,
        help="initial penalty weight β (used with kl_penalty)",
    )
    hidden: tuple = setting((64, 64), help="hidden layer widths")
    seed: int = setting(0, low=0, help="one integer seeds everything")


class PPOSettings(LossWeights, Protocol):
    """What the PPO update reads of a config: :class:`PPOConfig` has it, and so does DPPO's
    config (:class:`rlteach.distributed.configs.DPPOConfig`), whose workers run the same update."""

    @property
    def gamma(self) -> float: ...
    @property
    def gae_lambda(self) -> float: ...
    @property
    def epochs(self) -> int: ...
    @property
    def minibatches(self) -> int: ...
    @property
    def clip_eps(self) -> float: ...
    @property
    def max_grad_norm(self) -> float: ...
    @property
    def normalize_advantages(self) -> bool: ...
    @property
    def clip_value_loss(self) -> bool: ...


def gae_data(batch: Batch, cfg: PPOSettings) -> Samples:
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


def ppo_loss(
    policy: ActorCritic,
    mb: Samples,
    cfg: PPOSettings,
    kl_coef: float | None = None,
    old_policy: ActorCritic | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss to minimise on one minibatch, and its values.

    ``−L^CLIP + c_v · L^V − c_e · H[π]`` with ``L^CLIP = E[min(r Â, clip(r, 1−ε, 1+ε) Â)]``,
    ``r = π_θ(a|s)/π_old(a|s)`` (notebook 04, eq. 4.3). With a penalty weight ``kl_coef`` = β
    and ``old_policy`` (a frozen copy of π_old), ``L^KLPEN = E[r Â − β KL[π_old(·|s), π_θ(·|s)]]``
    (eq. 4.5, exact KL per state) replaces ``L^CLIP``: no clip. ``mb`` holds
    ``obs [M, obs_dim]``, ``actions [M, ...]``, ``logp`` (old), ``values`` (old), ``adv`` and
    ``ret``, all ``[M]``.
    """
    logp, entropy, values = policy.evaluate_actions(mb["obs"], mb["actions"])
    adv = advantages.normalize(mb["adv"]) if cfg.normalize_advantages else mb["adv"]
    if kl_coef is None:
        policy_objective = losses.ppo_clip_objective(logp, mb["logp"], adv, cfg.clip_eps)
    else:
        if old_policy is None:
            raise ValueError("ppo_loss with kl_coef needs old_policy, the frozen copy of π_old")
        kl = state_kl(old_policy, policy, mb["obs"])
        policy_objective = losses.kl_penalty_objective(logp, mb["logp"], adv, kl, kl_coef)
    old_values = mb["values"] if cfg.clip_value_loss else None
    value_loss = losses.value_loss(
        values, mb["ret"], old_values, cfg.clip_eps if cfg.clip_value_loss else None
    )
    return combined_loss(policy_objective, value_loss, entropy, cfg)


def state_kl(old_policy: ActorCritic, policy: ActorCritic, obs: torch.Tensor) -> torch.Tensor:
    """Exact ``KL[π_old(·|s), π_θ(·|s)]`` of each state of ``obs [M, obs_dim]``, shape ``[M]``
    (``torch.distributions.kl_divergence``: categorical or diagonal Gaussian). The gradient flows
    through ``policy`` (π_θ) only; ``old_policy`` is the frozen copy taken before the update."""
    with torch.no_grad():
        old = old_policy.dist(obs)
    return kl_divergence(old, policy.dist(obs))


def minibatch_indices(
    size: int, cfg: PPOSettings, generator: torch.Generator, exact: bool = False
) -> Iterator[torch.Tensor]:
    """``cfg.epochs`` shuffles of ``range(size)``, each cut into ``cfg.minibatches`` index tensors;
    an epoch's permutation is drawn when its first minibatch is asked for. ``torch.chunk`` cuts
    them (it can give fewer pieces when ``size`` is small); ``exact=True`` cuts with
    ``tensor_split``, always ``cfg.minibatches`` pieces (DD-PPO: every rank must take the same
    number of steps, whatever its ``size``)."""
    for order in epoch_orders(size, cfg, generator):
        yield from cut_into_minibatches(order, cfg, exact)


def epoch_orders(size: int, cfg: PPOSettings, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """``cfg.epochs`` permutations of ``range(size)``, each drawn when it is asked for."""
    for _ in range(cfg.epochs):
        yield torch.randperm(size, generator=generator)


def cut_into_minibatches(
    order: torch.Tensor, cfg: PPOSettings, exact: bool
) -> tuple[torch.Tensor, ...]:
    """``order`` cut into ``cfg.minibatches`` consecutive pieces (see :func:`minibatch_indices`)."""
    return order.tensor_split(cfg.minibatches) if exact else order.chunk(cfg.minibatches)


def shuffled_minibatches(
    data: Samples, cfg: PPOSettings, generator: torch.Generator, exact: bool = False
) -> Iterator[Samples]:
    """The minibatches of ``data`` (flat ``[M, ...]`` tensors) that :func:`minibatch_indices`
    cuts, one at a time. Each epoch gathers every tensor once in its shuffled order, and its
    minibatches are consecutive slices of that (views): the same samples as indexing with each
    piece, with one gather per tensor and epoch instead of one per minibatch."""
    for order in epoch_orders(len(data["obs"]), cfg, generator):
        shuffled = {k: v[order] for k, v in data.items()}
        start = 0
        for piece in cut_into_minibatches(order, cfg, exact):
            yield {k: v[start : start + len(piece)] for k, v in shuffled.items()}
            start += len(piece)


@torch.no_grad()
def batch_log_probs(policy: ActorCritic, data: Samples) -> torch.Tensor:
    """``log π_θ(a|s)`` of every sample of ``data`` under the current parameters, ``[M]`` (the
    actor alone: the critic is not needed)."""
    logp, _ = policy.actor.log_prob_and_entropy(data["obs"], data["actions"])
    return logp


def batch_kl(policy: ActorCritic, data: Samples) -> float:
    """Approx ``KL(π_old ‖ π_θ)`` (eq. 4.4) on all of ``data`` under the current parameters."""
    return losses.approx_kl(batch_log_probs(policy, data), data["logp"])


def ppo_update(
    policy: ActorCritic,
    data: Samples,
    cfg: PPOSettings,
    minibatches: Iterable[Samples],
    step: Step,
    kl_coef: float | None = None,
    target_kl: float = 0.0,
    measure: bool = True,
) -> dict[str, float]:
    """One PPO update on ``data`` (flat ``[M, ...]`` tensors): for each of the ``minibatches``
    (e.g. :func:`shuffled_minibatches`: ``cfg.epochs`` passes in ``cfg.minibatches`` pieces), the
    loss :func:`ppo_loss` and one ``step(loss, minibatch)``. The step is what differs between PPO
    (:func:`~rlteach.algos.common.local_step`: its own Adam), DPPO (push to the parameter server,
    pull θ) and DD-PPO (all-reduce, then Adam). With a penalty weight ``kl_coef`` = β the loss is
    ``L^KLPEN`` against a frozen copy of the policy taken before the first step.

    Early stopping: with ``target_kl > 0``, after every minibatch step the approx KL of the whole
    batch (``losses.approx_kl``, eq. 4.4) is measured under the new parameters; the first time it
    exceeds ``target_kl`` the update ends there (no further minibatch, no further epoch). The step
    that crossed the threshold is kept, so the KL of such an update is just above ``target_kl``.

    Returns the loss values (and what the steps logged) averaged over the steps taken. With
    ``measure`` (PPO's dashboards show these; DPPO's and DD-PPO's workers skip the extra pass over
    the batch) also ``minibatch_steps``, the number taken, and how far the update moved the
    policy, measured on ``data`` after the last step: ``approx_kl``, ``clip_fraction`` and
    ``max_ratio_dev`` = max ``|r − 1|``; with the penalty also ``kl``, the exact mean of
    :func:`state_kl` over the batch's states (the paper's d).
    """
    old_policy = copy.deepcopy(policy) if kl_coef is not None else None
    totals: dict[str, float] = {}
    steps = 0
    for mb in minibatches:
        loss, stats = ppo_loss(policy, mb, cfg, kl_coef, old_policy)
        stats.update(step(loss, mb))
        for key, value in stats.items():
            totals[key] = totals.get(key, 0.0) + value
        steps += 1
        if target_kl > 0 and batch_kl(policy, data) > target_kl:
            break
    means = {key: value / steps for key, value in totals.items()}
    if not measure:
        return means
    logp = batch_log_probs(policy, data)
    stats = {
        **means,
        "minibatch_steps": steps,
        "approx_kl": losses.approx_kl(logp, data["logp"]),
        "clip_fraction": losses.clip_fraction(logp, data["logp"], cfg.clip_eps),
        "max_ratio_dev": losses.max_ratio_deviation(logp, data["logp"]),
    }
    if old_policy is not None:
        with torch.no_grad():
            stats["kl"] = state_kl(old_policy, policy, data["obs"]).mean().item()
    return stats


def adapted_kl_coef(kl_coef: float, kl: float, kl_target: float) -> float:
    """The adaptive penalty's rule (Schulman et al. 2017, §4; notebook 04, eq. 4.6), applied after
    each update with that update's KL ``kl`` (the exact mean KL over the batch's states): β × 2
    when ``kl > 1.5 · d_targ``, β / 2 when ``kl < d_targ / 1.5``, else β unchanged. Returns the β
    of the next update."""
    if kl > 1.5 * kl_target:
        return kl_coef * 2
    if kl < kl_target / 1.5:
        return kl_coef / 2
    return kl_coef


def train_ppo(
    config: PPOConfig | None = None,
    callback: Callback | None = None,
    env_fn: EnvFn | None = None,
    **overrides: Any,
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
    theta = vector_parameter(policy)  # all weights and biases as one vector: a faster step
    optimizer = torch.optim.Adam([theta], lr=cfg.lr, eps=ADAM_EPS, fused=True)
    history = History(meta={"algorithm": "ppo", "config": cfg.__dict__})
    kl_coef = cfg.kl_coef if cfg.kl_penalty > 0 else None  # β of the penalty variant

    with Interruptible() as run:
        while collector.env_steps < cfg.total_steps:
            lr = annealed(cfg.lr, collector.env_steps / cfg.total_steps, cfg.anneal_lr)
            set_learning_rate(optimizer, lr)
            # 1. Collect T steps from N envs with the current policy π_old.
            batch = collector.collect(cfg.rollout_steps)
            # 2. Advantages Â_t by GAE(λ) from the critic's values (notebook 03).
            data = gae_data(batch, cfg)
            # 3. Several epochs of minibatch ascent on L^CLIP (or L^KLPEN), descent on the value loss.
            minibatches = shuffled_minibatches(data, cfg, agent.generator)
            step = local_step(optimizer, cfg.max_grad_norm)
            stats = ppo_update(policy, data, cfg, minibatches, step, kl_coef, cfg.target_kl)
            if kl_coef is not None:  # 4. (penalty variant) adapt β to the KL this update reached
                stats["kl_coef"] = kl_coef
                kl_coef = adapted_kl_coef(kl_coef, stats["kl"], cfg.kl_penalty)
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
