"""A3C as Mnih et al. (2016) ran it (notebook 09): no parameter server. Every worker reads the one
shared θ, computes an actor-critic gradient on its own rollout, and applies it to that θ itself,
with an optimizer whose state is shared too, in place and without a lock: Hogwild! (Recht et al.
2011). Two workers may update the same number at the same moment; one of the two changes can then
be lost. Recht et al. show that with sparse updates this costs little, and A3C found it works for
dense ones in practice; ``lock=True`` runs the same algorithm with a lock around every read and
every update, for comparison.

The loss is single-process A2C's (:func:`rlteach.algos.a2c.estimate_advantages`,
:func:`~rlteach.algos.a2c.a2c_loss`), the optimizers single-process A2C's, written for shared
memory (:class:`SharedOptimizer`). What A3C code in the wild gets wrong, and how this code and its
tests (``tests/distributed/test_hogwild.py``) hold each:

- **A step counter per worker.** Adam's bias corrections ``1 − β₁ᵗ`` and ``1 − β₂ᵗ`` need the
  number of updates applied to the shared moments by every worker; a per-process ``t``, about W
  times too small, applies the corrections of another count to those moments, and the steps come
  out the wrong size. Here ``t`` is the shared version counter, incremented atomically (under the
  lock) by every update: the test interleaves two workers on one state and compares with one
  ``torch.optim.Adam`` over the same sequence of gradients.
- **Gradients aliased into the shared model once.** A common PyTorch pattern points the shared
  model's ``.grad`` at the first local gradient tensor it sees and never again; any code that
  then makes new gradient tensors (``zero_grad(set_to_none=True)``, the default) applies a stale
  gradient for ever. Here each update passes the gradient it just computed, as a vector: the same
  test gives every step a different gradient.
- **Threads.** Each process would start a pool of math threads per core; W workers then fight
  over the cores. The runtime gives every worker one torch thread and ``OMP_NUM_THREADS=1``; a
  test reads both inside a worker.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from rlteach.algos.a2c import OPTIMIZER_EPS, RMSPROP_ALPHA, a2c_loss, estimate_advantages
from rlteach.algos.common import TrainResult, annealed, clipped_flat_gradient
from rlteach.config import make_config
from rlteach.distributed.configs import A3CConfig
from rlteach.distributed.driver import (
    aliased_parameters,
    run_on_parameter_server,
    steps_per_worker,
    worker_agent,
)
from rlteach.distributed.shared import SharedParams, held
from rlteach.distributed.worker import ProcessContext
from rlteach.envs import EnvFn
from rlteach.history import Callback

ADAM_BETAS = (0.9, 0.999)  # torch's defaults, as single-process A2C's Adam


class SharedOptimizer:
    """θ and an optimizer's state in shared memory (:class:`SharedParams`, ``state_rows`` =
    ``ROWS[name]``), stepped in place by whichever worker holds a gradient. With ``lock=False``
    (Hogwild) reads and updates of θ take no lock; only the update counter does. Updates, for a
    gradient ``g`` ``[P]`` and step size ``η``, as ``torch.optim`` writes them:

    - ``sgd``:      ``θ ← θ − η g``;
    - ``rmsprop``:  ``v ← α v + (1 − α) g²``, ``θ ← θ − η g / (√v + ε)`` (one row: ``v``);
    - ``adam``:     ``m ← β₁ m + (1 − β₁) g``, ``v ← β₂ v + (1 − β₂) g²``,
      ``θ ← θ − η (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)`` (two rows: ``m``, ``v``),

    with ``α = RMSPROP_ALPHA``, ``ε = OPTIMIZER_EPS`` (single-process A2C's) and ``t`` the shared
    count of updates, this one included: ``shared.version``.
    """

    ROWS = {"sgd": 0, "rmsprop": 1, "adam": 2}

    def __init__(self, shared: SharedParams, name: str, lock: bool = False):
        if name not in self.ROWS:
            raise ValueError(f"optimizer = {name!r} is invalid: must be one of {list(self.ROWS)}")
        if shared.state_rows < self.ROWS[name]:
            raise ValueError(
                f"{name} needs {self.ROWS[name]} rows of shared state, the buffer has "
                f"{shared.state_rows}"
            )
        self.shared, self.name, self.lock = shared, name, lock
        self.theta = shared.params
        self.state = [shared.state(row) for row in range(self.ROWS[name])]
        self.scratch = np.empty_like(self.theta)

    def read(self, out: np.ndarray) -> int:
        """Copy the shared θ into ``out`` ``[P]``; return the number of updates applied so far.
        Without the lock the copy may mix numbers from before and after another worker's update."""
        if self.lock:
            return self.shared.read(out)[1]
        np.copyto(out, self.theta)
        return self.shared.version.value

    def step(self, grad: np.ndarray, lr: float) -> int:
        """Apply the gradient ``grad`` ``[P]`` float32 to the shared θ with step size ``lr``;
        return ``t``, the count of updates with this one."""
        if self.lock:
            with held(self.shared.lock):
                t = self._count()
                self._apply(grad, lr, t)
            return t
        with held(self.shared.lock):  # the counter alone: t must be exact, θ need not be
            t = self._count()
        self._apply(grad, lr, t)
        return t

    def _count(self) -> int:
        """Call holding the lock: one more update."""
        self.shared.version.value += 1
        return self.shared.version.value

    def _apply(self, grad: np.ndarray, lr: float, t: int) -> None:
        """The update rule of the class docstring, in place, through one scratch vector."""
        theta, scratch = self.theta, self.scratch
        if self.name == "sgd":
            np.multiply(grad, lr, out=scratch)
            theta -= scratch
            return
        if self.name == "rmsprop":
            (v,) = self.state
            _running_mean(v, np.square(grad, out=scratch), RMSPROP_ALPHA, scratch)
            np.sqrt(v, out=scratch)
            scratch += OPTIMIZER_EPS
            np.divide(grad, scratch, out=scratch)
        else:
            m, v = self.state
            beta1, beta2 = ADAM_BETAS
            _running_mean(m, grad, beta1, scratch)
            _running_mean(v, np.square(grad, out=scratch), beta2, scratch)
            np.sqrt(v, out=scratch)
            scratch /= np.sqrt(1 - beta2**t)
            scratch += OPTIMIZER_EPS
            np.divide(m, scratch, out=scratch)
            lr = lr / (1 - beta1**t)
        scratch *= lr
        theta -= scratch


def _running_mean(average: np.ndarray, x: np.ndarray, decay: float, scratch: np.ndarray) -> None:
    """``average ← decay · average + (1 − decay) · x`` in place, through ``scratch`` (which may
    be ``x``)."""
    np.multiply(x, 1 - decay, out=scratch)
    average *= decay
    average += scratch


def a3c_worker(ctx: ProcessContext, cfg: A3CConfig, factories: list[EnvFn | None]) -> int:
    """One A3C worker (Mnih et al. 2016, Algorithm S3). Returns the env steps it took."""
    policy, collector = worker_agent(ctx, cfg, factories)  # its own environment instances
    optimizer = SharedOptimizer(ctx.shared, cfg.optimizer, cfg.lock)  # θ and state: shared
    theta = aliased_parameters(policy)  # the network's parameters, as one vector
    budget = steps_per_worker(cfg)
    while collector.env_steps < budget and not ctx.stopping:
        progress = collector.env_steps / budget
        start = time.perf_counter()
        # 1. Copy the shared θ into the local network (no lock: another worker may be writing it).
        read_version = optimizer.read(out=theta)
        read = time.perf_counter()
        # 2. Act for T steps in this worker's environments; 3. advantages from the critic.
        batch = collector.collect(cfg.rollout_steps)
        adv, ret = estimate_advantages(batch, cfg)
        # 4. The actor-critic loss and its gradient, clipped.
        loss, stats = a2c_loss(policy, batch.flat(adv=adv, ret=ret), cfg)
        policy.zero_grad()
        loss.backward()
        grad = clipped_flat_gradient(policy, cfg.max_grad_norm)
        computed = time.perf_counter()
        # 5. Apply it to the shared θ, in place: the update is now every worker's θ.
        version = optimizer.step(grad, annealed(cfg.lr, progress, cfg.anneal_lr))
        ctx.report(
            env_steps=collector.env_steps,
            returns=batch.episode_returns,
            lengths=batch.episode_lengths,
            version=version,
            staleness=version - 1 - read_version,  # other workers' updates since the read
            compute=computed - read,
            communication=(read - start) + (time.perf_counter() - computed),
            **stats,
        )
    # 6. Repeat until this worker's share of the env steps is spent.
    return collector.env_steps


def run_a3c(
    config: A3CConfig | None = None,
    callback: Callback | None = None,
    env_fn: EnvFn | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train with Hogwild A3C on ``workers`` processes sharing θ and the optimizer's state.

    Returns a :class:`rlteach.TrainResult` as :func:`rlteach.run_da3c` does: ``.history`` holds
    per-worker episode and update rows (``staleness``: the other workers' updates between a
    worker's read of θ and its own update) and evaluations of the shared θ. A bad value raises
    ``ValueError`` before any process starts; a kernel interrupt returns the partial result.
    """
    cfg = make_config(A3CConfig, config, **overrides)
    return run_on_parameter_server(
        "a3c",
        a3c_worker,
        cfg,
        None,  # no server: the workers update θ themselves
        callback,
        env_fn,
        state_rows=SharedOptimizer.ROWS[cfg.optimizer],
    )
