"""The settings of the distributed algorithms, in one module that each of them imports: DA3C
(notebook 06), DPPO on the parameter server (notebook 07), DD-PPO's launch options (notebook 08,
which takes DPPO's settings too), Hogwild A3C and IMPALA (notebook 09). Every field carries its
range and help (:func:`rlteach.config.setting`); :func:`rlteach.config.validate` checks the fields
and then the rules between them (``check``). The fields these configs share with the
single-process ones carry the same metadata (``tests/test_config.py`` holds them equal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rlteach.algos.a2c import ADVANTAGE_ESTIMATORS, OPTIMIZERS
from rlteach.config import setting
from rlteach.distributed.server import AVERAGING, MODES, check_stragglers

COLLECTIVE_TIMEOUT = 60.0  # default seconds a DD-PPO collective waits for the other ranks


@dataclass(frozen=True)
class DA3CConfig:
    """DA3C settings. Defaults solve CartPole-v1 with 2 workers within 500k env steps."""

    env_id: str = setting("CartPole-v1", help="a registered gymnasium id")
    workers: int = setting(2, low=1, high=64, help="worker processes W")
    total_steps: int = setting(
        500_000,
        low=1,
        help="env steps (valid transitions) to train for, summed over all environments",
    )
    envs_per_worker: int = setting(4, low=1, high=256, help="environments each worker steps")
    rollout_steps: int = setting(8, low=1, high=8192, help="steps T per env per batch")
    mode: str = setting(
        "async",
        choices=MODES,
        help="server: wait for a round of pushes (sync), or apply each on arrival (async)",
    )
    average: str = setting(
        "gradients",
        choices=AVERAGING,
        help="what workers push: gradients, or parameters after a local update (the seed's steps 4–6)",
    )
    advantage: str = setting(
        "td",
        choices=ADVANTAGE_ESTIMATORS,
        help="td: r + γV(s') − V(s), the seed's step 3; nstep; gae",
    )
    nstep: int = setting(5, low=1, help="n of the n-step return (advantage='nstep')")
    gae_lambda: float = setting(
        0.95, low=0.0, high=1.0, help="GAE λ (0: one-step TD, 1: Monte Carlo)"
    )
    gamma: float = setting(0.99, low=0.0, high=1.0, help="discount γ")
    lr: float = setting(1e-3, low=0.0, high=1.0, low_inclusive=False, log=True, help="step size α")
    anneal_lr: bool = setting(True, help="decay the step size linearly to 0")
    vf_coef: float = setting(0.5, low=0.0, help="weight of the value loss")
    ent_coef: float = setting(0.0, low=0.0, help="weight of the entropy bonus")
    max_grad_norm: float = setting(0.5, low=0.0, help="gradient-norm clip (0: off)")
    normalize_advantages: bool = setting(False, help="standardise advantages per batch")
    bootstrap_truncated: bool = setting(
        True, help="bootstrap at time-limit cuts; False reproduces a common bug (notebook 03)"
    )
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
    staleness: int = setting(
        0,
        low=0,
        high=256,
        help="injected staleness k: act and differentiate with the θ pulled k pulls ago (0: off)",
    )
    staleness_correction: str = setting(
        "none",
        choices=("none", "importance"),
        help="importance: gradient at the newest θ on the stale data, weighted by min(ρ̄, π_θ/μ)",
    )
    rho_bar: float = setting(
        1.0, low=0.0, low_inclusive=False, help="truncation ρ̄ of the importance weight"
    )
    hidden: tuple = setting((64, 64), help="hidden layer widths")
    seed: int = setting(0, low=0, help="one integer seeds everything")

    def check(self) -> None:
        """The rule between fields: the injected staleness delays gradients, so it needs
        ``average="gradients"``."""
        if self.staleness and self.average != "gradients":
            raise ValueError(
                f"DA3CConfig.staleness = {self.staleness} needs average='gradients' (got "
                f"{self.average!r}): the injected staleness delays the gradient a worker pushes"
            )


@dataclass(frozen=True)
class DPPOConfig:
    """DPPO settings. Defaults solve CartPole-v1 with 2 workers in 150k env steps."""

    env_id: str = setting("CartPole-v1", help="a registered gymnasium id")
    workers: int = setting(2, low=1, high=64, help="worker processes W")
    total_steps: int = setting(
        150_000,
        low=1,
        help="env steps (valid transitions) to train for, summed over all environments",
    )
    envs_per_worker: int = setting(4, low=1, high=256, help="environments each worker steps")
    rollout_steps: int = setting(64, low=1, high=8192, help="steps T per env per batch")
    epochs: int = setting(10, low=1, high=100, help="passes over each batch")
    minibatches: int = setting(4, low=1, high=512, help="minibatches per epoch")
    mode: str = setting(
        "sync",
        choices=MODES,
        help="server: wait for a round of pushes (sync), or apply each on arrival (async)",
    )
    average: str = setting(
        "gradients",
        choices=AVERAGING,
        help="what workers push: gradients, or parameters after a local update (the seed's steps 4–6)",
    )
    drop_stragglers: int = setting(0, low=0, help="D: a sync round takes the first W − D pushes")
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
    env_delay: float = setting(0.0, low=0.0, high=1.0, help="seconds of delay per env step")
    env_delay_kind: str = setting(
        "sleep", choices=("sleep", "busy"), help="sleep: a waiting simulator; busy: a computing one"
    )
    slow_worker_delay: float = setting(
        0.0, low=0.0, high=1.0, help="extra seconds per env step for worker 0 (a straggler)"
    )
    env_variation: float = setting(
        0.0, low=0.0, high=0.9, help="per-worker CartPole physics spread (0: identical)"
    )
    eval_interval: float = setting(5.0, low=0.0, help="seconds between evaluations of θ (0: off)")
    eval_episodes: int = setting(5, low=1, help="episodes per evaluation of the global policy")
    hidden: tuple = setting((64, 64), help="hidden layer widths")
    seed: int = setting(0, low=0, help="one integer seeds everything")

    def check(self) -> None:
        """The rule between fields: a sync round of ``W − D`` pushes has at least one."""
        check_stragglers("DPPOConfig", self.drop_stragglers, self.workers)


@dataclass(frozen=True)
class LaunchOptions:
    """What DD-PPO adds to :class:`DPPOConfig` (``torchrun ... -m rlteach.distributed.allreduce``
    takes both as options, ``--preempt-fraction`` and so on)."""

    preempt_fraction: float = setting(
        0.0,
        low=0.0,
        high=1.0,
        help="stop stragglers once this fraction of ranks has collected its rollout "
        "(0: off; DD-PPO used 0.6)",
    )
    timeout: float = setting(
        COLLECTIVE_TIMEOUT,
        low=0.0,
        low_inclusive=False,
        help="seconds a collective waits for the other ranks",
    )
    env_fn: str | None = setting(
        None, help="an importable 'module:callable' environment constructor, used instead of env_id"
    )

    def check(self) -> None:
        """``env_fn`` must name an importable callable: every rank is a fresh interpreter."""
        name = self.env_fn
        if name is not None and not (
            isinstance(name, str) and re.fullmatch(r"[\w.]+:[\w.]+", name)
        ):
            raise ValueError(
                f"LaunchOptions.env_fn = {self.env_fn!r} is invalid: must be an importable "
                "'module:callable' name (every rank is a fresh interpreter that imports it)"
            )


@dataclass(frozen=True)
class A3CConfig:
    """Hogwild A3C settings (Mnih et al. 2016): workers that update one shared θ and a shared
    optimizer state in place, without a server. Defaults solve CartPole-v1 with 2 workers within
    500k env steps."""

    env_id: str = setting("CartPole-v1", help="a registered gymnasium id")
    workers: int = setting(2, low=1, high=64, help="worker processes W")
    total_steps: int = setting(
        500_000,
        low=1,
        help="env steps (valid transitions) to train for, summed over all environments",
    )
    envs_per_worker: int = setting(4, low=1, high=256, help="environments each worker steps")
    rollout_steps: int = setting(8, low=1, high=8192, help="steps T per env per batch")
    lock: bool = setting(False, help="take a lock around every update of θ (False: Hogwild)")
    optimizer: str = setting("rmsprop", choices=OPTIMIZERS, help="optimizer")
    advantage: str = setting(
        "td",
        choices=ADVANTAGE_ESTIMATORS,
        help="td: r + γV(s') − V(s), the seed's step 3; nstep; gae",
    )
    nstep: int = setting(5, low=1, help="n of the n-step return (advantage='nstep')")
    gae_lambda: float = setting(
        0.95, low=0.0, high=1.0, help="GAE λ (0: one-step TD, 1: Monte Carlo)"
    )
    gamma: float = setting(0.99, low=0.0, high=1.0, help="discount γ")
    lr: float = setting(1e-3, low=0.0, high=1.0, low_inclusive=False, log=True, help="step size α")
    anneal_lr: bool = setting(True, help="decay the step size linearly to 0")
    vf_coef: float = setting(0.5, low=0.0, help="weight of the value loss")
    ent_coef: float = setting(0.0, low=0.0, help="weight of the entropy bonus")
    max_grad_norm: float = setting(0.5, low=0.0, help="gradient-norm clip (0: off)")
    normalize_advantages: bool = setting(False, help="standardise advantages per batch")
    bootstrap_truncated: bool = setting(
        True, help="bootstrap at time-limit cuts; False reproduces a common bug (notebook 03)"
    )
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


@dataclass(frozen=True)
class IMPALAConfig:
    """IMPALA settings (Espeholt et al. 2018): actors that send trajectory segments, one learner
    that corrects them with V-trace. Defaults solve CartPole-v1 with 2 actors within 500k env
    steps."""

    env_id: str = setting("CartPole-v1", help="a registered gymnasium id")
    workers: int = setting(2, low=1, high=64, help="worker processes W")
    total_steps: int = setting(
        500_000,
        low=1,
        help="env steps (valid transitions) to train for, summed over all environments",
    )
    envs_per_worker: int = setting(4, low=1, high=256, help="environments each worker steps")
    rollout_steps: int = setting(8, low=1, high=8192, help="steps T per env per batch")
    batch_segments: int = setting(
        2, low=1, high=256, help="segments (one actor's T × N steps each) per learner step"
    )
    queue_size: int = setting(
        4, low=1, high=1024, help="segments waiting for the learner before actors wait"
    )
    correction: str = setting(
        "vtrace",
        choices=("vtrace", "none"),
        help="vtrace: importance-weighted targets; none: treat the data as on-policy",
    )
    rho_bar: float = setting(
        1.0, low=0.0, low_inclusive=False, help="truncation ρ̄ of the importance weight"
    )
    c_bar: float = setting(
        1.0, low=0.0, low_inclusive=False, help="truncation c̄ of V-trace's trace coefficients"
    )
    vtrace_lambda: float = setting(
        1.0, low=0.0, high=1.0, help="λ of V-trace's traces c_t = λ·min(c̄, π/μ) (1: the paper's)"
    )
    lag: int = setting(
        0, low=0, high=256, help="injected lag k: actors act with the θ pulled k pulls ago (0: off)"
    )
    optimizer: str = setting("adam", choices=OPTIMIZERS, help="optimizer")
    gamma: float = setting(0.99, low=0.0, high=1.0, help="discount γ")
    lr: float = setting(1e-3, low=0.0, high=1.0, low_inclusive=False, log=True, help="step size α")
    anneal_lr: bool = setting(True, help="decay the step size linearly to 0")
    vf_coef: float = setting(0.5, low=0.0, help="weight of the value loss")
    ent_coef: float = setting(0.0, low=0.0, help="weight of the entropy bonus")
    max_grad_norm: float = setting(0.5, low=0.0, help="gradient-norm clip (0: off)")
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


WorkerConfig = DA3CConfig | DPPOConfig | A3CConfig | IMPALAConfig  # a run of worker processes
