"""DPPO — distributed PPO (seed §3.2) on the parameter server, and the version in the literature.

Each worker runs :func:`dppo_worker`, which reads like the seed's steps 1–7 and reuses the
single-process PPO's :func:`~rlteach.algos.ppo.ppo_loss` and :func:`~rlteach.algos.ppo.ppo_update`.

Two ways to combine workers, both in the seed's step 6:

* ``average="gradients"`` (default) — the synchronous DPPO of Heess et al. (2017): every minibatch
  step is a round; each worker pushes ``∇`` of its minibatch share's loss, the server averages the
  gradients and takes one Adam step, and every worker continues from the same θ. With
  ``drop_stragglers = D`` a round closes after the first ``W − D`` gradients (their rule for slow
  workers). Heess et al. used an adaptive KL penalty; the clipped objective here is the now-common
  variant.

  One round is one step of single-process PPO (notebook 04) on the *global minibatch*, the union of
  the W workers' shares: each worker pushes the gradient of its loss summed over its ``n_w``
  samples with weight ``n_w``, so the server's mean is the per-sample mean over the union; the
  server clips that mean to ``max_grad_norm`` and steps with PPO's Adam (ε = ``ADAM_EPS``).
  Advantages are standardised over the global minibatch, as PPO standardises its minibatch: one
  sum over the workers per batch carries every round's ``(n, ΣA, ΣA²)`` (:func:`advantage_sums`,
  :func:`normalizes_globally`). A round and the large-batch step then agree to float32 rounding
  (:func:`large_batch_difference`). The global batch is the unit: with ``E`` environments in all,
  W workers of ``E/W`` each collect the same batch and take the same rounds for every W.
* ``average="parameters"`` — the seed's literal steps 4–6: each worker runs the whole PPO update
  (all epochs) on its own data, pushes θ', and the server averages parameters. After several
  Adam steps this is *not* the same as averaging gradients (notebook 05 shows why).

Where the seed is loose: workers do not train "on the same data set" — each collects its own fresh
trajectories with the current policy, so DPPO is data parallel over trajectories, and differences
between environment instances matter for it as for DA3C (notebook 07).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import multiprocess as mp
import numpy as np
import torch

from rlteach.algos.common import (
    Samples,
    TrainResult,
    annealed,
    build_agent,
    gradient_step,
    local_step,
    one_thread,
    set_learning_rate,
)
from rlteach.algos.ppo import (
    ADAM_EPS,
    gae_data,
    minibatch_indices,
    ppo_loss,
    ppo_update,
    shuffled_minibatches,
)
from rlteach.config import make_config
from rlteach.distributed.configs import DPPOConfig
from rlteach.distributed.driver import (
    BACKENDS as PARAMETER_SERVER_BACKENDS,
)
from rlteach.distributed.driver import (
    check_backend,
    pull_into,
    run_on_parameter_server,
    slow_down,
    steps_per_worker,
    worker_agent,
    worker_env_factories,
    worker_optimizer,
)
from rlteach.distributed.server import Server, ServerConfig
from rlteach.distributed.shared import SharedParams
from rlteach.distributed.worker import PushReceipt, WorkerContext
from rlteach.envs import EnvFn, make_vector_env
from rlteach.history import Callback
from rlteach.nets import (
    ActorCritic,
    alias_gradients,
    flat_gradient,
    flat_parameters,
    set_flat_parameters,
)
from rlteach.rollout import Collector

BACKENDS = (*PARAMETER_SERVER_BACKENDS, "torchrun")  # torchrun: DD-PPO, no server


def dppo_worker(ctx: WorkerContext, cfg: DPPOConfig, factories: list[EnvFn | None]) -> int:
    """One DPPO node (seed §3.2). Returns the env steps it took."""
    policy, collector = worker_agent(ctx, cfg, factories)  # its own environment instances
    local_optimizer = worker_optimizer(cfg, policy)  # None unless it averages parameters
    shuffle = torch.Generator().manual_seed(ctx.seed)
    budget = steps_per_worker(cfg)
    while collector.env_steps < budget and not ctx.stopping:
        progress = collector.env_steps / budget  # the step size decays with it (anneal_lr)
        # 1. (and 6.) Receive the global parameters θ, w.
        version, pull_seconds = pull_into(ctx, policy)
        start = time.perf_counter()
        # 2. Collect fresh trajectories with π_θ in this node's own environments.
        batch = collector.collect(cfg.rollout_steps)
        slow_down(ctx, cfg, batch)
        data = gae_data(batch, cfg)  # advantages by GAE(λ), as single-process PPO
        # 3.–5. ∇ L^CLIP, the update, and the push to the server (which averages: step 6).
        if cfg.average == "gradients":
            stats, receipt, wait = gradient_rounds(
                ctx, policy, data, cfg, shuffle, version, progress
            )
        else:
            assert local_optimizer is not None  # built when the worker averages parameters
            set_learning_rate(local_optimizer, annealed(cfg.lr, progress, cfg.anneal_lr))
            step = local_step(local_optimizer, cfg.max_grad_norm)
            stats = ppo_update(policy, data, cfg, shuffled_minibatches(data, cfg, shuffle), step)
            receipt = ctx.push(flat_parameters(policy), version, progress=progress)
            wait = receipt.waiting
        ctx.report(
            env_steps=collector.env_steps,
            returns=batch.episode_returns,
            lengths=batch.episode_lengths,
            version=receipt.version,
            staleness=receipt.staleness,
            applied=receipt.applied,
            compute=time.perf_counter() - start - wait,
            wait=wait,
            communication=pull_seconds,
            **stats,
        )
    # 7. Repeat until the budget is spent.
    return collector.env_steps


def gradient_rounds(
    ctx: WorkerContext,
    policy: ActorCritic,
    data: Samples,
    cfg: DPPOConfig,
    shuffle: torch.Generator,
    version: int,
    progress: float,
) -> tuple[dict[str, float], PushReceipt, float]:
    """Synchronous DPPO (Heess et al.): single-process PPO's :func:`~rlteach.algos.ppo.ppo_update`
    on this worker's ``data``, whose step is a round at the server (:class:`PushThenPull`). Each
    minibatch share's gradient goes into the worker's push slot (``ctx.slot``, which the policy's
    gradients alias) and is pushed with the share's size as its weight and the worker's
    ``progress`` through its budget (for the server's step size); the next share starts from the θ
    the server published. Advantages are standardised over each global minibatch
    (:func:`global_minibatches`). Returns the mean loss values, the last receipt and the seconds
    spent waiting for the server."""
    alias_gradients(policy, ctx.slot)
    cuts = list(minibatch_indices(len(data["obs"]), cfg, shuffle))
    shares: Iterable[Samples] = ({k: v[idx] for k, v in data.items()} for idx in cuts)
    if normalizes_globally(cfg):
        shares = global_minibatches(ctx, data, cuts)
        cfg = dataclasses.replace(cfg, normalize_advantages=False)  # done by global_minibatches
    step = PushThenPull(ctx, policy, version, progress)
    stats = ppo_update(policy, data, cfg, shares, step, measure=False)
    assert step.receipt is not None, "an update takes at least one minibatch step"
    return stats, step.receipt, step.waiting


class PushThenPull:
    """DPPO's :data:`~rlteach.algos.common.Step`: the gradient of the share's loss summed over
    its ``n`` samples (:func:`summed_gradient`, into ``ctx.slot``), pushed with weight ``n``, then
    the θ of the closed round pulled into ``policy``. Keeps the last ``receipt`` and the total
    seconds ``waiting`` for the server."""

    def __init__(self, ctx: WorkerContext, policy: ActorCritic, version: int, progress: float):
        self.ctx, self.policy, self.version, self.progress = ctx, policy, version, progress
        self.receipt: PushReceipt | None = None
        self.waiting = 0.0

    def __call__(self, loss: torch.Tensor, share: Samples) -> dict[str, float]:
        n = len(share["obs"])
        gradient = summed_gradient(self.policy, loss, n, into=self.ctx.slot)
        self.receipt = self.ctx.push(gradient, self.version, weight=n, progress=self.progress)
        self.waiting += self.receipt.waiting
        self.version, _ = pull_into(self.ctx, self.policy)
        return {}


def global_minibatches(
    ctx: WorkerContext, data: Samples, cuts: list[torch.Tensor]
) -> Iterator[Samples]:
    """This worker's shares ``data[cut]`` of the rounds, their advantages standardised over each
    round's global minibatch, the union of the W workers' shares: every round's ``(n, ΣA, ΣA²)``
    travels in one sum over the workers before the first round (:func:`advantage_sums`,
    :func:`normalize_with`)."""
    sums = ctx.sum_over_workers(advantage_sums(data["adv"], cuts)).reshape(len(cuts), 3)
    for idx, round_sums in zip(cuts, sums, strict=True):
        share = {k: v[idx] for k, v in data.items()}
        share["adv"] = normalize_with(share["adv"], round_sums)
        yield share


def normalizes_globally(cfg: DPPOConfig) -> bool:
    """Whether advantages are standardised over each *global* minibatch (the union of the
    workers' shares of a round), as single-process PPO standardises its minibatch: with
    ``normalize_advantages`` in synchronous gradient rounds that wait for every worker. With
    ``drop_stragglers`` a round is only ``W − D`` shares, and asynchronous pushes are no round:
    each share is then standardised on its own."""
    return cfg.normalize_advantages and (cfg.mode, cfg.average, cfg.drop_stragglers) == (
        "sync",
        "gradients",
        0,
    )


def advantage_sums(adv: torch.Tensor, cuts: list) -> np.ndarray:
    """``[R, 3]`` float32: for each of the ``R`` index tensors in ``cuts`` (a worker's shares of
    the R rounds of a batch), ``(n, Σ A, Σ A²)`` of ``adv[cut]``, summed in float64. Summed over
    the workers (:meth:`~rlteach.distributed.worker.WorkerContext.sum_over_workers`), they give
    each global minibatch's mean and standard deviation (:func:`normalize_with`)."""
    adv = adv.double()
    return np.array(
        [[len(cut), adv[cut].sum().item(), adv[cut].square().sum().item()] for cut in cuts],
        dtype=np.float32,
    )


def normalize_with(adv: torch.Tensor, sums: np.ndarray, eps: float = 1e-8) -> torch.Tensor:
    """``(A − μ) / (σ + ε)`` with ``μ = ΣA / n`` and the population ``σ = √(ΣA²/n − μ²)`` of a
    global minibatch, from its ``sums = (n, ΣA, ΣA²)``: what :func:`rlteach.advantages.normalize`
    computes on the union of the shares, applied to this worker's share ``adv [n_w]``."""
    n, total, squares = (float(x) for x in sums)
    mean = total / n
    std = max(squares / n - mean * mean, 0.0) ** 0.5
    return (adv - mean) / (std + eps)


def share_gradient(
    policy: ActorCritic, share: Samples, cfg: DPPOConfig, into: np.ndarray | None = None
) -> tuple[np.ndarray, int, dict[str, float]]:
    """``(∇ Σ_i ℓ_i [P], n, stats)`` for one worker's share of ``n`` samples (flat ``[n, ...]``
    tensors, as for :func:`~rlteach.algos.ppo.ppo_loss`): :func:`summed_gradient` of the share's
    :func:`~rlteach.algos.ppo.ppo_loss`, ``n`` and the loss values."""
    loss, stats = ppo_loss(policy, share, cfg)
    n = len(share["obs"])
    return summed_gradient(policy, loss, n, into), n, stats


def summed_gradient(
    policy: ActorCritic, loss: torch.Tensor, n: int, into: np.ndarray | None = None
) -> np.ndarray:
    """``∇ (n · loss)`` ``[P]``: the gradient of a share's loss summed rather than averaged over its
    ``n`` samples, so that the server's mean ``Σ_w ∇ Σ_i ℓ_i / Σ_w n_w`` (pushes of weight ``n_w``)
    is the gradient of the mean loss over the union of the shares. Not clipped: the server clips
    the mean. ``into``: the ``[P]`` vector that ``policy``'s gradients alias
    (:func:`~rlteach.nets.alias_gradients`), which then holds the gradient and is returned;
    otherwise the gradient is a new vector."""
    if into is None:
        policy.zero_grad(set_to_none=True)
    else:
        into.fill(0.0)  # one pass over the slot instead of a zero_ per parameter tensor
    (loss * n).backward()
    return flat_gradient(policy) if into is None else into


def server_config(cfg: DPPOConfig) -> ServerConfig:
    """Adam on the server for gradient averaging (PPO's ε), its step size annealed with the
    workers' progress through their env-step budgets; the averaged gradient is clipped to
    ``cfg.max_grad_norm`` there, as single-process PPO clips its minibatch gradient (with
    parameter averaging each worker clips its own steps)."""
    return ServerConfig(
        mode=cfg.mode,
        average=cfg.average,
        optimizer="adam",
        lr=cfg.lr,
        drop_stragglers=cfg.drop_stragglers,
        anneal=cfg.anneal_lr,
        max_grad_norm=cfg.max_grad_norm if cfg.average == "gradients" else 0.0,
        adam_eps=ADAM_EPS,
    )


def run_dppo(
    config: DPPOConfig | None = None,
    callback: Callback | None = None,
    env_fn: EnvFn | str | None = None,
    backend: str = "local",
    address: str | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train with DPPO; returns a :class:`rlteach.TrainResult` like :func:`rlteach.run_da3c`.

    ``backend="local"`` and ``"ray"`` run the parameter-server DPPO above (``address`` as in
    :func:`rlteach.run_da3c`). ``backend="torchrun"`` runs DD-PPO instead: no server, ``workers``
    ranks started by ``torchrun`` that average gradients with ``all_reduce``
    (:mod:`rlteach.distributed.allreduce`; ``env_fn`` must then be an importable
    ``"module:callable"`` name, since the ranks are fresh interpreters).
    """
    cfg = make_config(DPPOConfig, config, **overrides)
    check_backend(backend, BACKENDS)
    if backend == "torchrun":
        if address is not None:
            raise ValueError("address is for backend='ray'; torchrun takes its own rendezvous")
        from rlteach.distributed.launcher import run_dppo_torchrun

        # a "module:callable" name: LaunchOptions rejects anything else
        return run_dppo_torchrun(cfg, callback=callback, env_fn=cast("str | None", env_fn))
    env_fn = cast("EnvFn | None", env_fn)  # names are for torchrun's ranks only
    return run_on_parameter_server(
        "dppo", dppo_worker, cfg, server_config(cfg), callback, env_fn, backend, address
    )


# ----------------------------------------------------------------------------- in-process checks
# What one batch of a DPPO run computes, replayed in this process from one θ (notebook 07).


def worker_batches(policy: ActorCritic, cfg: DPPOConfig, seed: int) -> list[Samples]:
    """The batch each of the ``cfg.workers`` workers of a run with ``cfg`` and ``seed`` would
    collect from the θ of ``policy``, computed in this process: worker ``w`` steps
    ``cfg.envs_per_worker`` copies of its environment from
    :func:`~rlteach.distributed.driver.worker_env_factories` (its own physics when
    ``cfg.env_variation > 0``) for ``cfg.rollout_steps`` steps. Returns one dict of GAE data per
    worker, flat ``[M_w, ...]`` tensors over its ``M_w`` valid steps
    (:func:`~rlteach.algos.ppo.gae_data`; ``M_w`` differ when resets leave invalid steps)."""
    factories = worker_env_factories(dataclasses.replace(cfg, seed=seed))
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(cfg.workers)]
    batches = []
    for factory, worker_seed in zip(factories, seeds, strict=True):
        envs = make_vector_env(cfg.env_id, cfg.envs_per_worker, env_fn=factory)
        batch = Collector(envs, policy, seed=worker_seed).collect(cfg.rollout_steps)
        batches.append(gae_data(batch, cfg))
        envs.close()
    return batches


def initial_policy(cfg: DPPOConfig) -> ActorCritic:
    """The θ0 a run with ``cfg`` starts from (seeded by ``cfg.seed`` as in
    :func:`~rlteach.distributed.driver.run_on_parameter_server`)."""
    agent = build_agent(cfg.env_id, 1, cfg.seed, cfg.hidden)
    agent.close()
    return agent.policy


def minibatch_shares(batches: list[Samples], cfg: DPPOConfig, rounds: int) -> list[list[Samples]]:
    """Worker ``w``'s first ``rounds`` minibatch shares of its batch ``batches[w]``, cut as
    :func:`gradient_rounds` cuts them (:func:`~rlteach.algos.ppo.minibatch_indices`, its shuffle
    seeded by ``cfg.seed + w``): ``shares[w][r]``, flat ``[n_w, ...]`` tensors."""
    shares = []
    for w, data in enumerate(batches):
        shuffle = torch.Generator().manual_seed(cfg.seed + w)
        cuts = list(minibatch_indices(len(data["obs"]), cfg, shuffle))[:rounds]
        shares.append([{k: v[idx] for k, v in data.items()} for idx in cuts])
    return shares


def in_process_server(theta0: np.ndarray, cfg: DPPOConfig) -> Server:
    """A :class:`~rlteach.distributed.server.Server` configured by :func:`server_config`, holding
    ``theta0`` ``[P]`` at version 0, in this process: push by writing a worker's slot
    (``server.shared.slot(w)``) and calling ``server.on_push``."""
    shared = SharedParams(theta0.size, cfg.workers, mp.get_context("spawn"))
    shared.publish(theta0, 0)
    return Server(shared, server_config(cfg).validate(cfg.workers))


def large_batch_difference(cfg: DPPOConfig, rounds: int = 1) -> dict:
    """Synchronous gradient-averaging DPPO against single-process PPO on the pooled data.

    From one θ0 (:func:`initial_policy`) and the workers' batches (:func:`worker_batches`), round
    ``r`` of DPPO pushes each worker's ``r``-th minibatch share (its own shuffle, seeded by
    ``cfg.seed``) through a :class:`~rlteach.distributed.server.Server` configured by
    :func:`server_config`; the PPO side takes ``rounds`` steps of ``gradient_step`` with
    ``torch.optim.Adam`` (ε = ``ADAM_EPS``) on :func:`~rlteach.algos.ppo.ppo_loss` of the union of
    the round's shares. With ``normalize_advantages`` the shares are standardised over their union
    (:func:`normalize_with`), as in :func:`gradient_rounds`. The step size is held constant
    (``anneal_lr=False``). Returns
    ``difference`` = ``max_i |θ_DPPO − θ_PPO|_i`` and ``moved`` = ``max_i |θ_PPO − θ0|_i`` after
    the ``rounds`` steps, and ``shares``, the workers' share sizes of the first round."""
    cfg = dataclasses.replace(cfg, anneal_lr=False)
    if (cfg.mode, cfg.average, cfg.drop_stragglers) != ("sync", "gradients", 0):
        raise ValueError("large_batch_difference compares sync gradient averaging without D")
    policy = initial_policy(cfg)
    theta0 = flat_parameters(policy)
    shares = minibatch_shares(worker_batches(policy, cfg, cfg.seed), cfg, rounds)
    server = in_process_server(theta0, cfg)
    node, big = copy.deepcopy(policy), copy.deepcopy(policy)
    optimizer = torch.optim.Adam(big.parameters(), lr=cfg.lr, eps=ADAM_EPS)
    node_cfg = dataclasses.replace(cfg, normalize_advantages=False)
    for r in range(rounds):
        theta, version = server.theta.copy(), server.stats.version
        set_flat_parameters(node, theta)
        round_shares = [worker_shares[r] for worker_shares in shares]
        if cfg.normalize_advantages:
            whole = [torch.arange(len(s["adv"])) for s in round_shares]
            sums = np.sum(
                [advantage_sums(s["adv"], [i]) for s, i in zip(round_shares, whole, strict=True)],
                axis=0,
            )[0]
            round_shares = [{**s, "adv": normalize_with(s["adv"], sums)} for s in round_shares]
        for w, share in enumerate(round_shares):
            gradient, weight, _ = share_gradient(node, share, node_cfg)
            np.copyto(server.shared.slot(w), gradient)
            server.on_push(w, version, weight)
        pooled = {k: torch.cat([s[r][k] for s in shares]) for k in shares[0][r]}
        loss, _ = ppo_loss(big, pooled, cfg)
        gradient_step(optimizer, loss, cfg.max_grad_norm)
    theta_ppo = flat_parameters(big)
    return {
        "difference": float(np.abs(server.theta - theta_ppo).max()),
        "moved": float(np.abs(theta_ppo - theta0).max()),
        "shares": [len(s[0]["obs"]) for s in shares],
    }


def share_gradient_seconds(
    cfg: DPPOConfig, sizes: Sequence[int] = (16, 64, 256), repeats: int = 50, warmup: int = 10
) -> dict:
    """What a worker's part of one round costs: the median seconds of :func:`share_gradient` at
    θ0 (:func:`initial_policy`) for a share of each of ``sizes`` samples, in this process (with
    one torch thread, as a worker), computed as a worker computes it: into a flat vector the
    gradients alias (:func:`~rlteach.nets.alias_gradients`). The sizes take turns, ``warmup``
    rounds and then ``repeats`` timed ones, so a change of the machine's speed hits them alike.
    Returns ``{size: seconds}``. The shares are the first samples of one batch collected with
    ``cfg`` (:func:`worker_batches`; ``cfg.workers = 1``, enough ``rollout_steps`` for the largest
    size)."""
    cfg = dataclasses.replace(cfg, workers=1, env_delay=0.0)
    steps = -(-max(sizes) // cfg.envs_per_worker) + 1  # a reset step may be dropped per env
    cfg = dataclasses.replace(cfg, rollout_steps=max(cfg.rollout_steps, 2 * steps))
    policy = initial_policy(cfg)
    (data,) = worker_batches(policy, cfg, cfg.seed)
    one_thread()  # the library's rule for every process, the notebook's included
    slot = flat_parameters(policy)
    alias_gradients(policy, slot)
    shares = {size: {k: v[:size] for k, v in data.items()} for size in sizes}
    times: dict[int, list[float]] = {size: [] for size in sizes}
    for turn in range(warmup + repeats):
        for size, share in shares.items():
            start = time.perf_counter()
            share_gradient(policy, share, cfg, into=slot)
            if turn >= warmup:
                times[size].append(time.perf_counter() - start)
    return {size: float(np.median(seconds)) for size, seconds in times.items()}


def gradient_agreement(policy: ActorCritic, cfg: DPPOConfig, draws: int = 3) -> np.ndarray:
    """How much the W workers' policy gradients at the θ of ``policy`` agree: for each of ``draws``
    draws (seed ``cfg.seed + d``: new physics when ``cfg.env_variation > 0``, new samples), each
    worker's gradient of ``−L^CLIP`` over its whole batch (:func:`share_gradient` on
    :func:`worker_batches`, with ``vf_coef = ent_coef = 0``: the actor's part, since actor and
    critic are separate networks), and the mean over worker pairs of the cosine
    ``cos(g_i, g_j) = g_i·g_j / (‖g_i‖ ‖g_j‖)``. Returns ``[draws]`` mean cosines (1: all workers
    push the same direction; 0: orthogonal)."""
    if cfg.workers < 2:
        raise ValueError("gradient_agreement needs workers >= 2")
    cfg = dataclasses.replace(cfg, vf_coef=0.0, ent_coef=0.0)
    means = []
    for d in range(draws):
        batches = worker_batches(policy, cfg, cfg.seed + d)
        g = np.stack([share_gradient(policy, data, cfg)[0] for data in batches]).astype(float)
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        cosines = g @ g.T
        means.append(cosines[np.triu_indices(cfg.workers, k=1)].mean())
    return np.array(means)
