"""DA3C — distributed advantage actor-critic — as the seed gives it (§3.1), on the parameter server.

Each worker runs :func:`da3c_worker`, which reads like the seed's steps 1–7. The pieces are the
single-process A2C's (:func:`rlteach.algos.a2c.estimate_advantages`, :func:`~rlteach.algos.a2c.a2c_loss`),
not copies. ``average="gradients"`` pushes ``∇`` of the loss and the server's optimizer applies the
average; ``average="parameters"`` lets each worker take its own step ``θ' = θ + α∇J`` (seed step 4)
and push ``θ'``, and the server averages parameters (step 6: a sync round's mean; in async mode it
adds each worker's change ``θ' − θ_pulled`` as it arrives, see :mod:`rlteach.distributed.runtime`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from rlteach.algos.a2c import ADVANTAGE_ESTIMATORS, a2c_loss, estimate_advantages, make_optimizer
from rlteach.algos.common import annealed, gradient_step, set_learning_rate
from rlteach.config import make_config, setting
from rlteach.distributed.driver import (
    BACKENDS as PARAMETER_SERVER_BACKENDS,
)
from rlteach.distributed.driver import (
    pull_into,
    run_on_parameter_server,
    steps_per_worker,
    worker_agent,
)
from rlteach.distributed.runtime import MODES, ServerConfig
from rlteach.nets import flat_gradient, flat_parameters

BACKENDS = PARAMETER_SERVER_BACKENDS  # where DA3C can run: local processes or Ray actors


@dataclass(frozen=True)
class DA3CConfig:
    """DA3C settings. Defaults solve CartPole-v1 with 2 workers within 500k env steps."""

    env_id: str = setting("CartPole-v1", help="a registered gymnasium id")
    workers: int = setting(2, low=1, high=64, help="worker processes W")
    total_steps: int = setting(500_000, low=1, help="env steps over all workers")
    envs_per_worker: int = setting(4, low=1, high=256, help="environments each worker steps")
    rollout_steps: int = setting(8, low=1, high=4096, help="steps T per env per push")
    mode: str = setting("async", choices=MODES, help="server: apply each push, or wait for a round")
    average: str = setting(
        "gradients",
        choices=("gradients", "parameters"),
        help="what workers push and the server averages (seed §3.1 step 6)",
    )
    advantage: str = setting(
        "td",
        choices=ADVANTAGE_ESTIMATORS,
        help="td: r + γV(s') − V(s), the seed's step 3; nstep; gae",
    )
    nstep: int = setting(5, low=1, help="n of the n-step return (advantage='nstep')")
    gae_lambda: float = setting(0.95, low=0.0, high=1.0, help="GAE λ (advantage='gae')")
    gamma: float = setting(0.99, low=0.0, high=1.0, help="discount γ")
    lr: float = setting(1e-3, low=0.0, high=1.0, low_inclusive=False, log=True, help="step size")
    anneal_lr: bool = setting(True, help="decay the step size linearly to 0")
    vf_coef: float = setting(0.5, low=0.0, help="weight of the value loss")
    ent_coef: float = setting(0.0, low=0.0, help="weight of the entropy bonus")
    max_grad_norm: float = setting(0.5, low=0.0, help="gradient-norm clip (0: off)")
    normalize_advantages: bool = setting(False, help="standardise advantages per batch")
    bootstrap_truncated: bool = setting(True, help="bootstrap at time-limit cuts (notebook 03)")
    env_delay: float = setting(0.0, low=0.0, high=1.0, help="seconds of delay per env step")
    env_delay_kind: str = setting(
        "sleep", choices=("sleep", "busy"), help="sleep: a waiting simulator; busy: a computing one"
    )
    env_variation: float = setting(
        0.0,
        low=0.0,
        high=0.9,
        high_inclusive=True,
        help="per-worker CartPole physics spread (0: identical)",
    )
    eval_interval: float = setting(5.0, low=0.0, help="seconds between evaluations of θ (0: off)")
    eval_episodes: int = setting(5, low=1, help="episodes per evaluation of the global policy")
    hidden: tuple = setting((64, 64), help="hidden layer widths")
    seed: int = setting(0, low=0, help="one integer seeds everything")


def da3c_worker(ctx, cfg: DA3CConfig, factories) -> int:
    """One DA3C agent (seed §3.1). Returns the env steps it took."""
    policy, collector = worker_agent(ctx, cfg, factories)  # its own environment instances
    local_optimizer = make_optimizer("adam", policy.parameters(), cfg.lr)
    budget = steps_per_worker(cfg)
    while collector.env_steps < budget and not ctx.stopping:
        # 1. (and 6.) Receive the global parameters θ, w from the server.
        version, pull_seconds = pull_into(ctx, policy)
        start = time.perf_counter()
        # 2. Interact with this worker's environment instances under π_θ, recording trajectories.
        batch = collector.collect(cfg.rollout_steps)
        # 3. Advantages A(s_t, a_t) = r_t + γ V_w(s_{t+1}) − V_w(s_t) (or n-step / GAE).
        adv, ret = estimate_advantages(batch, cfg)
        # 4. ∇θ J (and the critic's ∇w) from the actor-critic loss ...
        loss, stats = a2c_loss(policy, batch.flat(adv=adv, ret=ret), cfg)
        if cfg.average == "gradients":
            policy.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm or float("inf"))
            vector = flat_gradient(policy)
        else:  # ... and the local update θ' = θ + α ∇θ J
            progress = collector.env_steps / budget
            set_learning_rate(local_optimizer, annealed(cfg.lr, progress, cfg.anneal_lr))
            gradient_step(local_optimizer, loss, cfg.max_grad_norm)
            vector = flat_parameters(policy)
        compute = time.perf_counter() - start
        # 5. Push to the parameter server, which averages and applies (step 6).
        receipt = ctx.push(vector, version)
        ctx.report(
            env_steps=collector.env_steps,
            returns=batch.episode_returns,
            lengths=batch.episode_lengths,
            version=receipt.version,
            staleness=receipt.staleness,
            applied=receipt.applied,
            compute=compute,
            wait=receipt.waiting,
            communication=pull_seconds,
            **stats,
        )
    # 7. Repeat until the budget is spent.
    return collector.env_steps


def server_config(cfg: DA3CConfig) -> ServerConfig:
    """The server's side of a DA3C config: Adam on averaged gradients, annealed over the run."""
    pushes = steps_per_worker(cfg) * cfg.workers // (cfg.envs_per_worker * cfg.rollout_steps)
    rounds = pushes if cfg.mode == "async" else pushes // cfg.workers
    return ServerConfig(
        mode=cfg.mode,
        average=cfg.average,
        optimizer="adam",
        lr=cfg.lr,
        anneal_versions=max(1, rounds) if cfg.anneal_lr else 0,
    )


def run_da3c(
    config: DA3CConfig | None = None,
    callback=None,
    env_fn=None,
    backend: str = "local",
    address: str | None = None,
    **overrides,
):
    """Train with DA3C on ``workers`` processes and a parameter server.

    ``backend="local"`` runs the server and workers as processes of this machine;
    ``backend="ray"`` runs the same worker code as Ray actors (``address``: ``None`` starts a local
    Ray instance, ``"auto"`` / ``"ray://host:port"`` joins a cluster; see
    :mod:`rlteach.distributed.ray_backend`).

    Returns a :class:`rlteach.TrainResult`: ``.policy`` is the global policy, ``.history`` holds
    per-worker episode and update rows (``worker`` column), evaluations of the global policy, and
    the server's statistics in ``.history.meta``. A bad value raises ``ValueError`` before any
    process starts; a kernel interrupt returns the partial result.
    """
    cfg = make_config(DA3CConfig, config, **overrides)
    return run_on_parameter_server(
        "da3c", da3c_worker, cfg, server_config(cfg), callback, env_fn, backend, address
    )
