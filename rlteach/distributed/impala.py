"""IMPALA (Espeholt et al. 2018, notebook 09): actors send experience, not gradients, to one
learner, and the learner corrects for the policy the experience came from with V-trace.

Each of the W **actors** (:func:`impala_actor`, a worker process) loads the newest published θ
without waiting for the learner, runs it for ``T`` steps in its ``N`` environments and sends the
segment, with the log-probabilities ``log μ(a|s)`` of the actions it took and the version of the θ
it acted with, through a bounded queue (it waits only while ``queue_size`` segments are waiting).
The **learner** (:class:`Learner`, in the notebook's process) takes ``batch_segments`` segments at
a time, computes V-trace targets ``v_s`` and policy-gradient advantages with its current network
``π`` (:func:`rlteach.advantages.vtrace`), takes one optimizer step on

    −mean_t[ log π(a_t|s_t) · ρ_t (r_t + γ v_{t+1} − V(s_t)) ] + c_v · ½ mean_t[ (V(s_t) − v_s(t))² ]
    − c_e · H[π],

and publishes the new θ. By the time a segment is learned from, the learner has moved on: its
**policy lag** (learner updates since the θ it was collected with was published) is recorded for
every segment. ``correction="none"`` treats the data as on-policy (ρ = c = 1: the λ = 1 returns of
the segment), the experiment that shows why V-trace exists; ``lag = k`` makes every actor act with
the θ it pulled ``k`` pulls ago, to inject lag on purpose.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

import numpy as np
import torch

from rlteach import advantages, losses
from rlteach.algos.a2c import make_optimizer
from rlteach.algos.common import (
    Samples,
    TrainResult,
    annealed,
    combined_loss,
    gradient_step,
    set_learning_rate,
)
from rlteach.config import make_config
from rlteach.distributed.configs import IMPALAConfig
from rlteach.distributed.da3c import StalePolicy
from rlteach.distributed.driver import (
    RunRecorder,
    pull_into,
    run_on_parameter_server,
    steps_per_worker,
    worker_agent,
)
from rlteach.distributed.worker import ProcessContext
from rlteach.envs import EnvFn
from rlteach.history import Callback, History
from rlteach.nets import ActorCritic, alias_parameters
from rlteach.rollout import Batch

SEGMENT = ("obs", "next_obs", "actions", "logp", "rewards", "terminated", "truncated", "valid")


def segment_of(batch: Batch) -> dict[str, np.ndarray]:
    """What an actor sends of a batch: the ``SEGMENT`` fields as numpy arrays ``[T, N, ...]``
    (``logp`` is the behaviour policy's ``log μ(a|s)``; values are the learner's to compute)."""
    return {name: getattr(batch, name).numpy() for name in SEGMENT}


def impala_actor(ctx: ProcessContext, cfg: IMPALAConfig, factories: list[EnvFn | None]) -> int:
    """One IMPALA actor. Returns the env steps it took."""
    policy, collector = worker_agent(ctx, cfg, factories)  # its own environment instances
    lagged = StalePolicy(policy, cfg.lag) if cfg.lag else None
    versions: deque[int] = deque(maxlen=cfg.lag + 1)  # of the θ pulled, the oldest acts
    budget = steps_per_worker(cfg)
    while collector.env_steps < budget and not ctx.stopping:
        # 1. The newest θ the learner published: no waiting for the learner.
        version, _ = pull_into(ctx, policy)
        versions.append(version)
        if lagged is not None:  # injected lag: act with the θ pulled cfg.lag pulls ago
            lagged.act_with_old(policy)
        # 2. Act for T steps in each of N environments with that θ (the behaviour policy μ).
        batch = collector.collect(cfg.rollout_steps)
        # 3. Send the segment; wait only while the learner's queue is full.
        ctx.send(
            segment=segment_of(batch),
            version=versions[0],
            env_steps=collector.env_steps,
            returns=batch.episode_returns,
            lengths=batch.episode_lengths,
        )
    return collector.env_steps


def vtrace_loss(
    policy: ActorCritic, segment: Samples, cfg: IMPALAConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """The learner's loss (module docstring) on a batch of segments ``[T, N, ...]`` (the
    ``SEGMENT`` fields as tensors), with V-trace's targets from ``policy``'s current values."""
    logp, entropy, values = policy.evaluate_actions(segment["obs"], segment["actions"])  # [T, N]
    with torch.no_grad():
        next_values = policy.value(segment["next_obs"])
    target_logp = logp.detach()
    behaviour_logp = segment["logp"] if cfg.correction == "vtrace" else target_logp
    vs, pg_adv = advantages.vtrace(
        behaviour_logp,
        target_logp,
        segment["rewards"],
        values.detach(),
        next_values,
        segment["terminated"],
        segment["truncated"],
        cfg.gamma,
        rho_bar=cfg.rho_bar,
        c_bar=cfg.c_bar,
        lam=cfg.vtrace_lambda,
    )
    valid = segment["valid"]
    policy_objective = losses.policy_gradient_objective(logp[valid], pg_adv[valid])
    value_loss = losses.value_loss(values[valid], vs[valid])
    loss, stats = combined_loss(policy_objective, value_loss, entropy[valid], cfg)
    log_ratio = (target_logp - segment["logp"])[valid]  # log π/μ of the actions taken
    stats.update(
        rho_mean=log_ratio.exp().clamp(max=cfg.rho_bar).mean().item(),  # the weights ρ applied
        log_ratio=log_ratio.abs().mean().item(),  # how far μ is from π on these actions
    )
    return loss, stats


class Learner(RunRecorder):
    """The learner, in the notebook's process: ``Cluster.run``'s ``on_report`` receives each
    actor's segment; every ``batch_segments`` segments make one optimizer step on
    :func:`vtrace_loss`, after which the new θ is published. Records the episodes, one update row
    per step (``lag``: the mean lag of its segments) and every segment's lag in
    ``history.meta["lags"]``."""

    cfg: IMPALAConfig

    def __init__(
        self,
        cfg: IMPALAConfig,
        history: History,
        policy: ActorCritic,
        callback: Callback | None = None,
    ):
        super().__init__(cfg, history, policy, callback)
        self.net = copy.deepcopy(policy)  # the learner's π; ``policy`` is evaluated
        self.theta = alias_parameters(self.net)  # what is published
        self.optimizer = make_optimizer(cfg.optimizer, self.net.parameters(), cfg.lr)
        self.pending: list[dict[str, Any]] = []
        self.version = 0
        history.meta["lags"] = []

    def __call__(self, actor: int, report: dict) -> None:
        report = self.record_episodes(actor, report)
        self.pending.append(report)
        if len(self.pending) >= self.cfg.batch_segments:
            self.learn(self.pending)
            self.pending = []
        self.after_report()

    def learn(self, reports: list[dict[str, Any]]) -> None:
        """One step on the segments of ``reports``, side by side: ``[T, N · B, ...]``."""
        cfg = self.cfg
        segment = {
            name: torch.from_numpy(np.concatenate([r["segment"][name] for r in reports], axis=1))
            for name in SEGMENT
        }
        lags = [self.version - r["version"] for r in reports]
        lr = annealed(cfg.lr, self.env_steps / cfg.total_steps, cfg.anneal_lr)
        set_learning_rate(self.optimizer, lr)
        loss, stats = vtrace_loss(self.net, segment, cfg)
        stats["grad_norm"] = gradient_step(self.optimizer, loss, cfg.max_grad_norm)
        self.version += 1
        self.cluster.publish(self.theta, self.version)  # type: ignore[union-attr]
        self.history.meta["lags"].extend(lags)
        self.history.log_update(
            env_steps=self.env_steps,
            version=self.version,
            lag=float(np.mean(lags)),
            lag_max=max(lags),
            lr=lr,
            **stats,
        )


def run_impala(
    config: IMPALAConfig | None = None,
    callback: Callback | None = None,
    env_fn: EnvFn | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train with IMPALA: ``workers`` actor processes and a learner in this process.

    Returns a :class:`rlteach.TrainResult` as :func:`rlteach.run_da3c` does: ``.history`` holds
    per-actor episodes, one update row per learner step (``lag``, ``lag_max``, losses, ``rho_mean``
    the mean weight ρ applied, ``log_ratio`` the mean ``|log π/μ|`` of the actions)
    and every segment's lag in ``.history.meta["lags"]``. A bad value raises ``ValueError``
    before any process starts; a failing actor raises a ``WorkerError`` naming it; a kernel
    interrupt returns the partial result.
    """
    cfg = make_config(IMPALAConfig, config, **overrides)
    return run_on_parameter_server(
        "impala",
        impala_actor,
        cfg,
        None,  # no server: the learner publishes θ
        callback,
        env_fn,
        recorder_class=Learner,
        experience_slots=cfg.queue_size,
    )
