"""DPPO — distributed PPO (seed §3.2) on the parameter server, and the version in the literature.

Each worker runs :func:`dppo_worker`, which reads like the seed's steps 1–7 and reuses the
single-process PPO's :func:`~rlteach.algos.ppo.ppo_loss` and :func:`~rlteach.algos.ppo.ppo_update`.

Two ways to combine workers, both in the seed's step 6:

* ``average="gradients"`` (default) — the synchronous DPPO of Heess et al. (2017): every minibatch
  step is a round; each worker pushes ``∇`` of its minibatch loss, the server averages the
  gradients and takes one Adam step, and every worker continues from the same θ. With
  ``drop_stragglers = D`` a round closes after the first ``W − D`` gradients (their rule for slow
  workers). Heess et al. used an adaptive KL penalty; the clipped objective here is the now-common
  variant.
* ``average="parameters"`` — the seed's literal steps 4–6: each worker runs the whole PPO update
  (all epochs) on its own data, pushes θ', and the server averages parameters. After several
  Adam steps this is *not* the same as averaging gradients (notebook 05 shows why).

Where the seed is loose: workers do not train "on the same data set" — each collects its own fresh
trajectories with the current policy, so DPPO is data parallel over trajectories, and differences
between environment instances matter for it as for DA3C (notebook 07).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from rlteach.algos.common import annealed, set_learning_rate
from rlteach.algos.ppo import gae_data, ppo_loss, ppo_update
from rlteach.config import make_config, setting
from rlteach.distributed.driver import (
    BACKENDS as PARAMETER_SERVER_BACKENDS,
)
from rlteach.distributed.driver import (
    check_backend,
    pull_into,
    run_on_parameter_server,
    steps_per_worker,
    worker_agent,
)
from rlteach.distributed.runtime import MODES, ServerConfig
from rlteach.nets import flat_gradient, flat_parameters

BACKENDS = (*PARAMETER_SERVER_BACKENDS, "torchrun")  # torchrun: DD-PPO, no server


@dataclass(frozen=True)
class DPPOConfig:
    """DPPO settings. Defaults solve CartPole-v1 with 2 workers in 150k env steps."""

    env_id: str = setting("CartPole-v1", help="a registered gymnasium id")
    workers: int = setting(2, low=1, high=64, help="worker processes W")
    total_steps: int = setting(150_000, low=1, help="env steps over all workers")
    envs_per_worker: int = setting(4, low=1, high=256, help="environments each worker steps")
    rollout_steps: int = setting(64, low=1, high=8192, help="steps T per env per batch")
    epochs: int = setting(10, low=1, high=100, help="passes over each batch")
    minibatches: int = setting(4, low=1, high=512, help="minibatches per epoch")
    mode: str = setting("sync", choices=MODES, help="server: wait for a round, or apply on arrival")
    average: str = setting(
        "gradients",
        choices=("gradients", "parameters"),
        help="gradients: Heess et al.'s DPPO; parameters: the seed's steps 4–6",
    )
    drop_stragglers: int = setting(0, low=0, help="D: a sync round takes the first W − D pushes")
    lr: float = setting(
        1e-3, low=0.0, high=1.0, low_inclusive=False, log=True, help="Adam step size"
    )
    anneal_lr: bool = setting(True, help="decay the step size linearly to 0")
    gamma: float = setting(0.98, low=0.0, high=1.0, help="discount γ")
    gae_lambda: float = setting(0.9, low=0.0, high=1.0, help="GAE λ")
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
    env_delay: float = setting(0.0, low=0.0, high=1.0, help="seconds of delay per env step")
    env_delay_kind: str = setting(
        "sleep", choices=("sleep", "busy"), help="sleep: a waiting simulator; busy: a computing one"
    )
    slow_worker_delay: float = setting(
        0.0, low=0.0, high=1.0, help="extra seconds per env step for worker 0 (a straggler)"
    )
    env_variation: float = setting(
        0.0, low=0.0, high=0.9, help="per-worker CartPole physics spread"
    )
    eval_interval: float = setting(5.0, low=0.0, help="seconds between evaluations of θ (0: off)")
    eval_episodes: int = setting(5, low=1, help="episodes per evaluation of the global policy")
    hidden: tuple = setting((64, 64), help="hidden layer widths")
    seed: int = setting(0, low=0, help="one integer seeds everything")


def dppo_worker(ctx, cfg: DPPOConfig, factories) -> int:
    """One DPPO node (seed §3.2). Returns the env steps it took."""
    policy, collector = worker_agent(ctx, cfg, factories)  # its own environment instances
    local_optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    shuffle = torch.Generator().manual_seed(ctx.seed)
    budget = steps_per_worker(cfg)
    while collector.env_steps < budget and not ctx.stopping:
        # 1. (and 6.) Receive the global parameters θ, w.
        version, pull_seconds = pull_into(ctx, policy)
        start = time.perf_counter()
        # 2. Collect fresh trajectories with π_θ in this node's own environments.
        batch = collector.collect(cfg.rollout_steps)
        slow_down(ctx, cfg, batch)
        data = gae_data(batch, cfg)  # advantages by GAE(λ), as single-process PPO
        # 3.–5. ∇ L^CLIP, the update, and the push to the server (which averages: step 6).
        if cfg.average == "gradients":
            stats, receipt, wait = gradient_rounds(ctx, policy, data, cfg, shuffle, version)
        else:
            progress = collector.env_steps / budget
            set_learning_rate(local_optimizer, annealed(cfg.lr, progress, cfg.anneal_lr))
            stats = ppo_update(policy, local_optimizer, data, cfg, shuffle)
            receipt = ctx.push(flat_parameters(policy), version)
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
    ctx, policy, data: dict, cfg: DPPOConfig, shuffle: torch.Generator, version: int
):
    """Synchronous DPPO (Heess et al.): every minibatch gradient of ``−L^CLIP + …`` is pushed, and
    the next minibatch starts from the θ the server published. Returns the mean loss values, the
    last receipt and the seconds spent waiting for the server."""
    totals: dict[str, float] = {}
    steps, wait = 0, 0.0
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(data["obs"]), generator=shuffle).chunk(cfg.minibatches):
            loss, stats = ppo_loss(policy, {k: v[idx] for k, v in data.items()}, cfg)
            policy.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm or float("inf"))
            receipt = ctx.push(flat_gradient(policy), version)
            wait += receipt.waiting
            version, _ = pull_into(ctx, policy)
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value
            steps += 1
    return {key: value / steps for key, value in totals.items()}, receipt, wait


def slow_down(ctx, cfg: DPPOConfig, batch) -> None:
    """Worker 0 sleeps ``slow_worker_delay`` per env step it took: a deliberately slow node."""
    if ctx.worker_id == 0 and cfg.slow_worker_delay > 0:
        time.sleep(cfg.slow_worker_delay * int(batch.valid.sum()))


def server_config(cfg: DPPOConfig) -> ServerConfig:
    """Adam on the server for gradient averaging, annealed over the expected number of rounds."""
    batches = steps_per_worker(cfg) // (cfg.envs_per_worker * cfg.rollout_steps)
    rounds = batches * (cfg.epochs * cfg.minibatches if cfg.average == "gradients" else 1)
    if cfg.mode == "async":
        rounds *= cfg.workers
    return ServerConfig(
        mode=cfg.mode,
        average=cfg.average,
        optimizer="adam",
        lr=cfg.lr,
        drop_stragglers=cfg.drop_stragglers,
        anneal_versions=max(1, rounds) if cfg.anneal_lr else 0,
    )


def run_dppo(
    config: DPPOConfig | None = None,
    callback=None,
    env_fn=None,
    backend: str = "local",
    address: str | None = None,
    **overrides,
):
    """Train with DPPO; returns a :class:`rlteach.TrainResult` like :func:`rlteach.run_da3c`.

    ``backend="local"`` and ``"ray"`` run the parameter-server DPPO above (``address`` as in
    :func:`rlteach.run_da3c`). ``backend="torchrun"`` runs DD-PPO instead: no server, ``workers``
    ranks started by ``torchrun`` that average gradients with ``all_reduce``
    (:mod:`rlteach.distributed.allreduce`; ``env_fn`` must then be an importable
    ``"module:callable"`` name, since the ranks are fresh interpreters).
    """
    cfg = make_config(DPPOConfig, config, **overrides)
    if cfg.drop_stragglers >= cfg.workers:
        raise ValueError(
            f"DPPOConfig.drop_stragglers = {cfg.drop_stragglers} is invalid with {cfg.workers} "
            f"workers: W − D must be >= 1"
        )
    check_backend(backend, BACKENDS)
    if backend == "torchrun":
        if address is not None:
            raise ValueError("address is for backend='ray'; torchrun takes its own rendezvous")
        from rlteach.distributed.allreduce import run_dppo_torchrun

        return run_dppo_torchrun(cfg, callback=callback, env_fn=env_fn)
    return run_on_parameter_server(
        "dppo", dppo_worker, cfg, server_config(cfg), callback, env_fn, backend, address
    )
