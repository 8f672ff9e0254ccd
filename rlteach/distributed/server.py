"""The parameter server (seed §2.3, notebook 05): its configuration, its optimizer in numpy, its
rules for combining pushes (:class:`Server`), and the loop its process runs (:func:`serve`).

Server modes (:class:`ServerConfig`):

* ``sync`` — the server waits for a round of pushes computed from the current version, averages
  them, applies the result and publishes version+1; every pusher of the round waits for that. With
  ``drop_stragglers = D`` the round closes after the first ``W − D`` pushes and late pushes are
  dropped (the DPPO straggler rule).
* ``async`` — the server applies each push as it arrives (A3C style) and records its *staleness*:
  the server's version minus the version the push was computed from.
* ``average = "gradients"``: the averaged gradient ``ḡ`` goes through the server's optimizer
  (``θ ← θ − α ḡ`` for SGD, or Adam). ``average = "parameters"``: workers update locally and push
  their new parameters ``θ'``; the worker's ``ctx`` turns them into the *change*
  ``Δ = θ' − θ_pulled`` against the θ it pulled, and the server adds changes: a sync round adds their
  mean (which is the mean of the ``θ'``, since every member pulled the same θ), an async push adds
  its ``Δ`` as it arrives (Downpour SGD, Dean et al. 2012), or ``Δ/W`` with
  ``scale_async_changes=True``. Moving θ towards a stale ``θ'`` instead (``θ += (θ' − θ)/W``) would
  undo part of the other workers' progress since the pull: every push would drag θ back towards
  an old version.
"""

from __future__ import annotations

import signal
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from rlteach import config
from rlteach.config import setting
from rlteach.distributed.shared import POLL, Mailboxes, SharedParams, parent_gone

MODES = ("sync", "async")
AVERAGING = ("gradients", "parameters")
OPTIMIZERS = ("adam", "sgd")
REPORT_EVERY = 0.25  # seconds between the server's reports (and its checks that the parent lives)
Ack = tuple[int, tuple]  # (worker, ("ack", applied, version, staleness)): an answer to send


class ParameterStore(Protocol):
    """Where the server keeps θ and reads the pushes: :class:`~rlteach.distributed.shared.SharedParams`
    in shared memory, or a Ray actor's own arrays (``ActorParams``)."""

    size: int
    workers: int

    @property
    def params(self) -> np.ndarray: ...

    def slot(self, worker: int) -> np.ndarray: ...

    def read(self) -> tuple[np.ndarray, int]: ...

    def writing(self) -> AbstractContextManager[np.ndarray]: ...

    def set_version(self, version: int) -> None: ...


@dataclass(frozen=True)
class ServerConfig:
    """How the parameter server combines pushes (see the module docstring). Checked like every
    config (:func:`rlteach.config.validate`, with :meth:`check` for the rules between fields);
    :meth:`validate` adds the rule that needs the number of workers."""

    mode: str = setting(
        "sync", choices=MODES, help="sync: wait for a round of pushes; async: apply each on arrival"
    )
    average: str = setting(
        "gradients",
        choices=AVERAGING,
        help="gradients: the server's optimizer steps on their mean; parameters: it adds changes",
    )
    optimizer: str = setting("adam", choices=OPTIMIZERS, help="the server's optimizer")
    lr: float = setting(1e-3, low=0.0, low_inclusive=False, log=True, help="the server's step size")
    drop_stragglers: int = setting(0, low=0, help="D: a sync round takes the first W − D pushes")
    anneal: bool = setting(
        False, help="decay the step size linearly to 0 with the progress the pushes carry"
    )
    scale_async_changes: bool = setting(
        False, help="async 'parameters': add Δ/W per push instead of Δ"
    )
    max_grad_norm: float = setting(
        0.0, low=0.0, help="clip the norm of the averaged gradient before the step (0: off)"
    )
    adam_eps: float = setting(
        1e-8,
        low=0.0,
        low_inclusive=False,
        log=True,
        help="Adam's ε (torch's default; PPO implementations use 1e-5)",
    )

    def check(self) -> None:
        """The rules between fields: ``ValueError`` naming the field that does not apply."""
        if self.drop_stragglers and self.mode != "sync":
            raise ValueError("ServerConfig.drop_stragglers only applies to mode='sync'")
        if self.scale_async_changes and (self.mode, self.average) != ("async", "parameters"):
            raise ValueError(
                "ServerConfig.scale_async_changes only applies to mode='async', "
                "average='parameters'"
            )
        if self.max_grad_norm and self.average != "gradients":
            raise ValueError("ServerConfig.max_grad_norm only applies to average='gradients'")

    def validate(self, workers: int) -> ServerConfig:
        """This config, checked for a run with ``workers`` workers; ``ValueError`` otherwise."""
        config.validate(self)
        check_stragglers("ServerConfig", self.drop_stragglers, workers)
        return self


def check_stragglers(owner: str, drop_stragglers: int, workers: int) -> None:
    """``ValueError`` unless a sync round of ``W − D`` pushes has at least one: ``0 <= D < W``."""
    if not 0 <= drop_stragglers < workers:
        raise ValueError(
            f"{owner}.drop_stragglers = {drop_stragglers!r} is invalid with {workers} workers: "
            f"W − D must be >= 1, so D must be in [0, {workers - 1}]"
        )


@dataclass
class ServerStats:
    """What the server saw: versions published, pushes applied and dropped, and per push the
    worker, the version it was computed from and its staleness."""

    version: int = 0
    applied: int = 0
    dropped: int = 0
    pushes: list = field(default_factory=list)  # (worker, from_version, staleness, applied)


class Optimizer:
    """Adam or SGD on a flat float32 vector, in numpy: ``θ ← θ − α · step(g)``.

    Adam: ``m ← β1 m + (1−β1) g``, ``v ← β2 v + (1−β2) g²``, ``θ ← θ − α m̂ / (√v̂ + ε)`` with the
    bias corrections ``m̂ = m/(1−β1^t)``, ``v̂ = v/(1−β2^t)`` (β1 = 0.9, β2 = 0.999, and ε = ``eps``,
    1e-8 by default, as ``torch.optim.Adam``).
    """

    def __init__(self, name: str, lr: float, size: int, eps: float = 1e-8):
        self.name, self.lr, self.t, self.eps = name, lr, 0, eps
        if name == "adam":
            self.m = np.zeros(size, np.float32)
            self.v = np.zeros(size, np.float32)

    def step(self, theta: np.ndarray, grad: np.ndarray) -> None:
        """Update ``theta`` in place; ``grad`` is used as scratch space and may be overwritten."""
        if self.name == "sgd":
            grad *= self.lr  # grad is the server's scratch buffer: scaling it in place is free
            theta -= grad
            return
        b1, b2, eps = 0.9, 0.999, self.eps
        self.t += 1
        # m ← β1 m + (1−β1) g, written (m − g) β1 + g: three in-place passes, no temporary
        self.m -= grad
        self.m *= b1
        self.m += grad
        np.multiply(grad, grad, out=grad)  # v ← β2 v + (1−β2) g², the same way with g²
        self.v -= grad
        self.v *= b2
        self.v += grad
        # θ −= α m̂ / (√v̂ + ε), computed in the scratch buffer ``grad``
        np.multiply(self.v, 1 / (1 - b2**self.t), out=grad)
        np.sqrt(grad, out=grad)
        grad += eps
        np.divide(self.m, grad, out=grad)
        grad *= self.lr / (1 - b1**self.t)
        theta -= grad


def clip_norm(grad: np.ndarray, max_norm: float) -> np.ndarray:
    """Scale ``grad`` ``[size]`` in place by ``min(1, max_norm / (‖grad‖₂ + 1e-6))``, the rule of
    ``torch.nn.utils.clip_grad_norm_``; returns ``grad``."""
    norm = float(np.sqrt(np.dot(grad, grad)))
    if norm + 1e-6 > max_norm:
        grad *= max_norm / (norm + 1e-6)
    return grad


class Server:
    """The server's state and rules; :func:`serve` runs it in its own process."""

    def __init__(self, shared: ParameterStore, cfg: ServerConfig):
        self.shared, self.cfg = shared, cfg
        self._mean = np.empty_like(shared.params)  # reused: no allocation per push
        self.optimizer = Optimizer(cfg.optimizer, cfg.lr, shared.size, cfg.adam_eps)
        self.weights = np.ones(shared.workers)  # each worker's weight in the mean (see on_push)
        self.progress = np.zeros(shared.workers)  # each worker's training progress (see on_push)
        self.stats = ServerStats()
        self.round: list[int] = []  # workers whose push is part of the current sync round
        self.summing: list[tuple[int, int]] = []  # (worker, length) of the current sum
        self.active = set(range(shared.workers))

    @property
    def theta(self) -> np.ndarray:
        """θ, ``[size]``: the shared vector itself, which :meth:`apply` updates in place."""
        return self.shared.params

    def round_size(self) -> int:
        return max(1, min(self.shared.workers - self.cfg.drop_stragglers, len(self.active)))

    def apply(self, workers: list[int]) -> None:
        """Average the pushes in ``workers``' slots and update θ; publish version + 1.

        The mean is ``Σ_w v_w / Σ_w n_w`` over the pushed vectors ``v_w`` and their weights ``n_w``
        (1 unless the push gave one, so by default the plain mean). Gradients ``ḡ``: clipped to
        ``max_grad_norm`` when set, then one optimizer step, with step size ``α (1 − p̄)`` under
        ``anneal`` (``p̄``: the mean progress the pushes carried). Parameter changes ``Δ̄``: ``θ ← θ + Δ̄``
        (``Δ̄/W`` for an async push with ``scale_async_changes``). θ is changed in place, under the
        lock that pulls take (:meth:`SharedParams.writing`): no private copy to publish.
        """
        total = float(sum(self.weights[w] for w in workers))
        if len(workers) == 1:  # its pusher waits for the ack: the slot itself is scratch space
            mean = self.shared.slot(workers[0])
            if total != 1.0:
                mean /= total
        else:
            mean = self._mean
            np.copyto(mean, self.shared.slot(workers[0]))
            for w in workers[1:]:
                mean += self.shared.slot(w)
            mean /= total
        if self.cfg.average == "gradients":
            if self.cfg.max_grad_norm:
                clip_norm(mean, self.cfg.max_grad_norm)
            if self.cfg.anneal:
                progress = float(np.mean(self.progress[workers]))
                self.optimizer.lr = self.cfg.lr * max(0.0, 1.0 - progress)
        elif self.cfg.scale_async_changes:
            mean /= self.shared.workers
        self.stats.version += 1
        self.stats.applied += len(workers)
        with self.shared.writing() as theta:
            if self.cfg.average == "gradients":
                self.optimizer.step(theta, mean)
            else:
                theta += mean
            self.shared.set_version(self.stats.version)

    def on_push(
        self, worker: int, from_version: int, weight: float = 1.0, progress: float = 0.0
    ) -> list[Ack]:
        """Handle one push; return the acknowledgements to send as ``(worker, message)``.

        ``weight`` ``n_w`` is the push's weight in the mean (see :meth:`apply`): a worker that
        pushes the gradient of its loss *summed* over ``n_w`` samples, with weight ``n_w``, makes
        the round's mean the per-sample mean over all the round's samples (DPPO, notebook 07).
        ``progress`` is the fraction of its env-step budget the worker had spent when it started
        the batch behind the push; with ``anneal`` the step size follows it, as a single-process
        learner's does (counting server versions instead would assume a number of rounds the
        workers do not keep to: episode resets and stragglers change it)."""
        self.weights[worker] = weight
        self.progress[worker] = progress
        staleness = self.stats.version - from_version
        if self.cfg.mode == "async":
            self.apply([worker])
            self.stats.pushes.append((worker, from_version, staleness, True))
            return [(worker, ("ack", True, self.stats.version, staleness))]
        if staleness != 0:  # a straggler of a round that already closed
            self.stats.dropped += 1
            self.stats.pushes.append((worker, from_version, staleness, False))
            return [(worker, ("ack", False, self.stats.version, staleness))]
        self.round.append(worker)
        self.stats.pushes.append((worker, from_version, 0, True))
        return self.close_round_if_complete()

    def close_round_if_complete(self) -> list[Ack]:
        if not self.round or len(self.round) < self.round_size():
            return []
        members, self.round = self.round, []
        self.apply(members)
        return [(w, ("ack", True, self.stats.version, 0)) for w in members]

    def on_sum(self, worker: int, length: int) -> list[Ack]:
        """``worker``'s part of a sum over the workers
        (:meth:`~rlteach.distributed.worker.WorkerContext.sum_over_workers`): the first
        ``length`` floats of its slot. Once every active worker has sent its part, each
        gets the elementwise total in its slot; θ and the version do not change."""
        self.summing.append((worker, length))
        return self.close_sum_if_complete()

    def close_sum_if_complete(self) -> list[Ack]:
        if not self.summing or len(self.summing) < len(self.active):
            return []
        members, self.summing = self.summing, []
        lengths = sorted({length for _, length in members})
        if len(lengths) > 1:
            raise ValueError(f"the workers summed vectors of different lengths {lengths}")
        total = self._mean[: lengths[0]]
        np.copyto(total, self.shared.slot(members[0][0])[: lengths[0]])
        for w, _ in members[1:]:
            total += self.shared.slot(w)[: lengths[0]]
        for w, _ in members:
            np.copyto(self.shared.slot(w)[: lengths[0]], total)
        return [(w, ("ack", True, self.stats.version, 0)) for w, _ in members]

    def on_leave(self, worker: int) -> list[Ack]:
        """A worker finished: rounds and sums no longer wait for it."""
        self.active.discard(worker)
        return self.close_round_if_complete() + self.close_sum_if_complete()


def serve(
    shared: SharedParams,
    mail: Mailboxes,
    cfg: ServerConfig,
    events: Any,  # a multiprocess Queue (no stubs)
    stop: Any,  # a multiprocess Event
) -> None:
    """Server process: answer pushes until every worker has left or the run is stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    mail.mark_begun(mail.workers)
    server = Server(shared, cfg)
    handlers: dict[str, Callable[..., list[Ack]]] = {
        "push": server.on_push,
        "sum": server.on_sum,
        "leave": server.on_leave,
    }
    last_report = time.perf_counter()
    reported = 0
    try:
        while server.active and not stop.is_set():
            if mail.wait_posted(POLL):
                for worker, (kind, *fields) in mail.collect():
                    acks = handlers[kind](worker, *fields)
                    for target, (_, applied, version, staleness) in acks:
                        mail.answer(target, applied, version, staleness)
            if time.perf_counter() - last_report > REPORT_EVERY:
                if parent_gone():
                    stop.set()  # every worker stops at its next push, pull or wait
                    events.cancel_join_thread()  # nobody will read the reports
                    return
                events.put(("server", None, server_report(server.stats, reported)))
                reported = len(server.stats.pushes)
                last_report = time.perf_counter()
        events.put(("server", None, server_report(server.stats, reported)))
    except Exception:
        events.put(("error", "server", traceback.format_exc()))


def server_report(stats: ServerStats, since: int) -> dict:
    return {
        "version": stats.version,
        "applied": stats.applied,
        "dropped": stats.dropped,
        "pushes": stats.pushes[since:],
    }
