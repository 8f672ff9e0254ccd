"""REINFORCE with reward-to-go and a choice of baseline (notebook 02), single process.

The deep version of ``tabular.episode_gradients`` (notebook 01): one gradient step per batch on the
surrogate (2.1) with the weights Ψ_t of eq. 2.3, ``baseline`` choosing which:

* ``"none"``: Ψ_t = G_t, the discounted reward-to-go;
* ``"monte-carlo"``: Ψ_t = G_t − V_w(s_t), REINFORCE with a learned baseline (Williams 1992);
* ``"bootstrap"``: Ψ_t = r_t + γ V_w(s_{t+1}) − V_w(s_t), the TD error: one-step actor-critic
  (Sutton & Barto 2018, §13.5), the bridge to notebook 03.

Like most code — and unlike eq. 1.8 of notebook 01 — the weights carry no ``γ^t`` (notebook 01,
section 6 says what that changes). ``normalize_advantages`` standardises Ψ per batch in every mode,
so with ``"none"`` the batch mean of G_t acts as a constant baseline.

Complete episodes. Every mode collects with :func:`collect_complete_episodes`: after the ``T`` steps
of a batch, each env whose episode is still running keeps stepping, with the same policy, until that
episode ends, so no return is ever cut by the batch end. The only other cut is CartPole's time limit
(``truncated``): there every mode closes the return with ``γ V_w(s_final)`` (partial-episode
bootstrapping, Pardo et al. 2018), which makes the objective the task *without* a time limit; only a
termination ends a return with 0. So ``"none"`` and ``"monte-carlo"`` read the critic only at a
time-limit cut, and every mode trains ``V_w`` by regression on its own targets (G_t, or
r_t + γ V_w(s_{t+1}) for ``"bootstrap"``).

The actor takes one gradient step per batch on the policy loss alone; the critic then takes
``critic_steps`` steps on the value loss alone. Each has its own Adam optimizer and its own
gradient-norm clip, so the size of the actor's step does not depend on the critic's loss.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from rlteach import advantages, losses
from rlteach.algos.common import (
    Interruptible,
    Samples,
    TrainResult,
    annealed,
    build_agent,
    gradient_step,
    one_thread,
    set_learning_rate,
)
from rlteach.config import make_config, setting
from rlteach.envs import EnvFn, make_vector_env
from rlteach.history import Callback, History
from rlteach.nets import ActorCritic
from rlteach.rollout import Batch, Collector

BASELINES = ("none", "monte-carlo", "bootstrap")


@dataclass(frozen=True)
class ReinforceConfig:
    """REINFORCE settings."""

    env_id: str = setting("CartPole-v1", help="a registered gymnasium id")
    total_steps: int = setting(
        200_000,
        low=1,
        help="env steps (valid transitions) to train for, summed over all environments",
    )
    num_envs: int = setting(8, low=1, high=256, help="parallel environments N")
    rollout_steps: int = setting(
        256, low=1, high=8192, help="steps T per env per update, then on to each episode's end"
    )
    baseline: str = setting(
        "monte-carlo",
        choices=BASELINES,
        help="Ψ_t (eq. 2.3): none: G_t; monte-carlo: G_t − V_w(s_t); "
        "bootstrap: r_t + γV_w(s_t+1) − V_w(s_t) (actor-critic)",
    )
    gamma: float = setting(0.99, low=0.0, high=1.0, help="discount γ")
    lr: float = setting(3e-3, low=0.0, high=1.0, low_inclusive=False, log=True, help="step size α")
    anneal_lr: bool = setting(False, help="decay the step size linearly to 0")
    vf_coef: float = setting(0.5, low=0.0, help="weight of the value loss")
    critic_steps: int = setting(
        20, low=1, high=200, help="critic gradient steps per batch, on the value loss alone"
    )
    normalize_advantages: bool = setting(True, help="standardise the weights Ψ per batch")
    max_grad_norm: float = setting(0.5, low=0.0, help="gradient-norm clip (0: off)")
    hidden: tuple = setting((64, 64), help="hidden layer widths")
    seed: int = setting(0, low=0, help="one integer seeds everything")


def collect_complete_episodes(collector: Collector, num_steps: int, chunk: int = 16) -> Batch:
    """``num_steps`` vector steps, then on with the same policy until every env's episode has ended.

    Returns one :class:`~rlteach.rollout.Batch` of ``T' >= num_steps`` rows (shapes ``[T', N, ...]``)
    in which every env's last valid step ends an episode (terminated or truncated), so no return is
    cut by the batch end. The extension runs ``chunk`` vector steps at a time, and the vector env
    steps all its envs together: an env whose episode has ended keeps stepping until the last one
    ends (and to the end of that chunk). Those steps are marked invalid (``valid`` False, reward 0,
    no done flag), subtracted from ``collector.env_steps`` (so from the batch's ``env_steps``), and
    episodes that end among them are not reported. Afterwards every env starts a new episode
    (:meth:`~rlteach.rollout.Collector.restart`): the next batch begins with whole episodes, so no
    episode is split between batches or loses its first steps.
    """
    parts = [collector.collect(num_steps)]
    running = parts[0].valid[-1] & ~(parts[0].terminated[-1] | parts[0].truncated[-1])  # [N]
    while running.any():
        part = collector.collect(chunk)
        ended = part.terminated | part.truncated  # [chunk, N]
        ended_before = ended.int().cumsum(0) - ended.int()
        keep = running & (ended_before == 0)  # env i's running episode has not ended before row t
        kept = keep[ended].tolist()  # episodes are reported in row-major order of their end
        part.episode_returns[:] = [r for r, k in zip(part.episode_returns, kept, strict=True) if k]
        part.episode_lengths[:] = [n for n, k in zip(part.episode_lengths, kept, strict=True) if k]
        collector.env_steps -= int((part.valid & ~keep).sum())
        for flags in (part.valid, part.terminated, part.truncated):
            flags &= keep
        part.rewards *= keep
        running = running & ~(ended & keep).any(0)
        parts.append(part)
    collector.restart()
    return _concatenated(parts, collector.env_steps)


def _concatenated(parts: list[Batch], env_steps: int) -> Batch:
    """The batches ``parts`` one after the other in time: tensors concatenated along dim 0."""
    tensors = {
        f.name: torch.cat([getattr(part, f.name) for part in parts])
        for f in fields(Batch)
        if isinstance(getattr(parts[0], f.name), torch.Tensor)
    }
    returns = [r for part in parts for r in part.episode_returns]
    lengths = [n for part in parts for n in part.episode_lengths]
    return Batch(**tensors, episode_returns=returns, episode_lengths=lengths, env_steps=env_steps)


def reinforce_weights(
    batch: Batch, baseline: str, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights Ψ of eq. 2.3 and the critic's regression targets, both ``[T, N]``.

    ``batch`` holds ``rewards``, ``values`` (``V_w(s_t)``), ``next_values`` (``V_w(s_{t+1})``, the
    real final observation's at a cut) and the bool masks ``terminated``, ``truncated``, all
    ``[T, N]``. Episode ends as in :mod:`rlteach.advantages`: a sum never crosses an episode end;
    a termination adds nothing after it; a cut (truncation, or the batch end — which a batch of
    :func:`collect_complete_episodes` never has on a valid step) adds ``γ V_w`` of the next state:

    G_t = Σ_{k=t..e} γ^{k−t} r_k + γ^{e+1−t} (1 − term_e) V_w(s_{e+1}), e the last step of t's episode.

    * ``"none"``: Ψ_t = G_t; targets G_t.
    * ``"monte-carlo"``: Ψ_t = G_t − V_w(s_t); targets G_t.
    * ``"bootstrap"``: Ψ_t = δ_t = r_t + γ (1 − term_t) V_w(s_{t+1}) − V_w(s_t) (eq. 3.1 of
      notebook 03); targets r_t + γ (1 − term_t) V_w(s_{t+1}).
    """
    if baseline == "bootstrap":
        args = (batch.values, batch.next_values, batch.terminated, batch.truncated)
        return advantages.gae(batch.rewards, *args, gamma, 0.0)  # λ = 0: the TD error δ_t
    ret = advantages.returns_to_go(
        batch.rewards, batch.terminated, batch.truncated, gamma, batch.next_values
    )
    return (ret - batch.values if baseline == "monte-carlo" else ret), ret


def critic_share(batches: list[Batch], gamma: float) -> dict[str, float]:
    """How much of the Monte Carlo return G_t (eq. 2.3) the critic supplies, over the valid samples
    of ``batches``.

    The critic's part of G_t is its tail γ^{e+1−t} V_w(s_{e+1}) when t's episode was cut at e (a
    time limit, or a batch end) and 0 when it terminated. Returns ``"samples"``: the fraction of
    samples whose G_t has such a tail; ``"share"``: the mean over samples of tail_t / G_t."""
    samples = []
    for batch in batches:
        zeros, ones = torch.zeros_like(batch.rewards), torch.ones_like(batch.rewards)
        ends = batch.terminated, batch.truncated
        tail = advantages.returns_to_go(zeros, *ends, gamma, batch.next_values)
        reaches_a_cut = advantages.returns_to_go(zeros, *ends, 1.0, ones)  # 1 if cut, else 0
        G = reinforce_weights(batch, "none", gamma)[0]
        samples.append(batch.flat(tail=tail, cut=reaches_a_cut, G=G))
    tail, cut, G = (torch.cat([s[key] for s in samples]) for key in ("tail", "cut", "G"))
    return {"samples": float(cut.mean()), "share": float((tail / G).mean())}


def standardised(psi: torch.Tensor, cfg: ReinforceConfig) -> torch.Tensor:
    """Ψ̃ of eq. 2.2: ``(Ψ − mean Ψ) / std Ψ`` over the batch ``[M]`` if
    ``cfg.normalize_advantages``, else Ψ unchanged."""
    return advantages.normalize(psi) if cfg.normalize_advantages else psi


def reinforce_loss(
    policy: ActorCritic, data: Samples, cfg: ReinforceConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """The actor's loss ``−mean[log π(a|s) Ψ̃]`` on flat samples ``data`` (``obs``, ``actions``,
    ``psi``, all ``[M]``): minus the surrogate whose gradient is ĝ of eq. 2.2."""
    logp, entropy = policy.actor.log_prob_and_entropy(data["obs"], data["actions"])
    policy_objective = losses.policy_gradient_objective(logp, standardised(data["psi"], cfg))
    stats = {"policy_objective": policy_objective.item(), "entropy": entropy.mean().item()}
    return -policy_objective, stats


def actor_gradient(
    policy: ActorCritic, batch: Batch, baseline: str, cfg: ReinforceConfig
) -> torch.Tensor:
    """One batch's update direction ĝ of eq. 2.2, ``mean_m[∇ log π(a_m|s_m) Ψ̃_m]`` with the weights
    Ψ of ``baseline``, with respect to the actor's parameters only, flattened to ``[P]``."""
    psi, _ = reinforce_weights(batch, baseline, cfg.gamma)
    loss, _ = reinforce_loss(policy, batch.flat(psi=psi), cfg)
    grads = torch.autograd.grad(-loss, list(policy.actor.parameters()))
    return torch.cat([g.flatten() for g in grads])


def mean_pairwise_cosine(vectors: torch.Tensor) -> float:
    """Mean of cos(v_i, v_j) over all pairs i ≠ j of the rows of ``vectors`` ``[K, P]``, K >= 2.

    For rows ĝ_k = g + noise_k with independent noise, it estimates |g|² / E|ĝ|²: 1 when every
    batch points the same way, about 0 when the batches agree on nothing."""
    unit = vectors / vectors.norm(dim=1, keepdim=True)
    k = len(unit)
    return float(((unit @ unit.T).sum() - k) / (k * (k - 1)))


def cross_half_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine between the mean direction of one half of the rows of ``a`` ``[K, P]`` and that of the
    other half of ``b`` ``[K, P]``, averaged over the two ways of pairing the halves.

    The two means come from different batches, so their noise is independent: for ``b = a`` it is
    the noise floor, the value two estimates of the same direction reach with K/2 batches each."""
    h = len(a) // 2
    cos = torch.nn.functional.cosine_similarity
    return float(
        (cos(a[:h].mean(0), b[h:].mean(0), dim=0) + cos(a[h:].mean(0), b[:h].mean(0), dim=0)) / 2
    )


def collect_batches(policy: ActorCritic, cfg: ReinforceConfig, count: int) -> list[Batch]:
    """``count`` batches of :func:`collect_complete_episodes` with ``cfg.num_envs`` envs and
    ``cfg.rollout_steps`` steps, by ``policy`` with no update in between (env and action seeds from
    ``cfg.seed``)."""
    envs = make_vector_env(cfg.env_id, cfg.num_envs)
    try:
        collector = Collector(envs, policy, seed=cfg.seed)
        return [collect_complete_episodes(collector, cfg.rollout_steps) for _ in range(count)]
    finally:
        envs.close()


def gradient_agreement(
    policy: ActorCritic, cfg: ReinforceConfig, batches: list[Batch]
) -> dict[str, dict[str, float]]:
    """What each choice of Ψ does to one update, measured on the same ``batches`` (at least 4, from
    :func:`collect_batches`) for every choice.

    Computes the update direction ĝ (eq. 2.2) of every batch for every baseline of
    :data:`BASELINES`. Returns, per baseline:

    * ``"psi_std"``: the standard deviation of Ψ over all valid samples, before standardisation;
    * ``"agreement"``: :func:`mean_pairwise_cosine` of the directions — near 1 when every batch
      points the same way (low variance), near 0 when they agree on nothing;
    * ``"cos_mc"``: :func:`cross_half_cosine` of this baseline's directions with those of
      ``"monte-carlo"``; for ``"monte-carlo"`` itself, the noise floor.
    """
    grads = {
        baseline: torch.stack([actor_gradient(policy, batch, baseline, cfg) for batch in batches])
        for baseline in BASELINES
    }
    return {
        baseline: {
            "psi_std": _psi_std(batches, baseline, cfg.gamma),
            "agreement": mean_pairwise_cosine(g),
            "cos_mc": cross_half_cosine(g, grads["monte-carlo"]),
        }
        for baseline, g in grads.items()
    }


def _psi_std(batches: list[Batch], baseline: str, gamma: float) -> float:
    """Standard deviation of the weights Ψ (eq. 2.3) over the valid samples of all ``batches``."""
    psi = [batch.flat(psi=reinforce_weights(batch, baseline, gamma)[0])["psi"] for batch in batches]
    return float(torch.cat(psi).std())


def train_reinforce(
    config: ReinforceConfig | None = None,
    callback: Callback | None = None,
    env_fn: EnvFn | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train REINFORCE; returns a :class:`TrainResult`. Arguments as for :func:`rlteach.train_ppo`."""
    cfg = make_config(ReinforceConfig, config, **overrides)
    one_thread()
    agent = build_agent(cfg.env_id, cfg.num_envs, cfg.seed, cfg.hidden, env_fn)
    policy, collector = agent.policy, agent.collector
    actor_opt = torch.optim.Adam(policy.actor.parameters(), lr=cfg.lr, fused=True)
    critic_opt = torch.optim.Adam(policy.critic.parameters(), lr=cfg.lr, fused=True)
    history = History(meta={"algorithm": "reinforce", "config": cfg.__dict__})

    with Interruptible() as run:
        while collector.env_steps < cfg.total_steps:
            lr = annealed(cfg.lr, collector.env_steps / cfg.total_steps, cfg.anneal_lr)
            set_learning_rate(actor_opt, lr)
            set_learning_rate(critic_opt, lr)
            # 1. Run the policy: T steps in each of N envs, then on to the end of every episode.
            batch = collect_complete_episodes(collector, cfg.rollout_steps)
            # 2. The weights Ψ_t (eq. 2.3); a time-limit cut is closed with γ V_w(s_final).
            psi, target = reinforce_weights(batch, cfg.baseline, cfg.gamma)
            data = batch.flat(psi=psi, target=target)
            # 3. One actor step on −mean[log π(a|s) Ψ̃], then the critic's regression steps.
            loss, stats = reinforce_loss(policy, data, cfg)
            stats["grad_norm"] = gradient_step(actor_opt, loss, cfg.max_grad_norm)
            for k in range(cfg.critic_steps):
                value_loss = losses.value_loss(policy.value(data["obs"]), data["target"])
                if k == 0:
                    stats["value_loss"] = value_loss.item()
                gradient_step(critic_opt, cfg.vf_coef * value_loss, cfg.max_grad_norm)
            history.log_episodes(batch.episode_returns, batch.episode_lengths, batch.env_steps)
            history.log_update(env_steps=batch.env_steps, lr=lr, samples=len(data["obs"]), **stats)
            if callback is not None:
                callback(history)
    agent.close()
    return TrainResult(policy, history, cfg, interrupted=run.interrupted)
