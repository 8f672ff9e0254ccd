"""DA3C — distributed advantage actor-critic — as the seed gives it (§3.1), on the parameter server.

Each worker runs :func:`da3c_worker`, which reads like the seed's steps 1–7. The pieces are the
single-process A2C's (:func:`rlteach.algos.a2c.estimate_advantages`, :func:`~rlteach.algos.a2c.a2c_loss`),
not copies. ``average="gradients"`` pushes ``∇`` of the loss and the server's optimizer applies the
average; ``average="parameters"`` lets each worker take its own step ``θ' = θ + α∇J`` (seed step 4)
and push ``θ'``, and the server averages parameters (step 6: a sync round's mean; in async mode it
adds each worker's change ``θ' − θ_pulled`` as it arrives, see :mod:`rlteach.distributed.runtime`).

``staleness = k > 0`` injects a controlled staleness for the experiment of notebook 06 (on-policy
data and staleness): each worker keeps the last ``k + 1`` parameter vectors it pulled, acts and
differentiates with the one pulled ``k`` pulls ago, and pushes that gradient tagged with the version
it pulled last, so the server applies it to its current θ. In sync mode every round is one pull and
one push per worker, so the gradient applied to ``θ_t`` was computed from ``θ_{t−k}`` on data
``π_{θ_{t−k}}`` collected (``θ_{max(t−k, 0)}``: ``θ_0`` during the first ``k`` rounds). In async mode the
injected ``k`` pulls add to the natural staleness. The worker also reports ``kl_stale``, the mean
over the batch's states of ``KL(π_{θ_t} ‖ π_{θ_{t−k}})`` (eq. 6.3 of notebook 06).
``staleness_correction="importance"`` keeps the stale data but takes the gradient at the newest
``θ_t``, weighting each sample by the truncated importance ratio ``min(ρ̄, π_{θ_t}(a|s)/μ(a|s))``,
``μ = π_{θ_{t−k}}`` the policy that acted (eq. 6.5; PPO's ratio, notebook 04; IMPALA's ρ,
Espeholt et al. 2018).
"""

from __future__ import annotations

import copy
import time
from collections import deque
from typing import Any

import numpy as np
import torch

from rlteach.algos.a2c import a2c_loss, estimate_advantages
from rlteach.algos.common import (
    Samples,
    TrainResult,
    annealed,
    clipped_flat_gradient,
    gradient_step,
    set_learning_rate,
)
from rlteach.algos.ppo import batch_log_probs, state_kl
from rlteach.config import make_config
from rlteach.distributed.configs import DA3CConfig
from rlteach.distributed.driver import (
    BACKENDS as PARAMETER_SERVER_BACKENDS,
)
from rlteach.distributed.driver import (
    pull_into,
    run_on_parameter_server,
    steps_per_worker,
    worker_agent,
    worker_optimizer,
)
from rlteach.distributed.server import ServerConfig
from rlteach.distributed.worker import WorkerContext
from rlteach.envs import EnvFn
from rlteach.history import Callback
from rlteach.nets import ActorCritic, flat_parameters, set_flat_parameters

BACKENDS = PARAMETER_SERVER_BACKENDS  # where DA3C can run: local processes or Ray actors


class StalePolicy:
    """A worker's injected staleness ``k``: the last ``k + 1`` pulled parameter vectors, the
    newest one kept in ``fresh`` (a copy of the worker's network) to measure how far behind the
    acting parameters are."""

    def __init__(self, policy: ActorCritic, k: int):
        self.fresh = copy.deepcopy(policy)
        self.pulled: deque[np.ndarray] = deque(maxlen=k + 1)

    def act_with_old(self, policy: ActorCritic) -> None:
        """Right after a pull loaded ``θ_t`` into ``policy``: keep ``θ_t`` in ``fresh`` and load
        ``θ_{t−k}``, the vector pulled ``k`` pulls ago (the oldest kept, early on), into ``policy``."""
        theta = flat_parameters(policy)
        self.pulled.append(theta)
        set_flat_parameters(self.fresh, theta)  # copies: the kept vectors stay as pulled
        set_flat_parameters(policy, self.pulled[0])

    @torch.no_grad()
    def kl(self, policy: ActorCritic, obs: torch.Tensor) -> float:
        """``mean_s KL(π_{θ_t}(·|s) ‖ π_{θ_{t−k}}(·|s))`` over the states ``obs [M, obs_dim]``,
        ``policy`` holding ``θ_{t−k}`` (eq. 6.3 of notebook 06)."""
        return state_kl(self.fresh, policy, obs).mean().item()

    def corrected(self, policy: ActorCritic, data: Samples, cfg: DA3CConfig) -> Samples:
        """``data`` unchanged unless ``cfg.staleness_correction == "importance"``: then load ``θ_t``
        back into ``policy`` and weight the advantages of ``data`` (flat ``[M]`` samples that
        ``μ = π_{θ_{t−k}}`` collected; ``data["logp"]`` is ``log μ(a|s)``) by
        ``ρ = min(ρ̄, π_{θ_t}(a|s) / μ(a|s))``, the policy-gradient weight of eq. 6.5. The advantages
        stay those the stale critic gave; with ``normalize_advantages`` the loss then standardises
        the weighted ones, ``ρ Â``."""
        if cfg.staleness_correction == "none":
            return data
        set_flat_parameters(policy, self.pulled[-1])
        rho = torch.exp(batch_log_probs(policy, data) - data["logp"]).clamp(max=cfg.rho_bar)
        return {**data, "adv": rho * data["adv"]}


def da3c_worker(ctx: WorkerContext, cfg: DA3CConfig, factories: list[EnvFn | None]) -> int:
    """One DA3C agent (seed §3.1). Returns the env steps it took."""
    policy, collector = worker_agent(ctx, cfg, factories)  # its own environment instances
    local_optimizer = worker_optimizer(cfg, policy)  # None unless it averages parameters
    stale = StalePolicy(policy, cfg.staleness) if cfg.staleness else None
    budget = steps_per_worker(cfg)
    while collector.env_steps < budget and not ctx.stopping:
        progress = collector.env_steps / budget  # the step size decays with it (anneal_lr)
        # 1. (and 6.) Receive the global parameters θ, w from the server.
        version, pull_seconds = pull_into(ctx, policy)
        start = time.perf_counter()
        if stale is not None:  # the experiment of notebook 06: act and learn with θ_{t−k}
            stale.act_with_old(policy)
        # 2. Interact with this worker's environment instances under π_θ, recording trajectories.
        batch = collector.collect(cfg.rollout_steps)
        # 3. Advantages A(s_t, a_t) = r_t + γ V_w(s_{t+1}) − V_w(s_t) (or n-step / GAE).
        adv, ret = estimate_advantages(batch, cfg)
        data = batch.flat(adv=adv, ret=ret)
        if stale is not None:  # how far θ_{t−k} is behind θ_t; optionally correct for it
            kl_stale = stale.kl(policy, data["obs"])
            data = stale.corrected(policy, data, cfg)
        # 4. ∇θ J (and the critic's ∇w) from the actor-critic loss ...
        loss, stats = a2c_loss(policy, data, cfg)
        if stale is not None:
            stats["kl_stale"] = kl_stale
        if cfg.average == "gradients":
            policy.zero_grad()
            loss.backward()
            vector = clipped_flat_gradient(policy, cfg.max_grad_norm)
        else:  # ... and the local update θ' = θ + α ∇θ J
            assert local_optimizer is not None  # built when the worker averages parameters
            set_learning_rate(local_optimizer, annealed(cfg.lr, progress, cfg.anneal_lr))
            gradient_step(local_optimizer, loss, cfg.max_grad_norm)
            vector = flat_parameters(policy)
        compute = time.perf_counter() - start
        # 5. Push to the server (step 6): async applies each push alone, sync averages a round.
        receipt = ctx.push(vector, version, progress=progress)
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
    """The server's side of a DA3C config: Adam on the pushed gradients (one push at a time in
    async mode, a round's mean in sync mode), its step size annealed with the workers' progress
    through their env-step budgets."""
    return ServerConfig(mode=cfg.mode, average=cfg.average, lr=cfg.lr, anneal=cfg.anneal_lr)


def run_da3c(
    config: DA3CConfig | None = None,
    callback: Callback | None = None,
    env_fn: EnvFn | None = None,
    backend: str = "local",
    address: str | None = None,
    **overrides: Any,
) -> TrainResult:
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
